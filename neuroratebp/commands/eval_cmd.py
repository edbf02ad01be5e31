"""``neuroratebp eval model.pt``: test accuracy and per-layer firing rates of a trained model."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .. import plots
from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..data import Normalization, load_dataset
from ..train import evaluate, resolve_device


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("eval", help="test accuracy and firing rates of a checkpoint",
                              description="Test accuracy and per-layer firing rates of a trained "
                                          "model (spiking forward pass, eval mode).")
    p.add_argument("checkpoint", help="model.pt written by `neuroratebp train`")
    p.add_argument("--data", metavar="PATH", help="data set directory (overrides the stored [data] path)")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate the first N test samples only")
    p.add_argument("--timesteps", "-T", type=int, help="simulation steps (default: the training T)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--plot", metavar="FILE", help="also write the figures as PNG to FILE")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    device = resolve_device(args.device)
    model = model_from_checkpoint(ckpt).to(device)
    config = ckpt["config"]
    table = dict(config.get("data", {}))
    if args.data:
        table["path"] = args.data
    timesteps = args.timesteps or config.get("train", {}).get("timesteps")
    if not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError("the checkpoint records no training timesteps: pass --timesteps T")
    if args.limit is not None and args.limit < 1:
        raise ValueError(f"--limit must be positive, got {args.limit}")
    if args.plot:
        plots.require(args.plot, [args.checkpoint])
    data = load_dataset(table)
    test = Normalization.from_table(table, data.train).apply(data).test.head(args.limit)
    result = evaluate(model, test, timesteps)
    if args.plot:
        plots.save(plots.eval_report(result, timesteps, device.type), args.plot, [args.checkpoint])
    if args.json:
        print(json.dumps({"accuracy": result.accuracy, "samples": result.samples,
                          "timesteps": timesteps, "firing_rates": result.firing_rates}))
        return 0
    print(f"test accuracy {result.accuracy:.4f} on {result.samples} samples (T={timesteps})")
    for name, rate in result.firing_rates.items():
        print(f"  {name}: firing rate {rate:.4f}")
    return 0
