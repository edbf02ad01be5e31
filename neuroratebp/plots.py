"""Figures shared by the notebooks and the command line (``--plot``, train's ``metrics.png``).

Every figure function takes plain data -- what the commands print as JSON, ``metrics.jsonl``
rows, the benchmarks' JSON -- and returns a matplotlib ``Figure``; nothing here runs a model, so
a figure shows exactly the numbers it was given. Figures are drawn on an Agg canvas (no display,
no pyplot state), and matplotlib (the ``plot`` extra) is imported on first use, so training and
simulation work without it.
"""
from __future__ import annotations

import base64
import io
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import files

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Groups = Mapping[str, Mapping[str, float]]
"""Outer key: a group (e.g. a set of test images) or a source; inner: label -> value."""

COLORS = {"torch": "#1f77b4", "NIR": "#7f7f7f", "Lava floating_pt": "#2ca02c",
          "Lava fixed_pt": "#d62728", "emulator": "#ff7f0e"}
"""One colour per kind of run in every figure, matched by label prefix."""
METHOD_COLORS = {"bptt": "#1f77b4", "rate_m": "#d62728", "rate_s": "#ff7f0e", "bptt_s": "#17becf"}
"""Training methods: one colour each in the training-cost and training-curve figures."""
OTHER_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22", "#ff7f0e")
MIB = 2 ** 20
INSTALL_HINT = "matplotlib is not installed (pip install 'neuroratebp[plot]')"


# -- matplotlib on demand --------------------------------------------------------------------
def available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def require(path: str | Path, inputs: Iterable[str | Path] = ()) -> None:
    """Fail before long work when a figure was asked for and cannot be drawn, or would be
    written over one of the command's ``inputs``."""
    if not available():
        raise ValueError(f"--plot needs {INSTALL_HINT}")
    files.refuse_overwrite(path, inputs, "--plot")


def _figure(rows: int = 1, cols: int = 1, size: tuple[float, float] = (6.4, 3.6),
            **kw: Any) -> tuple[Figure, np.ndarray]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False, **kw)


def color(label: str, order: int = 0) -> str:
    for prefix, c in COLORS.items():
        if label.startswith(prefix):
            return c
    return OTHER_COLORS[order % len(OTHER_COLORS)]


def source_label(backend: str, precision: str) -> str:
    """``lava``/``emulator`` + ``fixed``/``float`` as the figures name them (Lava's tags)."""
    tag = {"fixed": "fixed_pt", "float": "floating_pt"}.get(precision, precision)
    return f"{'Lava' if backend == 'lava' else backend} {tag}"


def torch_label(device: str) -> str:
    """Where the torch numbers were computed, e.g. ``torch (CPU)``."""
    return f"torch ({str(device).split(':')[0].upper()})"


# -- output ----------------------------------------------------------------------------------
def png(fig: Figure, dpi: int = 110) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def save(fig: Figure, path: str | Path, inputs: Iterable[str | Path] = ()) -> Path:
    """Write ``fig`` as PNG (whatever the suffix), atomically; never over one of ``inputs``."""
    files.refuse_overwrite(path, inputs, "--plot")
    files.write_atomic(path, png(fig))
    return Path(path)


def show(fig: Figure, name: str) -> None:
    """Display ``fig`` in a notebook as an embedded PNG tagged ``{"figure": name}`` (the tests
    look for each notebook's figures by that name)."""
    from IPython.display import display

    display({"image/png": base64.b64encode(png(fig)).decode(), "text/plain": f"[figure: {name}]"},
            raw=True, metadata={"figure": name})


# -- readers ---------------------------------------------------------------------------------
def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a run's ``metrics.jsonl`` (one per epoch)."""
    rows = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path} line {n} is not JSON ({e.msg})") from None
    return rows


def _first(row: Mapping[str, Any], *keys: str) -> Any:
    return next((row[k] for k in keys if row.get(k) is not None), None)


COST_FIELDS = {"time_s": ("time per iteration", "s", ("cpu_s", "time_s", "seconds_per_iteration")),
               "peak_bytes": ("peak memory", "MiB", ("peak_bytes",)),
               "saved_bytes": ("saved for backward", "MiB", ("saved_bytes",))}
