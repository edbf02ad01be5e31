"""The learning engine's epoch update, computed as Lava 0.10's LearningDense models compute it.

Only the rules this tool generates are covered: ``dw = s c u0 (x1 - offset) y`` summed over
post traces, evaluated at the epoch end (``u0``), pre trace x1 set by OVERWRITE graded spikes,
post traces y1..y3 from ports (Loihi3F). What Lava does at an epoch end (lava
``magma/core/model/py/connection.py``, ``learning/learning_rule_applier.py``, ``random.py``):

1. trace history: every trace decays from its current value over the t_epoch steps,
   ``x <- x exp(-1/tau)`` each step; fixed point floors and rounds up when one random number
   (per trace group and epoch) is below the fraction;
2. per product, fixed point: ``((f * y * mantissa) >> 3) << (exponent + 7)`` with the factors
   clipped to 8 bits signed, added to the weight held as ``w << 7`` (16-bit, saturating);
3. stochastic rounding of the accumulator back to the weight (one random number per epoch for
   every synapse), then the 8-bit clip (mixed sign: -256..255). Floating point: ``w + c f y``.

Random streams (fixed point): x traces use ``default_rng(rng_seed)``, y traces
``default_rng(rng_seed + 2)``, both drawn once at start and twice per time step; the accumulator
rounding uses ``default_rng(2)`` whatever the seed, drawn once at start and once per epoch, so
every LearningDense of a graph rounds with the same numbers.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.linalg import blas

from .plan import SPEC, PRODUCT_SHIFT, TRACE_BITS, TRACE_TAU

ACC_BITS = SPEC["learning.accumulator_bits"] - 1
"""Unsigned width of the learning accumulator (lava W_ACCUMULATOR_U)."""
WEIGHT_SHIFT = ACC_BITS + 1 - (SPEC["learning.weight_bits"] + 1)
"""Weights are held as ``w << 7`` in the accumulator (16-bit signed minus 9-bit signed weight)."""
FACTOR_MIN, FACTOR_MAX = -(2 ** TRACE_BITS), 2 ** TRACE_BITS - 1
"""Trace factors are clipped to 2^7 signed before the product."""
WEIGHT_MIN, WEIGHT_MAX = -(2 ** SPEC["learning.weight_bits"]), 2 ** SPEC["learning.weight_bits"] - 1
CONN_VAR_SEED = 2
"""lava ConnVarRandom's default seed: LearningDense never passes its rng_seed to it."""


class Stream:
    """One numpy random stream of Lava's learning models, indexed by draw number."""

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.values = np.empty(0)

    def __getitem__(self, index: int) -> float:
        if index >= len(self.values):
            more = max(4096, index + 1 - len(self.values), len(self.values))
            self.values = np.concatenate([self.values, self.rng.random(more)])
        return float(self.values[index])


class Randoms:
    """The random numbers a LearningDense with ``rng_seed = seed`` uses at each epoch end."""

    def __init__(self, seed: int) -> None:
        self.x, self.y, self.w = Stream(seed), Stream(seed + 2), Stream(CONN_VAR_SEED)

    def at(self, step: int, epoch: int) -> tuple[float, float, float]:
        """(x decay, y decay, weight rounding) at global time step ``step`` = end of ``epoch``
        (1-based): the trace streams have advanced twice per step since their first draw."""
        return self.x[2 * step], self.y[2 * step], self.w[epoch]


DECAY = {precision: float(np.exp(-1 / np.array([tau], float))[0]) for precision, tau in TRACE_TAU.items()}
"""Per-step trace decay factor per precision, computed as Lava computes it (1.0 in float)."""


def decay(trace: np.ndarray, steps: int, random: float | None) -> np.ndarray:
    """A trace value decayed over an epoch's ``steps`` (fixed point when ``random`` is given).
    Fixed point uses one random number for every step of the epoch, so once a step leaves the
    values unchanged, so do the remaining ones."""
    t = np.asarray(trace, float if random is None else np.int64)
    factor = DECAY["float" if random is None else "fixed"]
    if random is None:
        for _ in range(steps if factor != 1.0 else 0):  # float traces: factor 1.0 (TRACE_TAU)
            t = factor * t
        return t
    for _ in range(steps):
        v = factor * t
        new = (np.floor(v) + (random < v % 1)).astype(np.int64)
        if np.array_equal(new, t):
            break
        t = new
    return t


def weight_steps(products: np.ndarray, sign_mantissa: int, exponent: int, random: float) -> np.ndarray:
    """Weight change (integer steps, before the 8-bit clip) of each product ``f * y`` of two
    clipped trace factors: the accumulator arithmetic, then rounding with the epoch's number."""
    q = np.asarray(products, np.int64)
    acc = ((q * sign_mantissa) >> PRODUCT_SHIFT) << (exponent + WEIGHT_SHIFT)
    acc = np.clip(acc, -(2 ** ACC_BITS) - 1, 2 ** ACC_BITS - 1)
    low = acc & (2 ** WEIGHT_SHIFT - 1)
    return (acc >> WEIGHT_SHIFT) + (low > random * 2 ** WEIGHT_SHIFT)


EXACT_FLOAT32 = 2 ** 24
"""float32 adds integers exactly below this; forward sums of 8-bit weights and small payloads
over a few thousand inputs stay below it, and halve the memory a sum reads."""


