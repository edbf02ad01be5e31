"""``neuroratebp train CONFIG``: train an SNN; flags override the config's ``[train]`` table."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import plots
from ..config import load_config
from ..data import data_table
from ..distributed import process_group_from_env, rank_and_world
from ..engine import METHODS
from ..train import epochs_text, fit, resolve_device
from .options import add_data_arg, add_limit_arg, add_output_arg, integer, positive_number

DESCRIPTION = """\
Train an SNN from a run config (models/*.toml); flags override its [train] table.
Writes OUT/last.pt (resumable), OUT/metrics.jsonl (and its curves, OUT/metrics.png) and,
at the end, OUT/model.pt; OUT is locked while the run lasts. --resume with a larger --epochs
extends a finished run.

Data-parallel: torchrun --nproc-per-node N -m neuroratebp train CONFIG ...
(gloo on CPU, nccl on GPU); --batch-size is then the global batch, rank 0 writes OUT."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train an SNN with rate-BP or BPTT",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="run config (TOML), e.g. models/fmnist_mlp.toml")
    p.add_argument("--method", help=f"training method: {', '.join(METHODS)}")
    p.add_argument("--timesteps", "-T", type=integer(1), help="simulation steps per sample")
    p.add_argument("--epochs", type=integer(1))
    p.add_argument("--batch-size", type=integer(1), help="global batch size")
    p.add_argument("--lr", type=positive_number, help="learning rate (start of the cosine schedule)")
    p.add_argument("--seed", type=integer(0))
    add_limit_arg(p)
    add_data_arg(p)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    add_output_arg(p, "run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in -o from its last.pt (starts fresh if there is none)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=run)


def _epoch_line(row: dict[str, Any]) -> None:
    print(f"epoch {row['epoch']}: loss {row['train_loss']:.4f}  train accuracy "
          f"{row['train_accuracy']:.4f}  accuracy {row['accuracy']:.4f}  lr {row['lr']:.4g}  "
          f"{row['epoch_time_s']:.1f} s", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.data:
        config["data"] = data_table(config["data"], args.data)
    out = args.output or Path("runs") / Path(args.config).stem
    with process_group_from_env(resolve_device(args.device)) as device:
        result = fit(config, out_dir=out, method=args.method, timesteps=args.timesteps,
                     epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                     limit_train=args.limit, lr=args.lr, device=device, resume=args.resume,
                     quiet=args.quiet or args.json,
                     on_epoch=plots.curves_on_epoch(out, None if args.quiet or args.json else _epoch_line))
        if rank_and_world()[0] != 0:
            return 0
    train = result.config["train"]
    last = result.history[-1]
    summary = {"accuracy": last["accuracy"], "train_accuracy": last["train_accuracy"],
               "spike_rates": last["spike_rates"], "method": train["method"],
               "timesteps": train["timesteps"], "epochs": len(result.history),
               "train_time_s": sum(h["epoch_time_s"] for h in result.history),
               "output": str(out / "model.pt")}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"test accuracy {summary['accuracy']:.4f} ({summary['method']}, "
              f"T={summary['timesteps']}, {epochs_text(summary['epochs'])}) -> {summary['output']}")
    return 0