"""Measures of the training-cost benchmark: title, unit, JSON keys in order of preference (the
process CPU time its tables report where recorded, else wall time; older names last)."""


def cost_rows(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The training-cost benchmark's rows as ``{net, method, T, batch, time_s, peak_bytes,
    saved_bytes}`` (a measure absent from a row is None). Rows are read by name, so methods
    and fields added to the benchmark later are carried along, never an error."""
    out = []
    for row in data.get("rows", []):
        T = _first(row, "T", "timesteps") if isinstance(row, Mapping) else None
        if T is None or row.get("method") is None:
            continue
        out.append({"net": str(row.get("net", "")), "method": str(row["method"]), "T": int(T),
                    "batch": row.get("batch"),
                    **{field: _first(row, *keys) for field, (_, _, keys) in COST_FIELDS.items()}})
    return out


# -- axes-level drawing ----------------------------------------------------------------------
def compact(x: float) -> str:
    """1234 -> 1.23k, 29089641 -> 29.1M: counts over orders of magnitude on a log axis."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:g}"


def _bar_labels(ax: Axes, bars, fmt: str | Callable[[float], str], vertical: bool = False) -> None:
    text = fmt if callable(fmt) else fmt.format
    ax.bar_label(bars, labels=[text(b.get_height()) for b in bars], fontsize=7, padding=2,
                 rotation=90 if vertical else 0)


def _grouped_bars(ax: Axes, groups: Groups, scale: float = 1.0,
                  fmt: str | Callable[[float], str] = "{:.3g}") -> list[float]:
    """Bars of ``groups[group][label]`` side by side within each group; returns the values."""
    labels = list(dict.fromkeys(label for g in groups.values() for label in g))
    width = 0.8 / max(len(labels), 1)
    vertical = len(labels) * len(groups) > 12  # narrow bars: labels upright, room above them
    if vertical:
        ax.margins(y=0.12)
    values = []
    for i, label in enumerate(labels):
        xs = [k for k, g in enumerate(groups.values()) if g.get(label) is not None]
        ys = [groups[name][label] * scale for name in groups if groups[name].get(label) is not None]
        bars = ax.bar(np.array(xs) + (i - (len(labels) - 1) / 2) * width, ys, width,
                      label=label, color=color(label, i))
        _bar_labels(ax, bars, fmt, vertical)
        values += ys
    ax.set_xticks(range(len(groups)), list(groups))
    return values


def _legend_beside(ax: Axes) -> None:
    """Legend right of the axes, never over a bar."""
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)


def draw_accuracy(ax: Axes, groups: Groups) -> None:
    """Accuracy bars; the y axis starts a little below the lowest bar (the differences are
    tenths of a point) and says where."""
    values = _grouped_bars(ax, groups, 100.0, "{:.2f}")
    low = max(0.0, math.floor(min(values, default=0.0)) - 2.0)
    ax.set_ylim(low, max(values, default=100.0) + 1.5)
    ax.set_ylabel(f"test accuracy (%), axis from {low:g}")
    _legend_beside(ax)


def draw_rates(ax: Axes, rates: Groups) -> None:
    """Spikes per neuron per step of each layer (x), one bar per source."""
    layers = list(dict.fromkeys(layer for r in rates.values() for layer in r))
    by_layer = {layer: {source: r[layer] for source, r in rates.items() if layer in r}
                for layer in layers}
    _grouped_bars(ax, by_layer, 1.0, "{:.3f}")
    ax.set_ylabel("spikes per neuron per step")
    _legend_beside(ax)


# -- figures ---------------------------------------------------------------------------------
def accuracy_bars(groups: Groups, title: str = "") -> Figure:
    """``groups[image set][source]`` = accuracy in [0, 1]."""
    fig, ax = _figure(size=(7.0, 3.8))
    draw_accuracy(ax[0, 0], groups)
    ax[0, 0].set_title(title or "test accuracy", fontsize=10)
    return fig


def spike_rates(rates: Groups, title: str = "") -> Figure:
    """``rates[source][layer]`` = spikes per neuron per step."""
    fig, ax = _figure(size=(7.0, 3.6))
    draw_rates(ax[0, 0], rates)
    ax[0, 0].set_title(title or "spike rate per layer", fontsize=10)
    return fig


