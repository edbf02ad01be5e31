"""``neuroratebp simulate model.nir --target loihi2``: run the exported network as the chip would.

Backends: ``lava`` (Lava processes, Loihi2SimCfg fixed_pt / floating_pt, one sample at a time)
or ``emulator`` (numpy, bit-exact to Lava fixed_pt, batched). Reports accuracy, agreement with
the float reference forward of the NIR graph, per-layer spike rates and time per sample.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hw_targets import get_target

from .. import data as datasets
from .. import plots
from .check_cmd import add_fixed_point_args


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("simulate", help="simulate an exported network on a hardware target",
                              description=__doc__)
    p.add_argument("model", help="model.nir written by `neuroratebp export --to nir`")
    p.add_argument("--target", default="loihi2", help="hardware target (default: loihi2)")
    p.add_argument("--backend", choices=("lava", "emulator"), default="emulator",
                   help="Lava CPU simulation or the bit-exact emulator (default: emulator)")
    p.add_argument("--precision", choices=("fixed", "float"), default="fixed",
                   help="Lava fixed_pt (chip bit widths) or floating_pt (default: fixed)")
    p.add_argument("--data", default="fmnist",
                   help="fmnist, digits, or a directory with Fashion-MNIST idx.gz / CIFAR-10 batches")
    p.add_argument("--limit", type=int, metavar="N", help="first N test samples only")
    add_fixed_point_args(p)
    p.add_argument("--plot", metavar="FILE", help="also write the figures as PNG to FILE")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def load_test_images(name: str, input_shape: tuple[int, ...], limit: int | None
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Raw test images in [0, 1] shaped like the network input, and labels."""
    if name == "fmnist":
        splits = datasets.load_fashion_mnist()
    elif name == "digits":
        splits = datasets.load_digits()
    elif Path(name).is_dir():
        gz = list(Path(name).glob("*idx3-ubyte.gz"))
        splits = datasets.load_fashion_mnist(name) if gz else datasets.load_cifar10(name)
    else:
        raise ValueError(f"--data must be fmnist, digits or a directory, got {name!r}")
    test = splits.test.head(limit)
    images, labels = test.images.numpy(), test.labels.numpy()
    if int(np.prod(images.shape[1:])) != int(np.prod(input_shape)):
        raise ValueError(f"data images {list(images.shape[1:])} do not fit the network input "
                         f"{list(input_shape)}")
    return images.reshape(len(images), *input_shape).astype(float), labels


def run(args: argparse.Namespace) -> int:
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be positive, got {args.limit}")
    if args.plot:
        plots.require(args.plot, [args.model])
    target = get_target(args.target)
    if args.backend == "lava":
        target.import_lava()
    graph = target.load_graph(args.model)
    net, _, _ = target.compile_graph(graph, args.precision)
    images, labels = load_test_images(args.data, net.input_shape, args.limit)
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
