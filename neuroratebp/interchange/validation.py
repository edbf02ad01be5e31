"""The one gate every NIR graph passes before use: import, check, simulate and learn call it.

A .nir file is HDF5, and HDF5 can do more than hold numbers: a dataset may keep its bytes in
another file on the machine (external storage) or in other datasets (virtual), a link may point
into another file or elsewhere in this one, a 70 KB gzip dataset may inflate to gigabytes. So a
file is first walked without reading any data (:func:`inspect_file`): every such feature is
refused and declared sizes are bounded by :class:`~neuroratebp.limits.Limits`. Only then does
``nir``'s reader run, on the file's raw tables, which are checked node by node before any NIR
node is built (:func:`check_tables`): finite values, physical ranges (tau > 0, thresholds > 0,
r > 0), sane convolution and pooling parameters, positive shapes, no self-loop or cycle, then
neurons and synapses bounded (:func:`check_sizes`). A graph built in memory gets the same checks
from :func:`check_graph`. Time (``dt``, ``T``, tau >= dt) is checked once its values are known:
:func:`check_timing`. Every refusal is one line naming the node or dataset.

Numpy and h5py only (no training code), so hardware targets use it as it is.
"""
from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
from nir.serialization import hdf2dict

from ..limits import Limits
from ..limits import timesteps as check_timesteps

MAX_DEPTH = 12
"""HDF5 group nesting: a node's metadata sits 5 deep; each nested graph adds 2."""
MAX_OBJECTS = 100_000
"""HDF5 groups + datasets a NIR file may hold."""

NEURONS = {"LIF": ("tau",), "CubaLIF": ("tau_syn", "tau_mem"), "LI": ("tau",),
           "CubaLI": ("tau_syn", "tau_mem"), "IF": (), "I": ()}
"""NIR neuron node types and their time constants (each must be > 0, and >= dt)."""
POSITIVE = ("tau", "tau_syn", "tau_mem", "r", "v_threshold")
"""Parameters that are positive wherever they occur (0 or less has no physical meaning here)."""
SPIKING = {"LIF", "CubaLIF", "IF", "Threshold"}


def _where(path: Path | str | None) -> str:
    return f"{path}: " if path else ""


# -- the HDF5 file ----------------------------------------------------------------------------
def inspect_file(path: str | os.PathLike[str], limits: Limits | None = None) -> None:
    """Walk the file's links and datasets without reading data; refuse external storage,
    virtual datasets, external and soft links, link loops, non-numeric data and sizes over
    the limit (``limits.synapses`` numbers in all)."""
    limits = limits or Limits.from_env()
    budget = {"objects": 0, "values": 0}
    try:
        with h5py.File(path, "r") as f:
            _walk(f, "", 0, set(), budget, limits)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    except (OSError, RuntimeError, KeyError) as e:  # h5py: not HDF5, truncated, damaged
        raise ValueError(f"{path} is not a readable NIR file: {_first_line(e)}") from None


def _walk(group: h5py.Group, prefix: str, depth: int, seen: set, budget: dict,
          limits: Limits) -> None:
    if depth > MAX_DEPTH:
        raise ValueError(f"HDF5 group {prefix or '/'} is nested deeper than {MAX_DEPTH} levels")
    for name in group:
        where = f"{prefix}/{name}"
        budget["objects"] += 1
        if budget["objects"] > MAX_OBJECTS:
            raise ValueError(f"the file holds more than {MAX_OBJECTS:,} HDF5 objects")
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            raise ValueError(f"HDF5 object {where} is an external link into {link.filename!r}; "
                             "a NIR file must be self-contained")
        if isinstance(link, h5py.SoftLink):
            raise ValueError(f"HDF5 object {where} is a soft link to {link.path!r}; NIR files "
                             "hold no links")
        obj = group[name]
        address = h5py.h5o.get_info(obj.id).addr
        if address in seen:
            raise ValueError(f"HDF5 object {where} is reached twice (hard links); NIR files hold "
                             "each object once")
        seen.add(address)
        if isinstance(obj, h5py.Group):
            _walk(obj, where, depth + 1, seen, budget, limits)
        elif isinstance(obj, h5py.Dataset):
            _check_dataset(obj, where, budget, limits)
        else:
            raise ValueError(f"HDF5 object {where} is a {type(obj).__name__}, not data")


