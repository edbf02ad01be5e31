"""Hardware targets, one subpackage each; ``get_target(name)`` is what ``--target NAME`` uses."""
from __future__ import annotations

import importlib
from types import ModuleType

TARGETS = {"loihi2": "hw_targets.loihi2.target"}
"""Target name -> module exposing ``check(graph)`` and ``simulate(graph, images, labels, ...)``."""


def get_target(name: str) -> ModuleType:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; choose from {', '.join(sorted(TARGETS))}")
    return importlib.import_module(TARGETS[name])
