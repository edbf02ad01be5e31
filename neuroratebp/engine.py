"""Training-step engine: one switch picks rate_m, rate_s, bptt or bptt_s on an unchanged model.

rate-BP (Yu et al., NeurIPS 2024): T graph-free forward steps that leave each neuron's rate and
eligibility kappa behind, then one forward/backward on time-averaged data through the same layers.
Memory saved for backward is independent of T. BPTT keeps the whole T-step graph instead.
Multi-step variants (``*_m``, ``bptt``) push all T steps through a layer before the next as one
``(T*B, ...)`` batch; single-step variants (``*_s``) call the network once per step.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from .network import SNN
from .neuron import LIF, StepMode

METHODS: dict[str, tuple[str, StepMode]] = {
    "rate_m": ("rate", "m"),
    "rate_s": ("rate", "s"),
    "bptt": ("bptt", "m"),
    "bptt_s": ("bptt", "s"),
}

LossFn = Callable[[Tensor, Tensor], Tensor]


def check_method(method: str) -> tuple[str, StepMode]:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {', '.join(METHODS)}")
    return METHODS[method]


def window_input(model: SNN, x: Tensor, timesteps: int) -> tuple[Tensor, bool]:
    """``x`` and whether it is static: a sample ``(B, ...)`` (direct encoding: the same input at
    every step) or a sequence ``(T, B, ...)``."""
    if timesteps < 1:
        raise ValueError(f"timesteps must be >= 1, got {timesteps}")
    sample_dims = len(model.input_shape)
    if x.dim() == sample_dims + 1:
        return x, True
    if x.dim() == sample_dims + 2:
        if x.shape[0] != timesteps:
            raise ValueError(f"input sequence has {x.shape[0]} steps but timesteps={timesteps}")
        return x, False
    raise ValueError(f"input of shape {tuple(x.shape)} does not match the model's sample shape "
                     f"{model.input_shape} (expected (B, ...) or (T, B, ...))")


def run_steps(model: SNN, x: Tensor, static: bool, step_mode: StepMode, timesteps: int) -> Tensor:
    """Logits = mean over t of the readout, for a window of input, in the current phase.

    A static input ``(B, ...)`` is not repeated: the network runs its static part once.
    """
    model.reset_state()
    B = x.shape[0] if static else x.shape[1]
    if step_mode == "m":
        out = model(x if static else x.flatten(0, 1), static=static)
        return out.reshape(-1, B, *out.shape[1:]).mean(0)
    steps = [x] * timesteps if static else x.unbind(0)
    total = model(steps[0], static=static)
    for step in steps[1:]:
        total = total + model(step, static=static)
    return total / timesteps


def infer(model: SNN, x: Tensor, timesteps: int, step_mode: StepMode = "m") -> Tensor:
    """Logits of a forward simulation (no gradient); the caller picks train/eval mode."""
    model.set_phase("bptt", step_mode, timesteps)
    with torch.no_grad():
        return run_steps(model, *window_input(model, x, timesteps), step_mode, timesteps)


@dataclass(frozen=True)
class StepResult:
    loss: Tensor
    logits: Tensor


def forward_backward(model: SNN, x: Tensor, target: Tensor, method: str, timesteps: int,
                     loss_fn: LossFn = F.cross_entropy, grad_scale: float = 1.0) -> StepResult:
    """Accumulate the gradient of ``loss_fn(logits, target)`` into ``model``'s parameters.

    ``grad_scale`` multiplies the gradient (the official rate-BP code uses 1/T for rate methods).
    The returned logits are those of the true spiking forward pass for every method.
    """
    kind, mode = check_method(method)
    x, static = window_input(model, x, timesteps)
    if kind == "bptt":
        model.set_phase("bptt", mode, timesteps)
        logits = run_steps(model, x, static, mode, timesteps)
    else:
        model.set_phase("spike", mode, timesteps)
        with torch.no_grad():
            run_steps(model, x, static, mode, timesteps)
        model.set_phase("rate", mode, timesteps)
        logits = model(x if static else x.mean(0))
    loss = loss_fn(logits, target)
    (loss * grad_scale if grad_scale != 1.0 else loss).backward()
    return StepResult(loss.detach(), logits.detach())


def spike_trains(model: SNN, x: Tensor, timesteps: int) -> dict[str, Tensor]:
    """Every LIF layer's spikes during :func:`infer` on ``x``, ``[T, B, n]`` with each sample's
    neurons flattened in C order (as NIR and the chip number them), for rasters beside the
    chip's spikes; the caller picks train/eval mode."""
    trains: dict[str, Tensor] = {}

    def keep(name: str):
        def hook(_module, _inputs, out: Tensor) -> None:
            trains[name] = out.detach().reshape(timesteps, len(x), -1).clone()
        return hook

    handles = [m.register_forward_hook(keep(name)) for name, m in model.layers.items()
               if isinstance(m, LIF)]
    try:
        infer(model, x, timesteps, "m")
    finally:
        for h in handles:
            h.remove()
    return trains
