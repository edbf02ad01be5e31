"""Import a NIR graph as a runnable network of this project.

Supported nodes: Input, Output, Affine, Linear, Conv2d, LIF, IF, CubaLIF with a one-step synapse,
Flatten, SumPool2d, AvgPool2d (sizes as scalars or pairs, as snnTorch, Norse and SpikingJelly write
them); fan-in (several edges into a node) becomes an ``Add`` layer. Neurons map back through
:mod:`.discretisation` (needs ``dt``: from the graph metadata or the caller) and must have one
value per layer and ``v_reset = 0``. The network runs exactly what the file means: NIR neurons
reset to 0 and fire when ``v > v_threshold``, even when the metadata says the exported model was
an approximation of one with a soft reset. Anything else fails with an error naming the node.

The network comes with a run config whose ``[model]`` table is ``arch = "graph"``
(:mod:`.graph_spec`), so a checkpoint made from it rebuilds through the usual config path.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from ..limits import timesteps as check_timesteps
from ..network import INPUT, SNN
from ..neuron import neuron_config
from .discretisation import discrete_neuron
from .export import recorded_data
from .graph_spec import graph_nodes
from .validation import check_graph, check_normalization, check_timing, read_nir

GraphSource = nir.NIRGraph | str | os.PathLike[str]

UNSUPPORTED = {
    "CubaLI": "current-based non-spiking neurons are not supported",
    "LI": "non-spiking leaky neurons are not supported (the readout is an Affine averaged over T)",
    "I": "non-spiking integrators are not supported",
    "Delay": "synaptic delays are not modelled (all nodes act within the same step)",
}


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _ints(values: Any) -> list[int]:
    return [int(v) for v in np.atleast_1d(values)]


def _dim(value: Any) -> int:
    """A Flatten dim (snnTorch writes ints, SpikingJelly one-element arrays)."""
    (dim,) = _ints(value)
    return dim


class _Importer:
    """Converts nodes in topological order into layer specs (plain data) and weights."""

    def __init__(self, graph: nir.NIRGraph, dt: float | None) -> None:
        self.graph = graph
        self.dt = dt
        self.layers: list[dict[str, Any]] = []
        self.weights: dict[str, np.ndarray] = {}
        self.names: dict[str, str] = {}  # NIR node name -> layer name
        self.taken: set[str] = {INPUT}

    def _layer_name(self, raw: str) -> str:
        """A valid, unused ModuleDict key ('.' is not allowed, 'input' and methods are taken)."""
        base = raw.replace(".", "_") or "layer"
        name, i = base, 0
        while name in self.taken or hasattr(nn.ModuleDict, name):
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name

    def _inputs(self, raw: str, sources: list[str]) -> list[str]:
        """Input names of a node; fan-in goes through an added Add layer."""
        names = [INPUT if isinstance(self.graph.nodes[s], nir.Input) else self.names[s]
                 for s in sources]
        if len(names) == 1:
            return names
        add = self._layer_name(f"{raw}_sum")
        self.layers.append({"name": add, "type": "add", "inputs": names})
        return [add]

    def _add(self, raw: str, spec: dict[str, Any], **weights: Any) -> None:
        name = self.names[raw]
        self.layers.append({"name": name, **spec})
        for key, value in weights.items():
            self.weights[f"layers.{name}.{key}"] = np.asarray(value, dtype=np.float64)

    def convert(self, raw: str, node: nir.NIRNode, sources: list[str]) -> None:
        kind = type(node).__name__
        if kind in UNSUPPORTED:
            raise ValueError(f"NIR node {raw!r} ({kind}) is not supported: {UNSUPPORTED[kind]}")
        inputs = self._inputs(raw, sources)
        self.names[raw] = self._layer_name(raw)
        if isinstance(node, (nir.Affine, nir.Linear)):
            weight = np.asarray(node.weight)
            if weight.ndim != 2:
                raise ValueError(f"NIR node {raw!r} ({kind}): only 2-D weights are supported")
            bias = {"bias": node.bias} if isinstance(node, nir.Affine) else {}
            self._add(raw, {"type": "linear", "inputs": inputs, "in_features": weight.shape[1],
                            "out_features": weight.shape[0], "bias": bool(bias)},
                      weight=weight, **bias)
        elif isinstance(node, nir.Conv2d):
            weight = np.asarray(node.weight)
            groups = int(node.groups)
            padding = node.padding if isinstance(node.padding, str) else _ints(node.padding)
            self._add(raw, {"type": "conv2d", "inputs": inputs,
                            "in_channels": weight.shape[1] * groups,
                            "out_channels": weight.shape[0],
                            "kernel_size": list(weight.shape[2:]), "stride": _ints(node.stride),
                            "padding": padding, "dilation": _ints(node.dilation), "groups": groups,
                            "bias": True},
                      weight=weight, bias=node.bias)
        elif isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
            if self.dt is None:
                raise ValueError(f"NIR node {raw!r} ({kind}): the graph metadata has no dt and "
                                 "none was given; pass the time step (--dt)")
            lam, theta = discrete_neuron(raw, node, self.dt)
            self._add(raw, {"type": "lif", "inputs": inputs, "lam": lam, "theta": theta,
                            "reset": "hard", "comparison": "gt"})
        elif isinstance(node, nir.Flatten):  # NIR dims exclude the batch; negative ones do not move
            start, end = (d + 1 if d >= 0 else d for d in map(_dim, (node.start_dim, node.end_dim)))
            self._add(raw, {"type": "flatten", "inputs": inputs, "start_dim": start,
                            "end_dim": end})
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            self._add(raw, {"type": kind.lower(), "inputs": inputs,
                            "kernel_size": _ints(node.kernel_size), "stride": _ints(node.stride),
                            "padding": _ints(node.padding)})
        else:
            raise ValueError(f"NIR node {raw!r} ({kind}) is not supported by this project")

    def readout(self, raw: str, sources: list[str]) -> str:
        """The layer the Output node reads; it must come last (the engine averages it over T).

        A readout with a map-shaped output (e.g. a Conv2d to (classes, 1, 1), as Norse nets end)
        gets a Flatten, so that logits are (batch, classes) like every other model's."""
        (name,) = self._inputs(raw, sources)
        if self.layers[-1]["name"] != name:
            raise ValueError(f"NIR nodes after {name!r} do not reach the Output node")
        if self.layers[-1]["type"] in ("linear", "flatten"):
            return name
        flat = self._layer_name(f"{raw}_flat")
        self.layers.append({"name": flat, "type": "flatten", "inputs": [name]})
        return flat


