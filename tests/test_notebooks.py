"""The notebooks: every cell runs on small settings and draws its declared figures; the committed
copies carry their outputs (executed at full settings) and show the numbers the benchmarks
recorded for the same runs.

Each notebook declares in its metadata (``neuroratebp``) the figures it draws and the parameters
of its small run; a new notebook is covered by adding the file. Every notebook has a
``work_dir`` parameter (scratch output), pointed at a temporary folder here.
"""
from __future__ import annotations

import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from neuroratebp import plots

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "notebooks"))

import execute  # noqa: E402  (notebooks/execute.py: what `make notebooks` runs)

NOTEBOOKS = execute.notebooks()
RESULTS = ROOT / "benchmarks" / "results"
PNG = b"\x89PNG\r\n\x1a\n"
MACHINE_PATH = re.compile(r"/(?:work|root|tmp|home)/|site-packages")


def figures(nb: nbformat.NotebookNode) -> dict[str, bytes]:
    """Name -> PNG bytes of every figure shown with ``plots.show``."""
    out = {}
    for cell in nb.cells:
        for o in cell.get("outputs", []):
            if o.get("output_type") == "display_data" and "figure" in o.get("metadata", {}):
                out[o["metadata"]["figure"]] = base64.b64decode(o["data"]["image/png"])
    return out


