"""One tool: config schemas, one set of flags and JSON keys, the data set travelling with the
model, --resume extending a run, --lr, clear messages (docs/reliability.md, items 7 and 8)."""
from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path

import pytest
import torch

from cli_run import ROOT, cli_json, one_line_error, run_cli
from neuroratebp.checkpoint import load_checkpoint

DIGITS = ROOT / "models" / "digits_mlp.toml"
FAST = ["--limit", "320", "--quiet"]


def config_with(tmp_path: Path, text: str, replace: tuple[str, str] | None = None) -> Path:
    body = DIGITS.read_text()
    if replace:
        assert replace[0] in body
        body = body.replace(*replace)
    path = tmp_path / "run.toml"
    path.write_text(body + text)
    return path


@pytest.mark.parametrize("change, message", [
    (("hidden = [64]", "hiden = [64]"), "[model]: unknown key 'hiden'; did you mean 'hidden'?"),
    (("lr = 0.1", "learning_rate = 0.01"), "[train]: unknown key 'learning_rate'; did you mean 'lr'?"),
    (('preset = "chip"', 'preset = "chip"\nlamda = 0.5'), "[neuron]: unknown key 'lamda'; did you mean 'lam'?"),
    (("[data]", "[dta]"), "unknown section [dta]; did you mean 'data'?"),
    (("epochs = 5", 'epochs = "a"'), "[train]: epochs must be an integer >= 1, got 'a'"),
    (("input_shape = [1, 8, 8]", "input_shape = [1, nan, 8]"), "[model]: input_shape must be a non-empty list"),
    (("seed = 0", "seed = -1"), "[train]: seed must be an integer >= 0, got -1"),
    (('dataset = "digits"', 'dataset = "mnist"'), "unknown dataset 'mnist'"),
], ids=["model-typo", "train-synonym", "neuron-typo", "section-typo", "type", "nan", "seed", "dataset"])
def test_config_mistakes_are_refused_naming_the_key(change: tuple[str, str], message: str,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = config_with(tmp_path, "", change)
    assert run_cli("train", str(path), *FAST, "-o", str(tmp_path / "run"))[0] == 2
    assert message in one_line_error(capsys.readouterr().err, "train")
    assert not (tmp_path / "run" / "model.pt").exists()


@pytest.mark.parametrize("args, message", [
    (["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (["--epochs", "a"], "argument --epochs: expected an integer, got 'a'"),
    (["--lr", "nan"], "argument --lr: must be a positive finite number, got nan"),
    (["--limit", "0"], "argument --limit: must be >= 1, got 0"),
    (["--limit-train", "5"], "unrecognized arguments: --limit-train 5"),
])
def test_bad_flags_are_one_line_naming_the_flag(args: list[str], message: str,
                                                capsys: pytest.CaptureFixture) -> None:
    assert run_cli("train", str(DIGITS), *args)[0] == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_config_that_is_not_text(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "binary.toml"
    path.write_bytes(b"\xff\xfe[model]\n")
    assert run_cli("train", str(path))[0] == 2
    assert f"config {path} is not UTF-8 text" in one_line_error(capsys.readouterr().err, "train")


def test_checkpoint_refusals_keep_their_cause(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The code-running pickle and random bytes get different, complete reasons."""
    class RunsCode:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return os.system, ("true",)

    malicious, noise, no_model = tmp_path / "m.pt", tmp_path / "r.pt", tmp_path / "n.pt"
    torch.save({"format": "neuroratebp-checkpoint", "version": 1, "x": RunsCode()}, malicious)
    noise.write_bytes(os.urandom(4000))
    torch.save({"format": "neuroratebp-checkpoint", "version": 1, "state_dict": {},
                "config": {"train": {"timesteps": 4}}}, no_model)
    lines = []
    for path in (malicious, noise, no_model):
        assert run_cli("eval", str(path))[0] == 2
        lines.append(one_line_error(capsys.readouterr().err, "eval"))
    assert "unsupported GLOBAL posix.system" in lines[0] and "without running code" in lines[0]
    assert "not a zip archive" in lines[1]
    assert "config has no [model] table" in lines[2]


def test_resume_with_more_epochs_extends_the_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """1 epoch, then --resume --epochs 3, equals 3 epochs straight (weights bit for bit)."""
    short, straight = tmp_path / "short", tmp_path / "straight"
    assert run_cli("train", str(DIGITS), "--epochs", "1", *FAST, "-o", str(short))[0] == 0
    assert run_cli("train", str(DIGITS), "--epochs", "3", "--resume", *FAST, "-o", str(short))[0] == 0
    assert run_cli("train", str(DIGITS), "--epochs", "3", *FAST, "-o", str(straight))[0] == 0
    a, b = load_checkpoint(short / "model.pt"), load_checkpoint(straight / "model.pt")
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in b["state_dict"])
    assert a["config"] == b["config"] and a["metrics"] == {**b["metrics"],
                                                           "epoch_time_s": a["metrics"]["epoch_time_s"]}
    rows = [json.loads(r) for r in (short / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    capsys.readouterr()
    assert run_cli("train", str(DIGITS), "--epochs", "2", "--resume", *FAST, "-o", str(short))[0] == 2
    assert "trained 3 epochs already" in one_line_error(capsys.readouterr().err, "train")


def test_lr_override(tmp_path: Path) -> None:
    report = cli_json("train", str(DIGITS), "--epochs", "1", "--lr", "0.05", *FAST, "-o", str(tmp_path))
    assert load_checkpoint(report["output"])["config"]["train"]["lr"] == 0.05
    assert json.loads((tmp_path / "metrics.jsonl").read_text())["lr"] == 0.05


def test_one_vocabulary_of_flags_and_json_keys(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """The README table: -o/--output, --limit, --data NAME|DIR; accuracy, samples, timesteps,
    spike_rates, seconds_per_sample, output. The data set travels with the model: export records
    it, simulate and an imported checkpoint's eval use it without --data."""
    run = tmp_path / "run"
    trained = cli_json("train", str(DIGITS), "--epochs", "1", *FAST, "--output", str(run))
    assert {"accuracy", "spike_rates", "timesteps", "output"} <= set(trained)
    model = Path(trained["output"])
    evaluated = cli_json("eval", str(model), "--limit", "50")
    assert {"accuracy", "samples", "timesteps", "spike_rates"} <= set(evaluated)
    assert evaluated["samples"] == 50
    exported = cli_json("export", str(model), "--output", str(tmp_path / "m.nir"))
    simulated = cli_json("simulate", exported["output"], "--limit", "40")  # digits, from the file
    assert simulated["samples"] == 40
    assert {"accuracy", "samples", "timesteps", "spike_rates", "seconds_per_sample"} <= set(simulated)
    imported = cli_json("import", exported["output"], "--output", str(tmp_path / "back.pt"))
    again = cli_json("eval", imported["output"], "--data", "digits")
    assert again["samples"] == 360 and cli_json("eval", imported["output"])["samples"] == 360
    for report in (trained, evaluated, simulated, exported, imported, again):
        assert not {"test_acc", "firing_rates", "model"} & set(report)


def test_shipped_checkpoint_with_the_old_data_set_name_still_loads() -> None:
    """models/fmnist_convnet.pt records dataset "fashion_mnist"; configs now say fmnist."""
    ckpt = load_checkpoint(ROOT / "models" / "fmnist_convnet.pt")
    assert ckpt["config"]["data"]["dataset"] == "fmnist"
    report = cli_json("eval", str(ROOT / "models" / "fmnist_convnet.pt"), "--limit", "20")
    assert report["samples"] == 20 and report["accuracy"] >= 0.8
    for path in (ROOT / "models").glob("*.toml"):
        assert tomllib.loads(path.read_text())["data"]["dataset"] in ("fmnist", "digits", "cifar10")


def test_python_requirement_matches_the_code() -> None:
    """tomllib (standard library since 3.11) is imported: the package must not claim 3.10."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "import tomllib" in (ROOT / "neuroratebp" / "config.py").read_text()
    assert pyproject["project"]["requires-python"] == ">=3.11"
    assert "Python >= 3.11" in (ROOT / "README.md").read_text()
