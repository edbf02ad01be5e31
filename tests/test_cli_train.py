"""`neuroratebp train` and `neuroratebp eval`: flags, output and one-line errors."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from cli_run import cli_process
from neuroratebp.checkpoint import load_checkpoint
from neuroratebp.cli import main

ROOT = Path(__file__).resolve().parents[1]
DIGITS = str(ROOT / "models" / "digits_mlp.toml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run")
    code = main(["train", DIGITS, "--method", "bptt", "--timesteps", "3", "--epochs", "2",
                 "--batch-size", "64", "--seed", "5", "--limit", "640", "--device", "cpu",
                 "-o", str(out), "--json"])
    assert code == 0
    return out, load_checkpoint(out / "model.pt")


def test_train_flags_override_config(trained: tuple[Path, dict]) -> None:
    out, ckpt = trained
    train = ckpt["config"]["train"]
    assert (train["method"], train["timesteps"], train["epochs"], train["batch_size"], train["seed"],
            train["limit_train"]) == ("bptt", 3, 2, 64, 5, 640)
    assert train["lr"] == 0.1  # from the file
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2


def test_train_prints_final_accuracy(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", DIGITS, "--epochs", "1", "--limit", "320", "-o", str(tmp_path),
                 "--quiet"]) == 0
    line = capsys.readouterr().out.strip()
    acc = load_checkpoint(tmp_path / "model.pt")["metrics"]["accuracy"]
    assert line.startswith(f"test accuracy {acc:.4f} (rate_m, T=4, 1 epoch)")


def test_eval_reports_accuracy_and_rates(trained: tuple[Path, dict], capsys: pytest.CaptureFixture) -> None:
    out, ckpt = trained
    capsys.readouterr()
    assert main(["eval", str(out / "model.pt"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["accuracy"] == ckpt["metrics"]["accuracy"] and report["samples"] == 360
    assert report["timesteps"] == 3 and set(report["spike_rates"]) == {"lif1"}
    assert main(["eval", str(out / "model.pt"), "--limit", "50", "--timesteps", "6", "--json"]) == 0
    short = json.loads(capsys.readouterr().out)
    assert short["samples"] == 50 and short["timesteps"] == 6
    assert main(["eval", str(out / "model.pt")]) == 0
    text = capsys.readouterr().out
    assert f"test accuracy {report['accuracy']:.4f} on 360 samples" in text and "lif1: spike rate" in text


def test_eval_data_override(trained: tuple[Path, dict], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    model = tmp_path / "fmnist.pt"
    ckpt = dict(trained[1])
    ckpt["config"] = {**ckpt["config"], "data": {**ckpt["config"]["data"], "dataset": "fashion_mnist"}}
    torch.save(ckpt, model)
    assert main(["eval", str(model), "--data", str(tmp_path)]) == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["train", "missing.toml"], "config file not found"),
    (["train", DIGITS, "--method", "backprop"], "unknown method 'backprop'"),
    (["train", DIGITS, "--epochs", "0"], "argument --epochs: must be >= 1, got 0"),
    (["train", DIGITS, "--device", "tpu"], "unknown device"),
    (["eval", "nowhere.pt"], "checkpoint not found"),
])
def test_bad_input_is_one_line_error(argv: list[str], message: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture) -> None:
    assert main([*argv, "-o", str(tmp_path)] if argv[0] == "train" else argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return os.system, (f"touch {self.marker}",)


def test_malformed_and_malicious_checkpoints_are_refused(trained: tuple[Path, dict], tmp_path: Path) -> None:
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes((trained[0] / "model.pt").read_bytes()[:2000])
    marker = tmp_path / "pwned"
    malicious = tmp_path / "malicious.pt"
    torch.save({"format": "neuroratebp-checkpoint", "version": 1, "payload": _RunsCode(marker)}, malicious)
    not_ours = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, not_ours)
    for path in (truncated, malicious, not_ours):
        proc = cli_process("eval", str(path), timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.startswith("neuroratebp eval: error:") and len(proc.stderr.strip().splitlines()) == 1
        assert "Traceback" not in proc.stderr
    assert not marker.exists()
