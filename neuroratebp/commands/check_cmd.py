"""``neuroratebp check model.nir --target loihi2``: does the network fit the chip, and at what cost.

Reports per layer neurons, synapses, cores and fixed-point choices (scale, weight exponents,
threshold, quantization error), totals against one chip, and what does not fit and why.
"""
from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from hw_targets import get_target

from .. import plots
from .options import add_plot_arg


def add_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("check", help="resources and fixed-point fit on a hardware target",
                              description=__doc__)
    p.add_argument("model", help="model.nir written by `neuroratebp export --to nir`")
    p.add_argument("--target", default="loihi2", help="hardware target (default: loihi2)")
    p.add_argument("--percentile", type=float, default=100.0,
                   help="weight magnitude percentile mapped to the 8-bit maximum (default 100: "
                        "no clipping)")
    add_time_args(p)
    add_fixed_point_args(p)
    p.add_argument("--learn", metavar="LAYERS", nargs="?", const="",
                   help="also check on-chip learning of these comma-separated layers (alone: "
                        "every dense layer that can learn)")
    add_plot_arg(p, "cores, neurons and synapses per layer")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


MARKS = {True: "ok ", False: "NO ", None: "-  "}
"""Feasibility items: limit met, not met, or a mapping without a limit."""


def add_time_args(p: argparse.ArgumentParser) -> None:
    """Time step and T for graphs whose metadata lacks them (files from other frameworks)."""
    p.add_argument("--dt", type=float,
                   help="time step the NIR dynamics are meant for (default: the graph metadata's; "
                        "snnTorch and SpikingJelly files: 1e-4)")
    p.add_argument("--timesteps", "-T", type=int,
                   help="steps per sample (default: the graph metadata's)")


def add_fixed_point_args(p: argparse.ArgumentParser) -> None:
    """Fixed-point compile options shared by `check` and `simulate`."""
    p.add_argument("--exponent", choices=("max", "mse"), default="max",
                   help="weight exponent per synapse group: largest weight fills 8 bits (max, "
                        "default) or least squared error incl. clipping (mse)")
    p.add_argument("--split", choices=("none", "input", "all"), default="input",
                   help="second 8-bit residual synapse group (~16-bit weights) for the input "
                        "layer (default), every layer, or none")


def _plain(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


def run(args: argparse.Namespace) -> int:
    if args.plot:
        plots.require(args.plot, [args.model])
    target = get_target(args.target)
    learn = None if args.learn is None else [n for n in args.learn.split(",") if n]
    graph = target.with_time(target.load_graph(args.model), args.dt, args.timesteps)
    report = target.check(graph, percentile=args.percentile,
                          exponent=args.exponent, split=args.split, learn=learn)
    if args.plot:
        plots.save(plots.resources(report), args.plot, [args.model])
    if args.json:
        print(json.dumps(_plain(report)))
        return 0 if report["fits"] else 1
    print(f"{args.model} on {report['target']} (T={report['timesteps']}, "
          f"{report['window']} steps per sample incl. layer delays)")
    print(f"{'layer':<14}{'neurons':>10}{'synapses':>12}{'stored w':>10}{'cores':>7}{'B/core':>9}"
          f"{'cores exp':>10}{'w_exp':>9}{'vth':>8}{'w err':>8}{'clip':>7}")
    for layer, q in zip(report["layers"], report["quantization"]):
        exps = ",".join(str(e) for e in layer["weight_exp"])
        print(f"{layer['name']:<14}{layer['neurons']:>10,}{layer['synapses']:>12,}"
              f"{layer['stored_weights']:>10,}{layer['cores'] or 'n/a':>7}"
              f"{layer['shared_bytes_per_core']:>9,}{layer['cores_expanded']:>10}{exps:>9}"
              f"{int(q['vth']):>8}{q['weight_rel_error']:>8.2%}{q['weight_clipped']:>7.2%}")
    t, lim = report["totals"], report["limits"]
    print(f"{'total':<14}{t['neurons']:>10,}{t['synapses']:>12,}{t['stored_weights']:>10,}{t['cores']:>7}"
          f"{'':>9}{t['cores_expanded']:>10}")
    print(f"chip limits: {lim['neurons']:,} neurons, {lim['synapses']:,} synapses, {lim['cores']} cores")
    print(f"cores (decide the fit) = {report['model']['cores']}")
    print(f"cores exp = {report['model']['cores_expanded']} "
          f"({'fits' if report['fits_expanded'] else 'does not fit'} one chip that way)")
    for w in report["warnings"]:
        print(f"warning: {w}")
    if "learning" in report:
        learning = report["learning"]
        print(f"on-chip learning of {', '.join(learning['layers'])} (window {learning['window']} steps):")
        for item in learning["feasibility"]:
            value = "" if item["value"] is None else f" = {item['value']}"
            print(f"  {MARKS[item['ok']]}{item['item']}{value} [{item['where']}] "
                  f"{item['detail']} (source: {item['source']})")
    if report["fits"]:
        print("fits one chip (shared-weight estimate)")
        return 0
    for p in report["problems"]:
        print(f"does not fit: {p}")
    return 1
