"""A spiking network as a small directed graph of named layers.

Keeping the graph explicit (instead of a hand-written ``forward``) gives one structure that the
engine runs in every phase, that export walks node by node to NIR, and where a residual
connection is simply a node with two inputs.
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

    def nodes(self) -> Iterator[Node]:
        for name, module in self.layers.items():
            yield Node(name, module, self.edges[name])

    def forward(self, x: Tensor) -> Tensor:
        values: dict[str, Tensor] = {INPUT: x}
        for name, module in self.layers.items():
            values[name] = module(*(values[src] for src in self.edges[name]))
            for src in self.edges[name]:
                if self._last_reader[src] == name:
                    values.pop(src, None)
        return values[self.output]

    def stateful(self) -> Iterator[LIF | BatchNorm]:
        for m in self.modules():
            if isinstance(m, (LIF, BatchNorm)):
                yield m

    def set_phase(self, phase: Phase, step_mode: StepMode, timesteps: int) -> None:
        """Switch every neuron and batch norm to a phase of the engine (state is kept)."""
        for m in self.stateful():
            m.phase = phase
            m.step_mode = step_mode
            if isinstance(m, LIF):
                m.timesteps = timesteps

    def reset_state(self) -> None:
        for m in self.stateful():
            m.reset_state()

    def firing_rates(self) -> dict[str, float]:
        """Mean spike rate of each LIF layer over the last window (spikes per neuron per step)."""
        return {name: float(m.rate.mean()) for name, m in self.layers.items()
                if isinstance(m, LIF) and m.rate is not None}
