"""``neuroratebp learn model.nir --target loihi2``: on-chip rate-BP learning, simulated.

Streams labelled samples (the training split) through the chip's learning graph, where the
chosen dense layers learn with the learning engine's three-factor rule, one update per sample;
measures accuracy on held-out images (the test split) before and after, in the same simulation;
reports each layer's rule constants, update sizes and what a Loihi 2 could run; writes the
learned network as NIR (``-o``). ``--task demo``: the zoo model adapting to inverted-contrast
Fashion-MNIST from 1,000 samples, measured on 2,000 held-out images.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
from tqdm import tqdm

from hw_targets import get_target

from .. import plots
from ..files import refuse_overwrite
from ..interchange import write_nir
from ..interchange.export import recorded_data
from ..data import data_table
from .check_cmd import MARKS, _plain, add_fixed_point_args, add_time_args
from .options import add_data_arg, add_output_arg, add_plot_arg, integer
from .simulate_cmd import load_test_images

SHIFTS = ("none", "invert")
DEMO = {"data": "fmnist", "shift": "invert", "limit": 1000, "heldout": 2000, "lr": "0.01"}
"""--task demo: options it sets unless given."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("learn", help="simulate on-chip learning (rate-BP) on a hardware target",
                              description=__doc__)
    p.add_argument("model", help="model.nir written by `neuroratebp export --to nir`")
    p.add_argument("--target", default="loihi2", help="hardware target (default: loihi2)")
    p.add_argument("--task", choices=("demo",), help="demo: inverted-contrast Fashion-MNIST "
                   "adaptation (sets --data fmnist --shift invert --limit 1000 --heldout 2000 --lr 0.01)")
    p.add_argument("--backend", choices=("lava", "emulator"), default="emulator",
                   help="Lava processes or the bit-exact emulator (default: emulator)")
    p.add_argument("--precision", choices=("fixed", "float"), default="fixed",
                   help="Lava fixed_pt (learning-engine widths) or floating_pt (default: fixed)")
    p.add_argument("--layers", help="comma-separated NIR layers that learn (default: every dense "
                   "layer that can)")
    p.add_argument("--lr", help="SGD learning rate of the NIR weights, one for all (0.01) or per "
                   "layer (fc1=0.005,fc2=0.01); default 0.01")
    add_data_arg(p)
    p.add_argument("--limit", type=integer(1), metavar="N", help="learn from the first N training "
                   "samples (default: 1000)")
    p.add_argument("--heldout", type=integer(0), metavar="N", help="held-out test images measured "
                   "before and after (default: 1000)")
    p.add_argument("--shift", choices=SHIFTS, help="input shift the network adapts to "
                   "(invert: x -> 1 - x; default: none)")
    p.add_argument("--kappa", choices=("exact", "no-recursion", "triangle", "triangle-no-recursion"),
                   default="exact", help="eligibility of hidden neurons (default: exact rate-BP)")
    p.add_argument("--feedback", choices=("learned", "resync"), default="learned",
                   help="how the feedback W_out^T follows learning: learned on the engine "
                        "(default) or re-synced by the host every --resync-every samples")
    p.add_argument("--resync-every", type=int, default=10, metavar="K")
    p.add_argument("--rounding", choices=("stochastic", "nearest"), default="stochastic",
                   help="rounding of errors and deltas to 7-bit third factors (fixed point)")
    p.add_argument("--calibration", type=int, default=64, metavar="N",
                   help="learning samples that set the error gains (default 64)")
    p.add_argument("--headroom", type=float, default=1.5, metavar="FACTOR",
                   help="fixed point: learning weights start within 1/FACTOR of the 8-bit range "
                        "(coarser steps if needed; default 1.5)")
    p.add_argument("--seed", type=int, default=0, help="random streams of the learning graph")
    add_time_args(p)
    add_fixed_point_args(p)
    add_output_arg(p, "write the learned network as NIR")
    add_plot_arg(p, "accuracy before/after, update sizes and third factors per layer")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def parse_lr(text: str | None, layers: list[str]) -> dict[str, float]:
    """``0.01`` for every layer, or ``fc1=0.005,fc2=0.01``."""
    text = text or "0.01"
    try:
        if "=" not in text:
            return {name: float(text) for name in layers}
        rates = {}
        for part in text.split(","):
            name, value = part.split("=")
            rates[name.strip()] = float(value)
    except ValueError:
        raise ValueError(f"--lr must be a number or name=number pairs, got {text!r}") from None
    unknown = sorted(set(rates) - set(layers))
    if unknown:
        raise ValueError(f"--lr names {', '.join(unknown)}, which do not learn (layers: {', '.join(layers)})")
    return rates


