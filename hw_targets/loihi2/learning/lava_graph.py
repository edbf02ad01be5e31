"""The learning graph as Lava processes (Loihi2SimCfg fixed_pt / floating_pt); see ``plan``.

Processes: the inference graph's ``ImageSource``, ``LIFReset`` and synapse processes for the
frozen part; Lava's ``LearningDense`` with a ``Loihi3FLearningRule`` for every learning synapse
group and learned feedback (the stock Lava models, only made faster: ``FastLearningDense*``);
and three neuron processes of ours:

- ``TraceLIF``: a population that learns or feeds a learning synapse. Lava's LIF arithmetic
  (shared with the emulator), gated to its T steps; counts its spikes and sends the count spike;
  if its synapses learn, accumulates kappa, reads the feedback and sends delta as y2/y3 (and
  y1 = k count to a learned feedback synapse). Lava's ``LearningLIF`` sends no y factors, and
  connecting its ``s_out_bap`` deadlocks (ONCHIP.md pitfall 14): it is not used.
- ``PoolRelay``: forwards pooled spike counts as graded spikes in its T steps, then its count
  spike (a tied dense layer after pooling learns through it).
- ``ErrorReadout``: the readout integrator; at the end of its T steps it computes the
  cross-entropy error from the preloaded label, sends it as y2/y3 and, offset-binary, into the
  feedback, and records logits and errors.

The process models index every array modulo its length and never raise: an exception inside a
Lava process leaves the run waiting forever (seen with lava-nc 0.10), so they must not fail.

Every sample is one window; labels and learn flags are preloaded, so one compiled graph serves
held-out evaluation (learn flag 0) and the learning stream (flag 1) without host calls. Weights
are read back at the end (``Var.get`` sends one element per message: ~30 s per million). The
graph is used in a ``with`` block, a :class:`~hw_targets.lava_runtime.LavaSession` (signals,
stop on every exit, no processes or /dev/shm segments left), like the inference graph.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import scipy.sparse as sp

from hw_targets import lava_compat
from hw_targets.lava_runtime import LavaSession

from ..emulator import LIFState
from ..graph import INPUT
from ..lava_backend import (TAGS, ImageSource, ImageSourceFixed, ImageSourceFloat, SparseFixedMatVec,
                            SparseFloatMatVec, _synapse_process)
from .emulator import FACTOR_RECORD, PRE_RECORD, LearnRun, factor_record, pre_record
from .neurons import (Eligibility, ThirdFactor, count_payload, hidden_scaled_delta, offset_payloads,
                      softmax_error)
from .plan import COUNT_OFFSET, ERROR_OFFSET, TRACE_TAU, LearningPlan

lava_compat.install()

from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.learning.constants import GradedSpikeCfg  # noqa: E402
from lava.magma.core.learning.learning_rule import Loihi3FLearningRule  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyInPort, PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import InPort, OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.dense.models import PyLearningDenseModelBitApproximate, PyLearningDenseModelFloat  # noqa: E402
from lava.proc.dense.process import Dense, LearningDense  # noqa: E402
from lava.proc.lif.process import LIFReset  # noqa: E402
from lava.proc.sparse.process import Sparse  # noqa: E402
from lava.utils.weightutils import truncate_weights  # noqa: E402


def _local(time_step: int, window: int) -> tuple[int, int]:
    """(window index, local step tau = 1..window) of a global time step."""
    return (time_step - 1) // window, (time_step - 1) % window + 1


# -- processes ---------------------------------------------------------------------------------
class TraceLIF(AbstractProcess):
    """A gated LIF population with spike count (and, if it learns, kappa and delta); see module."""

    def __init__(self, *, size: int, samples: int, neuron_counts: bool, **params) -> None:
        super().__init__(size=size, samples=samples, neuron_counts=neuron_counts, **params)
        self.a_in = InPort(shape=(size,))
        self.a_fb = InPort(shape=(size,))
        self.s_out = OutPort(shape=(size,))
        self.y1_out = OutPort(shape=(size,))
        self.y2_out = OutPort(shape=(size,))
        self.y3_out = OutPort(shape=(size,))
        self.activity = Var(shape=(samples, len(PRE_RECORD)), init=0)
        self.factor = Var(shape=(samples, len(FACTOR_RECORD)), init=0)
        self.neuron_counts = Var(shape=(samples, size) if neuron_counts else (1, 1), init=0)


class PoolRelay(AbstractProcess):
    """Relay of pooled spike counts to a tied learning dense layer; see module."""

    def __init__(self, *, size: int, samples: int, neuron_counts: bool, **params) -> None:
        super().__init__(size=size, samples=samples, neuron_counts=neuron_counts, **params)
        self.a_in = InPort(shape=(size,))
        self.s_out = OutPort(shape=(size,))
        self.activity = Var(shape=(samples, len(PRE_RECORD)), init=0)
        self.neuron_counts = Var(shape=(samples, size) if neuron_counts else (1, 1), init=0)


class ErrorReadout(AbstractProcess):
    """Readout integrator computing the cross-entropy error from preloaded labels; see module."""

    def __init__(self, *, size: int, samples: int, **params) -> None:
        super().__init__(size=size, samples=samples, **params)
        self.a_in = InPort(shape=(size,))
        self.y2_out = OutPort(shape=(size,))
        self.y3_out = OutPort(shape=(size,))
        self.fb_out = OutPort(shape=(size,))
        self.logits = Var(shape=(samples, size), init=0)
        self.errors = Var(shape=(samples, size), init=0)
        self.factor = Var(shape=(samples, len(FACTOR_RECORD)), init=0)


# -- models --------------------------------------------------------------------------------------
def _count_spike(model: PyLoihiProcessModel, k: int, counts: np.ndarray) -> np.ndarray:
    """Record window k's counts of a pre population; the count spike's payloads."""
    samples = model.activity.shape[0]
    model.activity[k % samples] = pre_record(counts)
    if model.proc_params["neuron_counts"]:
        model.neuron_counts[k % samples] = counts
    return count_payload(counts, model.impulse, COUNT_OFFSET)


class _NeuronModel(PyLoihiProcessModel):
    """A population with Lava's LIF arithmetic (``LIFState``) and its T steps in the window."""

    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        p = proc_params
        self.fixed = p["fixed"]
        self.state = LIFState(p["pop"], 1, self.fixed)
        self.first, self.last, self.W = p["first"], p["last"], p["window"]
        self.learn = p["learn"]


