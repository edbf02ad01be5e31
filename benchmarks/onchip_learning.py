"""On-chip rate-BP learning (``neuroratebp learn``): fidelity, sequence fidelity, the adaptation
task and speed, written as JSON (figures and commands: benchmarks/RESULTS.md).

    python benchmarks/onchip_learning.py zoo.nir -o benchmarks/results/onchip_learning.json \
        [--sections fidelity,sequence,bitexact,task,orders,task_lava,speed] \
        [--stream 1000 --heldout 2000] [--orders 8] [--lava-runs fixed:1000:2000,float:1000:2000]

``zoo.nir``: ``neuroratebp export models/fmnist_convnet.pt --to nir -o zoo.nir``.
- fidelity: one learning window from the same start vs the torch rate-BP SGD step (the NIR
  graph imported into the project's engine, pooled dense layer tied, biases frozen): cosine per
  layer, float (exact kappa and the cheaper variants) and fixed (per sample, and the mean of 16
  repeats of a sample at successive positions of Lava's rounding streams).
- sequence: N float learning windows vs N sequential torch SGD steps (batch 1).
- bitexact: Lava fixed_pt vs the emulator over a learning stream on a small net.
- task: the zoo model meets inverted-contrast Fashion-MNIST and learns from a stream of
  training images; accuracy on held-out test images before and after, in the same simulation,
  beside the same adaptation by rate-BP in torch at the same learning rates (emulator: the
  whole task; task_lava: Lava on the sizes given, each beside torch at those sizes).
- orders: the task with the stream in several orders, torch and the emulator on each; the
  on-chip gain as a fraction of torch's is the ratio of the mean gains (single runs are chaotic).
- speed: learning samples per second of the emulator's learning head and of Lava.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from hw_targets.loihi2 import target

target.import_lava()  # before anything creates a multiprocessing lock

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hw_targets.loihi2 import examples as ex  # noqa: E402
from hw_targets.loihi2.learning import LearnOptions, make_plan  # noqa: E402
from hw_targets.loihi2.learning.emulator import LearningEmulator  # noqa: E402
from hw_targets.loihi2.learning.session import learn, run_plan  # noqa: E402
from neuroratebp.commands.learn_cmd import load_learning_data  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from learning_reference import cosine, sgd_sequence, sgd_updates  # noqa: E402

KAPPAS = ("exact", "no-recursion", "triangle", "triangle-no-recursion")


def _delta(plan, run, name):
    layer = plan.layer(name)
    return (run.weights[name] - layer.weights) * layer.lsb / layer.row_scale[:, None]


def fidelity(graph, x, y, layers, lr, repeats: int = 16, samples: int = 8) -> dict:
    rates = dict.fromkeys(layers, lr)
    T = target.compile_graph(graph, "float")[1].timesteps
    ref = sgd_updates(graph, x[:samples], y[:samples], rates, T)
    out = {"lr": lr, "samples": samples, "float": {}, "fixed": {}}
    for kappa in KAPPAS:
        plan = make_plan(graph, "float", LearnOptions(layers, rates, kappa=kappa), (x[:64], y[:64]))
        emu = LearningEmulator(plan)
        head = emu.head_inputs(x[:samples])
        cos = {n: [] for n in layers}
        for i in range(samples):
            run = emu.run(x[i:i + 1], y[i:i + 1], np.ones(1, bool), head=_slice(head, [i]))
            for n in layers:
                cos[n].append(cosine(_delta(plan, run, n), ref[i][n]))
        out["float"][kappa] = {n: {"mean": float(np.mean(c)), "min": float(np.min(c))} for n, c in cos.items()}
        print("fidelity float", kappa, out["float"][kappa], file=sys.stderr)
    plan = make_plan(graph, "fixed", LearnOptions(layers, rates), (x[:64], y[:64]))
    emu = LearningEmulator(plan)
    head = emu.head_inputs(x[:samples])
    single = {n: [] for n in layers}
    mean = {n: [] for n in layers}
    zero = {n: 0 for n in layers}
    for i in range(samples):
        deltas = {n: [] for n in layers}
        for r in range(repeats):  # sample i at window r: r held-out windows first
            idx = [i] * (r + 1)
            run = emu.run(x[idx], y[idx], np.r_[np.zeros(r, bool), True], head=_slice(head, idx))
            for n in layers:
                deltas[n].append(_delta(plan, run, n))
        for n in layers:
            cs = [cosine(d, ref[i][n]) if np.any(d) else 0.0 for d in deltas[n]]
            zero[n] += sum(not np.any(d) for d in deltas[n])
            single[n] += cs
            mean[n].append(cosine(np.mean(deltas[n], axis=0), ref[i][n]))
    stats = plan_stats(plan)
    out["fixed"] = {n: {"single_mean": float(np.mean(single[n])), "single_min": float(np.min(single[n])),
                        "mean_of_repeats": float(np.mean(mean[n])), "mean_of_repeats_min": float(np.min(mean[n])),
                        "no_update_windows": zero[n] / (samples * repeats), "repeats": repeats,
                        **stats[n]} for n in layers}
    print("fidelity fixed", out["fixed"], file=sys.stderr)
    return out


def plan_stats(plan) -> dict:
    return {layer.name: {"rule_constant": layer.constant, "trace_impulse": layer.impulse,
                         "gain": float(np.median(layer.gain)), "calibrated_gain": layer.calibrated_gain,
                         "expected_update_lsb_at_max": layer.constant / 8 * layer.impulse
                         * layer.max_count * layer.levels} for layer in plan.layers}


def _slice(head, idx):
    from hw_targets.loihi2.learning.emulator import _Head
    return _Head({k: v[idx] for k, v in head.pre.items()}, {k: v[idx] for k, v in head.frozen.items()})


def sequence(graph, x, y, layers, lr, n: int = 20) -> dict:
    rates = dict.fromkeys(layers, lr)
    plan = make_plan(graph, "float", LearnOptions(layers, rates), (x[:64], y[:64]))
    out = {"windows": n, "lr": lr}
    ref = sgd_sequence(graph, x[:n], y[:n], rates, plan.timesteps)
    for backend in ("emulator", "lava"):
        run, timing = run_plan(plan, x[:n], y[:n], np.ones(n, bool), backend)
        res = {}
        for name in layers:
            layer = plan.layer(name)
            start = layer.weights / layer.row_scale[:, None]
            got = run.weights[name] / layer.row_scale[:, None]
            change = float(np.abs(ref[name] - start).max())
            res[name] = {"max_change": change,
                         "max_abs_difference": float(np.abs(got - ref[name]).max()),
                         "relative_to_change": float(np.abs(got - ref[name]).max() / change)}
        out[backend] = res
        out[f"{backend}_timing"] = timing
        print("sequence", backend, res, timing, file=sys.stderr)
    return out


def bitexact(windows: int = 60) -> dict:
    graph = ex.mlp_graph((16, 24, 20, 10), timesteps=4, gain=3.0)
    x = ex.random_images(graph, windows)
    y = np.arange(windows) % 4
    plan = make_plan(graph, "fixed", LearnOptions(("fc1", "fc2"), {"fc1": 0.5, "fc2": 0.5}), (x, y))
    learn = np.ones(windows, bool)
    learn[::7] = False
    emu = LearningEmulator(plan, record_neurons=True).run(x, y, learn)
    lava, _ = run_plan(plan, x, y, learn, "lava", record_neurons=True)
    same = {"logits": np.array_equal(lava.logits, emu.logits),
            "errors": np.array_equal(lava.errors, emu.errors)}
    for group in ("weights", "feedback", "activity", "factors", "neuron_counts"):
        for key, value in getattr(emu, group).items():
            same[f"{group}:{key}"] = bool(np.array_equal(getattr(lava, group)[key], value))
    out = {"net": "mlp 16-24-20-10, T=4, fc1 (hidden) + fc2 (output), learned feedback",
           "windows": windows, "learning_windows": int(learn.sum()), "identical": same,
           "all_identical": all(same.values())}
    print("bitexact", out, file=sys.stderr)
    return out


def torch_adaptation(graph, stream, heldout, lr: dict) -> dict:
    """The same adaptation by rate-BP in torch: SGD batch 1 on the NIR weights of the learning
    layers (biases frozen), accuracy of the float network before and after."""
    from learning_reference import model_for, normalised, sgd_steps
    from neuroratebp.engine import infer
    model, names = model_for(graph, list(lr))
    T = target.compile_graph(graph, "float")[1].timesteps

    def accuracy():
        xs, ys = heldout
        pred = [infer(model, torch.cat([normalised(graph, x) for x in xs[i:i + 250]]), T).argmax(1)
                for i in range(0, len(xs), 250)]
        return float((torch.cat(pred).numpy() == ys).mean())
    before = accuracy()
    start = time.perf_counter()
    sgd_steps(graph, model, names, stream[0], stream[1], lr, T)
    seconds = time.perf_counter() - start
    after = accuracy()
    return {"accuracy_before": before, "accuracy_after": after, "gain": after - before,
            "seconds_per_sample": seconds / len(stream[0])}


def _frozen_front(plan, stream, heldout):
    """The frozen layers run once on the held-out and stream images (the held-out ones once,
    not twice); returns the emulator's inputs for the task's windows with the stream in a given
    order: held-out, stream, held-out again."""
    head = LearningEmulator(plan).head_inputs(np.concatenate([heldout[0], stream[0]]))
    n = len(heldout[0])
    return lambda order: head.take(np.r_[np.arange(n), n + order, np.arange(n)])


def _task_run(graph, lr: dict, backend: str, precision: str, stream, heldout, ref: dict,
              frozen=None) -> dict:
    layers = tuple(lr)
    start = time.perf_counter()
    r = learn(graph, stream, heldout, LearnOptions(layers, lr), backend, precision,
              frozen=frozen).report
    out = {"accuracy_before": r["accuracy_before"], "accuracy_after": r["accuracy_after"],
           "gain": r["gain"], "gain_vs_torch": r["gain"] / ref["gain"] if ref["gain"] else None,
           "stream": len(stream[0]), "heldout": len(heldout[0]), "windows": r["samples"],
           "seconds_total": time.perf_counter() - start,
           "seconds_per_sample": r["seconds_per_sample"],
           **{k: r[k] for k in ("startup_seconds", "readback_seconds") if k in r},
           "layers": {n: {k: v[k] for k in ("lr", "achieved_lr", "rule_constant", "trace_impulse",
                                            "third_factor_gain", "calibrated_gain",
                                            "third_factors_saturated", "third_factors_zero",
                                            "mean_update_lsb", "weights_changed", "weights_at_bound")}
                      for n, v in r["layers"].items()},
           "feedback": r["feedback"]}
    print("task", backend, precision, out, file=sys.stderr)
    return out


def task(graph, lr: dict, stream: int, heldout: int, precisions: tuple[str, ...] = ("fixed", "float")) -> dict:
    """Torch rate-BP and the emulator (in ``precisions``) on the whole task."""
    layers = tuple(lr)
    s, h = load_learning_data("fmnist", (1, 28, 28), stream, heldout, "invert")
    out = {"shift": "invert (x -> 1 - x)", "layers": list(layers), "lr": lr, "stream": stream,
           "heldout": heldout}
    out["torch"] = torch_adaptation(graph, s, h, lr)
    print("task torch", out["torch"], file=sys.stderr)
    for precision in precisions:
        start = time.perf_counter()  # conv layers once per precision, outside the timed head
        plan = make_plan(graph, precision, LearnOptions(layers, lr))
        frozen = _frozen_front(plan, s, h)(np.arange(stream))
        frozen_seconds = time.perf_counter() - start
        out[f"emulator_{precision}"] = _task_run(graph, lr, "emulator", precision, s, h,
                                                 out["torch"], frozen)
        out[f"emulator_{precision}"]["frozen_layers_seconds"] = frozen_seconds
    return out


def orders(graph, lr: dict, stream: int, heldout: int, count: int,
           precisions: tuple[str, ...] = ("fixed", "float")) -> dict:
    """The task with the stream in ``count`` orders (order 0 as loaded, then permutations seeded
    1, 2, ...): one run's gain moves by several points under any perturbation (torch's own
    under 1e-12 changes of the weights), so on-chip vs torch is compared as mean gains over
    the same orders, each order beside torch."""
    layers = tuple(lr)
    s, h = load_learning_data("fmnist", (1, 28, 28), stream, heldout, "invert")
    perms = [np.arange(stream)] + [np.random.default_rng(k).permutation(stream)
                                   for k in range(1, count)]
    gains: dict[str, list] = {"torch": []}
    for perm in perms:
        gains["torch"].append(torch_adaptation(graph, (s[0][perm], s[1][perm]), h, lr)["gain"])
        print("orders torch", len(gains["torch"]), gains["torch"][-1], file=sys.stderr)
    for precision in precisions:
        plan = make_plan(graph, precision, LearnOptions(layers, lr))
        front = _frozen_front(plan, s, h)
        gains[f"emulator_{precision}"] = []
        for perm in perms:
            r = learn(graph, (s[0][perm], s[1][perm]), h, LearnOptions(layers, lr), "emulator",
                      precision, frozen=front(perm)).report
            gains[f"emulator_{precision}"].append(r["gain"])
            print("orders", precision, len(gains[f"emulator_{precision}"]), r["gain"], file=sys.stderr)
    return {"shift": "invert (x -> 1 - x)", "layers": list(layers), "lr": lr, "stream": stream,
            "heldout": heldout, "orders": count, **gain_statistics(gains)}


def gain_statistics(gains: dict[str, list]) -> dict:
    """Per source: the gains, their mean, standard deviation and standard error; beside torch
    (same orders): the ratio of the means, and the paired difference (mean, standard error) that
    says how well the ratio is known."""
    out, ref = {}, np.array(gains["torch"])
    n = len(ref)

    def sem(x: np.ndarray) -> float | None:
        return float(x.std(ddof=1) / np.sqrt(n)) if n > 1 else None
    for name, g in gains.items():
        g = np.array(g)
        out[name] = {"gains": g.tolist(), "mean_gain": float(g.mean()),
                     "std_gain": float(g.std(ddof=1)) if n > 1 else None, "sem_gain": sem(g)}
        if name != "torch":
            out[name].update({"mean_gain_vs_torch": float(g.mean() / ref.mean()),
                              "per_order_ratio": (g / ref).tolist(),
                              "mean_difference": float((g - ref).mean()),
                              "sem_difference": sem(g - ref)})
    return out


def task_lava(graph, lr: dict, runs: str, save) -> dict:
    """The task in Lava, ``runs`` = precision:stream:heldout,... (the first samples of the
    emulator task's stream and held-out set); each beside torch at the same sizes. ``save(out)``
    after each run: a long run cut short keeps the finished ones."""
    out, refs = {"lr": lr, "runs": runs}, {}
    for spec in runs.split(","):
        precision, stream, heldout = spec.split(":")
        stream, heldout = int(stream), int(heldout)
        s, h = load_learning_data("fmnist", (1, 28, 28), stream, heldout, "invert")
        if (stream, heldout) not in refs:
            refs[stream, heldout] = torch_adaptation(graph, s, h, lr)
            out[f"torch_{stream}_{heldout}"] = refs[stream, heldout]
            print("task torch", stream, heldout, refs[stream, heldout], file=sys.stderr)
        out[f"lava_{precision}_{stream}_{heldout}"] = _task_run(graph, lr, "lava", precision, s, h,
                                                               refs[stream, heldout])
        save(out)
    return out


def speed(graph, lr: dict, n: int, lava_n: int) -> dict:
    """Learning samples per second: the emulator's learning head (frozen layers precomputed
    once, batched: reported separately) and Lava (whole graph; start-up, the first window that
    compiles, and the weight read-back reported apart from the steady windows)."""
    s, _ = load_learning_data("fmnist", (1, 28, 28), n, 0, "invert")
    out = {"samples": n, "lava_samples": lava_n}
    for precision in ("fixed", "float"):
        plan = make_plan(graph, precision, LearnOptions(tuple(lr), lr), (s[0][:64], s[1][:64]))
        emu = LearningEmulator(plan)
        start = time.perf_counter()
        head = emu.head_inputs(s[0])
        frozen = time.perf_counter() - start
        start = time.perf_counter()
        emu.run(s[0], s[1], np.ones(n, bool), head=head)
        seconds = time.perf_counter() - start
        out[f"emulator_{precision}"] = {"head_samples_per_second": n / seconds,
                                        "frozen_layers_ms_per_sample": 1e3 * frozen / n}
        print("speed", precision, out[f"emulator_{precision}"], file=sys.stderr)
        if lava_n:
            _, timing = run_plan(plan, s[0][:lava_n], s[1][:lava_n], np.ones(lava_n, bool), "lava")
            out[f"lava_{precision}"] = {**timing, "samples_per_second": 1 / timing["seconds_per_sample"]}
            print("speed lava", precision, out[f"lava_{precision}"], file=sys.stderr)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model", help="zoo.nir")
    p.add_argument("--sections", default="fidelity,sequence,bitexact,task,speed")
    p.add_argument("--lr", type=float, default=0.01, help="task learning rate, both layers")
    p.add_argument("--fidelity-lr", type=float, default=0.05)
    p.add_argument("--stream", type=int, default=1000)
    p.add_argument("--heldout", type=int, default=2000)
    p.add_argument("--task-precisions", default="fixed,float",
                   help="task: emulator precisions to run (records of the others are kept)")
    p.add_argument("--orders", type=int, default=8, help="orders: stream orders to average over")
    p.add_argument("--lava-runs", default="fixed:1000:2000,float:1000:2000",
                   help="task_lava: precision:stream:heldout,...")
    p.add_argument("--speed-samples", type=int, default=1000)
    p.add_argument("--lava-speed-samples", type=int, default=20)
    p.add_argument("-o", "--output", default="benchmarks/results/onchip_learning.json")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    graph = target.load_graph(args.model)
    sections = args.sections.split(",")
    path = Path(args.output)
    result = json.loads(path.read_text()) if path.is_file() else {}
    result["machine"] = {"cores": 2, "note": "shared machine; load average logged per section"}
    layers = ("fc1", "fc2")
    x, y = None, None
    if {"fidelity", "sequence"} & set(sections):
        (x, y), _ = load_learning_data("fmnist", (1, 28, 28), 64, 0, "invert")
    for name in sections:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        if name == "fidelity":
            result[name] = fidelity(graph, x, y, layers, args.fidelity_lr)
        elif name == "sequence":
            result[name] = sequence(graph, x, y, layers, args.fidelity_lr)
        elif name == "bitexact":
            result[name] = bitexact()
        elif name == "task":
            kept = result.get(name, {})  # other precisions' records of the same task stay
            if (kept.get("stream"), kept.get("heldout"), kept.get("lr")) != \
                    (args.stream, args.heldout, dict.fromkeys(layers, args.lr)):
                kept = {}
            result[name] = {**kept, **task(graph, dict.fromkeys(layers, args.lr), args.stream,
                                           args.heldout, tuple(args.task_precisions.split(",")))}
        elif name == "orders":
            result[name] = orders(graph, dict.fromkeys(layers, args.lr), args.stream,
                                  args.heldout, args.orders, tuple(args.task_precisions.split(",")))
        elif name == "task_lava":
            kept = result.get(name, {})  # runs of other sizes and precisions stay
            runs = ",".join(dict.fromkeys(r for r in [*kept.get("runs", "").split(","),
                                                       *args.lava_runs.split(",")] if r))

            def save(partial: dict) -> None:
                result[name] = {**kept, **partial, "runs": runs}
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(result, indent=1, default=float))
            result[name] = {**kept, **task_lava(graph, dict.fromkeys(layers, args.lr), args.lava_runs, save),
                            "runs": runs}
        elif name == "speed":
            result[name] = speed(graph, dict.fromkeys(layers, args.lr), args.speed_samples,
                                 args.lava_speed_samples)
        else:
            raise SystemExit(f"unknown section {name!r}")
        result[name]["load_average_at_start"] = load
        result[name]["seconds"] = time.perf_counter() - start
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(result, indent=1, default=float))
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, default=float)[:4000])
    return 0


if __name__ == "__main__":
    sys.exit(main())