def _order(graph: nir.NIRGraph) -> tuple[str, str, list[str], dict[str, list[str]]]:
    """Input name, Output name, the other nodes in topological order, and each node's sources."""
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1:
        raise ValueError(f"the graph has {len(inputs)} Input and {len(outputs)} Output nodes; "
                         "exactly one of each is supported")
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            raise ValueError(f"NIR node {name!r} is a sub-graph; nested graphs are not supported")
    sources: dict[str, list[str]] = {name: [] for name in graph.nodes}
    for src, dst in graph.edges:
        sources[dst].append(src)
    pending = {n: len(s) for n, s in sources.items()}
    ready = [n for n, count in pending.items() if count == 0]
    order: list[str] = []
    while ready:
        name = ready.pop(0)
        order.append(name)
        for src, dst in graph.edges:
            if src == name:
                pending[dst] -= 1
                if pending[dst] == 0:
                    ready.append(dst)
    stuck = [n for n in graph.nodes if n not in order]
    if stuck:
        raise ValueError(f"the graph has a cycle through {', '.join(map(repr, stuck))}; "
                         "recurrent NIR graphs are not supported")
    (inp,), (out,) = inputs, outputs
    body = [n for n in order if n not in (inp, out)]
    dangling = [n for n in body if not any(src == n for src, _ in graph.edges)]
    if dangling:
        raise ValueError(f"NIR nodes {', '.join(map(repr, dangling))} lead nowhere")
    orphans = [n for n in order if not sources[n] and n != inp]
    if orphans:
        raise ValueError(f"NIR nodes {', '.join(map(repr, orphans))} have no input")
    return inp, out, body, sources


def _config(graph: nir.NIRGraph, input_shape: list[int], layers: list[dict[str, Any]],
            out_shape: np.ndarray | None, timesteps: int | None) -> dict[str, Any]:
    """Run config that rebuilds the network; method, data set and normalization come from
    the metadata, T (checked) from the caller."""
    meta = graph.metadata or {}
    train: dict[str, Any] = {}
    if timesteps is not None:
        train["timesteps"] = timesteps
    if meta.get("method", "unknown") != "unknown":
        train["method"] = str(meta["method"])
    data: dict[str, Any] = {}
    norm = meta.get("normalize")
    if isinstance(norm, Mapping) and "mean" in norm and "std" in norm:
        mean, std = check_normalization(norm["mean"], norm["std"])
        data["mean"], data["std"] = [float(v) for v in mean], [float(v) for v in std]
    data.update(recorded_data(meta))
    model: dict[str, Any] = {"arch": "graph", "input_shape": input_shape, "layers": layers}
    if out_shape is not None:
        model["num_classes"] = int(np.prod(out_shape))
    return {"model": model, "neuron": {"preset": "chip"}, "data": data, "train": train}


def import_nir(source: GraphSource, *, dt: float | None = None, timesteps: int | None = None,
               dtype: torch.dtype | None = None) -> tuple[SNN, dict[str, Any]]:
    """Network (eval mode) and run config for a NIR graph or file.

    ``dt`` is the time step the NIR dynamics are discretised with and ``timesteps`` the T that
    the config records; default: the graph's metadata ``dt`` / ``timesteps`` (written by this
    project's export; graphs from elsewhere seldom have them). ``dtype`` of the parameters
    defaults to torch's default; float64 keeps the file's values exactly.
    """
    graph = check_graph(source) if isinstance(source, nir.NIRGraph) else read_nir(source)
    meta = graph.metadata or {}
    if timesteps is None:
        timesteps = meta.get("timesteps")
    if dt is None and "dt" in meta:
        dt = meta["dt"]
    if dt is not None:
        dt, timesteps = check_timing(graph, dt, timesteps)
    elif timesteps is not None:
        timesteps = check_timesteps(timesteps, "timesteps (T)")
    inp, out, body, sources = _order(graph)
    if not body:
        raise ValueError("the graph has no layers between its Input and Output")
    importer = _Importer(graph, dt)
    for name in body:
        importer.convert(name, graph.nodes[name], sources[name])
    importer.readout(out, sources[out])
    shape = graph.nodes[inp].input_type["input"]
    if shape is None:
        raise ValueError(f"the Input node {inp!r} has no shape")
    input_shape = _ints(shape)
    config = _config(graph, input_shape, importer.layers, graph.nodes[out].output_type["output"],
                     timesteps)
    model = SNN(input_shape, graph_nodes(importer.layers, neuron_config("chip")))
    model.to(dtype or torch.get_default_dtype())
    try:
        model.load_state_dict({k: torch.from_numpy(v) for k, v in importer.weights.items()})
    except RuntimeError as e:
        raise ValueError(f"NIR weights do not fit the layers they belong to: "
                         f"{_first_line(e)}") from None
    return model.eval(), config