class _TraceLIFModel(_NeuronModel):
    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        p = proc_params
        self.count = np.zeros(p["size"])
        self.impulse = p["impulse"]
        self.kappa = p.get("kappa")
        if self.kappa is not None:
            k = self.kappa
            self.elig = Eligibility(k["variant"], k["alpha"], k["lam"], self.state.threshold,
                                    k["unit"], (1, p["size"]))
            self.factor_q = ThirdFactor(k["levels"], self.fixed, k["rounding"], k["seed"], p["size"])
            self.fb_first = np.zeros(p["size"])

    def run_spk(self) -> None:
        a, fb = self.a_in.recv(), self.a_fb.recv()
        n = self.count.size
        k, tau = _local(self.time_step, self.W)
        s_out, y1, y2, y3 = (np.zeros(n) for _ in range(4))
        if tau == self.first:
            self.state.reset()
            self.count[:] = 0
            if self.kappa is not None:
                self.elig.reset()
        if self.first <= tau <= self.last:
            v = self.state.integrate(np.asarray(a)[None].astype(self.state.u.dtype))
            spikes = v > self.state.threshold
            if self.kappa is not None:
                self.elig.update(v, spikes)
            self.state.fire()
            self.count += spikes[0]
            s_out = spikes[0].astype(float)
        elif tau == self.W - 1 and self.impulse:
            s_out = _count_spike(self, k, self.count)
        if self.kappa is not None:
            kp = self.kappa
            if tau == kp["error_step"]:
                self.fb_first = np.asarray(fb, float).copy()
            if tau == self.W:
                uniform = self.factor_q.draw(1)[0]
                learn = self.learn[k % len(self.learn)]
                scaled = hidden_scaled_delta(self.elig.kappa(kp["potential_scale"])[0],
                                             np.asarray(fb, float) - self.fb_first, kp["decode"],
                                             kp["gain"]) if learn else np.zeros(n)
                y, sat, zero = self.factor_q.quantize(scaled, uniform)
                y2, y3 = np.maximum(y, 0), np.maximum(-y, 0)
                if learn and kp["feedback_impulse"]:
                    y1 = kp["feedback_impulse"] * self.count
                self.factor[k % self.factor.shape[0]] = factor_record(y, sat, zero)
        for port, value in ((self.s_out, s_out), (self.y1_out, y1), (self.y2_out, y2),
                            (self.y3_out, y3)):
            port.send(value)


