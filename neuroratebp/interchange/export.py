"""Export a trained network to a NIR graph (standard nodes, neuron semantics in metadata).

Layer by layer: ``Conv2d`` -> ``nir.Conv2d`` (with ``input_shape``, so shapes infer),
``Linear`` -> ``nir.Affine`` (the readout too), ``LIF`` -> ``nir.LIF`` / ``nir.IF`` (lam = 1) with
per-neuron arrays shaped like the layer output (mapping in :mod:`.discretisation`), ``Flatten``
-> ``nir.Flatten`` with negative dims (``-3..-1`` for torch's default on (C, H, W): right in NIR's
batch-less shapes and also for consumers that hand the dims to ``torch.nn.Flatten`` unchanged),
``SumPool2d`` -> ``nir.SumPool2d``. ``AvgPool2d`` is written as ``nir.SumPool2d`` with its
``1/(kh kw)`` folded into the weights of the Conv2d/Linear that alone reads it (Norse reads no
AvgPool2d); where no such layer follows, it stays ``nir.AvgPool2d``. ``BatchNorm`` in eval form
(running statistics) is folded into the convolution or linear layer before it, in double
precision; ``Add`` becomes fan-in (NIR sums all edges into a node). Graph metadata carries what
NIR cannot say: dt, T, neuron semantics, input encoding and normalization, the readout rule.

NIR neurons reset to ``v_reset`` and fire when ``v > v_threshold``. A soft reset (``v -= theta``)
or a ``>=`` comparison cannot be expressed; such models are refused unless the caller allows an
approximate export, which is then recorded in the metadata and warned about.
"""
from __future__ import annotations

import io
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Mapping
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from ..data import SYNTHETIC_OPTIONS, dataset_name
from ..files import write_atomic
from ..limits import timesteps as check_timesteps
from ..layers import Add, BatchNorm, SumPool2d
from ..network import INPUT, SNN, Node
from ..neuron import LIF
from .discretisation import CONVENTION, DEFAULT_DT, nir_neuron

FORMAT = "neuroratebp-nir"
FORMAT_VERSION = 2
"""2: the 'unit-r' neuron mapping, dt = 1e-4, average pooling as SumPool2d, negative Flatten dims
(1: r = 1/(1 - lam), dt = 1e-3; import and the hardware targets read both)."""
OUTPUT = "output"
"""Name of the NIR Output node (the NIR Input node is named like the network input, 'input')."""

SEMANTICS = (
    "Run T steps of dt. Every step the Input node carries the same analog sample (direct "
    "encoding; with 'normalize' in the metadata: (x - mean) / std per channel of raw x in "
    "[0, 1]). Within a step every node sees its inputs' outputs of the same step (no delays); "
    "fan-in is summed. LIF/IF nodes integrate with forward Euler at dt, fire when "
    "v > v_threshold and reset to v_reset. Logits are the mean over the T steps of the Output "
    "node's input (the last Affine).")


AVERAGE_POOLING = "sumpool-folded"
"""Metadata: AvgPool2d written as SumPool2d, 1/(kh kw) folded into the next synapse."""


class ApproximationWarning(UserWarning):
    """An export that changes the network's dynamics (allowed explicitly by the caller)."""


def _version() -> str:
    try:
        return importlib_metadata.version("neuroratebp")
    except importlib_metadata.PackageNotFoundError:
        return "unknown"


