"""Vectorized emulator of the Lava process graph, bit-exact to Lava's fixed_pt models.

Lava runs one OS process per Lava process and one sample at a time (about 1 ms per step for a
small MLP); this steps a whole batch with numpy. It reproduces what ``lava_backend`` builds:
``LIFReset`` neurons (u 24-bit wrapping, v 24-bit saturating, sign-magnitude 12-bit decays,
``vth << 6``), ``Dense``/``Sparse``/``DelaySparse`` synapses (sum, then ``<< weight_exp``, one step
of delay plus the group's extra delay) and the graded input source. Integer sums are computed
in float64, which is exact below 2**53.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np

from .graph import INPUT, Synapse
from .quantize import ChipNet, ChipPopulation
from .spike_sum import SpikeSum

UV_LIMIT = 2 ** 23


@dataclass
class RunResult:
    logits: np.ndarray
    """[B, classes]."""
    spike_counts: dict[str, np.ndarray]
    """Per population: spikes per sample within its T-step window, [B]."""
    spikes: dict[str, np.ndarray] | None = None
    """If recorded: per population, [B, window, n] over the whole window."""
    saturation: dict[str, int] = field(default_factory=dict)
    """Fixed point: u wraps + v clips per population (should be 0)."""


def reset_step(pop: ChipPopulation, window: int) -> int:
    """Time step (mod window) at which a population's first real input arrives: reset there."""
    return (pop.depth + 1) % window


def _decay(x: np.ndarray, d: int) -> np.ndarray:
    p = x * (4096 - d)
    return np.sign(p) * (np.abs(p) >> 12)


def _apply(syn: Synapse, spike_sum: SpikeSum, x: np.ndarray, fixed: bool) -> np.ndarray:
    """Synaptic input [B, n_out] from source activity [B, n_src]."""
    acc = spike_sum(x)
    if not fixed:
        return acc
    return acc << syn.weight_exp if syn.weight_exp > 0 else acc >> -syn.weight_exp


class LIFState:
    """u and v of one population over a batch, stepped with Lava's LIF arithmetic (fixed_pt:
    24-bit u wrapping, v saturating, 12-bit sign-magnitude decays; floating_pt: plain)."""

    def __init__(self, pop: ChipPopulation, batch: int, fixed: bool) -> None:
        dtype = np.int64 if fixed else float
        self.pop, self.fixed = pop, fixed
        self.u = np.zeros((batch, pop.size), dtype)
        self.v = np.zeros((batch, pop.size), dtype)
        self.bias = (np.asarray(pop.bias_mant, np.int64) << int(pop.bias_exp)) if fixed \
            else np.asarray(pop.bias_mant, float)
        self.threshold = (int(pop.vth) << 6) if fixed else pop.vth
        self.saturated = 0

    def reset(self) -> None:
        self.u[:] = 0
        self.v[:] = 0

    def integrate(self, a: np.ndarray) -> np.ndarray:
        """One step's input: the membrane v the threshold is compared with (before reset)."""
        p = self.pop
        if not self.fixed:
            self.u = self.u * (1 - p.du) + a
            self.v = self.v * (1 - p.dv) + self.u + self.bias
            return self.v
        u = _decay(self.u, int(p.du) + 1) + (a << 6)
        if u.max(initial=0) > UV_LIMIT or u.min(initial=0) <= -UV_LIMIT:  # rare: wrap 24-bit u
            wrapped = np.where(u > UV_LIMIT, u - 2 * UV_LIMIT, u)
            wrapped = np.where(wrapped <= -UV_LIMIT, u + 2 * UV_LIMIT, wrapped)
            self.saturated += int(np.count_nonzero(wrapped != u))
            u = wrapped
        v = _decay(self.v, int(p.dv)) + u + self.bias
        if v.max(initial=0) >= UV_LIMIT or v.min(initial=0) <= -UV_LIMIT:  # rare: saturate v
            clipped = np.clip(v, -UV_LIMIT + 1, UV_LIMIT - 1)
            self.saturated += int(np.count_nonzero(clipped != v))
            v = clipped
        self.u, self.v = u, v
        return self.v

    def fire(self) -> np.ndarray:
        """Spikes where v exceeds the threshold; those neurons reset to 0."""
        s = self.v > self.threshold
        self.v[s] = 0
        return s

    def step(self, a: np.ndarray) -> np.ndarray:
        self.integrate(a)
        return self.fire()