class _PoolRelayModel(PyLoihiProcessModel):
    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        p = proc_params
        self.total = np.zeros(p["size"])
        self.first, self.last, self.W, self.impulse = p["first"], p["last"], p["window"], p["impulse"]

    def run_spk(self) -> None:
        a = np.asarray(self.a_in.recv(), float)
        k, tau = _local(self.time_step, self.W)
        out = np.zeros_like(self.total)
        if tau == self.first:
            self.total[:] = 0
        if self.first <= tau <= self.last:
            out = a
            self.total += a
        elif tau == self.W - 1:
            out = _count_spike(self, k, self.total)
        self.s_out.send(out)


class _ErrorReadoutModel(_NeuronModel):
    def __init__(self, proc_params) -> None:
        super().__init__(proc_params)
        p = proc_params
        self.labels = p["labels"]
        self.error_q = ThirdFactor(p["levels"], self.fixed, p["rounding"], p["seed"], p["size"])
        self.e_q = np.zeros(p["size"])

    def run_spk(self) -> None:
        a = self.a_in.recv()
        p = self.proc_params
        n = self.e_q.size
        k, tau = _local(self.time_step, self.W)
        fb, y2, y3 = np.zeros(n), np.zeros(n), np.zeros(n)
        if tau == self.first:
            self.state.reset()
        if self.first <= tau <= self.last:
            self.state.integrate(np.asarray(a)[None].astype(self.state.u.dtype))
        if p["feedback"] and tau == self.last - 1:
            fb = offset_payloads(self.e_q, ERROR_OFFSET)[0]
        if tau == self.last:
            samples = self.logits.shape[0]
            logits = self.state.v[0] / p["logit_unit"]
            learn = self.learn[k % len(self.learn)]
            uniform = self.error_q.draw(1)[0]
            e = softmax_error(logits[None], [self.labels[k % len(self.labels)]])[0] if learn \
                else np.zeros(n)
            self.e_q, sat, zero = self.error_q.quantize(p["error_gain"] * e, uniform)
            self.logits[k % samples] = logits
            self.errors[k % samples] = self.e_q
            self.factor[k % samples] = factor_record(self.e_q, sat, zero)
            if p["feedback"]:
                fb = offset_payloads(self.e_q, ERROR_OFFSET)[1]
        if tau == self.W:
            y2, y3 = np.maximum(self.e_q, 0), np.maximum(-self.e_q, 0)
        self.y2_out.send(y2)
        self.y3_out.send(y3)
        self.fb_out.send(fb)


def _typed(base: type, proc: type, precision: str, ports: dict[str, type],
           records: tuple[str, ...]) -> type:
    """The fixed_pt (int32 ports) or floating_pt model class of ``proc``."""
    attrs = {port: LavaPyType(kind, np.int32, precision=24) if precision == "fixed"
             else LavaPyType(kind, float) for port, kind in ports.items()}
    attrs.update({var: LavaPyType(np.ndarray, float) for var in records})
    cls = type(f"{proc.__name__}{precision.title()}", (base,), attrs)
    return tag(TAGS[precision])(requires(CPU)(implements(proc=proc, protocol=LoihiProtocol)(cls)))