def _array(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy()


def _bias(t: torch.Tensor | None, size: int) -> np.ndarray:
    return np.zeros(size) if t is None else _array(t)


def _pair(value: Any) -> np.ndarray:
    return np.array(value if isinstance(value, (tuple, list)) else (value, value), dtype=np.int64)


class _Exporter:
    """Walks the network in execution order and builds NIR nodes and edges."""

    def __init__(self, model: SNN, dt: float) -> None:
        self.model = model
        self.dt = dt
        self.nodes: dict[str, nir.NIRNode] = {INPUT: nir.Input(np.array(model.input_shape))}
        self.edges: list[tuple[str, str]] = []
        # NIR nodes whose summed output equals a layer's output (a folded BN or an Add has none).
        self.sources: dict[str, tuple[str, ...]] = {INPUT: (INPUT,)}
        self.shapes: dict[str, tuple[int, ...]] = {INPUT: model.input_shape}
        # Layers whose output is a single Affine/Conv2d node that nothing else reads: BN folds here.
        self.foldable: set[str] = set()
        self.readers = Counter(src for node in model.nodes() for src in node.inputs)
        self.layer = {node.name: node for node in model.nodes()}
        self.reader_of = {src: node.name for node in model.nodes() for src in node.inputs}
        # Factor on the input of a Conv2d/Linear, moved into its weights (folded average pooling).
        self.input_scale: dict[str, float] = {}
        self.lif_semantics: dict[str, tuple[str, str]] = {}
        self.handlers: dict[type, Callable[[Node, tuple[int, ...]], nir.NIRNode]] = {
            nn.Conv2d: self._conv2d, nn.Linear: self._linear, LIF: self._lif,
            nn.Flatten: self._flatten, SumPool2d: self._sumpool, nn.AvgPool2d: self._avgpool,
        }

    def run(self) -> None:
        for node in self.model.nodes():
            if node.name == OUTPUT:
                raise ValueError(f"layer name {OUTPUT!r} is reserved for the NIR Output node")
            sources = tuple(s for src in node.inputs for s in self.sources[src])
            if len(set(sources)) != len(sources):
                raise ValueError(f"layer {node.name!r} reads the same NIR node twice; NIR fan-in "
                                 "cannot express that")
            in_shape = self.shapes[node.inputs[0]]
            if isinstance(node.module, Add):
                self.sources[node.name] = sources
                self.shapes[node.name] = in_shape
            elif isinstance(node.module, BatchNorm):
                self._fold(node)
            else:
                handler = self.handlers.get(type(node.module))
                if handler is None:
                    raise ValueError(f"layer {node.name!r} ({type(node.module).__name__}) has no "
                                     "NIR export")
                self.nodes[node.name] = handler(node, in_shape)
                self.edges += [(s, node.name) for s in sources]
                self.sources[node.name] = (node.name,)
                self.shapes[node.name] = self._out_shape(node, in_shape)
        out_shape = self.shapes[self.model.output]
        self.nodes[OUTPUT] = nir.Output(np.array(out_shape))
        self.edges += [(s, OUTPUT) for s in self.sources[self.model.output]]

    def _out_shape(self, node: Node, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        if isinstance(node.module, LIF):
            return in_shape
        param = next(node.module.parameters(), None)
        dtype = torch.get_default_dtype() if param is None else param.dtype
        with torch.no_grad():
            return tuple(node.module(torch.zeros((1, *in_shape), dtype=dtype)).shape[1:])

    # -- layers ---------------------------------------------------------------------------------
    def _conv2d(self, node: Node, in_shape: tuple[int, ...]) -> nir.NIRNode:
        m: nn.Conv2d = node.module  # type: ignore[assignment]
        if len(in_shape) != 3 or m.padding_mode != "zeros":
            raise ValueError(f"layer {node.name!r}: only zero-padded Conv2d on (C, H, W) input "
                             "has a NIR export")
        self.foldable.add(node.name)
        padding = m.padding if isinstance(m.padding, str) else _pair(m.padding)
        return nir.Conv2d(input_shape=in_shape[1:], weight=self._weight(node),
                          stride=_pair(m.stride), padding=padding, dilation=_pair(m.dilation),
                          groups=m.groups, bias=_bias(m.bias, m.out_channels))

    def _linear(self, node: Node, in_shape: tuple[int, ...]) -> nir.NIRNode:
        m: nn.Linear = node.module  # type: ignore[assignment]
        if len(in_shape) != 1:
            raise ValueError(f"layer {node.name!r}: Linear on a {len(in_shape)}-D sample "
                             "(flatten first)")
        self.foldable.add(node.name)
        return nir.Affine(weight=self._weight(node), bias=_bias(m.bias, m.out_features))

    def _weight(self, node: Node) -> np.ndarray:
        return _array(node.module.weight) * self.input_scale.get(node.name, 1.0)  # type: ignore[operator]

    def _lif(self, node: Node, in_shape: tuple[int, ...]) -> nir.NIRNode:
        c = node.module.config  # type: ignore[union-attr]
        self.lif_semantics[node.name] = (c.reset, c.comparison)
        out = nir_neuron(c.lam, c.theta, in_shape, self.dt)
        out.metadata = {"lam": float(c.lam), "theta": float(c.theta), "reset": c.reset,
                        "comparison": c.comparison}
        return out

    def _flatten(self, node: Node, in_shape: tuple[int, ...]) -> nir.NIRNode:
        m: nn.Flatten = node.module  # type: ignore[assignment]
        ndim = len(in_shape)  # torch's dims count the batch, NIR's do not
        start, end = (d % (ndim + 1) - 1 - ndim for d in (m.start_dim, m.end_dim))
        if start < -ndim:
            raise ValueError(f"layer {node.name!r}: Flatten over the batch dimension")
        return nir.Flatten(input_type=np.array(in_shape), start_dim=start, end_dim=end)

    def _pool_args(self, node: Node) -> dict[str, np.ndarray]:
        m: nn.AvgPool2d = node.module  # type: ignore[assignment]
        if m.ceil_mode:
            raise ValueError(f"layer {node.name!r}: pooling with ceil_mode has no NIR export")
        return {"kernel_size": _pair(m.kernel_size), "stride": _pair(m.stride),
                "padding": _pair(m.padding)}

    def _sumpool(self, node: Node, _: tuple[int, ...]) -> nir.NIRNode:
        return nir.SumPool2d(**self._pool_args(node))

    def _avgpool(self, node: Node, _: tuple[int, ...]) -> nir.NIRNode:
        m: nn.AvgPool2d = node.module  # type: ignore[assignment]
        args = self._pool_args(node)
        if m.divisor_override is not None or (not m.count_include_pad and args["padding"].any()):
            raise ValueError(f"layer {node.name!r}: NIR's AvgPool2d divides by the kernel size; "
                             "this pooling divides differently")
        absorber = self._absorber(node.name)
        if absorber is None:
            return nir.AvgPool2d(**args)
        scale = 1.0 / float(np.prod(args["kernel_size"]))
        self.input_scale[absorber] = self.input_scale.get(absorber, 1.0) * scale
        return nir.SumPool2d(**args, metadata={"average_pool": True, "scale": scale,
                                               "scale_folded_into": absorber})

    def _absorber(self, name: str) -> str | None:
        """The Conv2d/Linear that alone receives ``name``'s output, through Flatten and pooling
        only, so that a constant factor on that output can move into its weights."""
        while self.readers[name] == 1 and name != self.model.output:
            reader = self.layer[self.reader_of[name]]
            if isinstance(reader.module, (nn.Conv2d, nn.Linear)):
                return reader.name
            if not isinstance(reader.module, (nn.Flatten, nn.AvgPool2d)):  # SumPool2d is one
                return None
            name = reader.name
        return None

    def _fold(self, node: Node) -> None:
        """y = (x - mean) * gamma / sqrt(var + eps) + beta, folded into the synapse before it."""
        bn: BatchNorm = node.module  # type: ignore[assignment]
        src = node.inputs[0]
        if src not in self.foldable or self.readers[src] != 1 or bn.running_var is None:
            raise ValueError(f"BatchNorm {node.name!r} cannot be folded: it must follow a "
                             "convolution or linear layer that only it reads, and keep running "
                             "statistics")
        (target,) = self.sources[src]
        syn = self.nodes[target]
        scale = _array(bn.weight) / np.sqrt(_array(bn.running_var) + bn.eps)
        shift = _array(bn.bias) - _array(bn.running_mean) * scale
        syn.weight = syn.weight * scale.reshape(-1, *([1] * (syn.weight.ndim - 1)))
        syn.bias = syn.bias * scale + shift
        folded = syn.metadata.get("folded_batchnorm")
        syn.metadata["folded_batchnorm"] = f"{folded},{node.name}" if folded else node.name
        self.sources[node.name] = (target,)
        self.shapes[node.name] = self.shapes[src]
        self.foldable.add(node.name)


def _approximations(semantics: Mapping[str, tuple[str, str]]) -> list[str]:
    """What NIR cannot express, one note per kind, naming the LIF layers."""
    soft = [name for name, (reset, _) in semantics.items() if reset == "soft"]
    ge = [name for name, (_, comparison) in semantics.items() if comparison == "ge"]
    notes = []
    if soft:
        notes.append("soft reset (v -= theta on a spike; NIR resets to v_reset = 0) in LIF layers "
                     + ", ".join(soft))
    if ge:
        notes.append("threshold v >= theta (NIR fires when v > v_threshold) in LIF layers "
                     + ", ".join(ge))
    return notes


def _shared(values: set[str]) -> str:
    return values.pop() if len(values) == 1 else ("mixed" if values else "none")


def _metadata(model: SNN, config: Mapping[str, Any], dt: float, timesteps: int,
              semantics: Mapping[str, tuple[str, str]], notes: list[str]) -> dict[str, Any]:
    train = config.get("train", {})
    meta: dict[str, Any] = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "neuroratebp_version": _version(),
        "dt": float(dt), "timesteps": int(timesteps),
        "reset": _shared({r for r, _ in semantics.values()}),
        "comparison": _shared({c for _, c in semantics.values()}),
        "neuron_convention": CONVENTION, "average_pooling": AVERAGE_POOLING,
        "input_encoding": "direct", "readout": "mean_over_timesteps", "readout_node": model.output,
        "method": str(train.get("method", "unknown")),
        "approximate": bool(notes), "semantics": SEMANTICS,
    }
    if notes:
        meta["approximations"] = "; ".join(notes)
    data = config.get("data", {})
    if "dataset" in data:  # what simulate and import test the model on
        meta["dataset"] = dataset_name(data["dataset"])
        if meta["dataset"] == "synthetic":
            meta["dataset_options"] = {k: np.asarray(data[k]) for k in SYNTHETIC_OPTIONS
                                       if k in data}
    if "mean" in data and "std" in data:  # recorded by training (data.Normalization)
        meta["normalize"] = {"mean": np.asarray(data["mean"], dtype=np.float64).reshape(-1),
                             "std": np.asarray(data["std"], dtype=np.float64).reshape(-1)}
    return meta


def recorded_data(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``[data]`` entries :func:`export_nir` recorded (``dataset``, synthetic options), as
    plain values; empty for a graph from another tool."""
    meta = metadata or {}
    table: dict[str, Any] = {}
    if isinstance(meta.get("dataset"), str):
        table["dataset"] = meta["dataset"]
        options = meta.get("dataset_options")
        if isinstance(options, Mapping):
            table.update({k: np.asarray(v).tolist() for k, v in options.items()
                          if k in SYNTHETIC_OPTIONS})
    return table


def export_nir(model: SNN, config: Mapping[str, Any] | None = None, *, dt: float = DEFAULT_DT,
               timesteps: int | None = None, allow_approximate: bool = False) -> nir.NIRGraph:
    """NIR graph of ``model`` in inference form (BN folded with running statistics).

    ``config`` is the run config (checkpoint ``config``): ``[train] timesteps/method`` and
    ``[data]`` mean/std (the input normalization) go into the metadata; ``timesteps`` overrides the config's T.
    """
    config = config or {}
    T = timesteps if timesteps is not None else config.get("train", {}).get("timesteps")
    if T is None:
        raise ValueError("the number of time steps T is unknown: the config has no [train] "
                         "timesteps; pass timesteps")
    T = check_timesteps(T, "timesteps (T)")
    if not (math.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite number, got {dt}")
    exporter = _Exporter(model, dt)
    exporter.run()
    notes = _approximations(exporter.lif_semantics)
    if notes and not allow_approximate:
        raise ValueError("NIR cannot express " + "; ".join(notes) + "; pass --allow-approximate "
                         "(allow_approximate=True) to export an approximation")
    for note in notes:
        warnings.warn(f"approximate NIR export: {note}", ApproximationWarning, stacklevel=2)
    meta = _metadata(model, config, dt, int(T), exporter.lif_semantics, notes)
    return nir.NIRGraph(nodes=exporter.nodes, edges=exporter.edges, metadata=meta)


def write_nir(graph: nir.NIRGraph, path: str | os.PathLike[str]) -> None:
    """Write atomically, after checking that ``nir.read`` (with type checks) loads the file.

    The HDF5 image is built in memory: h5py writing on a full disk crashed the process."""
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    nir.read(io.BytesIO(buffer.getvalue()))
    write_atomic(path, buffer.getbuffer())
