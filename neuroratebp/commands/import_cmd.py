"""``neuroratebp import model.nir``: turn a NIR graph into a checkpoint of this project.

The checkpoint's config has ``[model] arch = "graph"`` (the layers as plain data), so every
command that takes a checkpoint (eval, export, simulate, ...) rebuilds the imported network.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..checkpoint import make_checkpoint, save_atomic
from ..files import refuse_overwrite
from ..interchange import import_nir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("import", help="import a NIR graph as a checkpoint",
                              description="Import a NIR file (Affine, Conv2d, LIF, IF, Flatten, "
                                          "Sum/AvgPool2d, fan-in) as a neuroratebp checkpoint.")
    p.add_argument("graph", type=Path, help="model.nir")
    p.add_argument("-o", "--output", type=Path,
                   help="checkpoint to write (default: the graph's name with .pt; an existing "
                        "file is only replaced when named with -o)")
    p.add_argument("--dt", type=float,
                   help="time step for the NIR dynamics (default: the graph metadata's dt; "
                        "snnTorch and SpikingJelly files: 1e-4)")
    p.add_argument("--timesteps", "-T", type=int,
                   help="T, steps per sample, to record (default: the graph metadata's)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    output = args.output or args.graph.with_suffix(".pt")
    if args.output is None and output.exists():
        raise ValueError(f"{output} exists; choose the checkpoint to write with -o")
    refuse_overwrite(output, [args.graph])
    model, config = import_nir(args.graph, dt=args.dt, timesteps=args.timesteps)
    if "timesteps" not in config["train"]:
        raise ValueError(f"{args.graph}: the graph metadata has no 'timesteps'; pass --timesteps "
                         "(T, the steps per sample the network runs)")
    save_atomic(make_checkpoint(model, config, source=str(args.graph)), output)
    layers = config["model"]["layers"]
    report = {"graph": str(args.graph), "output": str(output), "layers": len(layers),
              "lif_layers": sum(layer["type"] == "lif" for layer in layers),
              "input_shape": config["model"]["input_shape"],
              "timesteps": config["train"].get("timesteps")}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"wrote {output} ({report['layers']} layers, {report['lif_layers']} LIF, "
              f"input {report['input_shape']}, T={report['timesteps']})")
    return 0