_IN, _OUT = PyInPort.VEC_DENSE, PyOutPort.VEC_DENSE
MODELS = {
    (proc, precision): _typed(base, proc, precision, ports, vars_)
    for precision in ("fixed", "float")
    for proc, base, ports, vars_ in (
        (TraceLIF, _TraceLIFModel, {"a_in": _IN, "a_fb": _IN, "s_out": _OUT, "y1_out": _OUT,
                                    "y2_out": _OUT, "y3_out": _OUT},
         ("activity", "factor", "neuron_counts")),
        (PoolRelay, _PoolRelayModel, {"a_in": _IN, "s_out": _OUT}, ("activity", "neuron_counts")),
        (ErrorReadout, _ErrorReadoutModel, {"a_in": _IN, "y2_out": _OUT, "y3_out": _OUT,
                                            "fb_out": _OUT}, ("logits", "errors", "factor")))}


# -- LearningDense, faster ---------------------------------------------------------------------
class _SparseUpdate:
    """Lava's learning-phase code on the synapses that can change only.

    A synapse changes only where both factors of its (single-term) products are non-zero: the
    pre factor ``x1 - offset`` and a post trace. Everywhere else the accumulator keeps ``w << 7``
    exactly and stochastic rounding leaves it (and the float sum) unchanged, so applying Lava's
    applier, saturation and rounding to the rows and columns that can change gives Lava's
    result. Only ``u``-dependent rules are supported: the x0/y0 trace evaluations (which build
    [n, n] arrays in Lava's model) are skipped."""

    def _extract_applier_evaluated_traces(self, x_hist, y_hist) -> dict:
        return {"x1_u": x_hist[-1, 0][None, :], "x2_u": x_hist[-1, 1][None, :],
                "y1_u": y_hist[-1, 0][:, None], "y2_u": y_hist[-1, 1][:, None],
                "y3_u": y_hist[-1, 2][:, None]}

    def _active(self, x_hist, y_hist) -> tuple[np.ndarray, np.ndarray]:
        spec = self.proc_params["sparse_update"]
        cols = np.flatnonzero(x_hist[-1, 0] != spec["x_offset"])
        rows = np.flatnonzero(np.any(y_hist[-1, spec["y"]] != 0, axis=0))
        return rows, cols

    def run_lrn(self) -> None:
        self._update_synaptic_variable_random()
        self._update_dependencies()
        x_hist, y_hist = self._compute_trace_histories()
        self._update_traces(x_hist, y_hist)
        rows, cols = self._active(x_hist, y_hist)
        if rows.size and cols.size:
            self._apply_sub(x_hist, y_hist, rows, cols)
        self._reset_dependencies_and_spike_times()

    def _sub_args(self, x_hist, y_hist, rows, cols) -> dict:
        args = self._extract_applier_args(x_hist, y_hist)
        idx = np.ix_(rows, cols)
        for key in ("weights", "tag_1", "tag_2"):
            args[key] = args[key][idx]
        args["x0"], args["y0"] = args["x0"][:, cols], args["y0"][rows]
        for key in ("x1_u", "x2_u"):
            args[key] = args[key][:, cols]
        for key in ("y1_u", "y2_u", "y3_u"):
            args[key] = args[key][rows]
        if "shape" in args:
            args["shape"] = (rows.size, cols.size)
        return args


