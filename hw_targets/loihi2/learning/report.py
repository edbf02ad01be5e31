"""What a learning run reports: accuracy, per-layer rule and update statistics, the learned NIR
graph, and whether each part of the learning graph could run on a real Loihi 2 (with sources)."""
from __future__ import annotations

import copy

import nir
import numpy as np

from ..spec import Spec, load_spec
from .emulator import FACTOR_RECORD, PRE_RECORD, LearnRun
from .plan import (COUNT_OFFSET, EPOCH_TIME_BITS, PRODUCT_SHIFT, TRACE_MAX, TRACE_TAU, LearningPlan)

LAVA_LEARNING = ("lava-nc 0.10 proc/dense LearningDense with Loihi3FLearningRule; its fixed_pt "
                 "model is Lava's bit-approximate model of the Loihi learning engine "
                 "(magma/core/model/py/connection.py)")
LAVA_CONSTANTS = "lava-nc 0.10 magma/core/learning/constants.py"
BRIEF = "Intel Loihi 2 technology brief (2021)"
UNVERIFIED = "unverified"


def chip_weights(plan: LearningPlan, name: str, weights: np.ndarray) -> np.ndarray:
    """Learned weights as a static synapse would hold them: fixed point drops the LSB of odd
    values (Lava's 8-bit mixed-sign mode; the learning engine may leave them odd)."""
    w = np.asarray(weights)
    if plan.fixed:
        return (w.astype(np.int64) >> 1) << 1
    return w


def nir_weights(plan: LearningPlan, name: str, weights: np.ndarray) -> np.ndarray:
    """Learned chip weights in the NIR node's units (re-truncated to the chip grid)."""
    layer = plan.layer(name)
    return chip_weights(plan, name, weights) * layer.lsb / layer.row_scale[:, None]


def learned_graph(graph: nir.NIRGraph, plan: LearningPlan, weights: dict[str, np.ndarray],
                  facts: dict) -> nir.NIRGraph:
    """The NIR graph with every learning layer's weight replaced by what was learned."""
    nodes = dict(graph.nodes)
    for name, w in weights.items():
        node = copy.deepcopy(nodes[name])
        node.weight = nir_weights(plan, name, w).astype(np.asarray(graph.nodes[name].weight).dtype)
        nodes[name] = node
    meta = dict(graph.metadata or {})
    meta["onchip_learning"] = facts
    return nir.NIRGraph(nodes=nodes, edges=list(graph.edges), metadata=meta)


def _fraction(num: float, den: float) -> float:
    return float(num / den) if den else 0.0


def layer_stats(plan: LearningPlan, run: LearnRun, learn: np.ndarray) -> dict[str, dict]:
    """Per learning layer: rule, gains, third factors, update sizes, clipping, changes."""
    learn = np.asarray(learn, bool)
    sizes = {p.name: p.size for p in plan.chip.populations}
    out = {}
    for layer in plan.layers:
        pre = run.activity[layer.pre][learn]
        post = run.factors[layer.post][learn]
        sat, zero, abs_sum, nonzero = (post[:, FACTOR_RECORD.index(k)] for k in FACTOR_RECORD)
        spikes, active = pre[:, PRE_RECORD.index("spikes")], pre[:, PRE_RECORD.index("active")]
        n_post = sizes[layer.post]
        # expected |dw| (weight steps) over the synapses whose product is non-zero, per window:
        # c/8 * (x1 - 1) * |y|, summed = c/8 * k * spikes * sum|y|
        scale = layer.constant / (2 ** PRODUCT_SHIFT if plan.fixed else 1.0)
        pairs = (active * nonzero).sum()
        mean_update = _fraction(scale * (layer.impulse * spikes * abs_sum).sum(), pairs)
        w = np.asarray(run.weights[layer.name])
        at_bound = (w <= -256) | (w >= 255) if plan.fixed else np.zeros(w.shape, bool)
        changed = w != np.asarray(layer.weights)
        windows = int(learn.sum())
        achieved = layer.constant * layer.impulse * layer.gain * plan.timesteps * layer.lsb \
            / ((2 ** PRODUCT_SHIFT if plan.fixed else 1.0) * layer.row_scale ** 2)
        stats = {
            "lr": layer.lr,
            "achieved_lr": float(np.median(achieved)),
            "rule": layer.rule(),
            "rule_constant": layer.constant,
            "mantissa": layer.mantissa, "exponent": layer.exponent,
            "trace_impulse": layer.impulse,
            "trace_max": COUNT_OFFSET + layer.impulse * layer.max_count,
            "third_factor_gain": float(np.median(layer.gain)),
            "calibrated_gain": layer.calibrated_gain,
            "third_factor_levels": layer.levels,
            "weight_exp": layer.weight_exp,
            "weight_step_nir": float(np.median(layer.lsb / layer.row_scale)),
            "learning_windows": windows,
            "third_factors_saturated": _fraction(sat.sum(), windows * n_post),
            "third_factors_zero": _fraction(zero.sum(), windows * n_post),
            "mean_update_lsb": mean_update if plan.fixed else None,
            "weights_at_bound": float(at_bound.mean()),
            "weights_clipped_initially": layer.clipped,
            "weights_changed": float(changed.mean()),
            "notes": list(layer.notes),
        }
        out[layer.name] = stats
    return out


