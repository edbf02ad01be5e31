"""Make lava-nc 0.10 / lava-dl 0.6 importable on Python 3.11+.

Both packages declare Python < 3.11 and are installed with ``--no-deps --ignore-requires-python``
(see the Makefile). Two things then break, and this module mends exactly those two, at import
time, without touching the installed files:

1. ``lava.magma.compiler.var_model`` uses an ``eq=True`` dataclass instance (``ByteEncoder``) as a
   field default. Python 3.11 rejects unhashable defaults as mutable; declaring ``ByteEncoder``
   with ``unsafe_hash=True`` restores the 3.10 behaviour (the instances are never mutated).
2. ``lava.lib.dl.slayer`` eagerly imports its ``object_detection`` subpackage, which needs
   torchvision and OpenCV. Neither is usable next to a CPU torch build, and nothing on the netx
   deployment path needs them, so that one subpackage is replaced by an empty placeholder whose
   attributes raise a clear ImportError.

Call :func:`install` (idempotent) before importing anything from ``lava``.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
import types
from typing import Sequence

VAR_MODEL = "lava.magma.compiler.var_model"
OBJECT_DETECTION = "lava.lib.dl.slayer.object_detection"
_BROKEN = "@dataclass\nclass ByteEncoder:"
_MENDED = "@dataclass(unsafe_hash=True)\nclass ByteEncoder:"


class _VarModelLoader(importlib.machinery.SourceFileLoader):
    """Loads var_model.py with ByteEncoder made hashable."""

    def get_data(self, path: str) -> bytes:
        data = super().get_data(path)
        if path.endswith(".py"):
            data = data.decode("utf-8").replace(_BROKEN, _MENDED).encode("utf-8")
        return data

    def get_code(self, fullname: str) -> types.CodeType:
        # Bypass the bytecode cache: it would hold the unmended module.
        source = self.get_data(self.get_filename(fullname))
        return compile(source, self.get_filename(fullname), "exec", dont_inherit=True)


class _ObjectDetectionPlaceholder(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError(
            "lava.lib.dl.slayer.object_detection needs torchvision and OpenCV, which neuroratebp "
            "does not install; it is disabled (see hw_targets/lava_compat.py)")


class _PlaceholderLoader(importlib.abc.Loader):
    def create_module(self, spec):
        return _ObjectDetectionPlaceholder(spec.name)

    def exec_module(self, module) -> None:
        module.__path__ = []


class _LavaCompatFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None, target=None):
        if fullname == OBJECT_DETECTION:
            return importlib.util.spec_from_loader(fullname, _PlaceholderLoader(), is_package=True)
        if fullname == VAR_MODEL and sys.version_info >= (3, 11):
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or not isinstance(spec.loader, importlib.machinery.SourceFileLoader):
                return spec
            spec.loader = _VarModelLoader(fullname, spec.origin)
            return spec
        return None


def install() -> None:
    """Register the import fixes once; must run before the first ``import lava...``."""
    if not any(isinstance(f, _LavaCompatFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _LavaCompatFinder())
