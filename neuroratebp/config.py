"""Run configuration: the TOML files under models/ and the dict stored in every checkpoint.

Sections: ``[model]`` (architecture, see ``architectures``), ``[neuron]`` (a preset plus
overrides, see ``neuron``), ``[data]`` and ``[train]`` (recipe). Only plain values
(str/int/float/bool/lists/dicts) appear, so a config survives ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .architectures import build_model
from .network import SNN
from .neuron import NeuronConfig, neuron_config

SECTIONS = ("model", "neuron", "data", "train")


def load_config(path: str | Path) -> dict[str, Any]:
    """Read and validate a TOML run config; errors name the file and the problem."""
    path = Path(path)
    try:
        with path.open("rb") as f:
            cfg = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"config file not found: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"config {path} is not valid TOML: {e}") from None
    unknown = set(cfg) - set(SECTIONS)
    if unknown:
        raise ValueError(f"config {path} has unknown sections {sorted(unknown)}; "
                         f"expected {list(SECTIONS)}")
    if "model" not in cfg:
        raise ValueError(f"config {path} has no [model] section")
    for section in SECTIONS:
        cfg.setdefault(section, {})
    return cfg


def neuron_from_config(cfg: Mapping[str, Any]) -> NeuronConfig:
    table = dict(cfg.get("neuron", {}))
    preset = table.pop("preset", "chip")
    try:
        return neuron_config(preset, **table)
    except TypeError as e:
        raise ValueError(f"bad [neuron] entry: {e}") from None


def model_from_config(cfg: Mapping[str, Any]) -> SNN:
    """Build the network a config describes (fresh weights)."""
    return build_model(cfg["model"], neuron_from_config(cfg))
