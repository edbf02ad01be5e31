"""Model interchange through NIR (https://neuroir.org): export, import, plain-data graphs.

``export_nir``/``write_nir`` turn a trained network into a NIR graph/file whose standard nodes
reproduce it under forward Euler at the recorded ``dt``; ``import_nir`` turns a NIR graph into a
runnable network plus a run config. The mapping is documented in :mod:`.discretisation`; every
graph read or imported passes :mod:`.validation` first.

Names are loaded on first use, so hardware targets can import :mod:`.validation` without
pulling in the training code that export and import need.
"""
from __future__ import annotations

import importlib
from typing import Any

from .discretisation import DEFAULT_DT

_HOMES = {"ApproximationWarning": "export", "export_nir": "export", "write_nir": "export",
          "import_nir": "imports", "read_nir": "validation"}

__all__ = ["DEFAULT_DT", "ApproximationWarning", "export_nir", "import_nir", "read_nir",
           "write_nir"]


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(f".{_HOMES[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
