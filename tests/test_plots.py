"""Figures: they show the numbers they are given, read the benchmark's JSON by name, and the CLI
writes them (`--plot`, train's metrics.png) without ever writing over an input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_run import run_cli
from neuroratebp import plots
from neuroratebp.checkpoint import load_checkpoint, model_from_checkpoint
from neuroratebp.config import load_config
from neuroratebp.data import Normalization, load_digits
from neuroratebp.engine import spike_trains
from neuroratebp.train import evaluate, fit

ROOT = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"


def bars(ax) -> dict[str, list[float]]:
    """Legend label -> heights of that label's bars."""
    out = {}
    for container in ax.containers:
        out[container.get_label()] = [b.get_height() for b in container]
    return out


def test_accuracy_and_rate_bars_show_the_given_values() -> None:
    fig = plots.accuracy_bars({"first 1,000": {"torch (CPU)": 0.951, "Lava fixed_pt": 0.949},
                               "all 10,000": {"torch (CPU)": 0.9377, "emulator fixed_pt": 0.939}})
    heights = bars(fig.axes[0])
    assert heights["torch (CPU)"] == pytest.approx([95.1, 93.77])
    assert heights["Lava fixed_pt"] == pytest.approx([94.9]) and heights["emulator fixed_pt"] == pytest.approx([93.9])
    assert fig.axes[0].get_ylim()[0] == 91.0  # starts below the lowest bar, and says so
    assert "axis from 91" in fig.axes[0].get_ylabel()
    fig = plots.spike_rates({"torch (CPU)": {"lif1": 0.17, "lif2": 0.14}, "Lava fixed_pt": {"lif1": 0.16, "lif2": 0.15}})
    assert bars(fig.axes[0]) == {"torch (CPU)": pytest.approx([0.17, 0.14]), "Lava fixed_pt": pytest.approx([0.16, 0.15])}


def test_learning_gains_show_each_order_and_the_mean() -> None:
    fig = plots.learning_gains({"torch": [0.40, 0.30, 0.35], "emulator fixed_pt": [0.36, 0.28, 0.32]})
    a = fig.axes[0]
    assert [c.patches[0].get_height() for c in a.containers] == pytest.approx([35.0, 32.0])
    dots = [list(line.get_ydata()) for line in a.get_lines()]
    assert dots == [pytest.approx([40.0, 30.0, 35.0]), pytest.approx([36.0, 28.0, 32.0])]
    assert [t.get_text() for t in a.get_xticklabels()] == ["torch", "emulator fixed_pt"]


def test_cost_rows_carry_new_methods_and_fields() -> None:
    data = {"rows": [
        {"net": "convnet", "batch": 32, "T": 4, "method": "bptt", "time_s": 0.2, "peak_bytes": 3 * 2 ** 20, "saved_bytes": 2 ** 20},
        {"net": "convnet", "batch": 32, "T": 4, "method": "rate_m", "time_s": 0.1, "peak_bytes": 2 ** 20, "saved_bytes": 2 ** 20},
        # a peer's BPTT measured by a later benchmark: no saved bytes, an extra field, "timesteps"
        {"net": "convnet", "batch": 32, "timesteps": 4, "method": "snntorch_bptt", "time_s": 0.3,
         "peak_bytes": 4 * 2 ** 20, "threads": 2},
        {"net": "convnet", "note": "not a measurement"},
    ], "load_average": [1.0, 1.0, 1.0]}
    rows = plots.cost_rows(data)
    assert [r["method"] for r in rows] == ["bptt", "rate_m", "snntorch_bptt"]
    assert rows[2]["T"] == 4 and rows[2]["saved_bytes"] is None and rows[2]["time_s"] == 0.3
    fig = plots.training_cost(rows)
    time_ax, peak_ax, saved_ax = fig.axes
    assert time_ax.get_legend_handles_labels()[1] == ["bptt", "rate_m", "snntorch_bptt"]
    assert saved_ax.get_legend_handles_labels()[1] == ["bptt", "rate_m"]
    assert [line.get_ydata()[0] for line in peak_ax.get_lines()] == pytest.approx([3, 1, 4])  # MiB


def test_raster_counts_spikes_and_agreement() -> None:
    a = np.zeros((4, 10), bool)
    a[0, 1] = a[2, 3] = True
    b = a.copy()
    b[1, 5] = True  # one extra spike out of 40 entries
    fig = plots.spike_raster({"torch (CPU)": {"lif1": a}, "Lava fixed_pt": {"lif1": b}})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["torch (CPU): lif1, 2 spikes", "Lava fixed_pt: lif1, 3 spikes, 97.50 % equal"]
    codes = fig.axes[1].images[0].get_array()
    assert codes.shape == (3, 4) and (codes == 2).sum() == 1  # neurons 1, 3, 5; one spike not in torch


