"""Training cost of BPTT vs rate-BP (rate_M, rate_S) as T grows, measured side by side.

For each network and T it reports, per method:
- bytes saved for backward (autograd saved-tensor hooks, distinct storages),
- peak memory of one forward/backward: on a GPU ``torch.cuda.max_memory_allocated`` above the
  memory held before it; on CPU the rise of the process's RSS high-water mark (``VmHWM``)
  over the RSS before it, each (network, method, T) in a fresh subprocess so earlier steps
  cannot mask it,
- median wall time per training iteration (forward + backward + SGD step), methods interleaved
  round-robin in one process so machine noise hits them alike; ratios to BPTT are what count.

Usage::

    python benchmarks/train_cost.py [--device cpu|cuda] [--nets convnet resnet18] [--out FILE]

Writes JSON (default benchmarks/results/train_cost_<device>.json) and prints a table.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

from neuroratebp.architectures import build_model
from neuroratebp.config import load_config, neuron_from_config
from neuroratebp.engine import forward_backward
from neuroratebp.network import SNN
from neuroratebp.neuron import neuron_config
from neuroratebp.profiling import saved_tensor_bytes

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("bptt", "rate_m", "rate_s")
TIMESTEPS = (1, 2, 4, 8, 16)
NETS: dict[str, dict[str, Any]] = {
    # The zoo's Fashion-MNIST conv net, from its config.
    "convnet": {"config": "models/fmnist_convnet.toml", "batch": 32},
    # ResNet-18 at CIFAR shape, the paper's setting.
    "resnet18": {"model": {"arch": "resnet", "depth": "resnet18", "input_shape": [3, 32, 32],
                           "num_classes": 10}, "neuron": "paper", "batch": 8},
}


def make_net(name: str, device: torch.device) -> tuple[SNN, int]:
    spec = NETS[name]
    torch.manual_seed(0)
    if "config" in spec:
        cfg = load_config(ROOT / spec["config"])
        model = build_model(cfg["model"], neuron_from_config(cfg))
    else:
        model = build_model(spec["model"], neuron_config(spec["neuron"]))
    return model.to(device).train(), spec["batch"]


def batch(model: SNN, size: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(size, *model.input_shape, generator=g)
    y = torch.randint(0, 10, (size,), generator=g)
    return x.to(device), y.to(device)


def train_step(model: SNN, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
               method: str, T: int) -> None:
    opt.zero_grad(set_to_none=True)
    forward_backward(model, x, y, method, T)
    opt.step()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_peak_rise(net: str, method: str, T: int) -> int:
    """In this (fresh) process: rise of the RSS high-water mark over the RSS before one step.

    VmHWM is per address space, so unlike ``ru_maxrss`` it does not inherit the parent's peak.
    Gradients are allocated beforehand without running the network, so the only high-water mark
    the step can set is its own.
    """
    model, size = make_net(net, torch.device("cpu"))
    x, y = batch(model, size, torch.device("cpu"))
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    before = _proc_status_bytes("VmRSS")
    forward_backward(model, x, y, method, T)
    return max(_proc_status_bytes("VmHWM") - before, 0)


def peak_memory_cpu(net: str, method: str, T: int) -> int:
    cmd = [sys.executable, __file__, "--peak-cell", net, method, str(T)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return int(out.stdout.strip().splitlines()[-1])


def peak_memory_cuda(model: SNN, x: torch.Tensor, y: torch.Tensor, method: str, T: int) -> int:
    """Peak allocation above what is held before one forward/backward (gradients allocated)."""
    sync(x.device)
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    forward_backward(model, x, y, method, T)
    sync(x.device)
    return torch.cuda.max_memory_allocated() - before


def measure(net: str, device: torch.device, repeats: int,
            timesteps: tuple[int, ...]) -> list[dict[str, Any]]:
    model, size = make_net(net, device)
    x, y = batch(model, size, device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    rows = []
    for T in timesteps:
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        for m in METHODS:  # warm-up
            train_step(model, opt, x, y, m, T)
        for _ in range(repeats):
            for m in METHODS:
                sync(device)
                start = time.perf_counter()
                train_step(model, opt, x, y, m, T)
                sync(device)
                times[m].append(time.perf_counter() - start)
        for m in METHODS:
            model.load_state_dict(state)
            opt.zero_grad(set_to_none=True)
            with saved_tensor_bytes() as saved:
                forward_backward(model, x, y, m, T)
            peak = (peak_memory_cuda(model, x, y, m, T) if device.type == "cuda"
                    else peak_memory_cpu(net, m, T))
            rows.append({"net": net, "batch": size, "T": T, "method": m,
                         "saved_bytes": saved.total, "peak_bytes": peak,
                         "time_s": statistics.median(times[m])})
            print(f"{net:9s} T={T:2d} {m:7s} saved {saved.total / 2**20:8.1f} MiB  "
                  f"peak {peak / 2**20:8.1f} MiB  time {statistics.median(times[m]):.3f} s",
                  flush=True)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios the targets are stated in: saved bytes T=16 vs T=1; time and peak vs BPTT at T=8."""
    key = {(r["net"], r["method"], r["T"]): r for r in rows}
    out: dict[str, Any] = {}
    for net in sorted({r["net"] for r in rows}):
        s: dict[str, float] = {}
        for m in METHODS:
            if (net, m, 16) in key and (net, m, 1) in key:
                s[f"{m}_saved_T16_over_T1"] = (key[net, m, 16]["saved_bytes"]
                                               / key[net, m, 1]["saved_bytes"])
        for m in ("rate_m", "rate_s"):
            if (net, m, 8) in key and (net, "bptt", 8) in key:
                ref = key[net, "bptt", 8]
                s[f"{m}_time_over_bptt_T8"] = key[net, m, 8]["time_s"] / ref["time_s"]
                s[f"{m}_peak_over_bptt_T8"] = key[net, m, 8]["peak_bytes"] / max(ref["peak_bytes"], 1)
        out[net] = s
    return out


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timesteps", type=int, nargs="+", default=list(TIMESTEPS))
    p.add_argument("--out", type=Path)
    p.add_argument("--peak-cell", nargs=3, metavar=("NET", "METHOD", "T"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.peak_cell:
        net, method, T = args.peak_cell
        print(rss_peak_rise(net, method, int(T)))
        return
    device = torch.device(args.device)
    rows = [r for net in args.nets for r in measure(net, device, args.repeats, tuple(args.timesteps))]
    result = {
        "benchmark": "train_cost",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peak_memory_measure": ("torch.cuda.max_memory_allocated above pre-step allocation"
                                if device.type == "cuda" else
                                "rise of the RSS high-water mark (VmHWM) over the pre-step RSS during one "
                                "forward/backward, "
                                "fresh process per cell"),
        "rows": rows,
        "summary": summarize(rows),
    }
    out = args.out or ROOT / "benchmarks" / "results" / f"train_cost_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result["summary"], indent=2))
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
