"""No data loss: inputs never overwritten, real write failures in one line, run directories locked,
normal permissions, no leftover temporaries (docs/reliability.md, items 1, 3, 6, 7)."""
from __future__ import annotations

import errno
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_run import ROOT, cli_process, one_line_error, run_cli
from neuroratebp.config import load_config
from neuroratebp.train import fit

DIGITS = ROOT / "models" / "digits_mlp.toml"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained run directory with model.pt and its NIR export model.nir."""
    config = load_config(DIGITS)  # hidden 64: checkpoints big enough that a failed write lands
    out = tmp_path_factory.mktemp("run")  # inside torch's zip writer (the "unexpected pos" case)
    fit(config, out_dir=out, epochs=1, limit_train=320, quiet=True)
    assert run_cli("export", str(out / "model.pt"), "-o", str(out / "model.nir"))[0] == 0
    return out


def _links(tmp_path: Path, source: Path) -> dict[str, Path]:
    """The same file under three names: itself, a symlink, a hard link."""
    symlink, hardlink = tmp_path / f"sym{source.suffix}", tmp_path / f"hard{source.suffix}"
    symlink.symlink_to(source)
    os.link(source, hardlink)
    return {"same path": source, "symlink": symlink, "hard link": hardlink}


@pytest.mark.parametrize("fmt", ["nir", "netx"])
def test_export_refuses_to_overwrite_its_checkpoint(run: Path, tmp_path: Path, fmt: str,
                                                    capsys: pytest.CaptureFixture) -> None:
    ckpt = tmp_path / "a.pt"
    ckpt.write_bytes((run / "model.pt").read_bytes())
    before = ckpt.read_bytes()
    for kind, output in _links(tmp_path, ckpt).items():
        assert run_cli("export", str(ckpt), "--to", fmt, "-o", str(output))[0] == 2, kind
        assert "is the input" in one_line_error(capsys.readouterr().err, "export")
        assert ckpt.read_bytes() == before, kind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "hard.pt", "sym.pt"]


def test_import_refuses_to_overwrite_its_graph(run: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    graph = tmp_path / "c.nir"
    graph.write_bytes((run / "model.nir").read_bytes())
    before = graph.read_bytes()
    for kind, output in _links(tmp_path, graph).items():
        assert run_cli("import", str(graph), "-o", str(output))[0] == 2, kind
        assert "is the input" in one_line_error(capsys.readouterr().err, "import")
        assert graph.read_bytes() == before, kind


def _file_size_limit(limit: int):  # noqa: ANN202 -- a preexec_fn
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


@pytest.mark.parametrize("command", ["export nir", "export netx", "import", "train"])
def test_write_failure_in_the_kernel_is_one_line(run: Path, tmp_path: Path, command: str) -> None:
    """A real failing write(2) (RLIMIT_FSIZE: EFBIG, the same path as a full disk): one line
    naming the OS's reason, inputs and the previous output unchanged, no temporary left.
    Before: h5py segfaulted after six tracebacks; torch said 'unexpected pos'."""
    ckpt, graph = run / "model.pt", run / "model.nir"
    inputs = {p: p.read_bytes() for p in (ckpt, graph)}
    previous = tmp_path / "out.bin"
    previous.write_bytes(b"previous output")
    args = {"export nir": ["export", str(ckpt), "-o", str(previous)],
            "export netx": ["export", str(ckpt), "--to", "netx", "-o", str(previous)],
            "import": ["import", str(graph), "-o", str(previous)],
            "train": ["train", str(DIGITS), "--epochs", "1", "--limit", "64", "--quiet", "-o",
                      str(tmp_path / "run")]}[command]
    proc = cli_process(*args, preexec_fn=_file_size_limit(4096))
    assert proc.returncode == 2, proc.stderr
    assert "File too large" in one_line_error(proc.stderr, args[0])
    assert {p: p.read_bytes() for p in inputs} == inputs
    assert previous.read_bytes() == b"previous output"
    assert not list(tmp_path.rglob("*.tmp"))


def test_full_disk_names_no_space_left(run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture) -> None:
    """ENOSPC from every write into the output directory, as a full disk answers."""
    full = tmp_path / "full"
    full.mkdir()
    real_write = os.write

    def write(fd: int, data: bytes) -> int:
        if os.readlink(f"/proc/self/fd/{fd}").startswith(str(full)):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)
    ckpt = run / "model.pt"
    before = ckpt.read_bytes()
    for args in (["export", str(ckpt), "-o", str(full / "m.nir")],
                 ["export", str(ckpt), "--to", "netx", "-o", str(full / "m.net")],
                 ["import", str(run / "model.nir"), "-o", str(full / "m.pt")],
                 ["train", str(DIGITS), "--epochs", "1", "--limit", "64", "--quiet", "-o",
                  str(full / "run")]):
        assert run_cli(*args)[0] == 2
        line = one_line_error(capsys.readouterr().err, args[0])
        assert line.endswith("No space left on device"), line
    assert ckpt.read_bytes() == before
    assert not list(full.rglob("*.tmp")) and not list(full.glob("m.*"))


def test_outputs_get_the_umask_permissions(run: Path, tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        assert run_cli("export", str(run / "model.pt"), "-o", str(tmp_path / "m.nir"))[0] == 0
        assert run_cli("import", str(run / "model.nir"), "-o", str(tmp_path / "m.pt"))[0] == 0
        assert run_cli("train", str(DIGITS), "--epochs", "1", "--limit", "64", "--quiet", "-o",
                       str(tmp_path / "run"))[0] == 0
    finally:
        os.umask(old)
    for path in (tmp_path / "m.nir", tmp_path / "m.pt", tmp_path / "run" / "last.pt",
                 tmp_path / "run" / "model.pt", tmp_path / "run" / "metrics.jsonl"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


def test_leftover_temporaries_of_a_killed_run_are_removed(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    stale = [run / ".last.pt.k1ll3d.tmp", run / ".model.pt.x9.tmp", run / ".metrics.jsonl.a.tmp"]
    for path in stale:
        path.write_bytes(b"partial")
    keep = run / "notes.txt"
    keep.write_text("mine")
    assert run_cli("train", str(DIGITS), "--epochs", "1", "--limit", "64", "--quiet", "-o",
                   str(run))[0] == 0
    assert not any(p.exists() for p in stale) and keep.read_text() == "mine"


def test_second_training_run_on_a_busy_directory_is_refused(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """Two `train -o DIR` at once: the second is refused in one line and writes nothing; the
    first finishes with its own metrics and weights."""
    run = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    first = subprocess.Popen([sys.executable, "-m", "neuroratebp", "train", str(DIGITS),
                              "--epochs", "3", "--limit", "256", "--seed", "1", "--quiet", "-o",
                              str(run)], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists():  # written once the first holds the lock
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read()
            time.sleep(0.05)
        assert run_cli("train", str(DIGITS), "--epochs", "1", "--seed", "2", "--quiet", "-o",
                       str(run))[0] == 2
        assert "in use by another training run" in one_line_error(capsys.readouterr().err, "train")
        assert first.wait(timeout=300) == 0, first.stderr.read()
    finally:
        first.kill()
        first.wait()
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert [int(r.split('"epoch": ')[1].split(",")[0]) for r in rows] == [1, 2, 3]
    assert sorted(p.name for p in run.iterdir()) == ["last.pt", "metrics.jsonl", "metrics.png", "model.pt"]
