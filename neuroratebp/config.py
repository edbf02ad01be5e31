"""Run configuration: the TOML files under models/ and the dict stored in every checkpoint.

Sections: ``[model]`` (architecture, see ``architectures``), ``[neuron]`` (a preset plus
overrides, see ``neuron``), ``[data]`` and ``[train]`` (recipe). Only plain values
(str/int/float/bool/lists/dicts) appear, so a config survives ``torch.load(weights_only=True)``.

Every table has a schema (:data:`SCHEMA`): an unknown key is refused with the closest known one
("unknown key 'hiden' in [model]; did you mean 'hidden'?") instead of being silently ignored, and
a value of the wrong type or range is refused with its key's name.
"""
from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch

from .architectures import build_model
from .data import DATASETS, dataset_name
from .engine import infer
from .limits import Limits
from .network import SNN
from .neuron import LIF, NeuronConfig, neuron_config

SECTIONS = ("model", "neuron", "data", "train")

Check = Callable[[Any], str | None]
"""A value check: None when the value is fine, else what it must be."""


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def integer(minimum: int = 1) -> Check:
    return lambda v: None if _is_int(v) and v >= minimum else f"an integer >= {minimum}"


def number(positive: bool = False, minimum: float | None = None) -> Check:
    def check(v: Any) -> str | None:
        if not _is_number(v) or (positive and v <= 0) or (minimum is not None and v < minimum):
            return ("a positive finite number" if positive else
                    f"a finite number >= {minimum:g}" if minimum is not None else "a finite number")
        return None
    return check


def text(v: Any) -> str | None:
    return None if isinstance(v, str) else "a string"


