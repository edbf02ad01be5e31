"""Training loop: recipe from the config's ``[train]`` table, resumable checkpoints, metrics.

Gradient scale (``grad_scale``): ``"bptt"`` (default) leaves rate-BP gradients unscaled, so BPTT
and rate-BP are compared under one set of hyperparameters; ``"official"`` multiplies rate-BP
gradients by 1/T as the paper's code does (use it to reproduce the paper's recipe).

A run directory holds ``last.pt`` (model, optimizer, scheduler, epoch, RNG state and metric
history; rewritten atomically after every epoch), ``metrics.jsonl`` (one row per epoch:
``train_loss``, ``train_accuracy``, ``accuracy`` on the test set, ``spike_rates`` per layer,
``epoch_time_s``, ``lr``) and, at the end, ``model.pt`` (the final model for deployment and
export -- not the best epoch on the test set, which would be selection on test data). The
directory is locked while a run writes it. Killing a run loses at most the epoch in progress:
``resume=True`` continues from ``last.pt`` and, because shuffling and augmentation are seeded by
(seed, epoch), gives the same weights as an uninterrupted run; with more epochs it extends it.
"""
from __future__ import annotations

import contextlib
import copy
import json
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm import tqdm

from .checkpoint import load_checkpoint, make_checkpoint, save_atomic
from .config import SCHEMA, SECTIONS, model_from_config, neuron_from_config, validate_config
from .data import Augment, ImageSet, Normalization, Splits, batches, load_dataset, num_batches, seeded_generator
from .distributed import SNNDataParallel, rank_and_world
from .engine import check_method, forward_backward, infer
from .files import RunLock, remove_temporaries, write_atomic
from .limits import timesteps as check_timesteps
from .network import SNN
from .neuron import LIF, StepMode

TRAIN_DEFAULTS: dict[str, Any] = {
    "method": "rate_m", "timesteps": 4, "epochs": 1, "batch_size": 128, "optimizer": "sgd",
    "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4, "grad_scale": "bptt", "seed": 0,
}
RUN_FILES = ("last.pt", "model.pt", "metrics.jsonl", "metrics.png")
"""What a run directory holds (``fit`` and its curves callback write them, atomically)."""
GRAD_SCALES = ("bptt", "official")
OPTIMIZERS = ("sgd", "adam")
EVAL_BATCH = 256
STEP_BUDGET = 4 * EVAL_BATCH
"""Samples x time steps one multi-step evaluation batch may hold."""


def resolve_config(config: Mapping[str, Any], **overrides: Any) -> dict[str, Any]:
    """The run's full config: ``[train]`` defaults, then the file, then non-None overrides,
    checked against the schema (overrides named as the flags that set them).

    The neuron table is expanded to every parameter so a checkpoint stays self-describing.
    """
    given = {k: v for k, v in overrides.items() if v is not None}
    for key, value in given.items():
        problem = SCHEMA["train"][key](value)
        if problem:
            flag = "--limit" if key == "limit_train" else "--" + key.replace("_", "-")
            raise ValueError(f"{flag} must be {problem}, got {value!r}")
    cfg = validate_config({**config, "train": {**TRAIN_DEFAULTS, **dict(config.get("train", {})),
                                               **given}})
    train = cfg["train"]
    check_method(train["method"])
    if train["optimizer"] not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {train['optimizer']!r}; choose from {', '.join(OPTIMIZERS)}")
    if train["grad_scale"] not in GRAD_SCALES:
        raise ValueError(f"unknown grad_scale {train['grad_scale']!r}; choose from {', '.join(GRAD_SCALES)}")
    check_timesteps(train["timesteps"], "[train] timesteps")
    cfg["neuron"] = {"preset": cfg["neuron"].get("preset", "chip"), **neuron_from_config(cfg).to_dict()}
    return cfg


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ValueError(f"unknown device {name!r}; choose auto, cpu or cuda")
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda requested but torch sees no CUDA device")
    return torch.device(name)


