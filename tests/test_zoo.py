"""The shipped zoo checkpoint: loads as a checkpoint, keeps its accuracy, deploys in fixed point."""
from __future__ import annotations

from pathlib import Path

from hw_targets.loihi2.target import import_lava

import_lava()  # before anything creates a multiprocessing lock (tqdm)

from cli_run import cli_json  # noqa: E402
from neuroratebp.checkpoint import load_checkpoint  # noqa: E402
from neuroratebp.cli import main  # noqa: E402

ZOO = Path(__file__).resolve().parent.parent / "models" / "fmnist_convnet.pt"


def test_zoo_convnet_checkpoint_accuracy_and_fixed_point(tmp_path: Path) -> None:
    ckpt = load_checkpoint(ZOO)  # weights_only: a plain checkpoint, nothing executed
    assert ckpt["config"]["train"]["method"] == "rate_m" and ckpt["config"]["train"]["timesteps"] == 4
    assert ckpt["config"]["neuron"]["preset"] == "chip"
    # 95.1 % measured on these 1,000 images (93.77 % on all 10,000; models/README.md)
    torch_run = cli_json("eval", str(ZOO), "--limit", "1000")
    assert torch_run["accuracy"] >= 0.93
    nir_file = tmp_path / "zoo.nir"
    assert main(["export", str(ZOO), "--to", "nir", "-o", str(nir_file)]) == 0
    fixed = cli_json("simulate", str(nir_file), "--target", "loihi2", "--backend", "emulator",
                     "--precision", "fixed", "--limit", "200")
    assert fixed["agreement_with_reference"] >= 0.97  # 99.0 % measured on 1,000
    assert all(n == 0 for n in fixed["saturation_events"].values())
