"""Compile a lowered network to Lava LIF/Dense parameters, in fixed point or float.

Fixed point (Lava 0.10 ``fixed_pt`` = Loihi 2 bit widths, see spec.toml). A LIF compares v
against ``vth << 6`` and adds ``a << 6`` where ``a = (sum of weights) << weight_exp``: weights and
threshold share "a-units". Each population therefore has one scale ``s`` (a-units per unit of
float membrane potential), shared by every synapse group summed into it (a residual fan-in).
Spikes are binary, so scales of different populations are independent.

Scale choice (threshold-first, max-based): ``s = VTH_TARGET / theta`` puts the threshold at
2**12 (rounding error < 1e-4, 32x headroom below the 17-bit limit for v and input bursts). Each
synapse group then picks ``weight_exp`` so its largest |weight| (or a percentile of them, if
asked) lands on 8 bits; nothing is clipped by default. Mixed-sign weights are rounded to even
values in [-256, 254] because Lava's 8-bit mixed-sign mode drops the LSB; single-sign groups use
0..255. ``s`` shrinks only if a weight would need an exponent above the chip's range or a bias
would not fit 13-bit mantissa << 7. The readout integrator (no neuron in NIR) instead scales so
T steps of its largest possible input stay below 2**16 (v is 24-bit incl. the << 6).

Input: the raw image arrives as 8-bit graded spikes (payload round(255 x)) into a Dense with
num_message_bits = 8; normalisation was folded into the first layer, so for 8-bit images the
input is exact.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import scipy.sparse as sp

from .graph import INPUT, Matrix, Network, Population, Synapse
from .spec import Spec, load_spec

Precision = Literal["fixed", "float"]

VTH_TARGET = 2 ** 12
READOUT_RANGE = 2 ** 16
INPUT_BITS = 8
FLOAT_NEVER = 1e300
"""Float readout threshold: the integrator must never fire."""


@dataclass
class ChipPopulation:
    """Parameters of one Lava LIF(Reset) process (integers in fixed point)."""

    name: str
    size: int
    depth: int
    readout: bool
    du: float
    dv: float
    vth: float
    bias_mant: np.ndarray
    bias_exp: int
    synapses: list[Synapse]
    scale: float
    """a-units per unit of float membrane potential (1 in float)."""


@dataclass
class ChipNet:
    precision: Precision
    input_shape: tuple[int, ...]
    input_scale: float
    """Input payload = round(x * input_scale) in fixed point, x * 1 in float."""
    timesteps: int
    populations: list[ChipPopulation]

    @property
    def readout(self) -> ChipPopulation:
        return self.populations[-1]

    @property
    def window(self) -> int:
        return self.timesteps + self.readout.depth

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Raw images in [0, 1] -> input payload [B, n_in]."""
        x = np.asarray(images, float).reshape(len(images), -1) * self.input_scale
        return np.rint(x).astype(np.int64) if self.precision == "fixed" else x

    def logits(self, v_readout: np.ndarray) -> np.ndarray:
        """Readout membrane after T steps -> mean readout over T (the NIR logits)."""
        unit = 64.0 * self.readout.scale if self.precision == "fixed" else 1.0
        return np.asarray(v_readout, float) / (unit * self.timesteps)


@dataclass
class LayerReport:
    name: str
    scale: float
    weight_exp: list[int]
    weight_rel_error: float
    weight_clipped: float
    vth: float
    threshold_rel_error: float
    bias_clipped: float
    worst_input: float
    """Largest per-step |a| if every input fired at once, in a-units (u wraps above 2**17)."""
    warnings: list[str] = field(default_factory=list)


