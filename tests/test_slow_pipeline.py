"""The demo pipeline on real Fashion-MNIST: train -> export -> emulate the chip (long: `-m slow`)."""
from __future__ import annotations

from pathlib import Path

import pytest

from hw_targets.loihi2.target import import_lava

import_lava()  # before anything creates a multiprocessing lock (tqdm)

from cli_run import cli_json  # noqa: E402
from neuroratebp.cli import main  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_fmnist_mlp_trains_exports_and_keeps_accuracy_in_fixed_point(tmp_path: Path) -> None:
    run = tmp_path / "run"
    trained = cli_json("train", str(ROOT / "models" / "fmnist_mlp.toml"), "--method", "rate_m",
                       "--timesteps", "4", "--epochs", "1", "-o", str(run), "--quiet")
    assert trained["accuracy"] > 0.80
    assert main(["export", str(run / "model.pt"), "--to", "nir", "-o", str(run / "model.nir")]) == 0
    fixed = cli_json("simulate", str(run / "model.nir"), "--target", "loihi2",
                     "--backend", "emulator", "--precision", "fixed")
    assert fixed["samples"] == 10_000
    assert fixed["reference_accuracy"] == pytest.approx(trained["accuracy"], abs=1e-4)
    assert fixed["agreement_with_reference"] > 0.98
    assert abs(fixed["accuracy"] - trained["accuracy"]) < 0.01