def feedback_drift(plan: LearningPlan, run: LearnRun) -> dict[str, dict]:
    """How far every feedback copy ended from the transpose of the readout weights it mirrors."""
    out = {}
    readout = plan.layer_into(plan.readout.name)
    for h in plan.hidden:
        b = np.asarray(run.feedback[h.name], float)
        if readout is not None and readout.source == h.name:
            target = np.asarray(run.weights[readout.name], float).T
            mode = "learned (offset-binary transposed rule)" if h.learned else \
                f"host re-sync every {plan.options.resync_every} samples"
        else:
            target, mode = np.asarray(h.feedback, float), "static (readout does not learn)"
        diff = np.abs(b - target)
        out[h.name] = {"mode": mode, "max_abs_difference": float(diff.max(initial=0)),
                       "mean_abs_difference": float(diff.mean()) if diff.size else 0.0,
                       "units": "weight steps" if plan.fixed else "float weight units"}
    return out


def feasibility(plan: LearningPlan, run: LearnRun | None = None, learn: np.ndarray | None = None,
                spec: Spec | None = None) -> list[dict]:
    """Every part of the learning graph: could a real Loihi 2 run it, where, and the source.
    ``ok``: True / False for checked limits, None for the mapping of a part (no limit to test)."""
    spec = spec or load_spec()
    W = plan.window
    limit = 2 ** EPOCH_TIME_BITS - 1
    items = [
        {"item": "learning epoch = sample window", "value": W, "limit": limit, "ok": W <= limit,
         "where": "learning engine",
         "detail": f"t_epoch = T + readout depth + 1 = {W} steps; the within-epoch spike time is "
                   f"{EPOCH_TIME_BITS}-bit (Lava's simulator does not enforce it)",
         "source": f"{LAVA_CONSTANTS} W_EPOCH_TIME; chip limit {UNVERIFIED}"},
    ]
    for layer in plan.layers:
        k = layer.impulse or layer.max_impulse
        top = COUNT_OFFSET + k * layer.max_count
        items.append({"item": f"{layer.name}: pre trace x1 = 1 + k count", "value": top,
                      "limit": TRACE_MAX, "ok": top <= TRACE_MAX, "where": "learning engine",
                      "detail": f"impulse {k} x at most {layer.max_count} "
                                f"{'pooled spikes' if layer.relay else 'spikes'} per window",
                      "source": f"{LAVA_CONSTANTS} W_TRACE = 7 (saturating)"})
    if run is not None and learn is not None:
        stats = layer_stats(plan, run, learn)
        for name, s in stats.items():
            items.append({"item": f"{name}: third factors", "value": s["third_factors_saturated"],
                          "limit": 0.05, "ok": s["third_factors_saturated"] <= 0.05,
                          "where": "neuron (y2/y3 ports)",
                          "detail": f"{s['third_factors_saturated']:.2%} saturated at "
                                    f"+-{s['third_factor_levels']}, {s['third_factors_zero']:.2%} zero",
                          "source": f"{LAVA_CONSTANTS} W_TRACE = 7"})
            items.append({"item": f"{name}: weight clipping", "value": s["weights_at_bound"],
                          "limit": 0.01, "ok": s["weights_at_bound"] <= 0.01,
                          "where": "learning engine",
                          "detail": f"{s['weights_at_bound']:.2%} of weights at the 8-bit bounds "
                                    f"after learning (initial weights within 1/{plan.options.headroom:g} "
                                    "of the range)",
                          "source": "lava-nc 0.10 LearningDense: weights clipped to 8 bits + sign"})
            if plan.fixed:
                items.append({"item": f"{name}: update size", "value": s["mean_update_lsb"],
                              "limit": 1.0, "ok": s["mean_update_lsb"] >= 1.0,
                              "where": "learning engine",
                              "detail": f"mean expected |dw| {s['mean_update_lsb']:.3g} weight steps "
                                        "over synapses with a non-zero product; below 1 (the sub-LSB "
                                        "regime) updates agree with SGD only in expectation",
                              "source": f"{LAVA_LEARNING} (stochastic rounding, one random number "
                                        "per epoch for all synapses)"})
        for name, d in feedback_drift(plan, run).items():
            items.append({"item": f"{name}: feedback = W_out^T", "value": d["max_abs_difference"],
                          "limit": 1.0 if plan.fixed else 1e-3,
                          "ok": d["max_abs_difference"] <= (1.0 if plan.fixed else 1e-3),
                          "where": "learning engine" if "learned" in d["mode"] else "host",
                          "detail": f"{d['mode']}: max |B - W_out^T| {d['max_abs_difference']:.3g} "
                                    f"{d['units']} (trace decay events differ between the two)",
                          "source": f"{LAVA_LEARNING}; drift measured"})
    for name, why in plan.skipped.items():
        items.append({"item": f"{name}: cannot learn", "value": None, "limit": None, "ok": False,
                      "where": "frozen", "detail": why,
                      "source": "lava-nc 0.10 proc/ (LearningDense, LearningSparse only)"
                      if "convolution" in why else "this tool"})
    items += mapping(plan)
    return items


