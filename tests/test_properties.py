"""Property-based tests of the two readers of files from elsewhere: NIR graphs and checkpoints.

On generated malformed inputs (mutated tables, odd values, links, huge declared sizes, random
bytes, zip bombs, pickles asking for code), reading and everything a command then does with the
result either works or ends in a ValueError (the CLI's one-line error): never another exception
(a traceback), never a hang (hypothesis deadline), never an allocation beyond the limits
(tracemalloc for the NIR path, where every array is numpy's; resident memory for torch's).
"""
from __future__ import annotations

import collections
import io
import math
import os
import pickle
import resource
import tracemalloc
import zipfile
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hw_targets.loihi2 import examples as ex
from hw_targets.loihi2.target import check as chip_check
from neuroratebp.checkpoint import load_checkpoint, make_checkpoint, model_from_checkpoint, save_atomic
from neuroratebp.config import load_config
from neuroratebp.interchange import import_nir
from neuroratebp.interchange.validation import read_nir
from neuroratebp.limits import ENV, Limits

ROOT = Path(__file__).resolve().parents[1]
LIMITS = Limits(neurons=4096, synapses=1 << 16, timesteps=64)
PEAK = 32 << 20
"""Bytes the NIR path may allocate on a file within LIMITS (weights are a few hundred KB)."""
SETTINGS = settings(max_examples=60, deadline=5000, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


@pytest.fixture(autouse=True)
def small_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    for field, var in ENV.items():
        monkeypatch.setenv(var, str(getattr(LIMITS, field)))


# -- NIR files ----------------------------------------------------------------------------------
class Huge:
    """A dataset declared with ``shape`` but never written: gzip chunks of the fill value."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = shape


class Link:
    def __init__(self, kind: str, target: str) -> None:
        self.kind, self.target = kind, target


def tables_of(graph: nir.NIRGraph) -> dict[str, Any]:
    """What nir.write stores, as nested dicts (strings, arrays, numbers)."""
    return graph.to_dict()


def write_tables(path: Path, tables: dict[str, Any]) -> None:
    def put(group: h5py.Group, key: str, value: Any) -> None:
        if isinstance(value, dict):
            sub = group.create_group(key)
            for k, v in value.items():
                put(sub, str(k), v)
        elif isinstance(value, Huge):
            group.create_dataset(key, shape=value.shape, dtype="f8", compression="gzip",
                                 chunks=tuple(min(d, 1024) for d in value.shape) or None,
                                 fillvalue=0.5)
        elif isinstance(value, Link):
            group[key] = (h5py.SoftLink(value.target) if value.kind == "soft"
                          else h5py.ExternalLink(value.target, "/"))
        elif isinstance(value, str):
            group.create_dataset(key, data=value, dtype=h5py.string_dtype())
        else:
            arr = np.asarray(value)
            if arr.dtype.kind == "U":
                arr = arr.astype(object)
                group.create_dataset(key, data=arr, dtype=h5py.string_dtype())
            else:
                group.create_dataset(key, data=arr)

    with h5py.File(path, "w") as f:
        f.create_dataset("version", data=nir.version, dtype=h5py.string_dtype())
        put(f, "node", tables)


ODD_VALUES = st.sampled_from([np.nan, np.inf, -np.inf, -1.0, 0.0, 1e300, 2.5, -0.0, 1e-300])
ODD_ARRAYS = st.one_of(
    ODD_VALUES.map(lambda v: np.full(16, v)),
    ODD_VALUES,
    st.just(np.zeros((0,))), st.just(np.ones((2, 3, 4))), st.just("text"), st.just(np.array([10 ** 9])),
    st.just(np.array([1, 10 ** 6, 10 ** 6])), st.tuples(st.integers(1, 5)).map(Huge),
    st.just(Huge((10 ** 9,))), st.just(Huge((70000, 70000))),
    st.just(Link("soft", "/node/nodes/fc1")), st.just(Link("external", "/etc/hostname")),
)
NODES = ["input", "fc0", "lif0", "fc1", "output"]
FIELDS = ["weight", "bias", "tau", "r", "v_leak", "v_threshold", "v_reset", "shape", "type",
          "stride", "padding", "kernel_size", "groups"]


@st.composite
def mutated_graph(draw: st.DrawFn) -> dict[str, Any]:
    """The tables of a valid digits MLP (or conv net) with a few random changes."""
    base = draw(st.sampled_from(["mlp", "conv"]))
    graph = ex.mlp_graph((64, 16, 10)) if base == "mlp" else ex.conv_graph((1, 8, 8), 2)
    tables = tables_of(graph)
    names = list(tables["nodes"])
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["scale", "scale", "field", "delete", "type", "edge",
                                       "unedge", "meta", "extra"]))
        node = tables["nodes"][draw(st.sampled_from(names))]
        numeric = [k for k, v in node.items() if isinstance(v, np.ndarray) and v.dtype.kind == "f"]
        if action == "scale" and numeric:  # a valid graph with extreme numbers
            key = draw(st.sampled_from(numeric))
            node[key] = node[key] * draw(st.sampled_from([1e-300, 1e-9, 1e9, 1e300, 1e-3, 1e3]))
        elif action == "field":
            node[draw(st.sampled_from(FIELDS))] = draw(ODD_ARRAYS)
        elif action == "delete" and len(node) > 1:
            node.pop(draw(st.sampled_from(sorted(node))))
        elif action == "type":
            node["type"] = draw(st.sampled_from(["LIF", "IF", "Affine", "Conv2d", "CubaLIF",
                                                 "NIRGraph", "Spiky", "Input", "Output"]))
        elif action == "edge":
            edge = [draw(st.sampled_from(names + ["ghost"])), draw(st.sampled_from(names))]
            tables["edges"] = np.concatenate([np.asarray(tables["edges"], dtype=object),
                                              np.asarray([edge], dtype=object)])
        elif action == "unedge" and len(tables["edges"]):
            tables["edges"] = np.asarray(tables["edges"], dtype=object)[1:]
        elif action == "meta":
            key = draw(st.sampled_from(["dt", "timesteps", "normalization", "readout"]))
            tables["metadata"][key] = draw(st.one_of(ODD_VALUES, st.integers(-3, 10 ** 13),
                                                     st.just("text"), ODD_ARRAYS))
        else:
            node[draw(st.sampled_from(["junk", "metadata"]))] = draw(ODD_ARRAYS)
    return tables


def _uses(path: Path) -> None:
    """What import, check and simulate do with a file: read, import, compile for the chip."""
    graph = read_nir(path, LIMITS)
    import_nir(graph)
    chip_check(graph)


def _refused_or_fine(path: Path) -> None:
    tracemalloc.start()
    try:
        _uses(path)
    except ValueError:
        pass
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    assert peak < PEAK, f"{peak / 2 ** 20:.0f} MiB allocated"


@SETTINGS
@given(tables=mutated_graph())
def test_nir_reader_on_mutated_graphs(tables: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "g.nir"
    write_tables(path, tables)
    _refused_or_fine(path)


@SETTINGS
@given(data=st.data())
def test_nir_reader_on_damaged_bytes(data: st.DataObject, tmp_path: Path) -> None:
    good = tmp_path / "good.nir"
    nir.write(good, ex.conv_graph((1, 8, 8), 2))
    raw = bytearray(good.read_bytes())
    for _ in range(data.draw(st.integers(1, 8))):
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.sampled_from([len(raw), len(raw) // 2, 600, 8]))
    path = tmp_path / "bad.nir"
    path.write_bytes(bytes(raw[:cut]))
    _refused_or_fine(path)


# -- checkpoints --------------------------------------------------------------------------------
class _RunsCode:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return os.system, ("true",)


def _rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


@pytest.fixture(scope="module")
def checkpoint_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    config = load_config(ROOT / "models" / "digits_mlp.toml")
    config["model"]["hidden"] = [8]
    from neuroratebp.config import model_from_config
    path = tmp_path_factory.mktemp("ckpt") / "m.pt"
    save_atomic(make_checkpoint(model_from_config(config), config), path)
    return path.read_bytes()


def _zip(records: dict[str, bytes], compress: bool = False) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED) as z:
        for name, data in records.items():
            z.writestr(name, data)
    return buffer.getvalue()


VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-2, 10 ** 12), st.floats(allow_nan=True),
              st.text(max_size=8), st.sampled_from(["fmnist", "graph", "mlp", "rate_m"])),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.sampled_from(
                                ["model", "arch", "hidden", "input_shape", "timesteps", "lam",
                                 "layers", "type", "dataset", "std", "lr", "hiden", "x"]),
                                inner, max_size=4)),
    max_leaves=12)


@st.composite
def bad_checkpoint(draw: st.DrawFn, good: bytes) -> bytes:
    kind = draw(st.sampled_from(["flip", "cut", "random", "config", "pickle", "bomb"]))
    if kind == "flip":
        raw = bytearray(good)
        for _ in range(draw(st.integers(1, 6))):
            raw[draw(st.integers(0, len(raw) - 1))] ^= draw(st.integers(1, 255))
        return bytes(raw)
    if kind == "cut":
        return good[:draw(st.integers(0, len(good) - 1))]
    if kind == "random":
        return draw(st.binary(max_size=2000))
    if kind == "config":  # a real torch.save of a checkpoint dict with a generated config
        buffer = io.BytesIO()
        big = st.sampled_from([{"arch": "mlp", "input_shape": [1, 8, 8], "hidden": [h]}
                               for h in (10 ** 3, 10 ** 6, 10 ** 9)]
                              + [{"arch": "vgg", "input_shape": [1, 10 ** 5, 10 ** 5]},
                                 {"arch": "resnet", "input_shape": [3, 4000, 4000]}])
        config = draw(st.one_of(VALUES, st.fixed_dictionaries({"model": big}), st.fixed_dictionaries(
            {"model": st.dictionaries(st.sampled_from(["arch", "hidden", "input_shape", "layers",
                                                       "num_classes", "hiden"]), VALUES),
             "train": st.dictionaries(st.sampled_from(["timesteps", "lr"]), VALUES)})))
        torch.save({"format": "neuroratebp-checkpoint", "version": 1, "config": config,
                    "state_dict": {"layers.fc1.weight": torch.zeros(2, 2)}}, buffer)
        return buffer.getvalue()
    if kind == "pickle":
        payload = draw(st.sampled_from([_RunsCode(), {1, 2}, os.getcwd, math.pi, b"x" * 10,
                                        collections.Counter("ab")]))
        return _zip({"archive/data.pkl": pickle.dumps({"format": "neuroratebp-checkpoint",
                                                       "payload": payload}),
                     "archive/version": b"3\n"})
    # zip bomb: 256 MiB of zeros compressed to a few hundred KB
    return _zip({"archive/data.pkl": good[:100], "archive/data/0": bytes(256 << 20)}, compress=True)


@SETTINGS
@given(data=st.data())
def test_checkpoint_loader_on_malformed_files(data: st.DataObject, checkpoint_bytes: bytes,
                                              tmp_path: Path) -> None:
    path = tmp_path / "bad.pt"
    path.write_bytes(data.draw(bad_checkpoint(checkpoint_bytes)))
    before = _rss()
    try:
        model_from_checkpoint(load_checkpoint(path))
    except ValueError:
        pass
    assert _rss() - before < 64 << 20