def command_report(accuracy: Groups, rates: Groups, title: str) -> Figure:
    """The two panels a command can fill from its own result: accuracy and per-layer rates."""
    fig, ax = _figure(1, 2, size=(11.0, 3.8))
    draw_accuracy(ax[0, 0], accuracy)
    draw_rates(ax[0, 1], rates)
    fig.suptitle(title, fontsize=10)
    return fig


def eval_report(result: Any, timesteps: int, device: str) -> Figure:
    """``neuroratebp eval --plot``: a ``train.Evaluation``."""
    label = torch_label(device)
    return command_report({f"{result.samples:,} test images": {label: result.accuracy}},
                          {label: result.spike_rates},
                          f"{label}, spiking forward pass, T={timesteps}")


def simulate_report(result: Mapping[str, Any]) -> Figure:
    """``neuroratebp simulate --plot``: the result the command prints with ``--json``."""
    label = source_label(result["backend"], result["precision"])
    accuracy = {"NIR float reference": result.get("reference_accuracy"), label: result.get("accuracy")}
    return command_report({f"{result['samples']:,} test images": accuracy},
                          {label: result["spike_rates"]},
                          f"{label}, T={result['timesteps']} ({result['window']} steps per sample), "
                          f"agreement with the float reference "
                          f"{100 * result['agreement_with_reference']:.2f} %")


def quantization_error(by_layer: Mapping[str, Mapping[str, float]], title: str = "") -> Figure:
    """``target.quantization_by_layer``: logit error and agreement with the float network when
    one population (or all) is quantized."""
    cases = list(by_layer)
    colors = ["#d62728" if c.startswith("all") else "#1f77b4" for c in cases]
    fig, ax = _figure(1, 2, size=(11.0, 3.8))
    err = ax[0, 0].bar(cases, [by_layer[c]["mean_abs_logit_error"] for c in cases], color=colors)
    _bar_labels(ax[0, 0], err, "{:.3f}")
    ax[0, 0].set_ylabel("mean |logit error| vs float")
    agree = ax[0, 1].bar(cases, [100 * by_layer[c]["agreement_with_float"] for c in cases], color=colors)
    _bar_labels(ax[0, 1], agree, "{:.1f}")
    low = max(0.0, math.floor(min(100 * by_layer[c]["agreement_with_float"] for c in cases)) - 1.0)
    ax[0, 1].set_ylim(low, 100.5)
    ax[0, 1].set_ylabel(f"predictions equal to float (%), axis from {low:g}")
    for a in ax[0]:
        a.tick_params(axis="x", labelrotation=30, labelsize=8)
    fig.suptitle(title or "where fixed point loses: one population quantized at a time", fontsize=10)
    return fig


