"""Training cost of BPTT vs rate-BP (rate_M, rate_S) as T grows, beside the peers' BPTT.

For each network and T it reports, per contender (ours: bptt, bptt_s, rate_m, rate_s; on the
conv net also snnTorch's and SpikingJelly's BPTT, multi- and single-step, same weights, see
``peers.py``):
- bytes saved for backward (autograd saved-tensor hooks, distinct storages, peak),
- peak memory of one forward/backward (ours): on a GPU ``torch.cuda.max_memory_allocated``
  above the memory held before it; on CPU the rise of the RSS high-water mark (``VmHWM``,
  reset after a warm-up step) over the RSS before it, each cell in a fresh process whose
  allocator returns freed blocks at once,
- median time per training iteration (forward + backward + SGD step), contenders interleaved
  round-robin in one process so machine noise hits them alike: wall time and the process's CPU
  time (on a shared machine the CPU time of a one-thread run is the steadier of the two);
- the loss each contender computes (equal losses show the nets are the same function).

Usage::

    python benchmarks/train_cost.py [--device cpu|cuda] [--nets convnet resnet18] [--threads N]
                                    [--repeats N] [--timesteps 1 2 4 8 16] [-o FILE]
    python benchmarks/train_cost.py --profile convnet 8     # torch.profiler breakdown

Writes JSON (default benchmarks/results/train_cost_<device>.json) and prints a table.
Kernels: as ``NEURORATEBP_KERNELS`` says (default auto: compiled where torch.compile works).
"""
from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import peers  # noqa: E402  (benchmarks/ is not a package)

from neuroratebp import neuron  # noqa: E402
from neuroratebp.architectures import build_model  # noqa: E402
from neuroratebp.config import load_config, neuron_from_config  # noqa: E402
from neuroratebp.engine import forward_backward  # noqa: E402
from neuroratebp.kernels import kernel_mode  # noqa: E402
from neuroratebp.network import SNN  # noqa: E402
from neuroratebp.neuron import neuron_config  # noqa: E402
from neuroratebp.profiling import saved_tensor_bytes  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("bptt", "bptt_s", "rate_m", "rate_s")
TIMESTEPS = (1, 2, 4, 8, 16)
NETS: dict[str, dict[str, Any]] = {
    # The zoo's Fashion-MNIST conv net, from its config.
    "convnet": {"config": "models/fmnist_convnet.toml", "batch": 32},
    # ResNet-18 at CIFAR shape, the paper's setting.
    "resnet18": {"model": {"arch": "resnet", "depth": "resnet18", "input_shape": [3, 32, 32],
                           "num_classes": 10}, "neuron": "paper", "batch": 8},
}
OFFICIAL_SAVED_MIB = {"convnet": 41.4, "resnet18": 114.0}
"""Bytes the official rate-BP code keeps for backward (rate_M, same weights and batch),
measured for the issue that asked for this benchmark; not re-measured here."""

Step = Callable[[], torch.Tensor]


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


