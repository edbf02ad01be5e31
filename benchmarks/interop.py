"""Our NIR files in snnTorch, Norse and SpikingJelly, and theirs in ours, side by side.

    neuroratebp train models/fmnist_mlp.toml --method rate_m --timesteps 4 --epochs 1 --out runs/mlp
    python benchmarks/interop.py models/fmnist_convnet.pt runs/mlp/model.pt --limit 1000 \\
        -o benchmarks/results/interop.json

Ours in theirs: each checkpoint is exported as `neuroratebp export --to nir` writes it (default
convention), read back from the file, and run by each framework's own NIR importer, unmodified,
for the recorded T steps on the first N Fashion-MNIST test images normalised as the metadata
says (one batch; logits = mean over the steps of the output). Reported: accuracy, and agreement
with this project's torch model on the same images.

Theirs in ours: each framework's own export of a small MLP and conv net
(``interchange.peers.peer_example``) through our import (torch, float64) and the Loihi 2 float
emulator on the first N digits test images: agreement with the framework's own predictions, the
largest logit difference, and whether every layer's spikes are equal at every step. Writes JSON.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nir
import numpy as np
import torch

from hw_targets.loihi2 import target
from hw_targets.loihi2.emulator import emulate_batches
from neuroratebp.checkpoint import load_checkpoint, model_from_checkpoint
from neuroratebp.data import load_digits, load_fashion_mnist
from neuroratebp.engine import infer
from neuroratebp.interchange import export_nir, import_nir, write_nir
from neuroratebp.interchange.peers import KINDS, PEERS, peer_example, run_in_peer, version
from neuroratebp.neuron import LIF


def ours_in_peers(checkpoint: Path, limit: int, workdir: Path) -> dict:
    ckpt = load_checkpoint(checkpoint)
    model = model_from_checkpoint(ckpt).eval()
    path = workdir / f"{checkpoint.parent.name}_{checkpoint.stem}.nir"
    write_nir(export_nir(model, ckpt["config"]), path)
    graph = nir.read(path)
    meta = graph.metadata
    steps, dt = int(meta["timesteps"]), float(meta["dt"])
    test = load_fashion_mnist().test.head(limit)
    x = test.images.reshape(limit, *model.input_shape)
    if "normalize" in meta:
        x = (x - float(meta["normalize"]["mean"][0])) / float(meta["normalize"]["std"][0])
    labels = test.labels.numpy()
    ours = infer(model, x, steps).argmax(1).numpy()
    row = {"checkpoint": str(checkpoint), "samples": limit, "timesteps": steps, "dt": dt,
           "ours": {"accuracy": float(np.mean(ours == labels))}, "peers": {}}
    for peer in PEERS:
        start = time.perf_counter()
        try:
            out = run_in_peer(peer, graph, x, steps, dt).mean(0).reshape(limit, -1)
        except Exception as e:  # noqa: BLE001 -- a peer that cannot run the file is a result
            row["peers"][peer] = {"error": f"{type(e).__name__}: {e}".splitlines()[0]}
        else:
            pred = out.argmax(1).numpy()
            row["peers"][peer] = {"accuracy": float(np.mean(pred == labels)),
                                  "agreement_with_ours": float(np.mean(pred == ours)),
                                  "seconds": time.perf_counter() - start}
        print(checkpoint, peer, json.dumps(row["peers"][peer]), file=sys.stderr)
    return row


def peers_in_ours(limit: int, steps: int) -> dict:
    test = load_digits().test.head(limit)
    rows: dict = {}
    for peer in PEERS:
        for kind in KINDS:
            net = peer_example(peer, kind)
            (inp,) = (v for v in net.graph.nodes.values() if isinstance(v, nir.Input))
            x = test.images.reshape(limit, *(int(d) for d in inp.input_type["input"])).float()
            outputs, spikes = net.run(x, steps)
            native = outputs.mean(0).reshape(limit, -1).double().numpy()
            model = import_nir(net.graph, dt=net.dt, timesteps=steps, dtype=torch.float64)[0]
            recorded: list[torch.Tensor] = []
            hooks = [m.register_forward_hook(lambda mod, a, out: recorded.append(out.clone()))
                     for m in model.layers.values() if isinstance(m, LIF)]
            imported = infer(model, x.double(), steps).numpy()
            for h in hooks:
                h.remove()
            _, chip, _ = target.compile_graph(target.with_time(net.graph, net.dt, steps), "float")
            emulated = emulate_batches(chip, x.double().numpy()).logits
            rows[f"{peer}/{kind}"] = {
                "samples": limit, "dt": net.dt,
                "spikes_equal_every_step": all(
                    torch.equal(a.reshape(b.shape).float(), b.float()) for a, b in zip(recorded, spikes)),
                "spike_rates": [float(s.mean()) for s in spikes],
                "import_agreement": float(np.mean(imported.argmax(1) == native.argmax(1))),
                "import_max_logit_error": float(np.abs(imported - native).max()),
                "chip_float_agreement": float(np.mean(emulated.argmax(1) == native.argmax(1))),
                "chip_float_max_logit_error": float(np.abs(emulated - native).max())}
            print(peer, kind, json.dumps(rows[f"{peer}/{kind}"]), file=sys.stderr)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+", type=Path, help="trained checkpoints (model.pt)")
    p.add_argument("--limit", type=int, default=1000, help="first N test images (default 1000)")
    p.add_argument("--peer-limit", type=int, default=200,
                   help="digits test images for the peers' own exports (default 200)")
    p.add_argument("-o", "--output", default="interop.json")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        ours = [ours_in_peers(c, args.limit, Path(tmp)) for c in args.checkpoints]
    result = {"versions": {peer: version(peer) for peer in PEERS},
              "ours_in_peers": ours, "peers_in_ours": peers_in_ours(args.peer_limit, 4)}
    with open(args.output, "w") as f:
        json.dump(result, f, indent=1)
    for row in ours:
        cells = [f"{peer} {r['accuracy']:.1%} ({r['agreement_with_ours']:.1%} agree)"
                 if "accuracy" in r else f"{peer}: {r['error']}" for peer, r in row["peers"].items()]
        print(f"{row['checkpoint']}: ours {row['ours']['accuracy']:.1%}; " + "; ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())