def shift_images(images: np.ndarray, shift: str) -> np.ndarray:
    """The input distribution the deployed network meets."""
    return 1.0 - images if shift == "invert" else images


def load_learning_data(data: str | None, input_shape: tuple[int, ...], stream: int, heldout: int,
                       shift: str, recorded: dict | None = None
                       ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """(stream images, labels) from the training split, (held-out images, labels) from the test
    split, both shifted; ``data``/``recorded`` as in ``simulate``'s ``load_test_images``."""
    xs, ys = load_test_images(data, input_shape, stream, recorded, split="train")
    xh, yh = load_test_images(data, input_shape, heldout, recorded, split="test") if heldout else \
        (np.zeros((0, *input_shape)), np.zeros(0, int))
    return (shift_images(xs, shift), ys), (shift_images(xh, shift), yh)


def run(args: argparse.Namespace) -> int:
    if args.task == "demo":
        for key, value in DEMO.items():
            if getattr(args, key) is None:
                setattr(args, key, value)
    shift = args.shift or "none"
    limit, heldout = args.limit if args.limit is not None else 1000, \
        args.heldout if args.heldout is not None else 1000
    target = get_target(args.target)
    if args.backend == "lava":
        target.import_lava()
    if args.output:
        refuse_overwrite(args.output, [args.model])
    inputs = [args.model, *([args.output] if args.output else [])]
    if args.plot:
        plots.require(args.plot, inputs)
    graph = target.with_time(target.load_graph(args.model), args.dt, args.timesteps)
    learning = target.learning()
    net, _, _ = target.compile_graph(graph, "float")
    layers = list(learning.choose_layers(net, args.layers.split(",") if args.layers else None))
    options = learning.LearnOptions(layers=tuple(layers), lr=parse_lr(args.lr, layers),
                                    kappa=args.kappa, feedback=args.feedback,
                                    resync_every=args.resync_every, rounding=args.rounding,
                                    seed=args.seed, headroom=args.headroom)
    recorded = recorded_data(graph.metadata)
    data = data_table(recorded, args.data)["dataset"]
    stream, held = load_learning_data(args.data, net.input_shape, limit, heldout, shift, recorded)
    total = len(stream[0]) + 2 * len(held[0])
    with tqdm(total=total, desc=f"learn {args.backend} {args.precision}", unit="sample",
              disable=args.json) as bar:
        result = learning.learn(graph, stream, held, options, args.backend, args.precision,
                                bar.update, args.calibration, exponent=args.exponent,
                                split=args.split)
    report = {**_plain(result.report), "data": data, "shift": shift, "task": args.task}
    if args.output:
        write_nir(result.graph, args.output)
        report["output"] = str(args.output)
    if args.plot:
        plots.save(plots.learn_report(report), args.plot, inputs)
    if args.json:
        print(json.dumps(report))
        return 0
    _print(report)
    return 0


def _print(r: dict) -> None:
    acc = "n/a" if r["accuracy_before"] is None else \
        f"{r['accuracy_before']:.4f} -> {r['accuracy_after']:.4f} ({r['gain']:+.4f})"
    print(f"{r['backend']} ({r['precision']}), T={r['timesteps']}, window {r['window']} steps: learned "
          f"from {r['learning_samples']} samples ({r['data']}, shift {r['shift']}); held-out accuracy "
          f"on {r['heldout_samples']}: {acc}; {r['seconds_per_sample'] * 1e3:.1f} ms/sample")
    for name, s in r["layers"].items():
        update = "" if s["mean_update_lsb"] is None else f", mean update {s['mean_update_lsb']:.3g} LSB"
        print(f"  {name}: lr {s['lr']:g} -> c = {s['mantissa']}*2^{s['exponent']}, impulse "
              f"{s['trace_impulse']}, gain {s['third_factor_gain']:.3g} (calibrated "
              f"{s['calibrated_gain']:.3g}); third factors {s['third_factors_saturated']:.2%} "
              f"saturated, {s['third_factors_zero']:.2%} zero{update}; "
              f"{s['weights_changed']:.1%} of weights changed, {s['weights_at_bound']:.2%} at bounds")
    for name, d in r["feedback"].items():
        print(f"  feedback {name}: {d['mode']}, max |B - W_out^T| = {d['max_abs_difference']:.3g} {d['units']}")
    print("feasibility on Loihi 2:")
    for item in r["feasibility"]:
        mark = MARKS[item["ok"]]
        value = "" if item["value"] is None else f" = {item['value']:.4g}" if isinstance(
            item["value"], float) else f" = {item['value']}"
        print(f"  {mark}{item['item']}{value} [{item['where']}] {item['detail']} (source: {item['source']})")
    for w in r["warnings"]:
        print(f"warning: {w}")
    if "output" in r:
        print(f"wrote {r['output']}")
