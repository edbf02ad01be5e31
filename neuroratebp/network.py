"""A spiking network as a small directed graph of named layers.

Keeping the graph explicit (instead of a hand-written ``forward``) gives one structure that the
engine runs in every phase, that export walks node by node to NIR, and where a residual
connection is simply a node with two inputs. It also shows the engine two savings a layer
cannot see by itself: the layers before the first neuron see the same static image at every
step, so they run once per window; and a batch norm read only by a neuron is folded into that
neuron's update (spike stage) or fused with it into one autograd node (rate pass).
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from torch import Tensor, nn

from .layers import Add, BatchNorm
from .neuron import LIF, Phase, StepMode

INPUT = "input"
"""Reserved node name of the network input."""


@dataclass(frozen=True)
class Node:
    name: str
    module: nn.Module
    inputs: tuple[str, ...]


class SNN(nn.Module):
    """Layers executed in insertion order; each node reads the outputs named in its inputs.

    The last node is the non-spiking readout; its per-step output is averaged over T by the
    engine (logits = mean_t W s_t + b).
    """

    def __init__(self, input_shape: Sequence[int], nodes: Sequence[Node]) -> None:
        super().__init__()
        if not nodes:
            raise ValueError("a network needs at least one layer")
        self.input_shape = tuple(int(d) for d in input_shape)
        self.layers = nn.ModuleDict()
        self.edges: dict[str, tuple[str, ...]] = {}
        for node in nodes:
            if node.name == INPUT or node.name in self.layers:
                raise ValueError(f"duplicate or reserved layer name {node.name!r}")
            for src in node.inputs:
                if src != INPUT and src not in self.layers:
                    raise ValueError(f"layer {node.name!r} reads {src!r}, which is not defined before it")
            if len(node.inputs) != 1 and not isinstance(node.module, Add):
                raise ValueError(f"layer {node.name!r} has {len(node.inputs)} inputs; only Add may fan in")
            self.layers[node.name] = node.module
            self.edges[node.name] = tuple(node.inputs)
        self.output = nodes[-1].name
        # Each output is dropped after its last reader, so a graph-free pass holds only live
        # activations (this is what keeps rate-BP's spike stage small).
        self._last_reader = {src: node.name for node in nodes for src in node.inputs}
        readers: dict[str, list[str]] = {}
        for node in nodes:
            for src in node.inputs:
                readers.setdefault(src, []).append(node.name)
        self._sole_reader = {src: names[0] for src, names in readers.items()
                             if len(names) == 1 and src != INPUT}
        """Value -> the one layer that reads it (the spike stage may then overwrite it)."""
        self._norm_of = {
            reader[0]: node.name for node in nodes
            if isinstance(node.module, BatchNorm) and len(reader := readers.get(node.name, [])) == 1
            and isinstance(self.layers[reader[0]], LIF)}
        """Neuron -> the batch norm it alone reads (fused with it in the spike and rate phases)."""
        self.fuse_norms = True
        self.phase: Phase = "bptt"
        self.step_mode: StepMode = "m"
        self.timesteps = 1
        self._window: dict[str, object] = {}
        """Single-step mode: values of the static part of the graph, computed at a window's first step."""

    def nodes(self) -> Iterator[Node]:
        for name, module in self.layers.items():
            yield Node(name, module, self.edges[name])

    def forward(self, x: Tensor, static: bool = False) -> Tensor:
        """Output for input ``x`` in the current phase and step mode.

        ``static``: the input is the same at every step of the window (direct encoding of a
        static sample). Multi-step: ``x`` is then ``(B, ...)`` rather than ``(T*B, ...)``; the
        layers before the first neuron run on it once and the output is ``(B, ...)`` if no
        neuron lies on the way. Single-step: those layers run at the window's first step only.
        """
        values: dict[str, Tensor] = {INPUT: x}
        steady = {INPUT} if static else set()  # names whose value is the same at every step
        multi = self.step_mode == "m"
        folded = self._folded()
        for name, module in self.layers.items():
            srcs = self.edges[name]
            constant = all(src in steady for src in srcs)
            if static and name in self._window:
                out = self._window[name]
            elif isinstance(module, LIF):
                out = self._neuron(name, module, folded.get(name), values[srcs[0]], constant)
            elif name in folded.values():
                out = values[srcs[0]]  # applied by the neuron that reads it
            elif constant and isinstance(module, BatchNorm):
                out = module(values[srcs[0]], self.timesteps)
            else:
                args = [self._expand(values[src]) if multi and not constant and src in steady
                        else values[src] for src in srcs]
                out = (self._step_by_step(module, args[0])
                       if multi and not constant and self._per_step(module, args[0])
                       else module(*args))
            values[name] = out  # type: ignore[assignment]
            if constant and not isinstance(module, LIF):
                steady.add(name)
                if not multi:
                    self._window[name] = out
            for src in srcs:
                if self._last_reader[src] == name:
                    values.pop(src, None)
        return values[self.output]

    def _folded(self) -> dict[str, str]:
        """Neuron -> the batch norm fused with it in this phase (none in BPTT or eval)."""
        if not self.fuse_norms or self.phase == "bptt":
            return {}
        return {lif: bn for lif, bn in self._norm_of.items() if self.layers[bn].training}

    def _neuron(self, name: str, lif: LIF, norm_name: str | None, x: Tensor,
                constant: bool) -> Tensor:
        same_current = constant and self.step_mode == "m"
        if norm_name is None:
            return lif(x, constant=same_current, reuse=self._owns_input(name))
        norm = self.layers[norm_name]
        assert isinstance(norm, BatchNorm)
        if self.phase == "rate":
            return norm.rate_forward(x, lif)
        key = norm_name + ".affine"
        if constant and key in self._window:
            affine = self._window[key]
        else:
            affine = norm.spike_affine(x, self.timesteps if constant else 1)
        if constant and self.step_mode == "s":
            self._window[key] = affine
        reuse = self._owns_input(norm_name)  # the folded batch norm's input is the neuron's
        return lif(x, *affine, constant=same_current, reuse=reuse)  # type: ignore[misc]

    def _owns_input(self, name: str) -> bool:
        """Is layer ``name`` the only reader of its input (a value the network made)?"""
        (src,) = self.edges[name]
        return self._sole_reader.get(src) == name

    def _per_step(self, module: nn.Module, x: Tensor) -> bool:
        """Run a multi-step layer one step's batch at a time? Convolutions in the spike stage on
        a CPU: oneDNN converts a (T*B, ...) NCHW batch to its blocked layout and back, which
        for all T steps at once is slower (measured on the zoo conv net: rate_M ~20 % slower
        at T = 8) and needs T times the transient buffers. The results are the same: a
        sample's arithmetic does not depend on the batch it is in."""
        return (self.phase == "spike" and isinstance(module, nn.Conv2d)
                and x.device.type == "cpu" and self.timesteps > 1)

    def _step_by_step(self, module: nn.Module, x: Tensor) -> Tensor:
        chunks = x.chunk(self.timesteps)
        first = module(chunks[0])
        out = first.new_empty((len(chunks), *first.shape))
        out[0] = first
        for t, chunk in enumerate(chunks[1:], 1):
            out[t] = module(chunk)
        return out.flatten(0, 1)

    def _expand(self, x: Tensor) -> Tensor:
        """A static ``(B, ...)`` value as the ``(T*B, ...)`` batch of a multi-step layer."""
        return x.unsqueeze(0).expand(self.timesteps, *x.shape).reshape(-1, *x.shape[1:])

    def stateful(self) -> Iterator[LIF | BatchNorm]:
        for m in self.modules():
            if isinstance(m, (LIF, BatchNorm)):
                yield m

    def set_phase(self, phase: Phase, step_mode: StepMode, timesteps: int) -> None:
        """Switch every neuron and batch norm to a phase of the engine (state is kept)."""
        self.phase, self.step_mode, self.timesteps = phase, step_mode, timesteps
        self._window = {}
        for m in self.stateful():
            m.phase = phase
            m.step_mode = step_mode
            if isinstance(m, LIF):
                m.timesteps = timesteps

    def reset_state(self) -> None:
        self._window = {}
        for m in self.stateful():
            m.reset_state()

    def firing_rates(self) -> dict[str, float]:
        """Mean spike rate of each LIF layer over the last window (spikes per neuron per step)."""
        return {name: float(m.rate.mean()) for name, m in self.layers.items()
                if isinstance(m, LIF) and m.rate is not None}
