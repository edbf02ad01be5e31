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

import numpy as np

from .plan import PRODUCT_SHIFT, TRACE_TAU

ACC_BITS = 15
"""Unsigned width of the learning accumulator (lava W_ACCUMULATOR_U); weights are held << 7."""
WEIGHT_SHIFT = 7
FACTOR_MIN, FACTOR_MAX = -128, 127
"""Trace factors are clipped to 2^7 signed before the product."""
WEIGHT_MIN, WEIGHT_MAX = -256, 255
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


DECAY = float(np.exp(-1 / np.array([TRACE_TAU], float))[0])
"""Per-step trace decay factor, computed as Lava computes it."""


def decay(trace: np.ndarray, steps: int, random: float | None) -> np.ndarray:
    """A trace value decayed over an epoch's ``steps`` (fixed point when ``random`` is given)."""
    t = np.asarray(trace, float if random is None else np.int64)
    for _ in range(steps):
        v = DECAY * t
        if random is None:
            t = v
        else:
            frac = v % 1
            t = (np.floor(v) + (random < frac)).astype(np.int64)
    return t


def update_table(sign_mantissa: int, exponent: int, random: float) -> tuple[np.ndarray, int]:
    """Weight change (integer steps, before the 8-bit clip) for every product f * y of two
    clipped trace factors, and the table's offset: ``change = table[f * y + offset]``."""
    span = -FACTOR_MIN * -FACTOR_MIN
    q = np.arange(-span, span + 1, dtype=np.int64)
    acc = ((q * sign_mantissa) >> PRODUCT_SHIFT) << (exponent + WEIGHT_SHIFT)
    acc = np.clip(acc, -(2 ** ACC_BITS) - 1, 2 ** ACC_BITS - 1)
    low = acc & (2 ** WEIGHT_SHIFT - 1)
    return (acc >> WEIGHT_SHIFT) + (low > random * 2 ** WEIGHT_SHIFT), span


class LearningSynapse:
    """Weights of one LearningDense and its update: ``dw = sign c u0 (x1 - offset) y``."""

    def __init__(self, weights: np.ndarray, mantissa: int, exponent: int, offset: int,
                 fixed: bool, seed: int) -> None:
        self.weights = np.array(weights, np.int64 if fixed else float)
        self.sign_mantissa = -int(mantissa)
        self.exponent, self.offset, self.fixed = int(exponent), offset, fixed
        self.randoms = Randoms(seed) if fixed else None

    def epoch(self, steps: int, step: int, epoch: int, x1: np.ndarray, y: np.ndarray) -> None:
        """Apply one epoch's update. ``x1``: pre traces at the epoch end; ``y``: the signed post
        factor (y2 - y3, or y1), each as Lava's traces hold them; ``steps`` = t_epoch."""
        if not self.fixed:
            f = decay(x1, steps, None) - self.offset
            yd = decay(np.maximum(y, 0), steps, None) - decay(np.maximum(-y, 0), steps, None)
            c = self.sign_mantissa * 2.0 ** self.exponent
            rows, cols = np.flatnonzero(yd), np.flatnonzero(f)
            if rows.size and cols.size:
                self.weights[np.ix_(rows, cols)] += c * np.outer(yd[rows], f[cols])
            return
        rx, ry, rw = self.randoms.at(step, epoch)
        f = np.clip(decay(np.asarray(x1, np.int64), steps, rx) - self.offset, FACTOR_MIN, FACTOR_MAX)
        y = np.asarray(y, np.int64)
        yd = decay(np.maximum(y, 0), steps, ry) - decay(np.maximum(-y, 0), steps, ry)
        rows, cols = np.flatnonzero(yd), np.flatnonzero(f)
        if not rows.size or not cols.size:
            return
        table, offset = update_table(self.sign_mantissa, self.exponent, rw)
        if 2 * cols.size > len(f):  # dense enough: whole rows
            block = self.weights[rows]
            block += table[np.multiply.outer(yd[rows], f) + offset]
            np.clip(block, WEIGHT_MIN, WEIGHT_MAX, out=block)
            self.weights[rows] = block
        else:
            idx = np.ix_(rows, cols)
            block = self.weights[idx] + table[np.multiply.outer(yd[rows], f[cols]) + offset]
            self.weights[idx] = np.clip(block, WEIGHT_MIN, WEIGHT_MAX)