def spike_raster(trains: Mapping[str, Mapping[str, np.ndarray]], max_neurons: int = 48,
                 title: str = "") -> Figure:
    """One sample's spikes, ``trains[source][layer]`` = ``[T, n]`` 0/1, aligned step by step
    (the chip's layer delays removed): one cell per (neuron, step). Each layer shows up to
    ``max_neurons`` neurons spread evenly over those that fire in any source; in later columns,
    spikes the first source does not have are black and spikes it has but this source lacks are
    grey."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    sources = list(trains)
    layers = [layer for layer in trains[sources[0]] if all(layer in trains[s] for s in sources)]
    fig, axes = _figure(len(layers), len(sources), size=(3.4 * len(sources) + 0.6, 1.5 * len(layers) + 0.8))
    mismatch = {2: ("black", f"not in {sources[0]}"), 3: ("#bbbbbb", f"only in {sources[0]}")}
    for i, layer in enumerate(layers):
        arrays = [np.asarray(trains[s][layer], bool) for s in sources]
        steps, n = arrays[0].shape
        active = np.flatnonzero(np.any([a.any(0) for a in arrays], axis=0))
        pick = np.unique(np.linspace(0, len(active) - 1, min(max_neurons, len(active))).round().astype(int))
        shown = active[pick] if len(active) else active
        ref = arrays[0][:, shown].T
        for j, (source, a) in enumerate(zip(sources, arrays)):
            ax = axes[i, j]
            here = a[:, shown].T  # [neurons, steps]
            codes = here.astype(int)
            if j:
                codes[here & ~ref], codes[~here & ref] = 2, 3
            cmap = ListedColormap(["white", color(source, j)] + [c for c, _ in mismatch.values()])
            ax.imshow(codes, cmap=cmap, vmin=-0.5, vmax=3.5, aspect="auto", interpolation="nearest",
                      extent=(0.5, steps + 0.5, len(shown) - 0.5, -0.5))
            same = f", {100 * np.mean(a == arrays[0]):.2f} % equal" if j else ""
            ax.set_title(f"{source}: {layer}, {int(a.sum()):,} spikes{same}", fontsize=7)
            ax.set_xticks(range(1, steps + 1))
            ax.tick_params(labelsize=7)
        axes[i, 0].set_ylabel(f"{len(shown)} of {n:,}\nneurons", fontsize=7)
    for j in range(len(sources)):
        axes[-1, j].set_xlabel("time step", fontsize=8)
    if len(sources) > 1 and layers:
        axes[0, -1].legend(handles=[Patch(color=c, label=label) for c, label in mismatch.values()],
                           fontsize=6, loc="upper right", framealpha=0.9)
    fig.suptitle(title or "spike raster of one sample", fontsize=10)
    return fig


def resources(report: Mapping[str, Any], title: str = "") -> Figure:
    """``check``'s report: cores per layer (the shared-weight estimate that decides the fit and
    the expanded count Lava's simulation stores), and neurons and synapses per layer."""
    layers = report["layers"]
    names = [layer["name"] for layer in layers]
    fig, ax = _figure(1, 2, size=(11.0, 3.8))
    _grouped_bars(ax[0, 0], {name: {"cores (shared-weight estimate)": layer["cores"],
                                    "cores (expanded, as simulated)": layer["cores_expanded"]}
                             for name, layer in zip(names, layers)}, 1.0, "{:.0f}")
    ax[0, 0].set_yscale("log")
    ax[0, 0].set_ylabel("cores")
    ax[0, 0].legend(fontsize=7)
    _grouped_bars(ax[0, 1], {name: {"neurons": layer["neurons"], "synapses": layer["synapses"]}
                             for name, layer in zip(names, layers)}, 1.0, compact)
    ax[0, 1].set_yscale("log")
    ax[0, 1].legend(fontsize=7)
    totals, limits = report["totals"], report["limits"]
    verdict = "fits one chip" if report["fits"] else "does not fit one chip"
    fig.suptitle(title or f"{report['target']}: {totals['cores']} of {limits['cores']} cores "
                          f"(shared-weight estimate; {totals['cores_expanded']} expanded), "
                          f"{totals['neurons']:,} neurons, {totals['synapses']:,} synapses: {verdict}",
                 fontsize=9)
    return fig


def learning_accuracy(runs: Mapping[str, Mapping[str, float | None]], title: str = "") -> Figure:
    """On-chip learning: ``runs[source]`` = ``{"accuracy_before", "accuracy_after"}`` on the
    held-out images of the same simulation (torch's adaptation is one more source)."""
    groups = {source: {"before learning": r.get("accuracy_before"), "after learning": r.get("accuracy_after")}
              for source, r in runs.items()}
    fig, ax = _figure(size=(max(7.0, 1.35 * len(groups) + 2.0), 4.2))
    draw_accuracy(ax[0, 0], groups)
    low, high = ax[0, 0].get_ylim()
    ax[0, 0].set_ylim(low, high + 0.08 * (high - low))  # room for the upright value labels
    ax[0, 0].tick_params(axis="x", labelsize=7)
    ax[0, 0].set_title(title or "held-out accuracy before and after learning", fontsize=10)
    return fig


