"""Simulated-chip accuracy of an exported model: Lava fixed/float and the emulator, side by side.

    python benchmarks/lava_sim.py model.nir --data fmnist --limit 1000 --lava-limit 100 -o out.json

Without a model it measures the example conv net on random images (speed only). With
``--by-layer N`` it also attributes the fixed-point error to layers on the first N images
(``target.quantization_by_layer``). Writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys

from hw_targets.loihi2 import examples, target

target.import_lava()  # before tqdm/anything creates a multiprocessing lock

from neuroratebp.commands.simulate_cmd import load_test_images  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", nargs="?", help="model.nir (default: the example conv net)")
    p.add_argument("--data", default="fmnist")
    p.add_argument("--limit", type=int, default=1000, help="samples for the emulator")
    p.add_argument("--lava-limit", type=int, default=100, help="samples for Lava (slow)")
    p.add_argument("--by-layer", type=int, default=0, metavar="N",
                   help="per-layer quantization attribution on the first N samples (0: skip)")
    p.add_argument("-o", "--output", default="lava_sim.json")
    args = p.parse_args(argv)
    if args.model:
        graph = target.load_graph(args.model)
        shape = target.compile_graph(graph, "float")[0].input_shape
        images, labels = load_test_images(args.data, shape, args.limit)
    else:
        graph = examples.conv_graph((1, 12, 12), 4)
        images, labels = examples.random_images(graph, args.limit), None
    runs = {}
    for backend, precision, n in (("emulator", "fixed", args.limit), ("emulator", "float", args.limit),
                                  ("lava", "fixed", args.lava_limit), ("lava", "float", args.lava_limit)):
        sub = None if labels is None else labels[:n]
        runs[f"{backend}_{precision}"] = target.simulate(graph, images[:n], sub, backend, precision)
        print(backend, precision, json.dumps(runs[f"{backend}_{precision}"]), file=sys.stderr)
    result = {"model": args.model or "examples.conv_graph(1x12x12, 4 ch)", "data": args.data,
              "runs": runs}
    if args.by_layer:
        sub = None if labels is None else labels[:args.by_layer]
        result["quantization_by_layer"] = target.quantization_by_layer(graph, images[:args.by_layer], sub)
        print("by layer", json.dumps(result["quantization_by_layer"]), file=sys.stderr)
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps({k: {m: v.get(m) for m in ("accuracy", "agreement_with_reference",
                                                "seconds_per_sample")} for k, v in runs.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
