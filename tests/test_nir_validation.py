"""Every NIR file passes one gate (neuroratebp.interchange.validation) in import, check and
simulate: HDF5 features that read other files, sizes before allocation, finite values, physical
ranges, cycles (docs/reliability.md, items 2, 5 and 6)."""
from __future__ import annotations

import contextlib
import resource
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest

from cli_run import one_line_error, run_cli
from hw_targets.loihi2 import examples as ex

COMMANDS = {"import": ["import", "{path}", "-o", "{tmp}/x.pt"],
            "check": ["check", "{path}"],
            "simulate": ["simulate", "{path}", "--backend", "emulator", "--data", "digits",
                         "--limit", "4"]}


@contextlib.contextmanager
def memory_ceiling(extra: int = 2 << 30) -> Iterator[None]:
    """At most ``extra`` more bytes of address space: a check that allocates first fails."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    size = int(next(line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
                    if line.startswith("VmSize:"))) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def refused(path: Path, tmp_path: Path, capsys: pytest.CaptureFixture, message: str,
            commands: tuple[str, ...] = tuple(COMMANDS)) -> None:
    """Each command exits 2 with one line containing ``message``; nothing is written."""
    for command in commands:
        args = [a.format(path=path, tmp=tmp_path) for a in COMMANDS[command]]
        with memory_ceiling():
            rc, out = run_cli(*args)
        line = one_line_error(capsys.readouterr().err, command)
        assert rc == 2 and message in line, (command, line)
        assert not (tmp_path / "x.pt").exists()


def graph() -> nir.NIRGraph:
    """Input(64) -> fc0 -> lif0(16) -> fc1 -> Output(10): digits-sized, valid."""
    return ex.mlp_graph((64, 16, 10))


def written(tmp_path: Path, g: nir.NIRGraph, name: str = "g.nir") -> Path:
    path = tmp_path / name
    nir.write(path, g)
    return path


def test_valid_graph_passes_every_command(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = written(tmp_path, graph())
    for command, args in COMMANDS.items():
        assert run_cli(*[a.format(path=path, tmp=tmp_path) for a in args])[0] == 0, command


# -- HDF5 that reads elsewhere ----------------------------------------------------------------
def test_external_storage_is_refused_and_never_read(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"root:x:0:0:the secret line:/root:/bin/bash".ljust(64))
    path = written(tmp_path, graph())
    with h5py.File(path, "r+") as f:  # the reset mode, printed by check's warnings, from the secret
        f["node/metadata"].create_dataset("reset", shape=(1,), dtype="S64",
                                          external=[(str(secret), 0, 64)])
    refused(path, tmp_path, capsys, "external storage")
    assert "secret" not in capsys.readouterr().out


def test_virtual_dataset_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as f:
        f["w"] = np.ones((16, 64))
    path = written(tmp_path, graph())
    with h5py.File(path, "r+") as f:
        del f["node/nodes/fc0/weight"]
        layout = h5py.VirtualLayout(shape=(16, 64), dtype="f8")
        layout[:] = h5py.VirtualSource(str(source), "w", shape=(16, 64))
        f["node/nodes/fc0"].create_virtual_dataset("weight", layout)
    refused(path, tmp_path, capsys, "is virtual")


@pytest.mark.parametrize("kind", ["external", "soft"])
def test_links_are_refused(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    other = written(tmp_path, graph(), "other.nir")
    path = written(tmp_path, graph())
    with h5py.File(path, "r+") as f:
        del f["node/nodes/fc0/weight"]
        f["node/nodes/fc0/weight"] = (h5py.ExternalLink(str(other), "/node/nodes/fc0/weight")
                                      if kind == "external" else h5py.SoftLink("/node/nodes/fc1/weight"))
    refused(path, tmp_path, capsys, f"is {'an external' if kind == 'external' else 'a soft'} link")


# -- sizes bounded before anything is allocated -------------------------------------------------
def test_billion_neuron_lif_in_a_small_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """gzip chunks never written hold the fill value: a 1e9-neuron LIF in a few KB."""
    path = written(tmp_path, graph())
    with h5py.File(path, "r+") as f:
        node = f["node/nodes/lif0"]
        for key in ("tau", "r", "v_leak", "v_reset", "v_threshold"):
            del node[key]
            node.create_dataset(key, shape=(10 ** 9,), dtype="f8", chunks=(2 ** 20,),
                                compression="gzip", fillvalue=0.01)
    assert path.stat().st_size < 100_000
    refused(path, tmp_path, capsys, "NEURORATEBP_MAX_SYNAPSES")


def test_billion_pixel_input(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    g = nir.NIRGraph(nodes={"input": nir.Input(np.array([1, 40000, 25000])),
                            "pool": nir.SumPool2d(np.array([40000, 25000]), np.array([40000, 25000]),
                                                  np.array([0, 0])),
                            "flat": nir.Flatten({"input": np.array([1, 1, 1])}, start_dim=0),
                            "fc0": nir.Affine(np.ones((4, 1)), np.zeros(4)), "lif0": ex.lif([4]),
                            "fc1": nir.Affine(np.ones((2, 4)), np.zeros(2)),
                            "output": nir.Output(np.array([2]))},
                     edges=[("input", "pool"), ("pool", "flat"), ("flat", "fc0"), ("fc0", "lif0"),
                            ("lif0", "fc1"), ("fc1", "output")],
                     metadata=graph().metadata)
    refused(written(tmp_path, g), tmp_path, capsys, "NEURORATEBP_MAX_NEURONS")


def test_convolution_expanding_past_the_synapse_limit(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """64x64 3x3 kernels on a 128x128 map: 37k weights, 6e8 connections once expanded (what
    the chip mapping builds)."""
    shape = np.array([64, 128, 128])
    g = nir.NIRGraph(nodes={"input": nir.Input(shape),
                            "conv": nir.Conv2d((128, 128), np.ones((64, 64, 3, 3)), 1, 1, 1, 1,
                                               np.zeros(64)),
                            "output": nir.Output(shape)},
                     edges=[("input", "conv"), ("conv", "output")], metadata=graph().metadata)
    refused(written(tmp_path, g), tmp_path, capsys, "NEURORATEBP_MAX_SYNAPSES")


# -- values and physical ranges ----------------------------------------------------------------
def _set(node: str, field: str, value: object) -> Callable[[nir.NIRGraph], None]:
    def change(g: nir.NIRGraph) -> None:
        old = getattr(g.nodes[node], field)
        new = np.full_like(np.asarray(old, dtype=float), value) if np.ndim(old) else value
        if field == "weight":
            new = np.asarray(old, dtype=float).copy()
            new[0, 0] = value
        setattr(g.nodes[node], field, new)
    return change


def _meta(key: str, value: object) -> Callable[[nir.NIRGraph], None]:
    def change(g: nir.NIRGraph) -> None:
        if key in ("mean", "std"):  # under the exporter's key, which import reads too
            g.metadata["normalize"] = {**g.metadata.pop("normalization"), key: value}
        else:
            g.metadata[key] = value
    return change


def _self_loop(g: nir.NIRGraph) -> None:
    g.edges.append(("lif0", "lif0"))


def _cycle(g: nir.NIRGraph) -> None:
    g.edges.append(("lif0", "fc0"))


@pytest.mark.parametrize("change, message", [
    (_set("fc0", "weight", np.nan), "'fc0' (Affine): weight holds NaN or infinity"),
    (_set("fc0", "bias", np.inf), "'fc0' (Affine): bias holds NaN or infinity"),
    (_meta("std", 0.0), "positive finite stds"),
    (_meta("std", np.nan), "positive finite stds"),
    (_set("lif0", "tau", 1e-4), "tau = 0.0001 is shorter than the time step dt = 0.001"),
    (_set("lif0", "tau", -5e-3), "'lif0' (LIF): tau must be positive"),
    (_set("lif0", "tau", 0.0), "'lif0' (LIF): tau must be positive"),
    (_set("lif0", "v_threshold", np.inf), "'lif0' (LIF): v_threshold holds NaN or infinity"),
    (_set("lif0", "v_threshold", -1.0), "'lif0' (LIF): v_threshold must be positive"),
    (_meta("timesteps", 2.5), "timesteps (T) must be a positive integer, got 2.5"),
    (_meta("timesteps", 0), "timesteps (T) must be a positive integer, got 0"),
    (_meta("timesteps", 10 ** 12), "NEURORATEBP_MAX_TIMESTEPS"),
    (_meta("dt", -1e-3), "dt must be a positive finite number"),
    (_self_loop, "edge 'lif0' -> 'lif0' is a self-loop"),
    (_cycle, "the graph has a cycle 'fc0' -> 'lif0' -> 'fc0'"),
], ids=["nan-weight", "inf-bias", "std0", "std-nan", "tau<dt", "tau<0", "tau=0", "inf-threshold",
        "negative-threshold", "T=2.5", "T=0", "T=1e12", "dt<0", "self-loop", "cycle"])
def test_bad_values_are_refused_by_every_command(change, message: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    g = graph()
    change(g)
    refused(written(tmp_path, g, "bad.nir"), tmp_path, capsys, message)


def test_decay_off_the_12_bit_range_is_refused_on_loihi(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture) -> None:
    """tau = dt gives lam = 0: dv = 4096 does not fit Loihi's 12-bit decay (import accepts it:
    the torch neuron has no such limit)."""
    g = graph()
    _set("lif0", "tau", 1e-3)(g)
    refused(written(tmp_path, g), tmp_path, capsys, "off Loihi's 12-bit range", ("check", "simulate"))
    assert run_cli("import", str(tmp_path / "g.nir"), "-o", str(tmp_path / "ok.pt"))[0] == 0


def test_huge_eval_timesteps_are_refused_before_allocating(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture) -> None:
    ckpt = tmp_path / "m.pt"
    assert run_cli("import", str(written(tmp_path, graph())), "-o", str(ckpt))[0] == 0
    for value, message in (("100000000", "NEURORATEBP_MAX_TIMESTEPS"),
                           ("0", "--timesteps must be a positive integer, got 0")):
        with memory_ceiling():
            assert run_cli("eval", str(ckpt), "--data", "digits", "--timesteps", value)[0] == 2
        assert message in one_line_error(capsys.readouterr().err, "eval")