def learning_gains(gains: Mapping[str, Sequence[float]], title: str = "") -> Figure:
    """Gain in held-out accuracy of each run (one dot per stream order, the same orders for
    every source) and the mean (bar): single runs spread by several points, means compare."""
    fig, ax = _figure(size=(max(6.0, 1.6 * len(gains) + 2.0), 3.8))
    a = ax[0, 0]
    for i, (source, values) in enumerate(gains.items()):
        v = 100.0 * np.asarray(values, float)
        bar = a.bar(i, v.mean(), 0.6, color=color(source, i), alpha=0.45)
        _bar_labels(a, bar, "{:.1f}")
        a.plot(np.full(len(v), i) + np.linspace(-0.15, 0.15, len(v)), v, "o", ms=4,
               color=color(source, i))
    a.set_xticks(range(len(gains)), list(gains), fontsize=8)
    a.set_ylabel("gain (points of accuracy)")
    a.set_title(title or "gain per stream order (dots) and mean (bars)", fontsize=10)
    return fig


def draw_learning_layers(ax: np.ndarray, layers: Mapping[str, Mapping[str, Any]]) -> None:
    """Two axes: the mean update per window in weight steps (LSBs, fixed point; below 1 only the
    expectation follows SGD), and the fractions of third factors saturated or zero, weights
    changed and weights at the 8-bit bounds."""
    names = list(layers)
    sizes = {n: {"mean update (LSB)": layers[n].get("mean_update_lsb")} for n in names}
    if any(v["mean update (LSB)"] is not None for v in sizes.values()):
        _grouped_bars(ax[0], sizes, 1.0, "{:.3g}")
        ax[0].axhline(1.0, color="black", lw=0.8, ls="--")
        ax[0].set_yscale("log")
        ax[0].set_ylabel("weight steps per window (1 = one LSB)")
    else:
        ax[0].text(0.5, 0.5, "floating point: no weight grid", ha="center", va="center",
                   transform=ax[0].transAxes)
        ax[0].set_xticks([])
    fractions = {n: {"third factors saturated": layers[n]["third_factors_saturated"],
                     "third factors zero": layers[n]["third_factors_zero"],
                     "weights changed": layers[n]["weights_changed"],
                     "weights at bounds": layers[n]["weights_at_bound"]} for n in names}
    _grouped_bars(ax[1], fractions, 100.0, "{:.1f}")
    ax[1].set_ylabel("% of the layer's")
    _legend_beside(ax[1])


def learning_layers(layers: Mapping[str, Mapping[str, Any]], title: str = "") -> Figure:
    """A learning report's ``layers``: update sizes and third factors per layer."""
    fig, ax = _figure(1, 2, size=(11.0, 3.8))
    draw_learning_layers(ax[0], layers)
    fig.suptitle(title or "update sizes and third factors per learning layer", fontsize=10)
    return fig


def learning_fidelity(cosines: Groups, title: str = "") -> Figure:
    """``cosines[layer][setting]``: cosine between the chip's weight change and the torch
    rate-BP step (1 = same direction)."""
    fig, ax = _figure(size=(8.0, 3.8))
    values = _grouped_bars(ax[0, 0], cosines, 1.0, "{:.3f}")
    low = min(values, default=0.9)
    ax[0, 0].set_ylim(max(0.0, math.floor(low * 50) / 50 - 0.02), 1.005)
    ax[0, 0].set_ylabel("cosine with the torch rate-BP step")
    _legend_beside(ax[0, 0])
    ax[0, 0].set_title(title or "weight change on the chip vs torch, per layer", fontsize=10)
    return fig


def learn_report(report: Mapping[str, Any]) -> Figure:
    """``neuroratebp learn --plot``: the report the command prints with ``--json``."""
    label = source_label(report["backend"], report["precision"])
    fig, ax = _figure(1, 3, size=(15.0, 3.8))
    draw_accuracy(ax[0, 0], {label: {"before learning": report["accuracy_before"],
                                     "after learning": report["accuracy_after"]}})
    draw_learning_layers(ax[0, 1:], report["layers"])
    fig.suptitle(f"{label}: learned from {report['learning_samples']:,} samples, held-out accuracy on "
                 f"{report['heldout_samples']:,}; T={report['timesteps']}, {report['window']} steps "
                 "per window", fontsize=10)
    return fig