def spike_sums(chip: ChipNet) -> dict[tuple[str, int], SpikeSum]:
    """Every synapse group's summation (building them costs ~1 s per big conv: reuse)."""
    dtype = np.int64 if chip.precision == "fixed" else float
    return {(p.name, i): SpikeSum.of(syn, dtype)
            for p in chip.populations for i, syn in enumerate(p.synapses)}


def emulate(chip: ChipNet, payload: np.ndarray, record: bool | Collection[str] = False,
            sums: dict[tuple[str, int], SpikeSum] | None = None) -> RunResult:
    """Run one batch of encoded inputs ([B, n_in], see ``ChipNet.encode``) for one window;
    ``record``: True keeps every population's spikes, a collection of names only theirs;
    ``sums`` from :func:`spike_sums` (built here if not given)."""
    fixed = chip.precision == "fixed"
    sums = sums or spike_sums(chip)
    batch, window, steps = len(payload), chip.window, chip.timesteps
    states = {p.name: LIFState(p, batch, fixed) for p in chip.populations}
    zero = np.int64(0) if fixed else 0.0
    queues = {(p.name, i): deque([zero] * (1 + s.delay))
              for p in chip.populations for i, s in enumerate(p.synapses)}
    counts = {p.name: np.zeros(batch, np.int64) for p in chip.populations if not p.readout}
    kept = [p.name for p in chip.populations if not p.readout
            and (record is True or (record is not False and p.name in record))]
    trains = {name: np.zeros((batch, window, states[name].pop.size), bool) for name in kept} \
        if kept else None
    outputs: dict[str, np.ndarray] = {INPUT: payload}
    for t in range(1, window + 1):
        for pop in chip.populations:
            st = states[pop.name]
            if t % window == reset_step(pop, window):
                st.reset()
            a = sum(queues[pop.name, i][0] for i in range(len(pop.synapses)))
            a = np.broadcast_to(a, st.u.shape) if np.ndim(a) == 0 else a
            outputs[pop.name] = st.step(a)
            if not pop.readout:
                if pop.depth < t <= pop.depth + steps:
                    counts[pop.name] += outputs[pop.name].sum(axis=1)
                if trains is not None and pop.name in trains:
                    trains[pop.name][:, t - 1] = outputs[pop.name]
        for pop in chip.populations:
            for i, syn in enumerate(pop.synapses):
                q = queues[pop.name, i]
                q.popleft()
                q.append(_apply(syn, sums[pop.name, i], outputs[syn.source], fixed))
    readout = states[chip.readout.name]
    return RunResult(chip.logits(readout.v), counts, trains,
                     {name: st.saturated for name, st in states.items()})


def emulate_batches(chip: ChipNet, images: np.ndarray, batch_size: int = 256,
                    progress=None, sums: dict[tuple[str, int], SpikeSum] | None = None) -> RunResult:
    """``emulate`` over a large set in batches; ``progress`` is called with each batch's size."""
    parts, sums = [], sums or spike_sums(chip)
    for start in range(0, len(images), batch_size):
        parts.append(emulate(chip, chip.encode(images[start:start + batch_size]), sums=sums))
        if progress is not None:
            progress(len(parts[-1].logits))
    return RunResult(np.concatenate([p.logits for p in parts]),
                     {k: np.concatenate([p.spike_counts[k] for p in parts]) for k in parts[0].spike_counts},
                     None,
                     {k: sum(p.saturation[k] for p in parts) for k in parts[0].saturation})
