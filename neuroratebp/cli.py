"""The ``neuroratebp`` command: one subcommand per module in ``neuroratebp.commands``.

Each command module exposes ``add_parser(subparsers)`` (which sets ``func``) and keeps its own
logic; this file only dispatches and turns expected failures into one-line errors.
"""
from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence

from . import interrupts

COMMANDS = ("train", "eval", "export", "import", "check", "simulate", "learn")
"""Subcommand modules under neuroratebp.commands, in help order (missing ones are skipped)."""


class Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other error of the command."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="neuroratebp",
        description="Train SNNs with rate-based backpropagation, export through NIR, "
                    "simulate them on Loihi 2 with Lava.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"neuroratebp.commands.{name}_cmd")
        except ModuleNotFoundError as e:
            if e.name == f"neuroratebp.commands.{name}_cmd":
                continue
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:  # --help, or a usage error (already printed)
        return e.code if isinstance(e.code, int) else 0
    try:
        with interrupts.raising([signal.SIGTERM]):  # SIGINT already raises KeyboardInterrupt
            return int(args.func(args) or 0)
    except (ValueError, OSError) as e:
        print(f"neuroratebp {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        word = "terminated" if signum == signal.SIGTERM else "interrupted"
        print(f"neuroratebp {args.command}: {word}", file=sys.stderr)
        return 128 + signum


if __name__ == "__main__":
    sys.exit(main())
