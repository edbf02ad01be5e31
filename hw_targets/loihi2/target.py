"""Public entry points of the Loihi 2 target: what ``check`` and ``simulate`` commands call."""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import nir
import numpy as np

from neuroratebp.interchange.validation import read_nir

from .emulator import emulate_batches, spike_sums
from .graph import Network, lower, with_time  # noqa: F401  (with_time: for the commands)
from .quantize import ChipNet, LayerReport, Precision, compile_network, dequantize
from .reference import run_reference
from .resources import check_fit

BACKENDS = ("emulator", "lava")


def load_graph(path: str | Path) -> nir.NIRGraph:
    """Read a NIR file through the project's one gate for graphs (file walked before reading,
    values and sizes checked); any problem becomes a one-line ValueError."""
    return read_nir(path)


def compile_graph(graph: nir.NIRGraph, precision: Precision = "fixed", **options
                  ) -> tuple[Network, ChipNet, list[LayerReport]]:
    net = lower(graph)
    chip, reports = compile_network(net, precision, **options)
    return net, chip, reports


def check(graph: nir.NIRGraph, percentile: float = 100.0, learn: Sequence[str] | None = None,
          **options) -> dict:
    """Resources, bit widths and fit on one chip, plus quantization report and warnings.
    ``options``: ``exponent``, ``split`` of :func:`quantize.compile_network`. ``learn``: layers
    that should learn on the chip: adds the feasibility of on-chip learning (``learning``)."""
    net, chip, reports = compile_graph(graph, "fixed", percentile=percentile, **options)
    result = check_fit(chip, reports)
    result["warnings"] = net.meta.warnings() + result["warnings"]
    if learn is not None:
        from . import learning
        layers = learning.choose_layers(net, learn or None)
        plan = learning.plan_learning(net, chip, learning.LearnOptions(
            layers=layers, lr=dict.fromkeys(layers, 1.0)))
        result["learning"] = {"layers": list(layers), "window": plan.window,
                              "feasibility": learning.feasibility(plan)}
    return result


def learning():
    """The on-chip learning API (``hw_targets.loihi2.learning``)."""
    from . import learning as api
    return api


def reference_logits(graph: nir.NIRGraph, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    return np.concatenate([run_reference(graph, images[i:i + batch_size]).logits
                           for i in range(0, len(images), batch_size)])


def quantization_by_layer(graph: nir.NIRGraph, images: np.ndarray, labels: np.ndarray | None = None,
                          **options) -> dict[str, dict]:
    """Where fixed point loses against float: the float network with ONE population's parameters
    replaced by their fixed-point values (``dequantize``), then all of them (still float
    arithmetic), then the chip's integer arithmetic (the emulator, = Lava fixed_pt). Per case:
    mean |logit error| against float, agreement with float, and accuracy if labels are given."""
    _, float_chip, _ = compile_graph(graph, "float")
    _, fixed_chip, _ = compile_graph(graph, "fixed", **options)
    exact_sums = spike_sums(float_chip)
    exact = emulate_batches(float_chip, images, sums=exact_sums).logits
    fixed = {p.name: dequantize(p) for p in fixed_chip.populations}
    fixed_sums = spike_sums(replace(float_chip, populations=list(fixed.values())))
    cases = {p.name: [fixed[q.name] if q.name == p.name else q for q in float_chip.populations]
             for p in float_chip.populations}
    cases["all (float arithmetic)"] = list(fixed.values())
    out = {}
    for name, pops in cases.items():  # each population's sums built once, not per case
        sums = {key: value for p in pops
                for key, value in (fixed_sums if p is fixed[p.name] else exact_sums).items()
                if key[0] == p.name}
        logits = emulate_batches(replace(float_chip, populations=pops), images, sums=sums).logits
        out[name] = _compare(logits, exact, labels)
    out["all (chip arithmetic)"] = _compare(emulate_batches(fixed_chip, images).logits, exact, labels)
    return out


def _same_shape(logits: np.ndarray, ref: np.ndarray, labels: np.ndarray | None) -> None:
    """Chip and reference outputs are compared sample by sample, never broadcast."""
    if logits.shape != ref.shape or logits.ndim != 2:
        raise ValueError(f"the chip's outputs {list(logits.shape)} and the reference's "
                         f"{list(ref.shape)} differ in shape; expected (samples, classes) for both")
    if labels is not None and np.shape(labels) != logits.shape[:1]:
        raise ValueError(f"{np.shape(labels)} labels for {len(logits)} outputs")


def _compare(logits: np.ndarray, exact: np.ndarray, labels: np.ndarray | None) -> dict:
    row = {"mean_abs_logit_error": float(np.abs(logits - exact).mean()),
           "agreement_with_float": float(np.mean(logits.argmax(1) == exact.argmax(1)))}
    if labels is not None:
        row["accuracy"] = float(np.mean(logits.argmax(1) == labels))
    return row


def import_lava():
    """Import the Lava backend. Lava sets the multiprocessing start method when imported, which
    fails once anything has created a multiprocessing lock (tqdm does): import it first."""
    from . import lava_backend
    return lava_backend


def simulate(graph: nir.NIRGraph, images: np.ndarray, labels: np.ndarray | None = None,
             backend: str = "emulator", precision: Precision = "fixed",
             progress: Callable[[int], None] | None = None, **options) -> dict:
    """Accuracy, agreement with the float NIR reference, spike rates and time per sample.
    ``options``: ``exponent``, ``split`` of :func:`quantize.compile_network` (fixed point)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    net, chip, reports = compile_graph(graph, precision, **options)
    start = time.perf_counter()
    if backend == "lava":
        result, per_sample = import_lava().run_lava(chip, images, record="counts", progress=progress)
    else:
        result = emulate_batches(chip, images, progress=progress)
        per_sample = (time.perf_counter() - start) / max(len(images), 1)
    ref = reference_logits(graph, images)
    _same_shape(result.logits, ref, labels)
    pred, ref_pred = result.logits.argmax(1), ref.argmax(1)
    sizes = {p.name: p.size for p in chip.populations}
    out = {
        "backend": backend, "precision": precision, "samples": int(len(images)),
        "timesteps": chip.timesteps, "window": chip.window,
        "agreement_with_reference": float(np.mean(pred == ref_pred)),
        "max_logit_error": float(np.abs(result.logits - ref).max()) if len(images) else 0.0,
        "spike_rates": {k: float(c.mean() / (sizes[k] * chip.timesteps))
                        for k, c in result.spike_counts.items()},
        "saturation_events": result.saturation,
        "seconds_per_sample": per_sample,
        "warnings": net.meta.warnings() + [f"{r.name}: {w}" for r in reports for w in r.warnings],
    }
    if labels is not None:
        out["accuracy"] = float(np.mean(pred == labels))
        out["reference_accuracy"] = float(np.mean(ref_pred == labels))
    return out