class FastLearningDenseFixed(_SparseUpdate, PyLearningDenseModelBitApproximate):
    """Lava's bit-approximate LearningDense model, same numbers: the forward sum through a
    float64 copy of the weights (exact for these integers), the update on the synapses that can
    change (see ``_SparseUpdate``)."""

    def run_spk(self) -> None:
        self.weight_exp = self.proc_params.get("weight_exp", 0)
        if not self.weights_set:
            self.weights = truncate_weights(self.weights, sign_mode=self.sign_mode,
                                            num_weight_bits=self.num_weight_bits)
            self.weights_set = True
            self._float_weights = self.weights.astype(float)
        self.a_out.send(self.a_buff)
        s_in = self.s_in.recv()
        a = np.rint(self._float_weights @ np.asarray(s_in, float)).astype(np.int64)
        a = np.left_shift(a, self.weight_exp) if self.weight_exp > 0 else np.right_shift(a, -self.weight_exp)
        self.a_buff = a.astype(np.int32)
        self.recv_traces(s_in)

    def _apply_sub(self, x_hist, y_hist, rows, cols) -> None:
        args = self._sub_args(x_hist, y_hist, rows, cols)
        from lava.magma.core.learning.constants import W_ACCUMULATOR_S, W_SYN_VAR_S
        idx = np.ix_(rows, cols)
        for name, applier in self._learning_rule_appliers.items():
            var = getattr(self, name)
            sub = var[idx].copy()
            shift = W_ACCUMULATOR_S - W_SYN_VAR_S[name]
            sub = applier.apply(sub << shift, **args)
            sub = self._saturate_synaptic_variable_accumulator(name, sub)
            sub = self._stochastic_round_synaptic_variable(
                name, sub, self._conn_var_random.random_stochastic_round)
            sub = self._saturate_synaptic_variable(name, sub >> shift)
            var = var.copy()
            var[idx] = sub
            setattr(self, name, var)
        self._float_weights = self.weights.astype(float)


class FastLearningDenseFloat(_SparseUpdate, PyLearningDenseModelFloat):
    """Lava's floating-point LearningDense model with the update on the synapses that can
    change (see ``_SparseUpdate``)."""

    def _apply_sub(self, x_hist, y_hist, rows, cols) -> None:
        args = self._sub_args(x_hist, y_hist, rows, cols)
        idx = np.ix_(rows, cols)
        for name, applier in self._learning_rule_appliers.items():
            var = getattr(self, name).copy()
            sub = applier.apply(var[idx].copy(), **args)
            var[idx] = self._saturate_synaptic_variable(name, sub)
            setattr(self, name, var)


LEARNING_MODELS = {"fixed": FastLearningDenseFixed, "float": FastLearningDenseFloat}
for _precision, _cls in LEARNING_MODELS.items():
    tag(TAGS[_precision])(requires(CPU)(implements(proc=LearningDense, protocol=LoihiProtocol)(_cls)))


# -- the graph -----------------------------------------------------------------------------------
def _rule(dw: str, window: int, seed: int, precision: str) -> Loihi3FLearningRule:
    """One epoch per window; every trace with the precision's decay constant TRACE_TAU (Loihi3F
    fixes its post traces' at 2^16 - 1 in the constructor: set through the rule's own setters)."""
    tau = TRACE_TAU[precision]
    rule = Loihi3FLearningRule(dw=dw, x1_impulse=0, x1_tau=tau, t_epoch=window, rng_seed=seed)
    rule.y1_tau = rule.y2_tau = rule.y3_tau = tau
    return rule


