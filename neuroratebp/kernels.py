"""Element-wise kernels: compiled into one pass over memory where that works, eager otherwise.

A LIF update is a chain of a dozen element-wise operations on tensors too large for the cache;
run op by op, each one reads and writes the whole tensor. ``torch.compile`` (Inductor: C++ and
OpenMP on a CPU, Triton on a GPU) fuses the chain -- a whole window of T unrolled steps -- into
one loop that keeps the membrane and traces in registers. Compiling needs a C++ compiler (CPU)
or Triton (GPU) and takes seconds per variant (shape rank, T, neuron options), so the mode is a
choice, read from ``NEURORATEBP_KERNELS``:

``auto``      (default) compile for tensors of at least :data:`MIN_ELEMENTS` elements; if
              compiling fails (no compiler on this machine), warn once and run eagerly.
``eager``     never compile: the same functions, op by op (in place, so still lean).
``compiled``  always compile; errors surface (for tests and benchmarks of the compiled path).
"""
from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from typing import Any

import torch

MODES = ("auto", "eager", "compiled")
MIN_ELEMENTS = 1 << 16
"""Elements per step below which ``auto`` stays eager: compiling would not pay for itself."""
RECOMPILE_LIMIT = 64
"""Variants one compiled function may have (raised from torch's 8: shape rank x neuron options)."""


def kernel_mode() -> str:
    mode = os.environ.get("NEURORATEBP_KERNELS", "auto")
    if mode not in MODES:
        raise ValueError(f"NEURORATEBP_KERNELS={mode!r}: choose one of {', '.join(MODES)}")
    return mode


class Kernel:
    """A function of tensors run compiled or eagerly, as :func:`kernel_mode` decides."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self._compiled: Callable[..., Any] | None = None
        self.broken: str | None = None
        """Why compiling failed in ``auto`` mode (then this process runs the kernel eagerly)."""

    def __call__(self, elements: int, *args: Any) -> Any:
        """Run on ``args``; ``elements`` (per step) decides whether ``auto`` compiles."""
        mode = kernel_mode()
        if mode == "eager" or (mode == "auto" and (self.broken or elements < MIN_ELEMENTS)):
            return self.fn(*args)
        if self._compiled is None:
            config = torch._dynamo.config
            config.recompile_limit = max(config.recompile_limit, RECOMPILE_LIMIT)
            self._compiled = torch.compile(self.fn, dynamic=True, fullgraph=True)
        try:
            return self._compiled(*args)
        except Exception as err:  # noqa: BLE001 -- any compiler failure means: run eagerly
            if mode == "compiled":
                raise
            self.broken = f"{type(err).__name__}: {str(err).strip().splitlines()[0][:200]}"
            warnings.warn(f"{self.fn.__name__}: torch.compile failed, running eagerly "
                          f"({self.broken})", RuntimeWarning, stacklevel=2)
            return self.fn(*args)