def grad_scale(train: Mapping[str, Any]) -> float:
    kind, _ = check_method(train["method"])
    return 1.0 / train["timesteps"] if train["grad_scale"] == "official" and kind == "rate" else 1.0


def make_optimizer(model: nn.Module, train: Mapping[str, Any]) -> torch.optim.Optimizer:
    """SGD (momentum) or Adam; weight decay on conv/linear weights only, not on BN or biases."""
    decay = [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    decay_ids = {id(p) for p in decay}
    groups = [{"params": decay, "weight_decay": float(train["weight_decay"])},
              {"params": [p for p in model.parameters() if id(p) not in decay_ids], "weight_decay": 0.0}]
    if train["optimizer"] == "adam":
        return torch.optim.Adam(groups, lr=float(train["lr"]))
    return torch.optim.SGD(groups, lr=float(train["lr"]), momentum=float(train["momentum"]))


# -- evaluation -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    spike_rates: dict[str, float]
    samples: int


def _all_reduce_sum(values: Tensor) -> Tensor:
    if rank_and_world()[1] > 1:
        torch.distributed.all_reduce(values)
    return values


def evaluate(model: SNN, data: ImageSet, timesteps: int, batch_size: int = EVAL_BATCH) -> Evaluation:
    """Accuracy of the spiking forward pass in eval mode and each LIF layer's mean spike rate
    (spikes per neuron per step) over the data set.

    In a data-parallel run each rank takes its shard and the counts are summed, so every rank
    returns the full-data-set figures.
    """
    rank, world = rank_and_world()
    device = next(model.parameters()).device
    # multi-step holds T x batch samples at once: the batch shrinks with T, and past the budget
    # the steps run one at a time (memory independent of T)
    step_mode: StepMode = "m" if timesteps <= STEP_BUDGET else "s"
    if step_mode == "m":
        batch_size = max(1, min(batch_size, STEP_BUDGET // timesteps))
    layers = [name for name, m in model.layers.items() if isinstance(m, LIF)]
    totals = torch.zeros(2 + len(layers), dtype=torch.float64)  # correct, samples, rate * samples
    was_training = model.training
    model.eval()
    shard = ImageSet(data.images[rank::world], data.labels[rank::world])
    for x, y in batches(shard, batch_size, device=device):
        logits = infer(model, x, timesteps, step_mode)
        rates = model.firing_rates()
        totals += torch.tensor([float((logits.argmax(1) == y).sum()), len(y),
                                *(rates[name] * len(y) for name in layers)], dtype=torch.float64)
    model.train(was_training)
    totals = _all_reduce_sum(totals.to(device)).cpu()
    n = max(float(totals[1]), 1.0)
    return Evaluation(float(totals[0]) / n, {name: float(r) / n for name, r in zip(layers, totals[2:])},
                      int(totals[1]))


# -- training ---------------------------------------------------------------------------------
@dataclass
class FitResult:
    model: SNN
    config: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accuracy(self) -> float:
        """Test accuracy after the last epoch."""
        return self.history[-1]["accuracy"]


def prepare_data(cfg: dict[str, Any]) -> tuple[Splits, Augment | None]:
    """Load, cut to ``limit_train``, normalise (recording mean/std in ``cfg['data']``)."""
    data = load_dataset(cfg["data"])
    train_set = data.train.head(cfg["train"].get("limit_train"))
    sample_shape = list(train_set.images.shape[1:])
    if [int(d) for d in cfg["model"].get("input_shape", [])] != sample_shape:
        raise ValueError(f"model input_shape {cfg['model'].get('input_shape')} does not match the "
                         f"data's sample shape {sample_shape}")
    if int(cfg["model"].get("num_classes", 10)) < data.num_classes:
        raise ValueError(f"model num_classes {cfg['model'].get('num_classes')} < the data's "
                         f"{data.num_classes} classes")
    norm = Normalization.from_table(cfg["data"], train_set)
    cfg["data"].update(mean=list(norm.mean), std=list(norm.std))
    return norm.apply(Splits(train_set, data.test, data.num_classes)), Augment.from_table(cfg["data"], norm)


def _config_diff(a: Mapping[str, Any], b: Mapping[str, Any],
                 ignore: set[tuple[str, str]] = frozenset()) -> list[str]:
    return [f"{s}.{k}: {a[s].get(k)!r} vs {b[s].get(k)!r}" for s in SECTIONS
            for k in sorted(set(a[s]) | set(b[s]))
            if a[s].get(k) != b[s].get(k) and (s, k) not in ignore]


RENAMED_METRICS = {"test_acc": "accuracy", "train_acc": "train_accuracy",
                   "firing_rates": "spike_rates"}
"""Metric names of runs made before the CLI's vocabulary was unified (their last.pt resumes)."""


def _current_keys(row: Mapping[str, Any]) -> dict[str, Any]:
    return {RENAMED_METRICS.get(k, k): v for k, v in row.items()}


def epochs_text(n: int) -> str:
    """'1 epoch', '3 epochs'."""
    return f"{n} epoch" if n == 1 else f"{n} epochs"


def _write_metrics(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(row) + "\n" for row in rows).encode())


def train_epoch(net: SNN | SNNDataParallel, data: ImageSet, train: Mapping[str, Any], epoch: int,
                optimizer: torch.optim.Optimizer, device: torch.device, augment: Augment | None,
                progress: bool) -> tuple[float, float]:
    """One pass over the training set; returns (mean loss, accuracy) over all ranks' samples."""
    rank, world = rank_and_world()
    size, seed = int(train["batch_size"]), int(train["seed"])
    if size % world:
        raise ValueError(f"batch_size {size} is not divisible by the {world} ranks")
    transform = partial(augment, gen=seeded_generator(seed, epoch, rank, 1)) if augment else None
    loader = batches(data, size, device=device, order=seeded_generator(seed, epoch), drop_last=True,
                     rank=rank, world_size=world, transform=transform)
    scale = grad_scale(train)
    totals = torch.zeros(3, device=device, dtype=torch.float64)  # loss * n, correct, n
    bar = tqdm(loader, total=num_batches(len(data), size, True), disable=not progress, leave=False,
               desc=f"epoch {epoch + 1}/{train['epochs']}", file=sys.stderr)
    for step, (x, y) in enumerate(bar):
        optimizer.zero_grad(set_to_none=True)
        result = forward_backward(net, x, y, train["method"], int(train["timesteps"]),  # type: ignore[arg-type]
                                  grad_scale=scale)
        optimizer.step()
        totals += torch.stack([result.loss.double() * len(y), (result.logits.argmax(1) == y).sum().double(),
                               totals.new_tensor(len(y))])
        if progress and step % 20 == 0:
            bar.set_postfix(loss=f"{result.loss.item():.3f}")
    totals = _all_reduce_sum(totals)
    if float(totals[2]) == 0:
        raise ValueError(f"training set of {len(data)} samples has no full batch of {size}")
    return float(totals[0] / totals[2]), float(totals[1] / totals[2])


def fit(config: Mapping[str, Any], *, out_dir: str | Path, method: str | None = None,
        timesteps: int | None = None, epochs: int | None = None, batch_size: int | None = None,
        seed: int | None = None, limit_train: int | None = None, lr: float | None = None,
        device: str | torch.device = "cpu", resume: bool = False, quiet: bool = True,
        on_epoch: Callable[[dict[str, Any]], None] | None = None) -> FitResult:
    """Train the model a config describes; arguments given override its ``[train]`` table.

    Works in one process or, when ``torch.distributed`` is initialised, data-parallel over its
    ranks (``batch_size`` is the global batch; rank 0 writes the files and holds the run
    directory's lock). ``on_epoch`` is called with each epoch's metrics row after its checkpoint
    is on disk. ``resume`` with more ``epochs`` than the run had extends it: the cosine schedule
    is rebuilt for the new length, as if the run had been started with it.
    """
    cfg = resolve_config(config, method=method, timesteps=timesteps, epochs=epochs,
                         batch_size=batch_size, seed=seed, limit_train=limit_train, lr=lr)
    rank, _ = rank_and_world()
    with RunLock(out_dir) if rank == 0 else contextlib.nullcontext():
        if rank == 0:
            remove_temporaries(out_dir, RUN_FILES)
        return _fit(cfg, Path(out_dir), torch.device(device), resume, quiet, on_epoch)


def _resume(state: Mapping[str, Any], cfg: dict[str, Any], optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.CosineAnnealingLR, path: Path
            ) -> list[dict[str, Any]]:
    """Load optimizer, schedule and RNG state; returns the metric history so far."""
    diff = _config_diff(cfg, state["config"], ignore={("train", "epochs")})
    if diff:
        raise ValueError(f"cannot resume {path}: config differs ({'; '.join(diff)})")
    history = [_current_keys(row) for row in state["metrics"]["history"]]
    done, epochs = len(history), int(cfg["train"]["epochs"])
    if epochs < done:
        raise ValueError(f"cannot resume {path}: it has trained {epochs_text(done)} already, more "
                         f"than --epochs {epochs}")
    optimizer.load_state_dict(state["optimizer"])
    if epochs == int(state["config"]["train"]["epochs"]):
        scheduler.load_state_dict(state["scheduler"])
    else:  # replay the new schedule's steps so far: the lr an uninterrupted run would have now
        for group in optimizer.param_groups:
            group["lr"] = group["initial_lr"]
        fresh = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
        with warnings.catch_warnings():  # replaying steps, no optimizer step is due
            warnings.simplefilter("ignore", UserWarning)
            for _ in range(done):
                fresh.step()
        scheduler.load_state_dict(fresh.state_dict())
    torch.set_rng_state(state["rng"])
    return history


def _fit(cfg: dict[str, Any], out: Path, device: torch.device, resume: bool, quiet: bool,
         on_epoch: Callable[[dict[str, Any]], None] | None) -> FitResult:
    train = cfg["train"]
    rank, world = rank_and_world()
    last_path, metrics_path = out / "last.pt", out / "metrics.jsonl"
    data, augment = prepare_data(cfg)

    torch.manual_seed(int(train["seed"]))
    model = model_from_config(cfg).to(device)
    net = SNNDataParallel(model, device) if world > 1 else model
    optimizer = make_optimizer(model, train)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=int(train["epochs"]))
    history: list[dict[str, Any]] = []
    if last_path.exists():
        if not resume:
            raise ValueError(f"{out} already holds a run (last.pt): pass --resume to continue it "
                             "or choose another -o")
        state = load_checkpoint(last_path)
        model.load_state_dict(state["state_dict"])
        history = _resume(state, cfg, optimizer, scheduler, last_path)
    if rank == 0:
        _write_metrics(metrics_path, history)

    progress = not quiet and rank == 0 and sys.stderr.isatty()
    for epoch in range(len(history), int(train["epochs"])):
        start = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        model.train()
        loss, acc = train_epoch(net, data.train, train, epoch, optimizer, device, augment, progress)
        scheduler.step()
        seconds = time.perf_counter() - start
        test = evaluate(model, data.test, int(train["timesteps"]))
        row = {"epoch": epoch + 1, "train_loss": loss, "train_accuracy": acc,
               "accuracy": test.accuracy, "epoch_time_s": seconds, "lr": lr,
               "spike_rates": test.spike_rates}
        history.append(row)
        if rank == 0:
            save_atomic(make_checkpoint(model, cfg, {"history": history}, epoch=epoch + 1,
                                        optimizer=optimizer.state_dict(),
                                        scheduler=scheduler.state_dict(), rng=torch.get_rng_state()),
                        last_path)
            _write_metrics(metrics_path, history)
            if on_epoch is not None:
                on_epoch(row)
    if rank == 0:
        final = history[-1]
        save_atomic(make_checkpoint(model, cfg, {k: v for k, v in final.items() if k != "lr"}),
                    out / "model.pt")
    return FitResult(model, cfg, history)
