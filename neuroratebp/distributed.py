"""Data-parallel training: DDP for the gradients, batch norm over the global batch.

Under ``torchrun`` every rank runs the same training step on its share of each global batch.
Two pieces make that equal to one process with the whole batch:

* :class:`SNNDataParallel` -- DDP, whose gradient hooks average the parameter gradients during
  the one backward of a step. It exposes the SNN's engine interface (phases, state), so
  ``engine.forward_backward`` runs unchanged: rate-BP's spike stage runs without grad (DDP then
  prepares nothing) and its rate pass is the one differentiable forward DDP syncs.
* :class:`SyncBatchNorm` -- the project's rate-aware BatchNorm with batch statistics (and, in
  backward, their gradient terms) summed over ranks, in every phase. ``nn.SyncBatchNorm``
  cannot be used: it would replace the spike/rate behaviour with plain batch norm.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from .layers import BatchNorm
from .network import SNN
from .neuron import Phase, StepMode


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


class SyncBatchNorm(BatchNorm):
    """:class:`~neuroratebp.layers.BatchNorm` whose training statistics span all ranks.

    Spike stage and BPTT normalise with (and update the running statistics from) the global
    batch; the rate pass takes values and gradients of the global statistics. The parent's
    phases see the ranks only through :meth:`_reduce` and :meth:`_count`: its autograd node
    sums the statistics' gradient terms over the ranks in its backward, so the gradient
    through the statistics reaches every rank's inputs.
    Eval mode and single-process runs behave exactly like the parent class.
    """

    @classmethod
    def from_batchnorm(cls, bn: BatchNorm) -> SyncBatchNorm:
        sync = cls(bn.num_features, eps=bn.eps, momentum=bn.momentum)
        sync.load_state_dict(bn.state_dict())
        sync.phase, sync.step_mode = bn.phase, bn.step_mode
        return sync.to(bn.weight.device).train(bn.training)

    def _reduce(self, sums: Tensor) -> Tensor:
        """Per-channel sums over the ranks."""
        if not is_distributed():
            return sums
        sums = sums.clone()
        dist.all_reduce(sums)
        return sums

    def _count(self, x: Tensor) -> float:
        """Samples per channel over the ranks."""
        if not is_distributed():
            return super()._count(x)
        count = torch.tensor([x.numel() // x.shape[1]], device=x.device, dtype=torch.float64)
        dist.all_reduce(count)
        return float(count)


def convert_sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm below ``module`` by a :class:`SyncBatchNorm` (same names/state)."""
    for name, child in module.named_children():
        if isinstance(child, BatchNorm) and not isinstance(child, SyncBatchNorm):
            setattr(module, name, SyncBatchNorm.from_batchnorm(child))
        else:
            convert_sync_batchnorm(child)
    return module


class SNNDataParallel(DistributedDataParallel):
    """DDP around an :class:`SNN` that the engine can drive like the SNN itself."""

    def __init__(self, model: SNN, device: torch.device) -> None:
        convert_sync_batchnorm(model)
        super().__init__(model, device_ids=[device.index] if device.type == "cuda" else None)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.module.input_shape

    def set_phase(self, phase: Phase, step_mode: StepMode, timesteps: int) -> None:
        self.module.set_phase(phase, step_mode, timesteps)

    def reset_state(self) -> None:
        self.module.reset_state()


@contextmanager
def process_group_from_env(device: torch.device) -> Iterator[torch.device]:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1 (nccl on GPU, gloo on CPU).

    Yields the device this rank trains on (``cuda:LOCAL_RANK`` on GPU); a plain run yields
    ``device`` unchanged and starts nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or is_distributed():
        yield device
        return
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield device
    finally:
        dist.destroy_process_group()
