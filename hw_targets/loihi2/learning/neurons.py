"""Neuron-side arithmetic of on-chip rate-BP: eligibility (kappa), the readout's error, and how a
signed error or delta becomes a 7-bit third factor.

The Lava process models (``lava_graph``) and the emulator both call these, so the two can only
differ in the learning engine, which is Lava's own in Lava and ``engine`` in the emulator.
Units: a population's membrane v is in chip units (fixed: 64 s per lowered unit; float: lowered
units); the trained neuron's potential is the lowered one divided by ``potential_scale``
(see ``graph.Population``), and its surrogate acts there.
"""
from __future__ import annotations

import numpy as np


class Eligibility:
    """Rate-BP's per-neuron eligibility kappa = d rate / d input current, accumulated online over
    the T steps (RATEBP.md section 2; hard reset, reset detached: rho_t = 1 - s_t).

    Variants: "exact" (alpha/T sum_t e_t sig'(u_t) with e_1 = 1, e_{t+1} = 1 + lam (1 - s_t) e_t),
    "no-recursion" (e_t = 1: no per-neuron multiply-accumulate of e), "triangle" (the sigmoid
    derivative replaced by a triangle of the same peak and area: adds, abs, max), or both."""

    def __init__(self, variant: str, alpha: float, lam: float, threshold: float,
                 unit: np.ndarray, shape: tuple[int, ...]) -> None:
        self.triangle = variant.startswith("triangle")
        self.recursion = not variant.endswith("no-recursion")
        self.alpha, self.lam, self.threshold = alpha, lam, threshold
        self.unit = np.asarray(unit, float)
        """Chip potential per unit of the trained neuron's potential, per neuron."""
        self.total = np.zeros(shape)
        self.e = np.ones(shape)
        self.steps = 0

    def reset(self) -> None:
        self.total[:] = 0.0
        self.e[:] = 1.0
        self.steps = 0

    def update(self, v: np.ndarray, spikes: np.ndarray) -> None:
        """One step: v the membrane the threshold saw (before reset), spikes the step's output."""
        x = (np.asarray(v, float) - self.threshold) / self.unit
        if self.triangle:
            q = self.alpha / 4.0
            g = q * np.maximum(0.0, 1.0 - q * np.abs(x))
        else:
            sig = 1.0 / (1.0 + np.exp(-self.alpha * x))
            g = self.alpha * sig * (1.0 - sig)
        self.total += self.e * g if self.recursion else g
        if self.recursion:
            self.e = 1.0 + self.lam * (1.0 - spikes) * self.e
        self.steps += 1

    def kappa(self, potential_scale: np.ndarray) -> np.ndarray:
        """kappa per unit of lowered input current (the trained neuron's, / potential_scale)."""
        return self.total / (max(self.steps, 1) * potential_scale)


def softmax_error(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """dL/dlogits of the cross-entropy: softmax(logits) - onehot(label), rows of a batch."""
    z = np.asarray(logits, float)
    z = z - z.max(axis=-1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=-1, keepdims=True)
    p[np.arange(len(p)), np.asarray(labels, int)] -= 1.0
    return p


class ThirdFactor:
    """A signed error or delta, times a gain, as the third factor of a learning synapse.

    Fixed point: integers in [-levels, levels] (the chip's y traces are 7-bit unsigned; the sign
    picks y2 or y3), rounded stochastically (unbiased; one uniform number per neuron and window
    from this object's own stream, drawn whether or not the window learns, so every backend sees
    the same stream) or to nearest. Float: the scaled value itself."""

    def __init__(self, levels: int, fixed: bool, rounding: str, seed: int, size: int) -> None:
        self.levels, self.fixed, self.stochastic = levels, fixed, rounding == "stochastic"
        self.rng = np.random.default_rng(seed)
        self.size = size

    def draw(self, windows: int) -> np.ndarray:
        """The uniform numbers of the next ``windows`` windows, [windows, size]."""
        return self.rng.random((windows, self.size)) if self.fixed and self.stochastic \
            else np.zeros((windows, self.size))

    def quantize(self, scaled: np.ndarray, uniform: np.ndarray) -> tuple[np.ndarray, int, int]:
        """(third factor, how many saturated, how many are zero) of already scaled values."""
        if not self.fixed:
            return scaled, 0, int(np.count_nonzero(scaled == 0))
        q = np.floor(scaled + uniform) if self.stochastic else np.rint(scaled)
        saturated = int(np.count_nonzero(np.abs(q) > self.levels))
        q = np.clip(q, -self.levels, self.levels)
        return q, saturated, int(np.count_nonzero(q == 0))


def offset_payloads(error_q: np.ndarray, offset: int) -> tuple[np.ndarray, np.ndarray]:
    """Offset-binary graded spikes carrying a signed error to a feedback synapse: first the pure
    offset, then offset + e (both x2: Lava's OVERWRITE sets x1 = payload / 2)."""
    return np.full_like(error_q, 2.0 * offset), 2.0 * (offset + error_q)


def count_payload(counts: np.ndarray, impulse: int, offset: int) -> np.ndarray:
    """The count spike that sets a pre trace to ``offset + impulse * count`` (OVERWRITE)."""
    return 2.0 * (offset + impulse * np.asarray(counts, float))


def hidden_scaled_delta(kappa: np.ndarray, diff: np.ndarray, decode: float,
                        gain: np.ndarray) -> np.ndarray:
    """A hidden neuron's third factor before rounding: gain * kappa * (W_out^T e), the last from
    the difference of its two feedback sums (``decode`` converts it to lowered units)."""
    return gain * (kappa * (decode * np.asarray(diff, float)))