class LavaLearningGraph:
    """The learning graph of ``plan`` for encoded inputs [samples, n_in] with labels and learn
    flags. Run it with :meth:`run` inside ``with graph:`` (a LavaSession)."""

    def __init__(self, plan: LearningPlan, payload: np.ndarray, labels: np.ndarray,
                 learn: np.ndarray, neuron_counts: bool = False) -> None:
        self.plan, self.neuron_counts = plan, neuron_counts
        fixed = plan.fixed
        chip, W = plan.chip, plan.window
        self.samples = len(payload)
        dtype = np.int32 if fixed else float
        self.source = ImageSource(np.asarray(payload, dtype).reshape(self.samples, -1).T, W)
        learn = np.asarray(learn, bool)
        layers = {layer.post: layer for layer in plan.layers}
        pres = {layer.pre: layer for layer in plan.layers}
        hidden = {h.name: h for h in plan.hidden}
        opts = plan.options
        self.neurons: dict[str, AbstractProcess] = {}
        self.relays: dict[str, PoolRelay] = {}
        self.learning: dict[str, LearningDense] = {}
        self.feedback: dict[str, AbstractProcess] = {}
        readout_layer = layers.get(chip.readout.name)
        for pop in chip.populations:
            first, last = plan.active(pop.name)
            common = dict(size=pop.size, samples=self.samples, fixed=fixed, first=first, last=last,
                          window=W, pop=replace(pop, synapses=[]), name=pop.name)
            if pop.readout:
                proc = ErrorReadout(**common, labels=np.asarray(labels, int),
                                    learn=learn, levels=plan.error_levels, rounding=opts.rounding,
                                    seed=opts.seed, error_gain=plan.error_gain,
                                    feedback=bool(plan.hidden),
                                    logit_unit=(64.0 * pop.scale if fixed else 1.0) * plan.timesteps)
            elif pop.name in layers or pop.name in pres:
                kappa = None
                if pop.name in hidden:
                    h, layer = hidden[pop.name], layers[pop.name]
                    kappa = dict(variant=opts.kappa, alpha=opts.alpha, lam=h.lam,
                                 unit=h.unit * h.potential_scale, potential_scale=h.potential_scale,
                                 levels=layer.levels, rounding=opts.rounding,
                                 seed=opts.seed + 1 + list(hidden).index(pop.name),
                                 error_step=plan.error_step, decode=h.decode, gain=layer.gain,
                                 feedback_impulse=pres[pop.name].impulse if h.learned else 0)
                impulse = pres[pop.name].impulse if pop.name in pres else 0
                proc = TraceLIF(**common, impulse=impulse, learn=learn, kappa=kappa,
                                neuron_counts=neuron_counts)
            else:
                proc = LIFReset(shape=(pop.size,), du=pop.du, dv=pop.dv, vth=pop.vth,
                                bias_mant=np.asarray(pop.bias_mant, dtype),
                                bias_exp=np.asarray(np.full(pop.size, pop.bias_exp), dtype),
                                reset_interval=W, reset_offset=first % W, name=pop.name)
            self.neurons[pop.name] = proc
        self.processes = [self.source]
        for pop in chip.populations:
            layer = layers.get(pop.name)
            for i, syn in enumerate(pop.synapses):
                if layer is not None and layer.group == i:
                    self._learning_synapse(layer, pop.name, neuron_counts)
                    continue
                proc = _synapse_process(replace(syn, delay=plan.delay[pop.name, syn.source]),
                                        syn.source == INPUT)
                src = self.source if syn.source == INPUT else self.neurons[syn.source]
                src.s_out.connect(proc.s_in)
                proc.a_out.connect(self.neurons[pop.name].a_in)
                self.processes.append(proc)
        ro = self.neurons[chip.readout.name]
        for h in plan.hidden:
            if h.learned:
                fb = LearningDense(weights=np.asarray(h.feedback, float), weight_exp=0,
                                   num_message_bits=8, graded_spike_cfg=GradedSpikeCfg.OVERWRITE,
                                   learning_rule=_rule(readout_layer.feedback_rule(), W, opts.seed,
                                                     plan.precision),
                                   sparse_update={"x_offset": ERROR_OFFSET, "y": [0]},
                                   name=f"{h.name}.feedback")
                self.neurons[h.name].y1_out.connect(fb.s_in_y1)
            else:
                fb = Dense(weights=np.asarray(h.feedback, float), weight_exp=0, num_message_bits=8,
                           name=f"{h.name}.feedback")
            ro.fb_out.connect(fb.s_in)
            fb.a_out.connect(self.neurons[h.name].a_fb)
            self.feedback[h.name] = fb
            self.processes.append(fb)
        if readout_layer is not None:
            ro.y2_out.connect(self.learning[readout_layer.name].s_in_y2)
            ro.y3_out.connect(self.learning[readout_layer.name].s_in_y3)
        fixed_key = "fixed" if fixed else "float"
        source_model = ImageSourceFixed if fixed else ImageSourceFloat
        exceptions = {ImageSource: source_model, self.source: source_model,
                      Sparse: SparseFixedMatVec if fixed else SparseFloatMatVec,
                      LearningDense: LEARNING_MODELS[plan.precision]}
        for proc in [*self.neurons.values(), *self.relays.values()]:
            if (type(proc), fixed_key) in MODELS:
                exceptions[type(proc)] = MODELS[type(proc), fixed_key]
                exceptions[proc] = MODELS[type(proc), fixed_key]
        self.cfg = Loihi2SimCfg(select_tag=TAGS[plan.precision], exception_proc_model_map=exceptions)
        self.anchor = ro

    def _learning_synapse(self, layer, post: str, neuron_counts: bool) -> None:
        plan = self.plan
        W = plan.window
        if layer.relay:
            pool = Sparse(weights=sp.csr_matrix(layer.pool, dtype=float), num_message_bits=0)
            self.neurons[layer.source].s_out.connect(pool.s_in)
            first, last = plan.active(layer.pre)
            relay = PoolRelay(size=layer.pool.shape[0], samples=self.samples,
                              neuron_counts=neuron_counts, first=first, last=last, window=W,
                              impulse=layer.impulse, name=layer.pre)
            pool.a_out.connect(relay.a_in)
            self.relays[layer.pre] = relay
            self.processes.append(pool)
            pre = relay
        else:
            pre = self.neurons[layer.pre]
        proc = LearningDense(weights=np.asarray(layer.weights, float), weight_exp=int(layer.weight_exp),
                             num_message_bits=8, graded_spike_cfg=GradedSpikeCfg.OVERWRITE,
                             learning_rule=_rule(layer.rule(), W, plan.options.seed, plan.precision),
                             sparse_update={"x_offset": COUNT_OFFSET, "y": [1, 2]}, name=layer.name)
        pre.s_out.connect(proc.s_in)
        proc.a_out.connect(self.neurons[post].a_in)
        post_proc = self.neurons[post]
        if isinstance(post_proc, TraceLIF):
            post_proc.y2_out.connect(proc.s_in_y2)
            post_proc.y3_out.connect(proc.s_in_y3)
        self.learning[layer.name] = proc
        self.processes.append(proc)

    def run(self, windows: int, progress: Callable[[int], None] | None = None,
            chunk: int = 50, every: Callable[[int], None] | None = None) -> None:
        """Run ``windows`` windows in chunks (progress, and ``every(done)`` after each chunk)."""
        done = 0
        while done < windows:
            n = min(chunk, windows - done)
            self.anchor.run(condition=RunSteps(num_steps=n * self.plan.window), run_cfg=self.cfg)
            done += n
            if every is not None:
                every(done)
            if progress is not None:
                progress(n)

    def result(self) -> LearnRun:
        """Everything the processes recorded, and the learned weights (read once, here)."""
        plan = self.plan
        ro = self.anchor
        activity = {name: np.asarray(self._proc(name).activity.get()) for name in plan.impulse}
        factors = {ro.name: np.asarray(ro.factor.get())}
        factors.update({h.name: np.asarray(self.neurons[h.name].factor.get()) for h in plan.hidden})
        weights = {name: np.asarray(proc.weights.get()) for name, proc in self.learning.items()}
        feedback = {name: np.asarray(proc.weights.get()) for name, proc in self.feedback.items()}
        counts = None
        if self.neuron_counts:
            counts = {name: np.asarray(self._proc(name).neuron_counts.get()) for name in plan.impulse}
        return LearnRun(np.asarray(ro.logits.get()), np.asarray(ro.errors.get()), activity, factors,
                        weights, feedback, counts)

    def _proc(self, name: str):
        return self.relays.get(name) or self.neurons[name]

    def __enter__(self) -> "LavaLearningGraph":
        self._session = LavaSession(self.anchor).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._session.__exit__(*exc)
