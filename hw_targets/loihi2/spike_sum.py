"""Synaptic input ``W @ x`` of a synapse group, computed from the group's structure.

A group's matrix is the chip's truth (what Lava's ``Sparse`` holds, what ``check`` counts), but it
is expanded: a 3x3 conv over 32x28x28 maps is 6.5 M matrix entries, and a pooling stage folded
into the next conv multiplies its entries by the pool area. Reading it all every step is what made
the simulation slow. ``Factors`` recovers ``kernel @ pool`` (pool: 0/1, every input in at most one
window) and, for a convolution, the kernel itself, checked to expand back to exactly the group's
matrix; ``SpikeSum`` then sums per pooling window and convolves (im2col + one matrix product).
Inputs and weights are integers in fixed point and every sum stays far below 2**53, so the
float64 arithmetic gives exactly the matrix's integers.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp
from numpy.lib.stride_tricks import sliding_window_view

from .graph import ConvGeometry, Matrix, Synapse

IM2COL_BYTES = 32 * 2 ** 20
"""Largest im2col buffer: a batch is convolved in slices that fit it."""


@dataclass
class Factors:
    """A synapse group's matrix as ``kernel @ pool``, the kernel optionally a convolution."""

    kernel: Matrix
    pool: sp.csr_matrix | None
    conv: ConvGeometry | None

    @classmethod
    def of(cls, syn: Synapse) -> "Factors | None":
        """The group's factors, or None where its expanded matrix is all there is."""
        pool = syn.pool if syn.pool is not None and _one_window_each(syn.pool) else None
        conv = syn.conv if syn.pool is None or pool is not None else None
        kernel = conv.kernel_of(syn.weights) if conv is not None else None
        if kernel is None:
            if pool is None:
                return None
            return cls(syn.weights, pool, None)
        return cls(kernel, pool, conv)

    def map(self, f: Callable[[Matrix], Matrix]) -> "Factors":
        """The same factors with ``f`` (an elementwise weight rule such as clipping) on the kernel."""
        return replace(self, kernel=f(self.kernel))


def _one_window_each(pool: sp.csr_matrix) -> bool:
    """0/1 pooling where every input feeds at most one output: then ``kernel @ pool`` holds
    exactly the kernel's weights, and elementwise rules (clipping) commute with it."""
    cols = sp.csc_matrix(pool)
    return bool(np.all(np.diff(cols.indptr) <= 1) and np.all(cols.data == 1))


class SpikeSum:
    """``weights @ x`` for one input vector [n] or a batch [B, n]. With a conv kernel: im2col and
    one matrix product. Otherwise, for one vector, event-driven like the chip: only the fan-out
    rows of the inputs that are non-zero are read (work scales with the spike rate)."""

    def __init__(self, weights: Matrix, factors: Factors | None, dtype) -> None:
        self.dtype, self.pool, self.conv = dtype, None, None
        kernel = weights
        if factors is not None:
            kernel, self.conv = factors.kernel, factors.conv
            self.pool = None if factors.pool is None else sp.csr_matrix(factors.pool, dtype=dtype)
        if self.conv is not None:
            self.columns = np.asarray(kernel, float).reshape(kernel.shape[0], -1).T
        else:
            self.rows = sp.csr_matrix(sp.csr_matrix(kernel).T, dtype=dtype)

    @classmethod
    def of(cls, syn: Synapse, dtype) -> "SpikeSum":
        return cls(syn.matrix(), Factors.of(syn), dtype)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        batch = np.atleast_2d(np.asarray(x, self.dtype))
        if self.pool is not None:
            batch = np.asarray((self.pool @ batch.T).T)
        if self.conv is not None:
            out = self._convolve(batch)
        elif len(batch) == 1:
            active = np.flatnonzero(batch[0])
            out = self.rows[active].T.dot(batch[0, active])[None] if active.size \
                else np.zeros((1, self.rows.shape[1]), self.dtype)
        else:
            out = np.asarray((self.rows.T @ batch.T).T)
        return out.reshape(-1) if np.ndim(x) == 1 else out

    def _convolve(self, batch: np.ndarray) -> np.ndarray:
        g = self.conv
        (c, h, w), (_, _, kh, kw) = g.in_shape, g.kernel_shape
        (sy, sx), (py, px), (dy, dx) = g.stride, g.padding, g.dilation
        maps = np.pad(batch.reshape(-1, c, h, w).astype(float), ((0, 0), (0, 0), (py, py), (px, px)))
        win = sliding_window_view(maps, (dy * (kh - 1) + 1, dx * (kw - 1) + 1), axis=(2, 3))
        win = win[:, :, ::sy, ::sx, ::dy, ::dx]  # [B, c, h', w', kh, kw]
        ho, wo = win.shape[2:4]
        step = max(1, IM2COL_BYTES // (8 * ho * wo * self.columns.shape[0]))
        parts = []
        for i in range(0, len(batch), step):
            cols = win[i:i + step].transpose(0, 2, 3, 1, 4, 5).reshape(-1, self.columns.shape[0])
            out = (cols @ self.columns).reshape(-1, ho * wo, self.columns.shape[1])
            parts.append(out.transpose(0, 2, 1).reshape(len(out), -1))
        return np.concatenate(parts).astype(self.dtype)