def mapping(plan: LearningPlan) -> list[dict]:
    """Where each part of the learning graph would run on Loihi 2."""
    rows = [
        ("weight update dw = -c (x1 - 1)(y2 - y3) at the epoch end (u0)", "learning engine",
         LAVA_LEARNING + f"; {BRIEF}: programmable three-factor learning rules"),
        ("pre trace set by a graded count spike (GradedSpikeCfg.OVERWRITE)", "learning engine",
         f"{LAVA_CONSTANTS} GradedSpikeCfg ('determine hardware behavior')"),
        (f"trace decay tau = {TRACE_TAU[plan.precision]}", "learning engine",
         f"Lava's Loihi3FLearningRule uses this tau for post traces; chip range {UNVERIFIED}"),
        ("gating to T steps, spike count, count spike", "neuron microcode",
         f"{BRIEF}: programmable neuron models, graded spikes; {UNVERIFIED} as a program"),
        ("readout error softmax(logits) - onehot(label) with preloaded labels",
         "Lakemont x86 core or host (exp and divide)", UNVERIFIED),
        ("stochastic rounding of third factors" if plan.options.rounding == "stochastic"
         else "rounding of third factors", "neuron microcode",
         f"needs a per-neuron random source: {UNVERIFIED}"),
    ]
    if plan.hidden:
        kappa = {"exact": "sigmoid-derivative surrogate (needs a lookup table or approximation) "
                          "and the e_t recursion (multiply-accumulate per step)",
                 "no-recursion": "sigmoid-derivative surrogate (lookup table), no e_t recursion",
                 "triangle": "triangle surrogate (add, abs, max) and the e_t recursion",
                 "triangle-no-recursion": "triangle surrogate (add, abs, max) only"}[plan.options.kappa]
        rows += [
            (f"kappa: {kappa}", "neuron microcode", UNVERIFIED),
            ("delta = kappa * (difference of two feedback sums), sent as y2/y3",
             "neuron microcode (one multiply)", UNVERIFIED),
            ("feedback W_out^T: " + ("learned by the transposed rule (x1 - 64) y1"
                                     if any(h.learned for h in plan.hidden) else
                                     "static or re-synced by the host (Var.set)"),
             "learning engine" if any(h.learned for h in plan.hidden) else "host",
             LAVA_LEARNING),
        ]
    if any(layer.relay for layer in plan.layers):
        rows.append(("pool relay: pooled counts forwarded as graded spikes (tied dense weights)",
                     "neuron microcode", f"{BRIEF}: graded spikes; {UNVERIFIED} as a program"))
    rows.append(("biases", "not learned (neuron parameter; frozen)", "this tool"))
    return [{"item": part, "value": None, "limit": None, "ok": None, "where": where, "detail": "",
             "source": source} for part, where, source in rows]


def spike_rates(plan: LearningPlan, run: LearnRun) -> dict[str, float]:
    """Spikes per neuron per step of every pre population over all windows."""
    sizes = {p.name: p.size for p in plan.chip.populations}
    sizes.update({layer.pre: layer.pool.shape[0] for layer in plan.layers if layer.relay})
    col = PRE_RECORD.index("spikes")
    return {name: float(a[:, col].mean() / (sizes[name] * plan.timesteps)) if len(a) else 0.0
            for name, a in run.activity.items()}
