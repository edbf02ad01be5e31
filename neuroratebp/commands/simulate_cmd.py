"""``neuroratebp simulate model.nir --target loihi2``: run the exported network as the chip would.

Backends: ``lava`` (Lava processes, Loihi2SimCfg fixed_pt / floating_pt, one sample at a time)
or ``emulator`` (numpy, bit-exact to Lava fixed_pt, batched). Reports accuracy, agreement with
the float reference forward of the NIR graph, per-layer spike rates and time per sample.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
from tqdm import tqdm

from hw_targets import get_target

from .. import data as datasets
from .. import plots
from ..interchange.export import recorded_data
from .check_cmd import add_fixed_point_args, add_time_args
from .options import add_data_arg, add_limit_arg, add_plot_arg


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("simulate", help="simulate an exported network on a hardware target",
                              description=__doc__)
    p.add_argument("model", help="model.nir written by `neuroratebp export --to nir`")
    p.add_argument("--target", default="loihi2", help="hardware target (default: loihi2)")
    p.add_argument("--backend", choices=("lava", "emulator"), default="emulator",
                   help="Lava CPU simulation or the bit-exact emulator (default: emulator)")
    p.add_argument("--precision", choices=("fixed", "float"), default="fixed",
                   help="Lava fixed_pt (chip bit widths) or floating_pt (default: fixed)")
    add_data_arg(p)
    add_limit_arg(p)
    add_time_args(p)
    add_fixed_point_args(p)
    add_plot_arg(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def load_test_images(data: str | None, input_shape: tuple[int, ...], limit: int | None,
                     recorded: Mapping[str, Any] | None = None,
                     split: str = "test") -> tuple[np.ndarray, np.ndarray]:
    """Raw images in [0, 1] of a split (default: test) shaped like the network input, and
    labels. ``data`` is the ``--data NAME|DIR`` value; None takes the ``recorded`` data set,
    else fmnist."""
    table = datasets.data_table(recorded or {}, data)
    part = getattr(datasets.load_dataset(table), split).head(limit)
    part = datasets.shaped_like(part, input_shape, table["dataset"])
    return part.images.numpy().astype(float), part.labels.numpy()


def run(args: argparse.Namespace) -> int:
    if args.plot:
        plots.require(args.plot, [args.model])
    target = get_target(args.target)
    if args.backend == "lava":
        target.import_lava()
    graph = target.with_time(target.load_graph(args.model), args.dt, args.timesteps)
    net, _, _ = target.compile_graph(graph, args.precision)
    images, labels = load_test_images(args.data, net.input_shape, args.limit, recorded_data(graph.metadata))
    with tqdm(total=len(images), desc=f"{args.backend} {args.precision}", unit="sample",
              disable=args.json) as bar:
        result = target.simulate(graph, images, labels, args.backend, args.precision, bar.update,
                                 exponent=args.exponent, split=args.split)
    if args.plot:
        plots.save(plots.simulate_report(result), args.plot, [args.model])
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.backend} ({args.precision}) on {result['samples']} samples, T={result['timesteps']}: "
          f"accuracy {result['accuracy']:.4f} (float reference {result['reference_accuracy']:.4f}), "
          f"agreement with reference {result['agreement_with_reference']:.4f}, "
          f"{result['seconds_per_sample'] * 1e3:.2f} ms/sample")
    for name, rate in result["spike_rates"].items():
        print(f"  {name}: spike rate {rate:.4f}")
    if any(result["saturation_events"].values()):
        print(f"  saturation events (24-bit u/v): {result['saturation_events']}")
    for w in result["warnings"]:
        print(f"warning: {w}")
    return 0
