"""Run the ``neuroratebp`` command line in-process and capture what it prints.

Import after ``import_lava()`` where Lava is used (the CLI imports tqdm)."""
from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from neuroratebp.cli import main


def run_cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(list(args))
    return rc, out.getvalue()


def cli_json(*args: str) -> dict:
    """A command run with ``--json`` that must succeed; its last printed line, parsed."""
    rc, out = run_cli(*args, "--json")
    assert rc == 0
    return json.loads(out.strip().splitlines()[-1])


ROOT = Path(__file__).resolve().parents[1]


def cli_process(*args: str, timeout: float = 300, **popen: object) -> subprocess.CompletedProcess:
    """The command line in a fresh interpreter (for signals, resource limits, real exits)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
           "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.run([sys.executable, "-m", "neuroratebp", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, **popen)  # type: ignore[arg-type]


def one_line_error(stderr: str, command: str) -> str:
    """The single line an expected failure prints (no traceback); returns it."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    assert lines[0].startswith(f"neuroratebp {command}: "), stderr
    return lines[0]