def _grid(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Round to Lava's 8-bit weight grid; returns (integers, clipped mask)."""
    mixed = values.min(initial=0) < 0 < values.max(initial=0)
    if mixed:
        q, lo, hi = 2 * np.rint(values / 2), -256, 254
    elif values.max(initial=0) > 0:
        q, lo, hi = np.rint(values), 0, 255
    else:
        q, lo, hi = np.rint(values), -255, 0
    return np.clip(q, lo, hi).astype(np.int64), (q < lo) | (q > hi)


def mixed_grid(values: np.ndarray, scale: float, exp: int) -> tuple[np.ndarray, np.ndarray]:
    """Weights in float units (a synapse group not from the input, into a population of scale
    ``scale``) as even integers in [-256, 254] at exponent ``exp``, and the clipped mask: the
    mixed-sign grid a learning synapse keeps whatever the signs (Lava's LearningDense runs in
    mixed sign mode and drops the LSB of its initial weights)."""
    q = 2 * np.rint(np.asarray(values, float) * scale / 2.0 ** (exp + 1))
    return np.clip(q, -256, 254).astype(np.int64), (q < -256) | (q > 254)


def _values(m: Matrix) -> np.ndarray:
    return m.data if sp.issparse(m) else np.asarray(m).reshape(-1)


def _with_values(m: Matrix, values: np.ndarray) -> Matrix:
    if sp.issparse(m):
        out = sp.csr_matrix((values, m.indices.copy(), m.indptr.copy()), shape=m.shape)
        out.eliminate_zeros()
        return out
    return values.reshape(m.shape)


def _row_abs_sum(syn: Synapse) -> np.ndarray:
    m = syn.matrix()
    return np.asarray(abs(m).sum(axis=1)).reshape(-1)


def _quantize(values: np.ndarray, g: float, scale: float, e: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Integers on Lava's grid at exponent ``e``, clipped mask, squared error in float units."""
    q, clip = _grid(values * g * scale / 2.0 ** e)
    return q, clip, float(np.sum((q * 2.0 ** e / (g * scale) - values) ** 2))


SPLITS = ("none", "input", "all")
"""Which synapse groups get a second, residual 8-bit group (see ``compile_network``)."""
RESIDUAL_SHIFT = 7
"""Residual group of a split input layer: exponent = coarse one minus this (at most; not below
the chip's minimum exponent). The coarse group's rounding error is within one step, so the
residual fits 8 bits after a shift of 7."""


def _fixed_population(pop: Population, timesteps: int, spec: Spec, percentile: float,
                      weight_exp: bool, exponent: str = "max", split: str = "none"
                      ) -> tuple[ChipPopulation, LayerReport]:
    emin, emax = (spec["synapse.weight_exp_min"], spec["synapse.weight_exp_max"]) if weight_exp else (0, 0)
    vth_max = 2 ** spec["neuron.vth_bits"] - 1
    mant_max = 2 ** (spec["neuron.bias_mant_bits"] - 1) - 1
    bexp_max = 2 ** spec["neuron.bias_exp_bits"] - 1
    gains = [1.0 / (2 ** INPUT_BITS - 1) if s.source == INPUT else 1.0 for s in pop.synapses]
    if pop.readout:
        worst = sum(_row_abs_sum(s) for s in pop.synapses) + np.abs(pop.bias)
        scale = READOUT_RANGE / (timesteps * max(float(worst.max()), 1e-12))
    else:
        scale = VTH_TARGET / pop.theta
    refs = []
    for syn, g in zip(pop.synapses, gains):
        mags = np.abs(_values(syn.weights)) * g
        mags = mags[mags > 0]
        refs.append(float(np.percentile(mags, percentile)) if mags.size else 0.0)
    for ref in refs:  # the largest weight must fit 254 << emax
        if ref > 0:
            scale = min(scale, 254 * 2.0 ** emax / ref)
    bmax = float(np.abs(pop.bias).max(initial=0))
    if bmax > 0:
        scale = min(scale, mant_max * 2.0 ** bexp_max / (64 * bmax))

    synapses, exps, err_num, err_den, clipped, total, worst = [], [], 0.0, 0.0, 0, 0, 0.0
    for syn, g, ref in zip(pop.synapses, gains, refs):
        e = int(np.clip(math.ceil(math.log2(scale * ref / 254)), emin, emax)) if ref > 0 else 0
        orig = _values(syn.weights)
        q, clip, sq_err = _quantize(orig, g, scale, e)
        if exponent == "mse":  # finer steps if clipping the largest weights costs less error
            for finer in range(e - 1, max(e - 3, emin - 1), -1):
                cand = _quantize(orig, g, scale, finer)
                if cand[2] < sq_err:
                    (q, clip, sq_err), e = cand, finer
        parts = [(q, e)]
        shift = min(RESIDUAL_SHIFT, e - emin)
        if shift > 0 and (split == "all" or (split == "input" and syn.source == INPUT)):
            # a second 8-bit group from the input carries what the first rounded away:
            # W ~ q 2^e + r 2^(e-shift), both summed into the same neurons (~16-bit weights)
            rest = orig * g * scale / 2.0 ** e - q
            r, _ = _grid(rest * 2.0 ** shift)
            parts.append((r, e - shift))
            approx = (q + r * 2.0 ** -shift) * 2.0 ** e / (g * scale)
            sq_err = float(np.sum((approx - orig) ** 2))
        err_num += sq_err
        err_den += float(np.sum(orig ** 2))
        clipped += int(clip.sum())
        total += clip.size
        for values, exp in parts:
            chip = replace(syn, weights=_with_values(syn.weights, values), weight_exp=exp)
            x_max = 2 ** INPUT_BITS - 1 if syn.source == INPUT else 1
            worst += float(np.max(_row_abs_sum(chip), initial=0)) * x_max * 2.0 ** exp
            synapses.append(chip)
            exps.append(exp)

    if pop.readout:
        vth, dv, theta_err = vth_max, 0, 0.0
    else:
        vth = int(min(max(round(pop.theta * scale), 1), vth_max))
        theta_err = abs(vth / scale - pop.theta) / pop.theta
        bits = spec["neuron.decay_bits"]
        dv = int(round((1.0 - pop.lam) * 2 ** bits))
        if not 0 <= dv < 2 ** bits:
            raise ValueError(f"neuron {pop.name!r}: decay 1 - lam = {1.0 - pop.lam:g} needs "
                             f"dv = {dv}, off Loihi's {bits}-bit range 0..{2 ** bits - 1} (tau "
                             f"must exceed dt by 1/{2 ** (bits + 1)} at least)")
    b = pop.bias * scale * 64
    bexp = next((k for k in range(bexp_max + 1) if np.abs(np.rint(b / 2 ** k)).max(initial=0) <= mant_max),
                bexp_max)
    mant_raw = np.rint(b / 2 ** bexp)
    mant = np.clip(mant_raw, -mant_max - 1, mant_max).astype(np.int64)
    report = LayerReport(pop.name, scale, exps, math.sqrt(err_num / err_den) if err_den else 0.0,
                         clipped / max(total, 1), vth, theta_err,
                         float(np.mean(mant != mant_raw)), worst)
    if report.weight_clipped > 0:
        report.warnings.append(f"{report.weight_clipped:.2%} of weights clipped to 8 bits")
    if report.bias_clipped > 0:
        report.warnings.append(f"{report.bias_clipped:.2%} of biases clipped to 13-bit mantissa")
    if worst >= 2 ** (spec["neuron.u_bits"] - 7):
        report.warnings.append(f"worst-case input {worst:.0f} a-units could wrap the 24-bit current")
    chip = ChipPopulation(pop.name, pop.size, pop.depth, pop.readout, 2 ** spec["neuron.decay_bits"] - 1,
                          dv, vth, mant, bexp, synapses, scale)
    return chip, report


def dequantize(pop: ChipPopulation) -> ChipPopulation:
    """A fixed-point population's parameters (weights, bias, threshold, decay) back in float
    units, to run with float arithmetic: what its quantization alone costs, without the chip's
    integer truncations."""
    s = pop.scale
    synapses = [replace(syn, weight_exp=0, weights=_with_values(
        syn.weights, _values(syn.weights) * 2.0 ** syn.weight_exp
        / (s / (2 ** INPUT_BITS - 1) if syn.source == INPUT else s))) for syn in pop.synapses]
    bias = np.asarray(pop.bias_mant, float) * 2.0 ** pop.bias_exp / (64 * s)
    vth = FLOAT_NEVER if pop.readout else pop.vth / s
    # fixed du = 2**decay_bits - 1 (no current memory), so du + 1 is the decay denominator
    return ChipPopulation(pop.name, pop.size, pop.depth, pop.readout, 1.0, pop.dv / (pop.du + 1),
                          vth, bias, 0, synapses, 1.0)


def _float_population(pop: Population) -> ChipPopulation:
    vth = FLOAT_NEVER if pop.readout else pop.theta
    return ChipPopulation(pop.name, pop.size, pop.depth, pop.readout, 1.0, 1.0 - pop.lam, vth,
                          pop.bias.astype(float), 0, list(pop.synapses), 1.0)


def compile_network(net: Network, precision: Precision = "fixed", *, percentile: float = 100.0,
                    weight_exp: bool = True, exponent: str = "max", split: str = "input",
                    spec: Spec | None = None) -> tuple[ChipNet, list[LayerReport]]:
    """Lava parameters for every population, plus the quantization report (empty in float).

    ``percentile`` < 100 lets the largest weights clip to gain resolution for the rest;
    ``weight_exp=False`` keeps every exponent 0 (what the netx format can express).
    ``exponent="mse"`` picks, per group, the exponent (max-based or up to 2 finer) with the least
    squared weight error, clipping included. ``split="input"`` (default) / ``"all"`` gives the
    groups from the input / every group a second 8-bit group of the same connectivity carrying the
    first's rounding residual at a 2^-7 finer exponent (~16-bit weights; twice those synapses).
    The input layer's rounding errors pass through every later layer (the largest single-layer
    loss measured, docs/loihi2.md) while its synapses are the fewest, hence the default.
    """
    if precision == "float":
        pops = [_float_population(p) for p in net.populations]
        return ChipNet("float", net.input_shape, 1.0, net.meta.timesteps, pops), []
    if precision != "fixed":
        raise ValueError(f"precision must be 'fixed' or 'float', got {precision!r}")
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    spec = spec or load_spec()
    if exponent not in ("max", "mse"):
        raise ValueError(f"exponent must be 'max' or 'mse', got {exponent!r}")
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    results = [_fixed_population(p, net.meta.timesteps, spec, percentile, weight_exp, exponent,
                                 split) for p in net.populations]
    pops = [c for c, _ in results]
    return (ChipNet("fixed", net.input_shape, 2.0 ** INPUT_BITS - 1, net.meta.timesteps, pops),
            [r for _, r in results])
