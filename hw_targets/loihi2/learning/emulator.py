"""The learning graph in numpy: bit-exact to Lava fixed_pt, equal to floating_pt to float precision.

Populations that no learning changes (frozen layers up to the learning ones, e.g. every conv
layer) run batched through the inference emulator once, keeping only what the learning head
receives: the pre-synaptic activity of each learning layer (spikes, or pooled spike counts for
a relay) and the summed frozen input of the head populations. The head (learning populations
and the readout) then runs window by window, in local time t = 1..T of each population (the
Lava graph's delays only shift these), applying the learning engine's update (``engine``) at
every window end. Windows that do not learn (held-out evaluation) run batched.

What each window records is what the Lava processes record (see ``PRE_RECORD``, ``FACTOR_RECORD``), so the two
backends are compared record by record.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from ..emulator import LIFState, _apply, emulate, spike_sums
from .engine import LearningSynapse
from .neurons import (Eligibility, ThirdFactor, count_payload, hidden_scaled_delta, offset_payloads,
                      softmax_error)
from .plan import COUNT_OFFSET, ERROR_OFFSET, LearningPlan

PRE_RECORD = ("spikes", "active")
"""Per window, a pre population: spikes (pooled count for a relay) and neurons with any."""
AHEAD = 8
"""Learning windows whose static inputs are summed in one product (fixed point; each window's
sum then takes the updates made since its prefetch: a few small products)."""
FACTOR_RECORD = ("saturated", "zero", "abs_sum", "nonzero")
"""Per window, a third factor (readout error or hidden delta) as sent: clipped, zero, sum of
|values| and count of non-zero values."""


def factor_record(q: np.ndarray, saturated: int, zero: int) -> np.ndarray:
    return np.array([saturated, zero, float(np.abs(q).sum()), np.count_nonzero(q)], float)


def pre_record(counts: np.ndarray) -> np.ndarray:
    return np.array([counts.sum(), np.count_nonzero(counts)], float)


@dataclass
class LearnRun:
    """Everything a learning run reports, per window and at the end."""

    logits: np.ndarray
    """[S, classes]: the readout's mean over T (the NIR logits) of every window."""
    errors: np.ndarray
    """[S, classes]: the error third factor the readout sent (0 where a window does not learn)."""
    activity: dict[str, np.ndarray]
    """Per pre population (relays keyed by their layer's ``.relay`` name): [S, len(PRE_RECORD)]."""
    factors: dict[str, np.ndarray]
    """Per population sending a third factor (readout, hidden): [S, len(FACTOR_RECORD)]."""
    weights: dict[str, np.ndarray]
    """Final chip weights of every learning layer."""
    feedback: dict[str, np.ndarray] = field(default_factory=dict)
    """Final feedback weights (W_out^T copy) of every hidden learning population."""
    neuron_counts: dict[str, np.ndarray] | None = None
    """If asked for: [S, n] spike counts of every pre population."""
    seconds: float = 0.0
    frozen_seconds: float = 0.0
    """Emulator: of ``seconds``, the batched frozen layers (the rest is the learning head)."""


@dataclass
class _RunState:
    """A run's learning synapses, third-factor quantizers and records."""

    syn: dict[str, LearningSynapse]
    fb: dict[str, LearningSynapse]
    error: ThirdFactor
    delta: dict[str, ThirdFactor]
    logits: np.ndarray
    errors: np.ndarray
    activity: dict[str, np.ndarray]
    factors: dict[str, np.ndarray]
    neuron_counts: dict[str, list] | None


@dataclass
class _Head:
    """What the frozen network gives the learning head, per sample."""

    pre: dict[str, np.ndarray]
    """Per static pre population: activity [S, T, n] (spikes or pooled counts)."""
    frozen: dict[str, np.ndarray]
    """Per head population: summed input [S, T, n] from frozen groups of static sources."""
    counts: dict[str, np.ndarray] = field(default_factory=dict)
    """Per static pre population: activity summed over the window [S, n] (what x1 carries);
    summed from ``pre`` unless given."""

    def __post_init__(self) -> None:
        self.counts = self.counts or {
            name: a.sum(axis=1, dtype=np.int32 if a.dtype.kind in "bui" else a.dtype)
            for name, a in self.pre.items()}

    def take(self, order: np.ndarray) -> "_Head":
        """The same inputs for the samples ``order`` (e.g. a stream in another order)."""
        return _Head(*({k: v[order] for k, v in part.items()}
                       for part in (self.pre, self.frozen, self.counts)))