def boolean(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


def listing(item: Check, what: str, nonempty: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, list) or (nonempty and not v) or any(item(x) for x in v):
            return f"a {'non-empty ' if nonempty else ''}list of {what}"
        return None
    return check


def _feature(v: Any) -> str | None:
    return None if v in ("A", "S") or (_is_int(v) and v >= 1) else "channels or 'A'/'S'"


def _table(v: Any) -> str | None:
    return None if isinstance(v, Mapping) else "a table"


POSITIVE_INTS = listing(integer(), "positive integers")

SCHEMA: dict[str, dict[str, Check]] = {
    "model": {"arch": text, "input_shape": listing(integer(), "positive integers", True),
              "num_classes": integer(), "hidden": POSITIVE_INTS, "batchnorm": boolean,
              "features": listing(_feature, "channels or 'A'/'S'"), "depth": text,
              "stem": integer(), "widths": POSITIVE_INTS, "blocks": POSITIVE_INTS,
              "layers": listing(_table, "tables")},
    "neuron": {"preset": text, "lam": number(minimum=0.0), "theta": number(True), "reset": text,
               "comparison": text, "detach_reset": boolean, "alpha": number(True)},
    "data": {"dataset": text, "path": text, "normalize": boolean,
             "mean": listing(number(), "finite numbers", True),
             "std": listing(number(True), "positive finite numbers", True),
             "augment": _table, "shape": POSITIVE_INTS, "num_classes": integer(),
             "train_size": integer(), "test_size": integer(), "seed": integer(0)},
    "train": {"method": text, "timesteps": integer(), "epochs": integer(),
              "batch_size": integer(), "optimizer": text, "lr": number(True),
              "momentum": number(minimum=0.0), "weight_decay": number(minimum=0.0),
              "grad_scale": text, "seed": integer(0), "limit_train": integer()},
}
"""Known keys of every table and what their values must be."""

SYNONYMS = {"learning_rate": "lr", "T": "timesteps", "num_steps": "timesteps",
            "batch": "batch_size", "n_epochs": "epochs", "data": "dataset", "decay": "lam",
            "threshold": "theta", "limit": "limit_train"}
"""Names from other tools that difflib would not match to ours."""


def suggest(name: str, known: list[str] | tuple[str, ...]) -> str:
    """'; did you mean X?' for the closest known name, or ''."""
    match = SYNONYMS.get(name) if SYNONYMS.get(name) in known else None
    match = match or next(iter(difflib.get_close_matches(name, known, n=1, cutoff=0.6)), None)
    return f"; did you mean {match!r}?" if match else ""


def check_keys(table: Mapping[str, Any], known: Mapping[str, Check] | tuple[str, ...],
               where: str) -> None:
    """Refuse unknown keys (naming the closest known key) and values their check rejects."""
    for key in table:
        if key not in known:
            raise ValueError(f"{where}: unknown key {key!r}{suggest(str(key), list(known))}")
    if isinstance(known, Mapping):
        for key, value in table.items():
            problem = known[key](value)
            if problem:
                raise ValueError(f"{where}: {key} must be {problem}, got {value!r}")


def validate_config(cfg: Mapping[str, Any], source: str = "config") -> dict[str, Any]:
    """A checked copy: known sections and keys only, values of the right type; the data set
    name normalised (``fashion_mnist`` -> ``fmnist``). ``source`` prefixes every error."""
    if not isinstance(cfg, Mapping):
        raise ValueError(f"{source} is not a table of sections")
    unknown = [s for s in cfg if s not in SECTIONS]
    if unknown:
        raise ValueError(f"{source} has unknown section [{unknown[0]}]"
                         f"{suggest(str(unknown[0]), SECTIONS)} (sections: {', '.join(SECTIONS)})")
    if not isinstance(cfg.get("model"), Mapping):
        raise ValueError(f"{source} has no [model] table")
    out = {}
    for section in SECTIONS:
        table = dict(cfg.get(section, {}))
        if not isinstance(cfg.get(section, {}), Mapping):
            raise ValueError(f"{source}: [{section}] must be a table")
        check_keys(table, SCHEMA[section], f"{source} [{section}]")
        out[section] = table
    dataset = out["data"].get("dataset")
    if dataset is not None:
        dataset = dataset_name(dataset)
        if dataset not in DATASETS:
            raise ValueError(f"{source} [data]: unknown dataset {dataset!r}"
                             f"{suggest(dataset, DATASETS)} (choose from {', '.join(DATASETS)})")
        out["data"]["dataset"] = dataset
    return out


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML run config; errors name the file and the problem."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            cfg = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except OSError as e:
        raise ValueError(f"cannot read config {path}: {e.strerror or e}") from None
    except UnicodeDecodeError:
        raise ValueError(f"config {path} is not UTF-8 text (is it a TOML file?)") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config {path} is not valid TOML: {e}") from None
    return validate_config(cfg, f"config {path}")


def neuron_from_config(cfg: Mapping[str, Any]) -> NeuronConfig:
    table = dict(cfg.get("neuron", {}))
    check_keys(table, SCHEMA["neuron"], "[neuron]")
    preset = table.pop("preset", "chip")
    return neuron_config(preset, **table)


def model_from_config(cfg: Mapping[str, Any], limits: Limits | None = None) -> SNN:
    """Build the network a config describes (fresh weights), after checking on torch's meta
    device (shapes only, nothing allocated) that its parameters and layer outputs are within
    the limits: a config from a file must not ask for terabytes."""
    if not isinstance(cfg.get("model"), Mapping):
        raise ValueError("the config has no [model] table")
    neuron = neuron_from_config(cfg)
    with torch.device("meta"):
        shell = build_model(cfg["model"], neuron)
    check_size(shell, limits or Limits.from_env())
    return build_model(cfg["model"], neuron)


def check_size(model: SNN, limits: Limits) -> None:
    """Parameters within ``limits.synapses``; the input, every layer's output (per sample) and
    all spiking neurons together within ``limits.neurons``. Works on a meta-device model."""
    limits.check("neurons", math.prod(model.input_shape), "the network input")
    limits.check("synapses", sum(p.numel() for p in model.parameters()), "the network's weights")
    sizes: dict[str, int] = {}
    hooks = [module.register_forward_hook(lambda _, __, out, name=name: sizes.__setitem__(
        name, out.numel())) for name, module in model.layers.items()]
    training = model.training
    try:
        device = next(model.parameters()).device
        infer(model.eval(), torch.zeros(1, *model.input_shape, device=device), 1)
    finally:
        model.train(training)
        for hook in hooks:
            hook.remove()
    for name, size in sizes.items():
        limits.check("neurons", size, f"layer {name!r} output")
    limits.check("neurons", sum(sizes[n] for n, m in model.layers.items() if isinstance(m, LIF)),
                 "the network's spiking layers")