def contenders(model: SNN, x: torch.Tensor, y: torch.Tensor, T: int,
               with_peers: bool) -> dict[str, tuple[torch.nn.Module, Step]]:
    """name -> (module whose parameters train, one forward/backward returning the loss)."""
    out: dict[str, tuple[torch.nn.Module, Step]] = {
        m: (model, lambda m=m: forward_backward(model, x, y, m, T).loss) for m in METHODS}
    if with_peers:
        for peer, build in peers.PEERS.items():
            if peers.version(peer) is None:
                continue
            for mode in "ms":
                net, step = build(model, mode)
                out[f"{peer}_{mode}"] = (net, lambda step=step: step(x, y, T))
    return out


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

    A first step builds (and, with compiled kernels, compiles) everything and allocates the
    gradients. Then the allocator returns freed memory to the system (``malloc_trim``) and the
    high-water mark is reset (``/proc/self/clear_refs``), so the peak measured is the step's
    own, above what lives between steps.
    """
    model, size = make_net(net, torch.device("cpu"))
    x, y = batch(model, size, torch.device("cpu"))
    forward_backward(model, x, y, method, T)
    gc.collect()
    ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    before = _proc_status_bytes("VmRSS")
    forward_backward(model, x, y, method, T)
    return max(_proc_status_bytes("VmHWM") - before, 0)


def peak_memory_cpu(net: str, method: str, T: int, threads: int) -> int:
    """:func:`rss_peak_rise` in a fresh process whose allocator hands every freed block of
    128 KiB or more back at once (glibc's ``MALLOC_MMAP_THRESHOLD_``), so RSS follows the live
    tensors rather than what the allocator keeps cached."""
    cmd = [sys.executable, __file__, "--threads", str(threads), "--peak-cell", net, method, str(T)]
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
    return int(out.stdout.strip().splitlines()[-1])


def peak_memory_cuda(model: SNN, x: torch.Tensor, y: torch.Tensor, method: str, T: int) -> int:
    """Peak allocation above what is held before one forward/backward (gradients allocated)."""
    sync(x.device)
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    forward_backward(model, x, y, method, T)
    sync(x.device)
    return torch.cuda.max_memory_allocated() - before


def measure(net: str, device: torch.device, repeats: int, timesteps: tuple[int, ...],
            threads: int) -> list[dict[str, Any]]:
    model, size = make_net(net, device)
    x, y = batch(model, size, device)
    with_peers = net == "convnet"  # peers are built from sequential chip-neuron nets
    rows = []
    for T in timesteps:
        runs = contenders(model, x, y, T, with_peers)
        states = {name: {k: v.clone() for k, v in mod.state_dict().items()}
                  for name, (mod, _) in runs.items()}
        opts = {name: torch.optim.SGD(mod.parameters(), lr=1e-3, momentum=0.9)
                for name, (mod, _) in runs.items()}
        losses, saved = {}, {}
        for name, (mod, step) in runs.items():  # saved bytes and loss, from the initial weights
            mod.load_state_dict(states[name])
            mod.zero_grad(set_to_none=True)
            with saved_tensor_bytes() as counter:
                losses[name] = float(step())
            saved[name] = counter.total
        for name, (mod, step) in runs.items():  # warm-up (and compile)
            train_step(opts[name], step)
        wall: dict[str, list[float]] = {name: [] for name in runs}
        cpu: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(repeats):
            for name, (mod, step) in runs.items():
                sync(device)
                start, start_cpu = time.perf_counter(), time.process_time()
                train_step(opts[name], step)
                sync(device)
                wall[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
        for name, (mod, step) in runs.items():
            peak = None
            if name in METHODS:
                model.load_state_dict(states[name])
                peak = (peak_memory_cuda(model, x, y, name, T) if device.type == "cuda"
                        else peak_memory_cpu(net, name, T, threads))
            row = {"net": net, "batch": size, "T": T, "method": name, "loss": losses[name],
                   "saved_bytes": saved[name], "peak_bytes": peak,
                   "time_s": statistics.median(wall[name]), "cpu_s": statistics.median(cpu[name])}
            rows.append(row)
            peak_text = "" if peak is None else f"peak {peak / 2**20:7.1f} MiB  "
            print(f"{net:9s} T={T:2d} {name:15s} loss {row['loss']:.5f}  saved "
                  f"{saved[name] / 2**20:7.1f} MiB  {peak_text}time {row['time_s']:.3f} s  "
                  f"cpu {row['cpu_s']:.3f} s", flush=True)
    return rows


def train_step(opt: torch.optim.Optimizer, step: Step) -> None:
    opt.zero_grad(set_to_none=True)
    step()
    opt.step()


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The ratios the targets are stated in (time ratios on CPU time and on wall time)."""
    key = {(r["net"], r["method"], r["T"]): r for r in rows}
    out: dict[str, Any] = {}
    for net in sorted({r["net"] for r in rows}):
        s: dict[str, Any] = {}
        Ts = sorted({r["T"] for r in rows if r["net"] == net})
        if (net, "bptt", 1) in key:
            rate_saved = max(key[net, m, T]["saved_bytes"] for m in ("rate_m", "rate_s")
                             for T in Ts if (net, m, T) in key)
            s["rate_saved_max_over_bptt_T1"] = rate_saved / key[net, "bptt", 1]["saved_bytes"]
            s["rate_saved_max_over_official_MiB"] = rate_saved / 2**20 / OFFICIAL_SAVED_MIB[net]
        for T in (4, 8):
            if (net, "rate_m", T) not in key:
                continue
            peer_rows = [r for r in rows if r["net"] == net and r["T"] == T
                         and r["method"] not in METHODS]
            for clock in ("cpu_s", "time_s"):
                tag = "cpu" if clock == "cpu_s" else "wall"
                s[f"rate_m_over_bptt_T{T}_{tag}"] = (key[net, "rate_m", T][clock]
                                                    / key[net, "bptt", T][clock])
                if peer_rows:
                    fastest = min(peer_rows, key=lambda r: r[clock])
                    s[f"fastest_peer_T{T}_{tag}"] = fastest["method"]
                    s[f"rate_m_over_fastest_peer_T{T}_{tag}"] = (key[net, "rate_m", T][clock]
                                                                / fastest[clock])
                    s[f"bptt_over_fastest_peer_T{T}_{tag}"] = (key[net, "bptt", T][clock]
                                                              / fastest[clock])
        if (net, "rate_m", 8) in key and key[net, "bptt", 8]["peak_bytes"]:
            s["rate_m_peak_over_bptt_T8"] = (key[net, "rate_m", 8]["peak_bytes"]
                                             / key[net, "bptt", 8]["peak_bytes"])
        out[net] = s
    return out


PROFILE_GROUPS = (
    ("convolution forward", ("mkldnn_convolution", "slow_conv2d_forward", "cudnn_convolution")),
    ("convolution backward", ("convolution_backward",)),
    ("LIF kernels (compiled)", ("CompiledFxGraph", "triton_")),
    ("batch norm", ("batch_norm",)),
    ("pooling", ("pool2d",)),
    ("linear layers", ("aten::mm", "aten::addmm")),
    ("reductions (statistics, rates)", ("aten::sum", "aten::mean", "aten::pow", "aten::square")),
    ("copies", ("aten::copy_", "aten::cat", "aten::stack")),
    ("compiled-call overhead", ("Pregraph bytecode", "TorchDynamo Cache Lookup", "AOTDispatcher")),
)


def profile(net: str, T: int, device: torch.device, repeats: int) -> dict[str, Any]:
    """Self CPU time of each contender's ops, summed into groups (torch.profiler)."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    model, size = make_net(net, device)
    x, y = batch(model, size, device)
    result: dict[str, Any] = {}
    for name, (mod, step) in contenders(model, x, y, T, net == "convnet").items():
        opt = torch.optim.SGD(mod.parameters(), lr=1e-3, momentum=0.9)
        train_step(opt, step)
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(repeats):
                train_step(opt, step)
        groups = {group: 0.0 for group, _ in PROFILE_GROUPS}
        groups["element-wise and other ops"] = 0.0
        for event in prof.key_averages():
            if event.key.startswith(("## Call", "Torch-Compiled", "autograd::engine")) and \
                    "CompiledFxGraph" not in event.key:
                continue  # wrappers whose children are counted
            group = next((g for g, keys in PROFILE_GROUPS if any(k in event.key for k in keys)),
                         "element-wise and other ops")
            groups[group] += event.self_cpu_time_total / 1e6 / repeats
        total = sum(groups.values())
        result[name] = {"total_s": total, "groups_s": groups}
        print(f"{name:15s} {total:.3f} s  " + "  ".join(
            f"{g} {100 * v / total:.0f}%" for g, v in groups.items() if v), flush=True)
    return result


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def kernels_used() -> str:
    """Which LIF kernels ran: the mode, and whether compiling failed in this process."""
    broken = [k.broken for k in (neuron._trace_step, neuron._lif_step,
                                 neuron._lif_step_backward) if k.broken]
    return f"{kernel_mode()}" + (f" (compile failed, eager: {broken[0]})" if broken else "")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--nets", nargs="+", default=list(NETS), choices=list(NETS))
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--timesteps", type=int, nargs="+", default=list(TIMESTEPS))
    p.add_argument("--threads", type=int, help="torch threads (default: torch's choice)")
    p.add_argument("-o", "--output", type=Path)
    p.add_argument("--profile", nargs=2, metavar=("NET", "T"),
                   help="print a torch.profiler breakdown of every contender instead")
    p.add_argument("--peak-cell", nargs=3, metavar=("NET", "METHOD", "T"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.peak_cell:
        net, method, T = args.peak_cell
        print(rss_peak_rise(net, method, int(T)))
        return
    device = torch.device(args.device)
    load_before = load_average()
    result: dict[str, Any] = {
        "benchmark": "train_cost",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "device_type": device.type,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "peers": {name: peers.version(name) for name in peers.PEERS},
    }
    if args.profile:
        net, T = args.profile[0], int(args.profile[1])
        result.update({"profile": {"net": net, "T": T,
                                   "contenders": profile(net, T, device, args.repeats)}})
        default = ROOT / "benchmarks" / "results" / f"train_cost_profile_{device.type}.json"
    else:
        rows = [r for net in args.nets
                for r in measure(net, device, args.repeats, tuple(args.timesteps), args.threads
                                 or torch.get_num_threads())]
        result.update({
            "peak_memory_measure": ("torch.cuda.max_memory_allocated above pre-step allocation"
                                    if device.type == "cuda" else
                                    "rise of the RSS high-water mark (VmHWM, reset after a warm-up "
                                    "step) over the pre-step RSS during one forward/backward, fresh "
                                    "process per cell, MALLOC_MMAP_THRESHOLD_=131072"),
            "official_saved_MiB": OFFICIAL_SAVED_MIB,
            "rows": rows, "summary": summarize(rows)})
        default = ROOT / "benchmarks" / "results" / f"train_cost_{device.type}.json"
    result["kernels"] = kernels_used()
    result["load_average"] = {"before": load_before, "after": load_average()}
    out = args.output or default
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if "summary" in result:
        print(json.dumps(result["summary"], indent=2))
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_average()}")
    print(f"wrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")


if __name__ == "__main__":
    main()