class LearningEmulator:
    """Runs a :class:`LearningPlan` on images; the plan's gains must be calibrated for ``run``."""

    def __init__(self, plan: LearningPlan, record_neurons: bool = False) -> None:
        self.plan, self.record_neurons = plan, record_neurons
        self.fixed = plan.fixed
        self.T = plan.timesteps
        chip = plan.chip
        self.pops = {p.name: p for p in chip.populations}
        self.readout = chip.readout
        self.hidden = {h.name: h for h in plan.hidden}
        self.dynamic = set(self.hidden) | {self.readout.name}
        by_post = {layer.post: layer for layer in plan.layers}
        self.layer_of = by_post
        # static pre populations whose activity is precomputed
        self.static_pre = {layer.pre: layer for layer in plan.layers if layer.source not in self.dynamic}
        self.sums = spike_sums(chip)
        self._static = {(self.readout.name, i): LearningSynapse(
            s.matrix().toarray() if sp.issparse(s.matrix()) else s.matrix(), 1, 0, 0,
            self.fixed, 0) for i, s in enumerate(self.readout.synapses)}

    # -- the frozen network, batched ---------------------------------------------------------
    def _record_names(self) -> set[str]:
        names = {layer.source for layer in self.static_pre.values()}
        for name in self.dynamic:
            for i, syn in enumerate(self.pops[name].synapses):
                if self._is_frozen_static(name, i):
                    names.add(syn.source)
        return names

    def _is_frozen_static(self, name: str, i: int) -> bool:
        layer = self.layer_of.get(name)
        src = self.pops[name].synapses[i].source
        return (layer is None or layer.group != i) and src not in self.dynamic

    def head_inputs(self, images: np.ndarray, batch_size: int = 256) -> _Head:
        chip, T = self.plan.chip, self.T
        names = self._record_names()
        pre = {p: [] for p in self.static_pre}
        frozen = {n: [] for n in self.dynamic}
        dtype = np.int64 if self.fixed else float
        for start in range(0, len(images), batch_size):
            x = chip.encode(images[start:start + batch_size])
            if names:
                run = emulate(chip, x, record=names, sums=self.sums)
                trains = {n: run.spikes[n][:, self.pops[n].depth:self.pops[n].depth + T] for n in names}
            else:
                trains = {}
            b = len(x)
            for name, layer in self.static_pre.items():
                s = trains[layer.source]
                if layer.relay:
                    flat = s.reshape(b * T, -1).astype(dtype)
                    s = np.asarray((layer.pool @ flat.T).T).reshape(b, T, -1)
                    s = s.astype(np.int16 if self.fixed else float)
                pre[name].append(s)
            for name in self.dynamic:
                pop = self.pops[name]
                total = np.zeros((b, T, pop.size), dtype)
                for i, syn in enumerate(pop.synapses):
                    if not self._is_frozen_static(name, i):
                        continue
                    src = x[:, None, :].repeat(T, 1) if syn.source == "input" else trains[syn.source]
                    a = _apply(syn, self.sums[name, i], src.reshape(b * T, -1).astype(dtype), self.fixed)
                    total += a.reshape(b, T, -1)
                frozen[name].append(total)
        return _Head({k: np.concatenate(v) for k, v in pre.items()},
                     {k: np.concatenate(v) for k, v in frozen.items()})

    # -- the head ------------------------------------------------------------------------------
    def _synapse(self, layer) -> LearningSynapse:
        return LearningSynapse(layer.weights, layer.mantissa, layer.exponent, COUNT_OFFSET,
                               self.fixed, self.plan.options.seed, layer.max_count)

    def _static_sum(self, syn: LearningSynapse, pre: np.ndarray, idx: np.ndarray,
                    ahead: np.ndarray | None) -> np.ndarray:
        """Summed input of a learning layer whose pre activity is known in advance (``pre``, all
        windows); ``ahead``: the learning windows from ``idx`` on to prefetch in one product."""
        if ahead is None or not syn.exact_sums:
            return syn.forward(pre[idx])
        if not syn.prefetched:
            syn.prefetch(pre[ahead], ahead)
        return syn.forward_next(pre[idx], int(idx[0]))

    def _forward(self, weights: dict[str, np.ndarray], head: _Head, idx: np.ndarray,
                 with_kappa: bool, ahead: np.ndarray | None = None) -> dict:
        """The head's forward pass for windows ``idx`` with fixed weights: spike counts, the
        readout's v, and kappa of the hidden populations (if asked). ``ahead``: see
        ``_static_sum`` (one learning window at a time)."""
        plan, T, fixed = self.plan, self.T, self.fixed
        b = len(idx)
        out: dict = {"counts": {}, "kappa": {}, "spikes": {}}
        for name, layer in self.static_pre.items():
            out["counts"][name] = head.counts[name][idx].astype(float)
        for name in self.hidden:
            pop = self.pops[name]
            layer = self.layer_of[name]
            a = head.frozen[name][idx].copy()
            a += self._shift(self._static_sum(weights[layer.name], head.pre[layer.pre], idx, ahead),
                             layer.weight_exp)
            st = LIFState(pop, b, fixed)
            h = self.hidden[name]
            elig = Eligibility(plan.options.kappa, plan.options.alpha, h.lam, st.threshold,
                               h.unit * h.potential_scale, (b, pop.size)) if with_kappa else None
            spikes = np.zeros((b, T, pop.size), bool)
            for t in range(T):
                v = st.integrate(a[:, t])
                s = v > st.threshold
                if elig is not None:
                    elig.update(v, s)
                spikes[:, t] = st.fire()
            out["spikes"][name] = spikes
            out["counts"][name] = spikes.sum(axis=1).astype(float)
            if elig is not None:
                out["kappa"][name] = elig.kappa(h.potential_scale)
        ro = self.readout
        a = head.frozen[ro.name][idx].copy()
        for i, syn in enumerate(ro.synapses):
            layer = self.layer_of.get(ro.name)
            if layer is not None and layer.group == i:
                src = out["spikes"].get(layer.pre)
                acc = self._static_sum(weights[layer.name], head.pre[layer.pre], idx, ahead) \
                    if src is None else weights[layer.name].forward(src)
                a += self._shift(acc, layer.weight_exp)
            elif syn.source in self.dynamic:
                a += self._shift(self._static[ro.name, i].forward(out["spikes"][syn.source]),
                                 syn.weight_exp)
        st = LIFState(ro, b, fixed)
        for t in range(T):
            st.integrate(a[:, t])
        out["v"] = st.v
        return out


    def _shift(self, acc: np.ndarray, exp: int) -> np.ndarray:
        """Summed input as the chip delivers it: integers shifted by the group's exponent."""
        if not self.fixed:
            return acc
        acc = np.rint(acc).astype(np.int64)
        return acc << exp if exp > 0 else acc >> -exp

    def signals(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Calibration: errors [N, classes] and hidden deltas (lowered units) at the initial
        weights, unquantized."""
        head = self.head_inputs(images)
        weights = {layer.name: self._synapse(layer) for layer in self.plan.layers}
        out = self._forward(weights, head, np.arange(len(images)), True)
        errors = softmax_error(self.plan.chip.logits(out["v"]), labels)
        deltas = {}
        for name, h in self.hidden.items():
            back = errors @ (h.feedback.T * h.out_lsb)
            deltas[name] = out["kappa"][name] * back
        return errors, deltas

    def run(self, images: np.ndarray, labels: np.ndarray, learn: np.ndarray,
            progress: Callable[[int], None] | None = None, head: _Head | None = None) -> LearnRun:
        """Every image one window; windows with ``learn`` true update the learning layers."""
        start = time.perf_counter()
        head = head or self.head_inputs(images)
        frozen = time.perf_counter() - start
        st = self._state(len(images))
        learn = np.asarray(learn, bool)
        stop = np.flatnonzero(~np.r_[learn, False])  # windows that do not learn, and the end
        with threadpool_limits(1):  # small products, window after window: threads only wait
            k = 0
            while k < len(images):
                # a run of windows that do not learn goes batched; a learning window alone,
                # with the next learning windows' known inputs summed ahead
                if learn[k]:
                    end = k + 1
                    last = min(k + AHEAD, int(stop[np.searchsorted(stop, k)]))
                    self._window(st, head, np.arange(k, end), labels, True, np.arange(k, last))
                else:
                    end = k + int(np.argmax(np.r_[learn[k:], True]))
                    self._window(st, head, np.arange(k, end), labels, False)
                if progress is not None:
                    progress(end - k)
                k = end
        counts = None if st.neuron_counts is None else \
            {name: np.concatenate(parts) for name, parts in st.neuron_counts.items()}
        return LearnRun(st.logits, st.errors, st.activity, st.factors,
                        {n: s.weights for n, s in st.syn.items()},
                        {h: s.weights for h, s in st.fb.items()}, counts,
                        time.perf_counter() - start, frozen)

    def _state(self, n: int) -> "_RunState":
        plan, fixed, opts = self.plan, self.fixed, self.plan.options
        readout_layer = self.layer_of.get(self.readout.name)
        fb = {h.name: LearningSynapse(h.feedback, readout_layer.mantissa, readout_layer.exponent,
                                      ERROR_OFFSET, fixed, opts.seed) if h.learned
              else LearningSynapse(h.feedback, 1, 0, 0, fixed, opts.seed) for h in plan.hidden}
        sizes = {name: self.pops[name].size for name in [self.readout.name, *self.hidden]}
        return _RunState(
            syn={layer.name: self._synapse(layer) for layer in plan.layers}, fb=fb,
            error=ThirdFactor(plan.error_levels, fixed, opts.rounding, opts.seed, self.readout.size),
            delta={h: ThirdFactor(self.layer_of[h].levels, fixed, opts.rounding, opts.seed + 1 + i,
                                  sizes[h]) for i, h in enumerate(self.hidden)},
            logits=np.zeros((n, self.readout.size)), errors=np.zeros((n, self.readout.size)),
            activity={name: np.zeros((n, len(PRE_RECORD))) for name in plan.impulse},
            factors={name: np.zeros((n, len(FACTOR_RECORD))) for name in sizes},
            neuron_counts={name: [] for name in plan.impulse} if self.record_neurons else None)

    def _window(self, st: "_RunState", head: _Head, idx: np.ndarray, labels: np.ndarray,
                learns: bool, ahead: np.ndarray | None = None) -> None:
        """Windows ``idx`` (several only if none learns): forward, records, the update."""
        out = self._forward(st.syn, head, idx, learns, ahead)
        st.logits[idx] = self.plan.chip.logits(out["v"])
        u_err = st.error.draw(len(idx))
        u_delta = {h: tf.draw(len(idx)) for h, tf in st.delta.items()}
        for name in self.plan.impulse:
            counts = out["counts"][name]
            st.activity[name][idx] = [pre_record(c) for c in counts]
            if st.neuron_counts is not None:
                st.neuron_counts[name].append(counts)
        if learns:
            self._learn(st, idx[0], out, labels[idx[0]], u_err[0], {h: u[0] for h, u in u_delta.items()})
        else:
            for name, rec in st.factors.items():
                size = self.pops[name].size
                rec[idx] = factor_record(np.zeros(size), 0, size)
        self._resync(idx, st.syn, st.fb)

    def _learn(self, st: "_RunState", k: int, out: dict, label: int, u_err: np.ndarray,
               u_delta: dict) -> None:
        """One learning window's third factors and the engine updates at its end."""
        plan, W = self.plan, self.plan.window
        step, epoch = (k + 1) * W, k + 1
        e = softmax_error(plan.chip.logits(out["v"]), [label])[0]
        e_q, sat, zero = st.error.quantize(plan.error_gain * e, u_err)
        st.errors[k] = e_q
        st.factors[self.readout.name][k] = factor_record(e_q, sat, zero)
        deltas = {}
        for name, h in self.hidden.items():
            first, second = offset_payloads(e_q, ERROR_OFFSET)
            diff = second @ st.fb[name].matrix_t - first @ st.fb[name].matrix_t
            scaled = hidden_scaled_delta(out["kappa"][name][0], diff, h.decode,
                                         self.layer_of[name].gain)
            y, sat, zero = st.delta[name].quantize(scaled, u_delta[name])
            deltas[name] = y
            st.factors[name][k] = factor_record(y, sat, zero)
        for layer in plan.layers:
            counts = out["counts"][layer.pre][0]
            x1 = count_payload(counts, layer.impulse, COUNT_OFFSET) / 2
            y = e_q if layer.post == self.readout.name else deltas[layer.post]
            st.syn[layer.name].epoch(W, step, epoch, x1, y)
        for name, h in self.hidden.items():
            if h.learned:
                y1 = plan.impulse[name] * out["counts"][name][0]
                st.fb[name].epoch(W, step, epoch, ERROR_OFFSET + e_q, y1)

    def _resync(self, idx: np.ndarray, syn: dict, fb: dict) -> None:
        """feedback="resync": the host copies W_out^T into the feedback after every K windows."""
        plan = self.plan
        layer = self.layer_of.get(self.readout.name)
        if plan.options.feedback != "resync" or layer is None or \
                not np.any((idx + 1) % plan.options.resync_every == 0):
            return
        for name, h in self.hidden.items():
            if not h.learned and layer.source == name:
                fb[name].set(syn[layer.name].weights.T)