def test_training_curves_from_metrics_rows(tmp_path: Path) -> None:
    rows = [{"epoch": 1, "train_loss": 1.0, "train_acc": 0.5, "test_acc": 0.6},
            {"epoch": 2, "train_loss": 0.5, "train_acc": 0.7, "test_acc": 0.8}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert plots.read_metrics(tmp_path / "metrics.jsonl") == rows
    fig = plots.training_curves({"rate_m": rows})
    loss, acc = fig.axes
    assert list(loss.get_lines()[0].get_ydata()) == [1.0, 0.5]
    assert [list(line.get_ydata()) for line in acc.get_lines()] == [[60.0, 80.0], [50.0, 70.0]]
    (tmp_path / "metrics.jsonl").write_text("{not json\n")
    with pytest.raises(ValueError, match="line 1 is not JSON"):
        plots.read_metrics(tmp_path / "metrics.jsonl")


def test_spike_trains_give_the_spike_rates_evaluate_reports(tmp_path: Path) -> None:
    config = load_config(ROOT / "models" / "digits_mlp.toml")
    config["model"]["hidden"] = [16]
    result = fit(config, out_dir=tmp_path, epochs=1, quiet=True)
    model = model_from_checkpoint(load_checkpoint(tmp_path / "model.pt"))
    data = load_digits()
    test = Normalization.from_table(result.config["data"], data.train).apply(data).test.head(50)
    rates = evaluate(model, test, 4, batch_size=50).spike_rates
    trains = spike_trains(model, test.images, 4)
    assert set(trains) == set(rates) and trains["lif1"].shape == (4, 50, 16)
    assert set(torch.unique(trains["lif1"]).tolist()) <= {0.0, 1.0}
    assert float(trains["lif1"].mean()) == pytest.approx(rates["lif1"], abs=1e-6)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("plots") / "run"
    rc, _ = run_cli("train", str(ROOT / "models" / "digits_mlp.toml"), "--epochs", "2", "-o", str(out), "--quiet")
    assert rc == 0
    return out


def test_train_draws_metrics_png_beside_metrics_jsonl(digits_run: Path) -> None:
    assert (digits_run / "metrics.png").read_bytes().startswith(PNG)
    assert len(plots.read_metrics(digits_run / "metrics.jsonl")) == 2


def test_eval_check_simulate_learn_write_figures(digits_run: Path) -> None:
    model, nir_file = digits_run / "model.pt", digits_run / "model.nir"
    assert run_cli("export", str(model), "--to", "nir", "-o", str(nir_file))[0] == 0
    commands = {"eval.png": ("eval", str(model)),
                "check.png": ("check", str(nir_file)),
                "simulate.png": ("simulate", str(nir_file), "--data", "digits", "--limit", "50"),
                "learn.png": ("learn", str(nir_file), "--data", "digits", "--limit", "8", "--heldout", "8")}
    for name, args in commands.items():
        rc, _ = run_cli(*args, "--plot", str(digits_run / "figs" / name), "--json")
        assert rc == 0 and (digits_run / "figs" / name).read_bytes().startswith(PNG), name


def test_plot_never_overwrites_the_input(digits_run: Path, capsys) -> None:
    nir_file = digits_run / "input.nir"
    assert run_cli("export", str(digits_run / "model.pt"), "--to", "nir", "-o", str(nir_file))[0] == 0
    before = nir_file.read_bytes()
    rc, out = run_cli("simulate", str(nir_file), "--data", "digits", "--plot", str(nir_file))
    assert rc == 2 and out == ""
    assert "--plot " in (err := capsys.readouterr().err) and "is the input" in err
    assert nir_file.read_bytes() == before


def test_without_matplotlib(digits_run: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(plots, "available", lambda: False)
    rc, _ = run_cli("eval", str(digits_run / "model.pt"), "--plot", str(tmp_path / "e.png"))
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and "matplotlib is not installed" in err
    # training goes on with one warning line and no figure
    rc, _ = run_cli("train", str(ROOT / "models" / "digits_mlp.toml"), "--epochs", "1", "--out",
                    str(tmp_path / "run"), "--quiet")
    err = capsys.readouterr().err
    assert rc == 0 and err.count("matplotlib is not installed") == 1
    assert (tmp_path / "run" / "model.pt").is_file() and not (tmp_path / "run" / "metrics.png").exists()
