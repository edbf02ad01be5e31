"""``neuroratebp export model.pt --to nir``: write a trained checkpoint in an interchange format.

Targets are a small table (name -> default suffix + writer), so a new format (e.g. a Loihi netx
file from ``hw_targets``) is one entry.
"""
from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hw_targets.loihi2.netx import write_netx, write_netx_target
from hw_targets.loihi2.target import load_graph

from ..checkpoint import load_checkpoint, model_from_checkpoint
from ..files import refuse_overwrite
from ..interchange import DEFAULT_DT, export_nir, write_nir
from ..network import SNN
from .options import integer


@dataclass(frozen=True)
class ExportOptions:
    allow_approximate: bool = False
    timesteps: int | None = None
    dt: float = DEFAULT_DT


Writer = Callable[[SNN, Mapping[str, Any], Path, ExportOptions], dict[str, Any]]
"""Writes ``model`` (eval mode, with its run config) to a path; returns facts for the report."""


@dataclass(frozen=True)
class Target:
    suffix: str
    write: Writer


def write_nir_target(model: SNN, config: Mapping[str, Any], path: Path,
                     options: ExportOptions) -> dict[str, Any]:
    graph = export_nir(model, config, dt=options.dt, timesteps=options.timesteps,
                       allow_approximate=options.allow_approximate)
    write_nir(graph, path)
    meta = graph.metadata
    return {"nodes": len(graph.nodes), "edges": len(graph.edges), "dt": meta["dt"],
            "timesteps": meta["timesteps"], "approximations": meta.get("approximations", "")}


TARGETS: dict[str, Target] = {"nir": Target(".nir", write_nir_target),
                              "netx": Target(".net", write_netx_target)}


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a trained checkpoint (NIR, ...)",
                              description="Export a checkpoint for other tools and hardware "
                                          "targets; NIR: BatchNorm folded, neuron semantics, dt, "
                                          "T and input encoding in the graph metadata.")
    p.add_argument("checkpoint", type=Path, help="model.pt written by neuroratebp train (or, for "
                   "--to netx, a .nir graph, e.g. one `neuroratebp learn -o` wrote)")
    p.add_argument("--to", choices=sorted(TARGETS), default="nir",
                   help="output format (default: nir)")
    p.add_argument("-o", "--output", type=Path,
                   help="output file (default: the checkpoint's name with the format's suffix)")
    p.add_argument("--allow-approximate", action="store_true",
                   help="export neurons the format cannot express exactly (soft reset, >= "
                        "threshold) as its nearest neuron, recorded in the metadata")
    p.add_argument("--timesteps", "-T", type=integer(1), help="T to record (default: the checkpoint's)")
    p.add_argument("--dt", type=float, default=DEFAULT_DT,
                   help=f"NIR: time step of the neuron mapping (default {DEFAULT_DT:g}, the step "
                        "snnTorch assumes; see docs/export_format.md)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    target = TARGETS[args.to]
    output = args.output or args.checkpoint.with_suffix(target.suffix)
    refuse_overwrite(output, [args.checkpoint])
    if args.checkpoint.suffix == ".nir":
        return _from_nir(args, target, output)
    ckpt = load_checkpoint(args.checkpoint)
    model = model_from_checkpoint(ckpt)
    options = ExportOptions(args.allow_approximate, args.timesteps, args.dt)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        facts = target.write(model, ckpt["config"], output, options)
    for w in caught:
        print(f"neuroratebp export: warning: {w.message}", file=sys.stderr)
    report = {"target": args.to, "checkpoint": str(args.checkpoint), "output": str(output), **facts}
    if args.json:
        print(json.dumps(report))
    else:
        details = ", ".join(f"{k}={v}" for k, v in facts.items() if v != "")
        print(f"wrote {output} ({details})")
    return 0


def _from_nir(args: argparse.Namespace, target: Target, output: Path) -> int:
    """A NIR graph (already exported, or learned on the chip) compiled to a hardware format."""
    if args.to == "nir":
        raise ValueError(f"{args.checkpoint} is already a NIR graph")
    facts = write_netx(load_graph(args.checkpoint), output)
    report = {"target": args.to, "checkpoint": str(args.checkpoint), "output": str(output), **facts}
    print(json.dumps(report) if args.json else f"wrote {output}")
    return 0
