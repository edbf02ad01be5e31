"""Training loop: learning, evaluation, checkpoints, resume and reproducibility (neuroratebp.train)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from neuroratebp.checkpoint import load_checkpoint, model_from_checkpoint
from neuroratebp.config import load_config, model_from_config
from neuroratebp.data import load_digits
from neuroratebp.layers import BatchNorm
from neuroratebp.train import evaluate, fit, grad_scale, make_optimizer, prepare_data, resolve_config

from test_data import write_cifar

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def digits_cfg() -> dict[str, Any]:
    return load_config(ROOT / "models" / "digits_mlp.toml")


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method", ["rate_m", "rate_s", "bptt"])
def test_one_epoch_on_digits_learns(digits_cfg: dict[str, Any], method: str, tmp_path: Path) -> None:
    cfg = resolve_config(digits_cfg, method=method)
    splits, _ = prepare_data(cfg)
    torch.manual_seed(0)
    untrained = evaluate(model_from_config(cfg), splits.test, 4).accuracy
    result = fit(digits_cfg, out_dir=tmp_path, method=method, epochs=1)
    assert result.accuracy > 0.8 and result.accuracy > untrained + 0.5, (untrained, result.accuracy)
    row = json.loads((tmp_path / "metrics.jsonl").read_text())
    assert row["epoch"] == 1 and row["lr"] == 0.1 and row["accuracy"] == result.accuracy
    assert row["train_loss"] > 0 and row["epoch_time_s"] > 0
    stored = load_checkpoint(tmp_path / "model.pt")
    assert stored["config"]["train"]["method"] == method and stored["config"]["train"]["timesteps"] == 4
    assert len(stored["config"]["data"]["mean"]) == 1 and stored["config"]["data"]["std"][0] > 0
    assert stored["metrics"]["accuracy"] == result.accuracy
    # the deployed model alone reproduces the reported accuracy
    assert evaluate(model_from_checkpoint(stored), splits.test, 4).accuracy == result.accuracy


def test_evaluate_reports_each_spiking_layer(digits_cfg: dict[str, Any], tmp_path: Path) -> None:
    cfg = {**digits_cfg, "model": {**digits_cfg["model"], "hidden": [32, 16]}}
    model = fit(cfg, out_dir=tmp_path, epochs=1, limit_train=512).model
    splits, _ = prepare_data(resolve_config(cfg))
    one_batch = evaluate(model, splits.test.head(100), timesteps=3, batch_size=100)
    batched = evaluate(model, splits.test.head(100), timesteps=3, batch_size=30)
    assert one_batch.samples == batched.samples == 100 and set(batched.spike_rates) == {"lif1", "lif2"}
    assert all(0.0 < r < 1.0 for r in batched.spike_rates.values())
    for name, rate in one_batch.spike_rates.items():  # sample-weighted mean over uneven batches
        assert batched.spike_rates[name] == pytest.approx(rate, rel=1e-5)
    assert batched.accuracy == one_batch.accuracy
    model.train()
    evaluate(model, splits.test.head(10), timesteps=3)
    assert model.training  # restored after evaluating in eval mode


def test_resume_after_kill_matches_uninterrupted_run(digits_cfg: dict[str, Any], tmp_path: Path) -> None:
    args = dict(method="rate_m", epochs=3, limit_train=512, seed=7)
    full = fit(digits_cfg, out_dir=tmp_path / "full", **args)

    class Killed(Exception):
        pass

    def kill_after_second(row: dict[str, Any]) -> None:
        if row["epoch"] == 2:
            raise Killed

    run = tmp_path / "killed"
    with pytest.raises(Killed):
        fit(digits_cfg, out_dir=run, on_epoch=kill_after_second, **args)
    assert load_checkpoint(run / "last.pt")["epoch"] == 2
    assert not (run / "model.pt").exists()
    assert sorted(p.name for p in run.iterdir()) == ["last.pt", "metrics.jsonl"]  # no temp files
    with pytest.raises(ValueError, match="--resume"):
        fit(digits_cfg, out_dir=run, **args)
    with pytest.raises(ValueError, match="train.lr"):
        fit({**digits_cfg, "train": {**digits_cfg["train"], "lr": 0.05}}, out_dir=run, resume=True, **args)

    resumed = fit(digits_cfg, out_dir=run, resume=True, **args)
    assert same_weights(resumed.model.state_dict(), full.model.state_dict())
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert [r["accuracy"] for r in rows] == [r["accuracy"] for r in full.history]
    assert [r["lr"] for r in rows] == [r["lr"] for r in full.history]


def test_same_seed_same_weights(digits_cfg: dict[str, Any], tmp_path: Path) -> None:
    args = dict(method="rate_s", epochs=1, limit_train=256)
    a = fit(digits_cfg, out_dir=tmp_path / "a", seed=3, **args).model.state_dict()
    b = fit(digits_cfg, out_dir=tmp_path / "b", seed=3, **args).model.state_dict()
    c = fit(digits_cfg, out_dir=tmp_path / "c", seed=4, **args).model.state_dict()
    assert same_weights(a, b) and not same_weights(a, c)


def test_augmented_conv_training_on_cifar_format(tmp_path: Path) -> None:
    (tmp_path / "cifar").mkdir()
    write_cifar(tmp_path / "cifar", per_batch=8)
    cfg = {"model": {"arch": "vgg", "input_shape": [3, 32, 32], "features": [4, "A", "A", "A"],
                     "batchnorm": True},
           "data": {"dataset": "cifar10", "path": str(tmp_path / "cifar"),
                    "augment": {"crop_padding": 4, "hflip": True}},
           "train": {"batch_size": 8, "timesteps": 2}}
    result = fit(cfg, out_dir=tmp_path / "run", epochs=2)
    assert len(result.history) == 2
    assert len(result.config["data"]["mean"]) == 3
    assert not same_weights(result.model.state_dict(), model_from_config(result.config).state_dict())


def test_recipe_details(digits_cfg: dict[str, Any]) -> None:
    assert grad_scale({"method": "rate_m", "timesteps": 4, "grad_scale": "official"}) == 0.25
    assert grad_scale({"method": "bptt", "timesteps": 4, "grad_scale": "official"}) == 1.0
    assert grad_scale({"method": "rate_s", "timesteps": 4, "grad_scale": "bptt"}) == 1.0
    cfg = resolve_config(digits_cfg, timesteps=2)
    assert cfg["train"]["timesteps"] == 2 and cfg["neuron"]["reset"] == "hard"  # chip preset expanded
    model = model_from_config(cfg)
    decayed, free = make_optimizer(model, cfg["train"]).param_groups
    decayed_ids = {id(p) for p in decayed["params"]}
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d)):
            assert id(m.weight) in decayed_ids
        if isinstance(m, BatchNorm):
            assert id(m.weight) not in decayed_ids and id(m.bias) not in decayed_ids
    assert decayed["weight_decay"] == 5e-4 and free["weight_decay"] == 0.0 and free["params"]
    for bad in ({"method": "sgd"}, {"optimizer": "lbfgs"}, {"grad_scale": "half"}, {"epochs": 0}):
        with pytest.raises(ValueError):
            resolve_config({**digits_cfg, "train": {**digits_cfg["train"], **bad}})


def test_data_must_fit_the_model(digits_cfg: dict[str, Any], tmp_path: Path) -> None:
    cfg = {**digits_cfg, "model": {**digits_cfg["model"], "input_shape": [1, 28, 28]}}
    with pytest.raises(ValueError, match="input_shape"):
        fit(cfg, out_dir=tmp_path)
    assert len(load_digits().train) == 1437
