"""Other SNN frameworks' NIR import and export, driven the way their users drive them.

Two directions, for the interop tests and ``benchmarks/interop.py``:

- :func:`run_in_peer`: a NIR graph (ours) loaded by the peer's own importer and stepped as its
  documentation says, returning the output of every step;
- :func:`peer_example`: a small MLP or conv net built natively in the peer, its export through
  the peer's own ``to_nir``, and a function that runs the native net step by step (so that what
  this project makes of the file can be compared with what the peer itself computes).

Peers (pinned by the project's ``interop`` extra and Makefile): snnTorch 1.0.0, Norse 1.1.0 and
SpikingJelly 2.0.0. What each does with NIR, read from their code and measured here, is in
docs/export_format.md ("Other frameworks"); the workarounds a user needs on the export side
(per-neuron parameter tensors, ``ignore_dims``, unbatched sample data) are written out below.
"""
from __future__ import annotations

import contextlib
import io
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata

import nir
import torch
from torch import nn

PEERS = ("snntorch", "norse", "spikingjelly")
KINDS = ("mlp", "conv")
SNNTORCH_DT = 1e-4
"""snnTorch's importer and exporter hard-code this step."""


def version(peer: str) -> str:
    return metadata.version(_check(peer))


def _check(peer: str) -> str:
    if peer not in PEERS:
        raise ValueError(f"unknown peer {peer!r}; choose from {', '.join(PEERS)}")
    return peer


@contextlib.contextmanager
def _quiet():
    """snnTorch prints each LIF's arrays while importing (a 'scaling weights' notice)."""
    with contextlib.redirect_stdout(io.StringIO()):
        yield


# -- our graphs in their importers ---------------------------------------------------------------
def load_in_peer(peer: str, graph: nir.NIRGraph, dt: float) -> nn.Module:
    """The peer's own module for ``graph`` (its NIR importer at step ``dt``)."""
    if _check(peer) == "snntorch":
        if dt != SNNTORCH_DT:
            raise ValueError(f"snnTorch's importer assumes dt = {SNNTORCH_DT:g}, the graph is "
                             f"meant for {dt:g}")
        from snntorch.import_nir import import_from_nir
        with _quiet():
            return import_from_nir(graph)
    if peer == "norse":
        from norse.torch import from_nir
        return from_nir(graph, dt=dt)
    from spikingjelly.activation_based.nir_exchange.from_nir import import_from_nir
    return import_from_nir(graph, dt=dt)


