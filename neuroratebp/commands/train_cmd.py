"""``neuroratebp train CONFIG``: train an SNN; flags override the config's ``[train]`` table."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from .. import plots
from ..config import load_config
from ..distributed import process_group_from_env, rank_and_world
from ..engine import METHODS
from ..train import fit, resolve_device

DESCRIPTION = """\
Train an SNN from a run config (models/*.toml); flags override its [train] table.
Writes OUT/last.pt (resumable), OUT/metrics.jsonl (and its curves, OUT/metrics.png) and,
at the end, OUT/model.pt.

Data-parallel: torchrun --nproc-per-node N -m neuroratebp train CONFIG ...
(gloo on CPU, nccl on GPU); --batch-size is then the global batch, rank 0 writes OUT."""


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("train", help="train an SNN with rate-BP or BPTT",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="run config (TOML), e.g. models/fmnist_mlp.toml")
    p.add_argument("--method", help=f"training method: {', '.join(METHODS)}")
    p.add_argument("--timesteps", "-T", type=int, help="simulation steps per sample")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--seed", type=int)
    p.add_argument("--limit-train", type=int, metavar="N", help="train on the first N samples only")
    p.add_argument("--data", metavar="PATH", help="data set directory (overrides [data] path)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--out", type=Path, help="run directory (default: runs/<config name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its last.pt (starts fresh if there is none)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar or per-epoch lines")
    p.set_defaults(func=run)


def _epoch_line(row: dict[str, Any]) -> None:
    print(f"epoch {row['epoch']}: loss {row['train_loss']:.4f}  train acc {row['train_acc']:.4f}  "
          f"test acc {row['test_acc']:.4f}  lr {row['lr']:.4g}  {row['epoch_time_s']:.1f} s",
          file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    if args.data:
        config["data"]["path"] = args.data
    out = args.out or Path("runs") / Path(args.config).stem
    with process_group_from_env(resolve_device(args.device)) as device:
        result = fit(config, out_dir=out, method=args.method, timesteps=args.timesteps,
                     epochs=args.epochs, batch_size=args.batch_size, seed=args.seed,
                     limit_train=args.limit_train, device=device, resume=args.resume,
                     quiet=args.quiet or args.json,
                     on_epoch=plots.curves_on_epoch(out, None if args.quiet or args.json else _epoch_line))
        if rank_and_world()[0] != 0:
            return 0
    train = result.config["train"]
    summary = {"test_acc": result.test_acc, "train_acc": result.history[-1]["train_acc"],
               "method": train["method"], "timesteps": train["timesteps"],
               "epochs": len(result.history), "train_time_s": sum(h["epoch_time_s"] for h in result.history),
               "model": str(out / "model.pt")}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"test accuracy {summary['test_acc']:.4f} ({summary['method']}, T={summary['timesteps']}, "
              f"{summary['epochs']} epochs) -> {summary['model']}")
    return 0
