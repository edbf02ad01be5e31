"""Run the ``neuroratebp`` command line in-process and capture what it prints.

Import after ``import_lava()`` where Lava is used (the CLI imports tqdm)."""
from __future__ import annotations

import contextlib
import io
import json

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
