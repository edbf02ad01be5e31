"""The same spiking network, with the same weights, in peer libraries (snnTorch, SpikingJelly).

Used by ``train_cost.py`` to time the peers' BPTT beside ours. Each builder walks a sequential
:class:`~neuroratebp.network.SNN` (conv/linear, batch norm, LIF, pooling, flatten) and rebuilds it
with the peer's own neuron and its usual multi-step idiom; synapses, pooling and batch norm are
copies of ours, so all three compute the same function (checked: equal loss).

Both peers get the static-input shortcut our engine uses: the layers before the first neuron see
the same image at every step, so they run once on the batch and their output is repeated T times
(SpikingJelly's examples do this; for snnTorch it is hoisting the first synapse out of the time loop).

The peers are optional (``make setup`` installs them: the ``interop`` extra); a missing one is reported, not fatal.
"""
from __future__ import annotations

import copy
import importlib.metadata
from collections.abc import Callable

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from neuroratebp.interchange import peers as interchange_peers
from neuroratebp.layers import BatchNorm
from neuroratebp.network import INPUT, SNN
from neuroratebp.neuron import LIF, NeuronConfig

PeerStep = Callable[[Tensor, Tensor, int], Tensor]
"""(images (B, ...), labels, T) -> loss, with gradients accumulated into the peer's parameters."""


def version(peer: str) -> str | None:
    """The installed peer's version, None when it is not installed."""
    try:
        return interchange_peers.version(peer)
    except importlib.metadata.PackageNotFoundError:
        return None


class _TorchBatchNorm(nn.BatchNorm2d):
    """torch's batch norm over ``(N, C)`` or ``(N, C, H, W)``, as ours."""

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"expected 2-D or 4-D input, got {x.dim()}-D")


def _torch_layer(module: nn.Module) -> nn.Module:
    """Our stateless layers as they are; our batch norm as torch's (same state)."""
    if isinstance(module, BatchNorm):
        bn = _TorchBatchNorm(module.num_features, eps=module.eps, momentum=module.momentum)
        bn.load_state_dict(module.state_dict())
        return bn.to(module.weight.device)
    if isinstance(module, LIF):
        raise TypeError("neurons are the peer's own")
    return copy.deepcopy(module)


def _layers(model: SNN) -> list[nn.Module]:
    previous = INPUT
    for node in model.nodes():
        if node.inputs != (previous,):
            raise ValueError("peer nets are built from sequential networks only")
        previous = node.name
    return list(model.layers.values())


def _neuron(model: SNN) -> NeuronConfig:
    configs = {m.config for m in model.layers.values() if isinstance(m, LIF)}
    if len(configs) != 1:
        raise ValueError("peer nets need one neuron configuration for the whole network")
    (config,) = configs
    if config.reset != "hard" or not config.detach_reset:
        raise ValueError("peer nets are built for the chip neuron (hard reset, detached)")
    return config


def _split_static(layers: list[nn.Module]) -> tuple[list[nn.Module], list[nn.Module]]:
    """Layers before the first neuron (see the same input at every step) and the rest."""
    first = next(i for i, m in enumerate(layers) if isinstance(m, LIF))
    return layers[:first], layers[first:]


def spikingjelly(model: SNN, step_mode: str) -> tuple[nn.Module, PeerStep]:
    """SpikingJelly ``LIFNode``; multi-step: ``SeqToANNContainer`` around each stateless layer,
    single-step: the network called once per step (batch norm then normalises each step)."""
    from spikingjelly.activation_based import functional, layer, neuron, surrogate

    cfg = _neuron(model)
    static, rest = _split_static(_layers(model))
    modules = []
    for m in rest:
        if isinstance(m, LIF):
            # h = v - v / tau + x with v_reset = 0: lam = 1 - 1 / tau.
            modules.append(neuron.LIFNode(tau=1.0 / (1.0 - cfg.lam), decay_input=False,
                                          v_threshold=cfg.theta, v_reset=0.0,
                                          surrogate_function=surrogate.Sigmoid(alpha=cfg.alpha),
                                          detach_reset=True, step_mode=step_mode))
        elif step_mode == "m":
            modules.append(layer.SeqToANNContainer(_torch_layer(m)))
        else:
            modules.append(_torch_layer(m))
    head = nn.Sequential(*(_torch_layer(m) for m in static))
    body = nn.Sequential(*modules)
    net = nn.ModuleDict({"static": head, "body": body}).train()

    def step(x: Tensor, y: Tensor, T: int) -> Tensor:
        functional.reset_net(body)
        current = head(x)
        if step_mode == "m":
            logits = body(current.unsqueeze(0).expand(T, *current.shape)).mean(0)
        else:
            logits = sum(body(current) for _ in range(T)) / T
        loss = F.cross_entropy(logits, y)
        loss.backward()
        return loss.detach()

    return net, step


def snntorch(model: SNN, step_mode: str) -> tuple[nn.Module, PeerStep]:
    """snnTorch ``Leaky`` (reset to zero, detached). Single-step: snnTorch's own idiom, the
    whole network called at each step in a loop over t; multi-step: the synapses run on all T
    steps at once and each ``Leaky`` loops over t (batch norm statistics over T*B, as ours)."""
    import snntorch as snn
    from snntorch import surrogate

    cfg = _neuron(model)
    static, rest = _split_static(_layers(model))
    modules = nn.ModuleList(
        snn.Leaky(beta=cfg.lam, threshold=cfg.theta, reset_mechanism="zero",
                  spike_grad=surrogate.sigmoid(slope=cfg.alpha))
        if isinstance(m, LIF) else _torch_layer(m) for m in rest)
    head = nn.Sequential(*(_torch_layer(m) for m in static))
    net = nn.ModuleDict({"static": head, "body": modules}).train()

    def single(current: Tensor, T: int) -> Tensor:
        mems = [m.reset_mem() if isinstance(m, snn.Leaky) else None for m in modules]
        total = None
        for _ in range(T):
            out = current
            for i, m in enumerate(modules):
                if isinstance(m, snn.Leaky):
                    out, mems[i] = m(out, mems[i])
                else:
                    out = m(out)
            total = out if total is None else total + out
        return total / T  # type: ignore[operator]

    def multi(current: Tensor, T: int) -> Tensor:
        steps: list[Tensor] | Tensor = [current] * T
        for m in modules:
            if isinstance(m, snn.Leaky):
                mem = m.reset_mem()
                spikes = []
                for c in steps:
                    spk, mem = m(c, mem)
                    spikes.append(spk)
                steps = torch.stack(spikes)
            else:
                seq = steps if isinstance(steps, Tensor) else torch.stack(steps)
                steps = m(seq.flatten(0, 1)).unflatten(0, (T, -1))
        return steps.mean(0)  # type: ignore[union-attr]

    def step(x: Tensor, y: Tensor, T: int) -> Tensor:
        current = head(x)
        logits = multi(current, T) if step_mode == "m" else single(current, T)
        loss = F.cross_entropy(logits, y)
        loss.backward()
        return loss.detach()

    return net, step


PEERS = {"snntorch": snntorch, "spikingjelly": spikingjelly}