def training_curves(runs: Mapping[str, Sequence[Mapping[str, Any]]], title: str = "") -> Figure:
    """Loss and accuracy per epoch of one or more runs (``metrics.jsonl`` rows)."""
    fig, ax = _figure(1, 2, size=(10.0, 3.6))
    for i, (name, rows) in enumerate(runs.items()):
        c = METHOD_COLORS.get(name, color(name, i))
        epochs = [row.get("epoch", k + 1) for k, row in enumerate(rows)]
        loss = [_first(row, "train_loss", "loss") for row in rows]
        ax[0, 0].plot(epochs, loss, "o-", color=c, label=name)
        for keys, style, what in ((("test_acc", "test_accuracy", "accuracy"), "o-", "test"),
                                  (("train_acc", "train_accuracy"), "s--", "train")):
            acc = [_first(row, *keys) for row in rows]
            if any(a is not None for a in acc):
                ax[0, 1].plot(epochs, [None if a is None else 100 * a for a in acc], style, color=c,
                              label=f"{name} {what}", markersize=4)
    ax[0, 0].set_ylabel("training loss")
    ax[0, 1].set_ylabel("accuracy (%)")
    for a in ax[0]:
        a.set_xlabel("epoch")
        a.xaxis.get_major_locator().set_params(integer=True)
        a.legend(fontsize=7)
        a.grid(alpha=0.3)
    fig.suptitle(title or "training", fontsize=10)
    return fig


def training_cost(rows: Sequence[Mapping[str, Any]], title: str = "") -> Figure:
    """Time and memory per training iteration against T, one line per method present, one row of
    panels per network (rows from :func:`cost_rows`)."""
    nets = list(dict.fromkeys(row["net"] for row in rows))
    fields = [f for f in COST_FIELDS if any(row.get(f) is not None for row in rows)]
    fig, axes = _figure(len(nets), len(fields), size=(4.0 * len(fields) + 0.5, 3.2 * len(nets)))
    for i, net in enumerate(nets):
        mine = [row for row in rows if row["net"] == net]
        methods = list(dict.fromkeys(row["method"] for row in mine))
        batch = mine[0].get("batch")
        for j, field in enumerate(fields):
            ax = axes[i, j]
            what, unit, _ = COST_FIELDS[field]
            scale = 1 / MIB if unit == "MiB" else 1.0
            for k, method in enumerate(methods):
                pts = sorted((row["T"], row[field] * scale) for row in mine
                             if row["method"] == method and row.get(field) is not None)
                if pts:
                    ax.plot(*zip(*pts), "o-", label=method,
                            color=METHOD_COLORS.get(method, OTHER_COLORS[k % len(OTHER_COLORS)]))
            ax.set_xscale("log", base=2)
            ts = sorted({row["T"] for row in mine})
            ax.set_xticks(ts, [str(t) for t in ts])
            ax.set_xlabel("T (time steps)")
            ax.set_ylabel(f"{what} ({unit})")
            ax.set_title(f"{net}" + (f", batch {batch}" if batch else ""), fontsize=9)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.suptitle(title or "training cost per iteration", fontsize=10)
    return fig


# -- train: metrics.png beside metrics.jsonl ------------------------------------------------
CURVES = "metrics.png"


def write_training_curves(run_dir: str | Path) -> Path:
    """Redraw ``run_dir/metrics.png`` from ``run_dir/metrics.jsonl``."""
    run_dir = Path(run_dir)
    fig = training_curves({run_dir.name or "run": read_metrics(run_dir / "metrics.jsonl")},
                          f"{run_dir.name}: training (metrics.jsonl)")
    return save(fig, run_dir / CURVES)


def curves_on_epoch(run_dir: str | Path, then: Callable[[dict[str, Any]], None] | None = None,
                    prog: str = "neuroratebp train") -> Callable[[dict[str, Any]], None] | None:
    """A ``fit(on_epoch=...)`` callback: ``then(row)``, then redraw the run's ``metrics.png``.
    Without matplotlib it warns once and returns ``then``; a figure that cannot be written is a
    warning, never the end of a training run."""
    if not available():
        print(f"{prog}: warning: {INSTALL_HINT}; no {CURVES} is drawn", file=sys.stderr)
        return then

    def on_epoch(row: dict[str, Any]) -> None:
        if then is not None:
            then(row)
        try:
            write_training_curves(run_dir)
        except (OSError, ValueError) as e:
            print(f"{prog}: warning: {CURVES} not written ({e})", file=sys.stderr)
    return on_epoch