def summary(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """The JSON the cell tagged ``summary`` prints."""
    cells = [c for c in nb.cells if "summary" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "one cell tagged 'summary'"
    text = "".join(o.get("text", "") for o in cells[0].get("outputs", []) if o.get("name") == "stdout")
    return json.loads(text)


def declared(nb: nbformat.NotebookNode) -> dict[str, Any]:
    meta = nb.metadata.get("neuroratebp", {})
    assert meta.get("figures") and isinstance(meta.get("test_parameters"), dict)
    return meta


def test_there_are_notebooks() -> None:
    names = [p.name for p in NOTEBOOKS]
    assert {"01_train_to_chip.ipynb", "02_training_cost.ipynb", "03_onchip_learning.ipynb"} <= set(names)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_on_small_settings(path: Path, tmp_path: Path) -> None:
    meta = declared(nbformat.read(path, as_version=4))
    params = {**meta["test_parameters"], "work_dir": str(tmp_path / "work")}
    # a failing cell raises CellExecutionError (with the cell's traceback)
    nb = execute.execute(path, params, tmp_path / path.name, timeout=600)
    drawn = figures(nb)
    assert set(meta["figures"]) <= set(drawn), f"figures not drawn: {set(meta['figures']) - set(drawn)}"
    assert all(png.startswith(PNG) and len(png) > 5000 for png in drawn.values())
    assert summary(nb)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_carries_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    meta = declared(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.get("execution_count") for c in code), "every code cell executed"
    assert not [c for c in code if execute.INJECTED in c.metadata.get("tags", [])], \
        "committed copies run at the notebook's own (full) settings: `make notebooks`"
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    drawn = figures(nb)
    assert set(meta["figures"]) <= set(drawn)
    assert all(png.startswith(PNG) and len(png) > 5000 for png in drawn.values())
    assert not MACHINE_PATH.search(path.read_text()), "a path of the executing machine in the outputs"


# -- the committed numbers against the benchmark records --------------------------------------
def _table(markdown: str, header_start: str) -> list[list[str]]:
    """Rows (cells stripped of ** and `) of the first table whose header starts with ``header_start``."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().replace("**", "").replace("`", "") for c in line.strip("|").split("|")])
    return rows


def _percent(cell: str) -> float:
    return float(cell.replace("%", "").strip())


def _same_run(a: dict, b: dict) -> bool:
    """Same images and precision, and the same backend -- or either fixed-point backend: the
    emulator is bit-exact to Lava fixed_pt (tests/test_loihi2_lava.py)."""
    return (a["precision"], a["samples"]) == (b["precision"], b["samples"]) and \
        (a["backend"] == b["backend"] or a["precision"] == "fixed")


def _assert_same_result(ours: dict, theirs: dict) -> None:
    for key in ("accuracy", "reference_accuracy", "agreement_with_reference"):
        assert ours[key] == theirs[key], key
    assert ours["max_logit_error"] == pytest.approx(theirs["max_logit_error"], rel=1e-6)
    assert ours["spike_rates"] == pytest.approx(theirs["spike_rates"], abs=1e-9)


def test_zoo_notebook_shows_the_benchmarked_numbers() -> None:
    """01's simulations equal `benchmarks/lava_sim.py`'s and `simulate --json`'s records of the
    same runs (benchmarks/results/*.json), and the zoo table of benchmarks/RESULTS.md."""
    s = summary(nbformat.read(ROOT / "notebooks" / "01_train_to_chip.ipynb", as_version=4))
    lava_sim = json.loads((RESULTS / "lava_sim_zoo.json").read_text())
    records = [*lava_sim["runs"].values(), json.loads((RESULTS / "lava_zoo_10k.json").read_text())]
    for run in s["simulate"]:
        same = [r for r in records if _same_run(run, r)]
        assert same, f"no benchmark record of {run['backend']} {run['precision']} on {run['samples']} images"
        for record in same:
            _assert_same_result(run, record)
    # `benchmarks/lava_sim.py ... --by-layer 1000` (RESULTS.md) on the same 1,000 images
    assert s["quantization_by_layer"]["samples"] == 1000
    ours, theirs = s["quantization_by_layer"]["cases"], lava_sim["quantization_by_layer"]
    assert list(ours) == list(theirs)
    for case in ours:
        assert ours[case]["mean_abs_logit_error"] == pytest.approx(theirs[case]["mean_abs_logit_error"], rel=1e-6)
        assert (ours[case]["agreement_with_float"], ours[case]["accuracy"]) == \
               (theirs[case]["agreement_with_float"], theirs[case]["accuracy"])

    # RESULTS.md, zoo table (first 1,000 images), rounded as printed there
    first = {(r["backend"], r["precision"]): r for r in s["simulate"] if r["samples"] == 1000}
    torch_first = next(t for t in s["torch"] if t["samples"] == 1000)
    runs = {"Lava floating_pt": first["lava", "float"], "Lava fixed_pt": first["lava", "fixed"],
            "emulator fixed": first["emulator", "fixed"]}
    shown = {"torch": torch_first["accuracy"], "NIR float reference": first["lava", "fixed"]["reference_accuracy"],
             **{label: run["accuracy"] for label, run in runs.items()}}
    table = _table((ROOT / "benchmarks" / "RESULTS.md").read_text(), "| model / simulation | accuracy")
    row = {label: next(r for r in table if r[0].startswith(label)) for label in shown}
    for label, accuracy in shown.items():
        assert f"{100 * accuracy:.1f} %" == row[label][1], label
    for label, run in runs.items():  # agreement with the float model, printed to one decimal
        assert abs(100 * run["agreement_with_reference"] - _percent(row[label][2])) <= 0.05 + 1e-9, label

    # models/README.md: the zoo model's accuracy on all 10,000 test images
    zoo = next(r for r in _table((ROOT / "models" / "README.md").read_text(), "| model | method")
               if r[:2] == ["fmnist_convnet", "rate_m"])
    torch_all = next(t for t in s["torch"] if t["samples"] == 10000)
    assert f"{100 * torch_all['accuracy']:.2f} %" == zoo[4]


def test_cost_notebook_shows_the_benchmark_json() -> None:
    """02 draws the training-cost benchmark's JSON as it is now (re-run `make notebooks` after
    re-running the benchmark)."""
    s = summary(nbformat.read(ROOT / "notebooks" / "02_training_cost.ipynb", as_version=4))
    source = (ROOT / "notebooks" / s["cost"]["source"]).resolve()
    assert source == RESULTS / "train_cost_cpu.json"
    assert s["cost"]["rows"] == plots.cost_rows(json.loads(source.read_text()))
    assert {row["method"] for row in s["cost"]["rows"]} >= {"bptt", "rate_m", "rate_s"}
    history = s["training"]["history"]
    assert set(history) == {"rate_m", "bptt"} and len({len(h) for h in history.values()}) == 1


def test_learning_notebook_shows_the_benchmarked_numbers() -> None:
    """03 draws benchmarks/onchip_learning.py's records as they are now, and its own run of the
    demo task (committed at the benchmark's sizes) equals the benchmark's emulator record."""
    s = summary(nbformat.read(ROOT / "notebooks" / "03_onchip_learning.ipynb", as_version=4))
    bench = json.loads((RESULTS / "onchip_learning.json").read_text())
    lava = json.loads((RESULTS / "onchip_learning_lava.json").read_text())["task_lava"]
    assert s["live_equals_benchmark"] is True
    live, task = s["live"], bench["task"]
    assert (live["learning_samples"], live["heldout_samples"]) == (task["stream"], task["heldout"])
    recorded = task[f"{live['backend']}_{live['precision']}"]
    assert (live["accuracy_before"], live["accuracy_after"]) == (recorded["accuracy_before"], recorded["accuracy_after"])
    records, sizes = [task["torch"], task["emulator_fixed"], task["emulator_float"]], {(task["stream"], task["heldout"])}
    for key, run in lava.items():  # each Lava run, and torch once per size
        if key.startswith("lava_"):
            stream, heldout = key.split("_")[2:]
            if (int(stream), int(heldout)) not in sizes:
                sizes.add((int(stream), int(heldout)))
                records.append(lava[f"torch_{stream}_{heldout}"])
            records.append(run)
    shown = [(r["accuracy_before"], r["accuracy_after"]) for r in s["task"].values()]
    assert sorted(shown) == sorted((r["accuracy_before"], r["accuracy_after"]) for r in records)
    assert s["orders"] == {k: bench["orders"][k]["mean_gain"] for k in ("torch", "emulator_fixed", "emulator_float")}
    fid = bench["fidelity"]
    for layer, cos in s["fidelity"].items():
        assert cos["fixed, mean of 16"] == fid["fixed"][layer]["mean_of_repeats"]
        assert cos["float, kappa exact"] == fid["float"]["exact"][layer]["mean"]
    assert s["update_lsb"] == {n: v["mean_update_lsb"] for n, v in task["emulator_fixed"]["layers"].items()}