def _check_dataset(d: h5py.Dataset, where: str, budget: dict, limits: Limits) -> None:
    if d.is_virtual:
        raise ValueError(f"HDF5 dataset {where} is virtual (its data lives in other datasets "
                         "or files); a NIR file must be self-contained")
    if d.external:
        raise ValueError(f"HDF5 dataset {where} keeps its data in another file "
                         f"({d.external[0][0]!r}: external storage); a NIR file must be "
                         "self-contained")
    kind = d.dtype.kind
    if not (kind in "biufS" or (kind == "O" and h5py.check_string_dtype(d.dtype) is not None)):
        raise ValueError(f"HDF5 dataset {where} holds {d.dtype} data; NIR files hold numbers "
                         "and strings")
    values = 0 if d.shape is None else math.prod(d.shape) * max(1, d.dtype.itemsize // 8)
    budget["values"] += values
    if budget["values"] > limits.synapses:
        limits.check("synapses", budget["values"], f"HDF5 dataset {where}: the numbers stored")


def _first_line(e: BaseException) -> str:
    if isinstance(e, KeyError):
        return f"a node lacks the field {e.args[0]!r}" if e.args else "a field is missing"
    text = " ".join(str(e).split())
    return text if text else type(e).__name__


# -- reading ----------------------------------------------------------------------------------
def read_nir(path: str | os.PathLike[str], limits: Limits | None = None) -> nir.NIRGraph:
    """A NIR file as a checked graph (see the module doc); any problem is a one-line
    ValueError naming the file and the node or dataset."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"NIR file not found: {path}")
    limits = limits or Limits.from_env()
    inspect_file(path, limits)
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise ValueError("it has no 'node' group")
            tables = hdf2dict(f["node"])
    except Exception as e:  # noqa: BLE001 -- h5py raises many types for damaged data
        raise ValueError(f"{path} is not a readable NIR file: {_first_line(e)}") from None
    try:
        check_tables(tables, limits)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    try:
        graph = nir.dict2NIRNode({**tables, "type_check": True})
    except Exception as e:  # noqa: BLE001 -- nir's constructors and type inference
        raise ValueError(f"{path} is not a consistent NIR graph: {_first_line(e)}") from None
    if not isinstance(graph, nir.NIRGraph):
        raise ValueError(f"{path} holds a single {type(graph).__name__} node, not a graph")
    try:
        check_sizes(graph, limits)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    return graph


def check_graph(graph: nir.NIRGraph, limits: Limits | None = None) -> nir.NIRGraph:
    """The checks of :func:`read_nir` for a graph built in memory."""
    limits = limits or Limits.from_env()
    check_tables(_as_tables(graph), limits)
    check_sizes(graph, limits)
    return graph


def _as_tables(graph: nir.NIRGraph) -> dict[str, Any]:
    """The graph as the tables its file would hold (without copying arrays)."""
    nodes = {}
    for name, node in graph.nodes.items():
        kind = type(node).__name__
        if isinstance(node, nir.NIRGraph):
            nodes[name] = _as_tables(node)
        elif isinstance(node, nir.Input):
            nodes[name] = {"type": kind, "shape": node.input_type["input"]}
        elif isinstance(node, nir.Output):
            nodes[name] = {"type": kind, "shape": node.output_type["output"]}
        else:
            table = {k: v for k, v in vars(node).items() if k not in ("input_type", "output_type")}
            if isinstance(node, nir.Flatten):
                table["input_type"] = node.input_type["input"]
            nodes[name] = {"type": kind, **table}
    return {"type": "NIRGraph", "nodes": nodes, "edges": list(graph.edges),
            "metadata": graph.metadata}


# -- the tables: structure and values ---------------------------------------------------------
def check_tables(tables: Mapping[str, Any], limits: Limits, prefix: str = "") -> None:
    """Node types, parameter values and edges of a graph's tables (nested graphs too)."""
    nodes = tables.get("nodes")
    if not isinstance(nodes, Mapping) or "edges" not in tables:
        raise ValueError("the graph has no 'nodes' and 'edges'")
    if not isinstance(tables.get("metadata", {}), Mapping):
        raise ValueError(f"{prefix or 'the graph'} metadata must be a group of values")
    known = set(nir.ir.__all__)
    for raw_name, table in nodes.items():
        name = f"{prefix}{raw_name}"
        kind = table.get("type") if isinstance(table, Mapping) else None
        if not isinstance(kind, str) or kind not in known:
            raise ValueError(f"NIR node {name!r} has unknown type {kind!r}")
        if kind == "NIRGraph":
            check_tables(table, limits, f"{name}.")
        else:
            _check_node(name, kind, table, limits)
    _check_edges(list(nodes), tables["edges"], prefix)


def _number_array(value: Any) -> np.ndarray | None:
    if isinstance(value, (str, bytes)) or value is None:
        return None
    arr = np.asarray(value)
    return arr if arr.dtype.kind in "biuf" else None


def _integers(name: str, key: str, value: Any, minimum: int) -> None:
    arr = _number_array(value)
    if arr is None or arr.size == 0 or not np.all(np.isfinite(arr)) \
            or not np.all(arr == np.round(arr)) or np.any(arr < minimum):
        raise ValueError(f"NIR node {name!r}: {key} must be integers >= {minimum}, got "
                         f"{_short(value)}")


def _short(value: Any) -> str:
    arr = _number_array(value)
    if arr is None:
        return repr(value)
    return np.array2string(arr.reshape(-1)[:4], precision=4) + (" ..." if arr.size > 4 else "")


FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Values beyond it become infinite in a float32 network (torch's default)."""


def _check_node(name: str, kind: str, table: Mapping[str, Any], limits: Limits) -> None:
    if not isinstance(table.get("metadata", {}), Mapping):
        raise ValueError(f"NIR node {name!r} ({kind}): metadata must be a group of values")
    for key, value in table.items():
        if key in ("type", "metadata"):
            continue
        arr = _number_array(value)
        if arr is not None and arr.dtype.kind == "f" and not np.all(np.isfinite(arr)):
            raise ValueError(f"NIR node {name!r} ({kind}): {key} holds NaN or infinity")
        if arr is not None and arr.size and float(np.max(np.abs(arr))) > FLOAT32_MAX:
            raise ValueError(f"NIR node {name!r} ({kind}): {key} holds values beyond the float32 "
                             f"range (|x| up to {float(np.max(np.abs(arr))):.3g})")
        if key in POSITIVE and arr is not None and np.any(arr <= 0):
            raise ValueError(f"NIR node {name!r} ({kind}): {key} must be positive, got "
                             f"{_short(arr[arr <= 0])}")
    if kind in ("Input", "Output"):
        _integers(name, "shape", table.get("shape"), 1)
        if kind == "Input":
            limits.check("neurons", math.prod(int(d) for d in np.atleast_1d(table["shape"])),
                         f"NIR node {name!r}: the input")
    elif kind == "Flatten" and table.get("input_type") is not None:
        _integers(name, "input_type", table["input_type"], 1)
    elif kind in ("Conv1d", "Conv2d"):
        weight = _number_array(table.get("weight"))
        dims = 3 if kind == "Conv1d" else 4
        if weight is None or weight.ndim != dims or weight.size == 0:
            raise ValueError(f"NIR node {name!r} ({kind}): weight must be a non-empty "
                             f"{dims}-D array")
        for key, minimum in (("stride", 1), ("dilation", 1), ("groups", 1)):
            _integers(name, key, table.get(key, 1), minimum)
        padding = table.get("padding", 0)
        if not (isinstance(padding, str) and padding in ("same", "valid")):
            _integers(name, "padding", padding, 0)
        if table.get("input_shape") is not None:
            _integers(name, "input_shape", table["input_shape"], 1)
    elif kind in ("SumPool2d", "AvgPool2d"):
        _integers(name, "kernel_size", table.get("kernel_size"), 1)
        if table.get("stride") is not None:
            _integers(name, "stride", table["stride"], 1)
        _integers(name, "padding", table.get("padding", 0), 0)


def _check_edges(names: list[str], edges: Any, prefix: str) -> None:
    pairs = []
    try:
        table = np.asarray(edges, dtype=object).reshape(-1, 2) if len(edges) else []
    except (TypeError, ValueError):
        raise ValueError(f"{prefix or 'the graph'} edges must be pairs of node names") from None
    for edge in table:
        src, dst = (e.decode() if isinstance(e, bytes) else str(e) for e in edge)
        for end in (src, dst):
            if end not in names:
                raise ValueError(f"edge {prefix}{src!r} -> {prefix}{dst!r} names no node "
                                 f"{prefix}{end!r}")
        if src == dst:
            raise ValueError(f"edge {prefix}{src!r} -> {prefix}{dst!r} is a self-loop; recurrent "
                             "NIR graphs are not supported")
        pairs.append((src, dst))
    cycle = find_cycle(names, pairs)
    if cycle:
        raise ValueError("the graph has a cycle " + " -> ".join(f"{prefix}{n!r}" for n in cycle)
                         + "; recurrent NIR graphs are not supported")


def find_cycle(names: Iterable[str], edges: Iterable[tuple[str, str]]) -> list[str]:
    """One cycle of the directed graph as a closed node list, or [] (iterative: no recursion)."""
    successors: dict[str, list[str]] = {n: [] for n in names}
    for src, dst in edges:
        successors[src].append(dst)
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for root in successors:
        if root in state:
            continue
        path, stack = [root], [iter(successors[root])]
        state[root] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(successors[nxt]))
    return []


# -- sizes (after nir's type inference) --------------------------------------------------------
def _size(types: Mapping[str, Any] | None) -> int:
    if not types:
        return 0
    return sum(math.prod(int(d) for d in np.atleast_1d(t)) for t in types.values() if t is not None)


def check_sizes(graph: nir.NIRGraph, limits: Limits, prefix: str = "") -> tuple[int, int]:
    """Every layer output, all neurons together and all connections (convolutions expanded)
    within the limits; returns (neurons, connections)."""
    neurons = synapses = 0
    for raw_name, node in graph.nodes.items():
        name = f"{prefix}{raw_name}"
        if isinstance(node, nir.NIRGraph):
            n, s = check_sizes(node, limits, f"{name}.")
            neurons, synapses = neurons + n, synapses + s
            continue
        out = _size(node.output_type)
        shape = [int(d) for t in (node.output_type or {}).values() if t is not None
                 for d in np.atleast_1d(t)]
        if any(d < 1 for d in shape):
            raise ValueError(f"NIR node {name!r} ({type(node).__name__}) has output shape "
                             f"{shape}: every dimension must be positive")
        limits.check("neurons", out, f"NIR node {name!r} output")
        if type(node).__name__ in SPIKING:
            neurons += out
        if isinstance(node, (nir.Affine, nir.Linear)):
            synapses += int(np.asarray(node.weight).size)
        elif isinstance(node, (nir.Conv1d, nir.Conv2d)):
            w = np.asarray(node.weight)
            synapses += out * math.prod(w.shape[1:])
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            synapses += out * math.prod(int(k) for k in np.atleast_1d(node.kernel_size))
    limits.check("neurons", neurons, f"the spiking nodes of {prefix or 'the graph'}")
    limits.check("synapses", synapses, f"the connections of {prefix or 'the graph'}")
    return neurons, synapses


# -- time and input normalisation ----------------------------------------------------------------
def check_timing(graph: nir.NIRGraph, dt: Any, timesteps: Any,
                 limits: Limits | None = None) -> tuple[float, int | None]:
    """``dt`` a positive finite number, ``timesteps`` (unless None) a positive integer within
    the limit, and every neuron's time constant >= dt (forward Euler at dt then decays within
    [0, 1))."""
    limits = limits or Limits.from_env()
    try:
        step = float(dt)
    except (TypeError, ValueError):
        raise ValueError(f"dt must be a number, got {dt!r}") from None
    if not (math.isfinite(step) and step > 0):
        raise ValueError(f"dt must be a positive finite number, got {dt!r}")
    steps = None if timesteps is None else check_timesteps(timesteps, "timesteps (T)", limits)
    for name, node in _nodes(graph):
        for key in NEURONS.get(type(node).__name__, ()):
            tau = float(np.min(np.asarray(getattr(node, key), dtype=float)))
            if tau < step:
                raise ValueError(f"NIR node {name!r}: {key} = {tau:g} is shorter than the time "
                                 f"step dt = {step:g}; forward Euler would give a negative decay")
    return step, steps


def _nodes(graph: nir.NIRGraph, prefix: str = "") -> Iterable[tuple[str, nir.NIRNode]]:
    for name, node in graph.nodes.items():
        if isinstance(node, nir.NIRGraph):
            yield from _nodes(node, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}", node


def check_normalization(mean: Any, std: Any) -> tuple[np.ndarray, np.ndarray]:
    """Input normalisation (x - mean) / std: finite means, finite positive stds."""
    try:
        m = np.atleast_1d(np.asarray(mean, dtype=float))
        s = np.atleast_1d(np.asarray(std, dtype=float))
    except (TypeError, ValueError):
        raise ValueError(f"input normalisation must be numbers, got mean {mean!r}, std {std!r}") \
            from None
    if not np.all(np.isfinite(m)) or not np.all(np.isfinite(s)) or np.any(s <= 0):
        raise ValueError(f"input normalisation must have finite means and positive finite stds, "
                         f"got mean {_short(m)}, std {_short(s)}")
    return m, s