def step_peer(peer: str, net: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
    """Outputs (steps, batch, ...) of a module made by :func:`load_in_peer`, from rest, with the
    same input ``x`` at every step (direct encoding)."""
    outputs = []
    with torch.no_grad():
        if peer == "snntorch":  # state lives in the Leaky modules (init_hidden)
            import snntorch.utils
            snntorch.utils.reset(net)
            for _ in range(steps):
                out = net(x)
                outputs.append(out[0] if isinstance(out, tuple) else out)
        else:  # Norse and SpikingJelly thread an explicit state through the graph
            state = None
            for _ in range(steps):
                out, state = net(x, state)
                outputs.append(out)
    return torch.stack(outputs)


def run_in_peer(peer: str, graph: nir.NIRGraph, x: torch.Tensor, steps: int,
                dt: float) -> torch.Tensor:
    """Per-step outputs of ``graph`` in ``peer`` for a batch ``x`` shaped like the NIR input."""
    return step_peer(peer, load_in_peer(peer, graph, dt), x.float(), steps)


# -- their graphs in our importer ----------------------------------------------------------------
@dataclass
class PeerNet:
    """A native net of a peer, its NIR export, and how to read the export."""

    peer: str
    kind: str
    module: nn.Module
    graph: nir.NIRGraph
    dt: float
    """The step at which the file's NIR equations are the native dynamics."""
    neurons: list[nn.Module]
    """The native spiking layers in order (their spikes are recorded by :meth:`run`)."""
    stepper: Callable[[nn.Module, torch.Tensor, int], torch.Tensor]

    def run(self, x: torch.Tensor, steps: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Native per-step outputs (steps, B, ...) and each spiking layer's spikes (steps, B, ...)."""
        spikes: list[list[torch.Tensor]] = [[] for _ in self.neurons]
        hooks = [m.register_forward_hook(lambda mod, args, out, i=i: spikes[i].append(
            (out[0] if isinstance(out, tuple) else out).detach().clone()))
            for i, m in enumerate(self.neurons)]
        try:
            with torch.no_grad():
                outputs = self.stepper(self.module, x.float(), steps)
        finally:
            for h in hooks:
                h.remove()
        return outputs, [torch.stack(s) for s in spikes]


def peer_example(peer: str, kind: str, seed: int = 0) -> PeerNet:
    """A small net made natively in ``peer`` (``kind`` 'mlp' or 'conv', 1x8x8 or 64 inputs, ten
    outputs, a non-spiking Linear/Conv readout), exported by the peer's own ``to_nir``."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    torch.manual_seed(seed)
    return {"snntorch": _snntorch, "norse": _norse, "spikingjelly": _spikingjelly}[_check(peer)](kind)


def _snntorch(kind: str) -> PeerNet:
    import snntorch as snn
    import snntorch.utils
    from snntorch.export_nir import export_to_nir

    def leaky(*shape: int) -> nn.Module:
        # Per-neuron beta/threshold tensors: with scalars the export writes 0-d LIF arrays that
        # fail nir's type check. Reset to zero: the export writes no reset mode (LIF resets to
        # v_reset), so snnTorch's default subtract reset would not survive it.
        return snn.Leaky(beta=torch.full(shape, 0.85), threshold=torch.full(shape, 0.5),
                         init_hidden=True, reset_mechanism="zero")

    if kind == "mlp":
        net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), leaky(32), nn.Linear(32, 10))
    else:
        net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), leaky(4, 8, 8), nn.AvgPool2d(2),
                            nn.Flatten(), nn.Linear(64, 10))
    _scale_first(net, 3.0)
    # ignore_dims=[0]: without it the sample's batch axis becomes part of the Input shape
    graph = export_to_nir(net, torch.zeros(1, 1, 8, 8), ignore_dims=[0])

    def stepper(module: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
        snntorch.utils.reset(module)
        return torch.stack([module(x) for _ in range(steps)])

    return PeerNet("snntorch", kind, net, graph, SNNTORCH_DT,
                   [m for m in net if isinstance(m, snn.Leaky)], stepper)


def _norse(kind: str) -> PeerNet:
    import norse.torch as norse

    def lif(*shape: int) -> nn.Module:
        # Per-neuron parameters: scalar ones make 0-d arrays that nir.write cannot store.
        p = norse.LIFBoxParameters(tau_mem_inv=torch.full(shape, 150.0),
                                   v_th=torch.full(shape, 0.12), v_leak=torch.zeros(shape),
                                   v_reset=torch.zeros(shape))
        return norse.LIFBoxCell(p)

    # Norse's to_nir maps no Flatten and no pooling: an MLP takes flat input, a conv net ends
    # in a Conv2d to (10, 1, 1). Unbatched sample data keeps the batch out of the Input shape.
    if kind == "mlp":
        net = norse.SequentialState(nn.Linear(64, 32), lif(32), nn.Linear(32, 10))
        sample = torch.zeros(64)
    else:
        net = norse.SequentialState(nn.Conv2d(1, 4, 3, padding=1), lif(4, 8, 8),
                                    nn.Conv2d(4, 10, 8))
        sample = torch.zeros(1, 8, 8)
    _scale_first(net, 3.0)
    graph = norse.to_nir(net, sample)
    cell_dt = 1e-3  # LIFBoxCell's default step

    def stepper(module: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
        state, outputs = None, []
        for _ in range(steps):
            out, state = module(x, state)
            outputs.append(out)
        return torch.stack(outputs)

    # to_nir writes tau = dt / tau_mem_inv (dt times the time constant) with r = 1: Euler at
    # dt**2 gives the cell's v += dt * tau_mem_inv * (i - v) exactly.
    return PeerNet("norse", kind, net, graph, cell_dt ** 2,
                   [m for m in net if isinstance(m, norse.LIFBoxCell)], stepper)


def _spikingjelly(kind: str) -> PeerNet:
    from spikingjelly.activation_based import functional, layer, neuron
    from spikingjelly.activation_based.nir_exchange.to_nir import export_to_nir

    def lif() -> nn.Module:  # hard reset to 0 (a soft reset, v_reset=None, has no NIR form)
        return neuron.LIFNode(tau=4.0, v_threshold=0.25, v_reset=0.0)

    if kind == "mlp":
        net = nn.Sequential(layer.Flatten(), layer.Linear(64, 32), lif(), layer.Linear(32, 10))
    else:
        net = nn.Sequential(layer.Conv2d(1, 4, 3, padding=1), lif(), layer.AvgPool2d(2),
                            layer.Flatten(), layer.Linear(64, 10))
    _scale_first(net, 3.0)
    dt = 1e-4  # export_to_nir's default
    graph = export_to_nir(net, torch.zeros(1, 1, 8, 8), dt=dt)

    def stepper(module: nn.Module, x: torch.Tensor, steps: int) -> torch.Tensor:
        functional.reset_net(module)
        return torch.stack([module(x) for _ in range(steps)])

    return PeerNet("spikingjelly", kind, net, graph, dt,
                   [m for m in net if isinstance(m, neuron.LIFNode)], stepper)


def _scale_first(net: nn.Module, factor: float) -> None:
    """Random nets are near silent on [0, 1] images; a larger first layer makes them fire."""
    first = next(m for m in net.modules() if isinstance(m, (nn.Linear, nn.Conv2d)))
    with torch.no_grad():
        first.weight.mul_(factor)
