"""Flags that mean the same on every command (README: "Flags and JSON keys"), defined once."""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

from ..data import DATASETS


def integer(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= ``minimum`` (argparse names the flag in the error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value
    parse.__name__ = "integer"
    return parse


def positive_number(text: str) -> float:
    """argparse type: a finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def add_data_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", metavar="NAME|DIR",
                   help=f"data set ({', '.join(DATASETS)}) or a directory holding one "
                        "(Fashion-MNIST idx.gz files, CIFAR-10 python batches); default: the data "
                        "set recorded with the model, else fmnist")


def add_limit_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--limit", type=integer(1), metavar="N",
                   help="use the first N samples of the split the command reads")


def add_output_arg(p: argparse.ArgumentParser, help: str) -> None:
    p.add_argument("-o", "--output", type=Path, help=help)


def add_plot_arg(p: argparse.ArgumentParser, what: str = "the figures") -> None:
    p.add_argument("--plot", metavar="FILE", help=f"also write {what} as PNG to FILE")
