"""Lava workers are owned by the project (hw_targets.lava_runtime): Ctrl-C to the process group or
SIGTERM to the main process during `simulate --backend lava` ends it within seconds with 130 / 143,
one line, no surviving process, no /dev/shm segment left (docs/reliability.md, item 4).

The segments checked are those the run's own processes had mapped (read from /proc/PID/maps
while it runs): other programs on the machine may use Lava at the same time.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from cli_run import ROOT
from hw_targets.loihi2 import examples as ex
from hw_targets.loihi2.target import compile_graph, import_lava
from hw_targets.lava_runtime import descendants, shm_segments
from neuroratebp.interchange import write_nir

lava_backend = import_lava()

LAVA_PROCESSES = 6
"""Workers the digits-sized graph starts: source, 2 synapse groups, 2 populations, 1 extractor."""


@pytest.fixture(scope="module")
def long_graph(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Digits-sized MLP with T = 300: minutes for the 360 test images, so a signal always
    arrives mid-run."""
    path = tmp_path_factory.mktemp("lava") / "long.nir"
    write_nir(ex.mlp_graph((64, 16, 10), timesteps=300), path)
    return path


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0] != b"Z"
    except OSError:
        return False


def _wait(condition, seconds: float) -> bool:  # noqa: ANN001
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("signum, to_group, status, word", [
    (signal.SIGINT, True, 130, "interrupted"),    # Ctrl-C in a terminal
    (signal.SIGTERM, False, 143, "terminated"),   # kill PID
], ids=["sigint-group", "sigterm-main"])
def test_signal_during_lava_simulation_leaves_nothing(long_graph: Path, tmp_path: Path, signum: int,
                                                      to_group: bool, status: int, word: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONDONTWRITEBYTECODE": "1"}
    log = tmp_path / "stderr.txt"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "neuroratebp", "simulate", str(long_graph),
                                 "--backend", "lava", "--data", "digits"], env=env,
                                stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
    workers: list[int] = []
    segments: set[str] = set()
    try:
        assert _wait(lambda: len(descendants(proc.pid)) > LAVA_PROCESSES or proc.poll() is not None,
                     120), "Lava never started"
        assert _wait(lambda: "1/360" in log.read_text(), 60), log.read_text()  # mid-run
        workers = descendants(proc.pid)
        segments = shm_segments([proc.pid, *workers])
        assert len(workers) > LAVA_PROCESSES and segments
        sent = time.monotonic()
        os.killpg(proc.pid, signum) if to_group else os.kill(proc.pid, signum)
        assert proc.wait(timeout=30) == status
        assert time.monotonic() - sent < 15
        assert _wait(lambda: not any(map(_alive, workers)), 10), [p for p in workers if _alive(p)]
        assert not [s for s in segments if os.path.exists(s)]
        last = log.read_text().strip().splitlines()[-1]
        assert last.endswith(f"neuroratebp simulate: {word}") and "Traceback" not in log.read_text()
    finally:  # never leave a failed test's processes or segments behind
        for pid in [proc.pid, *workers]:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        for path in segments:
            Path(path).unlink(missing_ok=True)


def test_exception_inside_the_session_tears_the_graph_down() -> None:
    graph = ex.mlp_graph((16, 8, 3))
    _, chip, _ = compile_graph(graph, "fixed")
    images = ex.random_images(graph, 4)
    before = set(descendants(os.getpid()))
    with pytest.raises(RuntimeError, match="user code failed"):
        with lava_backend.LavaNetwork(chip, chip.encode(images), "counts") as net:
            net.run_sample()
            started = [p for p in descendants(os.getpid()) if p not in before]
            segments = shm_segments([os.getpid(), *started])
            assert len(started) >= 5 and segments
            raise RuntimeError("user code failed")
    assert not net._session.forced  # the workers were alive: a clean stop sufficed
    # all gone but this process's resource tracker (multiprocessing keeps it until exit)
    assert _wait(lambda: not [p for p in started if _alive(p) and p != _tracker()], 10)
    assert not [s for s in segments if os.path.exists(s)]
    result = lava_backend.run_lava(chip, images)[0]  # and Lava runs again afterwards
    np.testing.assert_array_equal(result.logits.shape, (4, 3))


def _tracker() -> int | None:
    from multiprocessing import resource_tracker
    return resource_tracker._resource_tracker._pid
