"""``neuroratebp eval model.pt``: test accuracy and per-layer spike rates of a trained model."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .. import plots
from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..data import Normalization, data_table, load_dataset, shaped_like
from ..limits import timesteps as check_timesteps
from ..train import evaluate, resolve_device
from .options import add_data_arg, add_limit_arg, add_plot_arg


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("eval", help="test accuracy and spike rates of a checkpoint",
                              description="Test accuracy and per-layer spike rates of a trained "
                                          "model (spiking forward pass, eval mode).")
    p.add_argument("checkpoint", help="model.pt written by `neuroratebp train` or `import`")
    add_data_arg(p)
    add_limit_arg(p)
    p.add_argument("--timesteps", "-T", type=int, help="simulation steps (default: the training T)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    add_plot_arg(p)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    ckpt = load_checkpoint(args.checkpoint)
    config = ckpt["config"]
    if args.timesteps is not None:
        timesteps = check_timesteps(args.timesteps, "--timesteps")
    elif "timesteps" in config.get("train", {}):
        timesteps = check_timesteps(config["train"]["timesteps"], "the checkpoint's timesteps")
    else:
        raise ValueError("the checkpoint records no training timesteps: pass --timesteps T")
    if args.plot:
        plots.require(args.plot, [args.checkpoint])
    device = resolve_device(args.device)
    model = model_from_checkpoint(ckpt).to(device)
    table = data_table(config.get("data", {}), args.data)
    data = load_dataset(table)
    test = Normalization.from_table(table, data.train).apply(data).test.head(args.limit)
    result = evaluate(model, shaped_like(test, model.input_shape, table["dataset"]), timesteps)
    if args.plot:
        plots.save(plots.eval_report(result, timesteps, device.type), args.plot, [args.checkpoint])
    if args.json:
        print(json.dumps({"accuracy": result.accuracy, "samples": result.samples,
                          "timesteps": timesteps, "spike_rates": result.spike_rates}))
        return 0
    print(f"test accuracy {result.accuracy:.4f} on {result.samples} samples (T={timesteps})")
    for name, rate in result.spike_rates.items():
        print(f"  {name}: spike rate {rate:.4f}")
    return 0
