"""One learning run, end to end: compile, plan, calibrate, run (Lava or emulator), report.

The simulation sees every sample once, in one compiled graph: the held-out images (learning
off), the labelled stream (learning on), the held-out images again (learning off). Accuracy
before and after therefore come from the same simulation as the learning itself.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import nir
import numpy as np

from ..graph import lower
from ..quantize import compile_network
from .emulator import LearningEmulator, LearnRun
from .plan import LearningPlan, LearnOptions, plan_learning
from .report import feasibility, feedback_drift, layer_stats, learned_graph, spike_rates

BACKENDS = ("emulator", "lava")


@dataclass
class LearnResult:
    report: dict
    graph: nir.NIRGraph
    """The NIR graph with the learned weights (re-truncated to the chip grid)."""
    run: LearnRun
    plan: LearningPlan
    learn: np.ndarray
    """Which windows learned."""


def make_plan(graph: nir.NIRGraph, precision: str, options: LearnOptions,
              calibration: tuple[np.ndarray, np.ndarray] | None = None, **compile_options
              ) -> LearningPlan:
    """The learning plan of a NIR graph, calibrated on (images, labels) if given."""
    net = lower(graph)
    chip, _ = compile_network(net, precision, **compile_options)
    plan = plan_learning(net, chip, options)
    if calibration is not None:
        images, labels = calibration
        if not len(images):
            raise ValueError("calibration needs at least one labelled sample")
        plan.calibrate(*LearningEmulator(plan).signals(images, labels))
    return plan


def schedule(stream: int, heldout: int) -> np.ndarray:
    """Learn flags: held-out (off), stream (on), held-out again (off)."""
    return np.r_[np.zeros(heldout, bool), np.ones(stream, bool), np.zeros(heldout, bool)]


def run_plan(plan: LearningPlan, images: np.ndarray, labels: np.ndarray, learn: np.ndarray,
             backend: str = "emulator", progress: Callable[[int], None] | None = None,
             record_neurons: bool = False, frozen=None) -> tuple[LearnRun, dict]:
    """Run every image one window on a calibrated plan; also returns timings. ``frozen``: the
    emulator's frozen-layer outputs for these images (``LearningEmulator.head_inputs``), if
    already computed for the same precision."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    start = time.perf_counter()
    if backend == "emulator":
        emu = LearningEmulator(plan, record_neurons)
        run = emu.run(images, labels, learn, progress, frozen)
        total = time.perf_counter() - start
        return run, {"seconds_per_sample": total / max(len(images), 1), "seconds": total}
    from . import lava_graph
    graph = lava_graph.LavaLearningGraph(plan, plan.chip.encode(images), labels, learn,
                                         record_neurons)
    timing = {}
    with graph:
        sync = _resync(plan, graph)
        chunk = plan.options.resync_every if sync else 50
        # the first window alone: it compiles and starts the processes
        first = chunk if sync else 1
        graph.run(min(first, len(images)), progress, chunk, sync)
        timing["startup_seconds"] = time.perf_counter() - start
        steady = time.perf_counter()
        graph.run(len(images) - first, progress, chunk, sync)
        timing["seconds_per_sample"] = (time.perf_counter() - steady) / (len(images) - first) \
            if len(images) > first else timing["startup_seconds"] / len(images)
        read = time.perf_counter()
        run = graph.result()
        timing["readback_seconds"] = time.perf_counter() - read
    timing["seconds"] = time.perf_counter() - start
    run.seconds = timing["seconds"]
    return run, timing


def _resync(plan: LearningPlan, graph) -> Callable[[int], None] | None:
    """Host re-sync of feedback weights to the learned readout weights (feedback="resync")."""
    readout = plan.layer_into(plan.readout.name)
    targets = [h for h in plan.hidden if not h.learned and readout is not None
               and readout.source == h.name and plan.options.feedback == "resync"]
    if not targets:
        return None

    def sync(_done: int) -> None:
        w = np.asarray(graph.learning[readout.name].weights.get())
        for h in targets:
            graph.feedback[h.name].weights.set(w.T.copy())
    return sync


def learn(graph: nir.NIRGraph, stream: tuple[np.ndarray, np.ndarray],
          heldout: tuple[np.ndarray, np.ndarray], options: LearnOptions,
          backend: str = "emulator", precision: str = "fixed",
          progress: Callable[[int], None] | None = None, calibration: int = 64, frozen=None,
          **compile_options) -> LearnResult:
    """Learn on the labelled ``stream`` (images, labels), measure accuracy on ``heldout`` before
    and after in the same simulation; ``calibration``: stream samples that set the error gains;
    ``frozen``: see :func:`run_plan` (images in the order held-out, stream, held-out)."""
    (xs, ys), (xh, yh) = stream, heldout
    if not len(xs):
        raise ValueError("no learning samples")
    plan = make_plan(graph, precision, options, (xs[:calibration], ys[:calibration]),
                     **compile_options)
    images = np.concatenate([xh, xs, xh])
    labels = np.concatenate([yh, ys, yh]).astype(int)
    flags = schedule(len(xs), len(xh))
    run, timing = run_plan(plan, images, labels, flags, backend, progress, frozen=frozen)
    h = len(xh)
    pred = run.logits.argmax(1)
    before = float(np.mean(pred[:h] == yh)) if h else None
    after = float(np.mean(pred[-h:] == yh)) if h else None
    stats = layer_stats(plan, run, flags)
    items = feasibility(plan, run, flags)
    facts = {"backend": backend, "precision": precision,
             "layers": ",".join(layer.name for layer in plan.layers),
             "lr": {layer.name: layer.lr for layer in plan.layers}, "samples": int(len(xs)),
             "kappa": options.kappa, "feedback": options.feedback}
    report = {
        "backend": backend, "precision": precision, "samples": int(len(images)),
        "learning_samples": int(len(xs)), "heldout_samples": int(h), "timesteps": plan.timesteps,
        "window": plan.window, "accuracy_before": before, "accuracy_after": after,
        "accuracy": after, "gain": None if before is None else after - before,
        "stream_accuracy": float(np.mean(pred[h:h + len(xs)] == ys)),
        "layers": stats, "feedback": feedback_drift(plan, run),
        "spike_rates": spike_rates(plan, run),
        "options": {"kappa": options.kappa, "feedback": options.feedback,
                    "resync_every": options.resync_every, "rounding": options.rounding,
                    "alpha": options.alpha, "seed": options.seed, "headroom": options.headroom,
                    "percentile": options.percentile, "calibration_samples": min(calibration, len(xs))},
        "error_gain": plan.error_gain, **timing,
        "feasibility": items,
        "warnings": [f"{name}: {note}" for name, s in stats.items() for note in s["notes"]]
        + [f"{item['item']}: {item['detail']}" for item in items
           if item["ok"] is False and item["where"] != "frozen"],
    }
    return LearnResult(report, learned_graph(graph, plan, run.weights, facts), run, plan, flags)