class LearningSynapse:
    """Weights of one LearningDense, its forward sums and its update ``dw = sign c u0 (x1 -
    offset) y``. The weights are kept transposed ([pre, post]: the rows of active inputs gather
    contiguously) as floats: float32 in fixed point when every sum of ``max_payload``-sized
    inputs stays an exact integer in it, else float64."""

    def __init__(self, weights: np.ndarray, mantissa: int, exponent: int, offset: int,
                 fixed: bool, seed: int, max_payload: float = 255.0) -> None:
        n_pre = np.shape(weights)[1]
        self.dtype = np.float32 if fixed and (-WEIGHT_MIN) * max_payload * n_pre < EXACT_FLOAT32 \
            else float
        self.sign_mantissa = -int(mantissa)
        self.exponent, self.offset, self.fixed = int(exponent), offset, fixed
        self.randoms = Randoms(seed) if fixed else None
        self.set(weights)

    def set(self, weights: np.ndarray) -> None:
        """Replace the weights ([post, pre]; a host write)."""
        self.matrix_t = np.ascontiguousarray(np.asarray(weights).T, dtype=self.dtype)
        self._ahead: list[tuple[int, np.ndarray]] = []
        self._changes: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None

    @property
    def weights(self) -> np.ndarray:
        """[post, pre]: integers in fixed point."""
        w = self.matrix_t.T
        return np.rint(w).astype(np.int64) if self.fixed else np.array(w)

    def forward(self, pre: np.ndarray) -> np.ndarray:
        """Summed input [B, T, n_post] of pre-synaptic activity [B, T, n_pre] (not shifted)."""
        b, T, n = pre.shape
        flat = pre.reshape(b * T, n)
        active = np.flatnonzero(flat.any(axis=0))
        if 2 * active.size < n:
            out = flat[:, active].astype(self.dtype) @ self.matrix_t[active]
        else:
            out = flat.astype(self.dtype) @ self.matrix_t
        return out.reshape(b, T, -1)

    @property
    def exact_sums(self) -> bool:
        """Are forward sums exact integers whatever their order (fixed point in float32)?"""
        return self.fixed and self.dtype == np.float32

    def prefetch(self, pre: np.ndarray, windows: Sequence[int]) -> None:
        """The summed inputs of coming ``windows`` whose activity ``pre`` [K, T, n_pre] is known,
        at today's weights, in one product (the weights are read once, not K times);
        :meth:`forward_next` then adds the changes made since. Only where sums are exact in any
        order (``exact_sums``), so the result equals a fresh :meth:`forward` bit for bit."""
        if not self.exact_sums:
            raise ValueError("prefetch needs fixed-point weights summed exactly in float32")
        self._ahead = list(zip(windows, self.forward(pre)))
        self._changes = []

    def forward_next(self, pre: np.ndarray, window: int) -> np.ndarray:
        """Summed input [1, T, n_post] of prefetched ``window`` (the next one), whose activity is
        ``pre`` [1, T, n_pre], at the current weights."""
        expected, acc = self._ahead.pop(0)
        if expected != window:
            raise RuntimeError(f"window {window} asked for, {expected} prefetched next")
        for cols, rows, change in self._changes or ():
            acc[:, rows] += pre[0][:, cols].astype(self.dtype) @ change
        if not self._ahead:
            self._changes = None  # nothing left to correct
        return acc[None]

    @property
    def prefetched(self) -> int:
        """Windows prefetched and not yet read."""
        return len(self._ahead)

    def epoch(self, steps: int, step: int, epoch: int, x1: np.ndarray, y: np.ndarray) -> None:
        """Apply one epoch's update. ``x1``: pre traces at the epoch end; ``y``: the signed post
        factor (y2 - y3, or y1), each as Lava's traces hold them; ``steps`` = t_epoch."""
        rx, ry, rw = self.randoms.at(step, epoch) if self.fixed else (None, None, None)
        y = np.asarray(y, np.int64 if self.fixed else float)
        yd = np.sign(y) * decay(np.abs(y), steps, ry)  # y2 (y > 0) and y3 (y < 0) decay alike
        if not self.fixed:
            f = decay(x1, steps, None) - self.offset
            c = self.sign_mantissa * 2.0 ** self.exponent
            if np.any(f) and np.any(yd):  # rank-1 update in place ([post, pre] column-major view)
                blas.dger(c, yd, f, a=self.matrix_t.T, overwrite_a=True)
            return
        # decay is element-wise with one random number per epoch, and a pre trace takes few
        # values (offset + k * count): decay each value once
        x1 = np.asarray(x1, np.int64)
        low = int(x1.min())
        factor = np.clip(decay(np.arange(low, int(x1.max()) + 1), steps, rx) - self.offset,
                         FACTOR_MIN, FACTOR_MAX)
        which = x1 - low
        rows, cols = np.flatnonzero(yd), np.flatnonzero(factor[which])
        if not rows.size or not cols.size:
            return
        # the change depends on f * y only (f * y = 0 changes nothing: a zero accumulator does
        # not round up): one row of changes per trace value, over the post neurons with y != 0
        changes = weight_steps(np.multiply.outer(factor, yd[rows]), self.sign_mantissa,
                               self.exponent, rw).astype(self.dtype)
        at = (cols[:, None] * self.matrix_t.shape[1] + rows).ravel()
        flat = self.matrix_t.reshape(-1)
        before = flat.take(at)
        block = before + changes[which[cols]].ravel()
        np.minimum(np.maximum(block, WEIGHT_MIN, out=block), WEIGHT_MAX, out=block)
        flat.put(at, block)
        if self._changes is not None:  # prefetched sums still to correct
            self._changes.append((cols, rows, (block - before).reshape(cols.size, rows.size)))
