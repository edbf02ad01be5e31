"""Checkpoints: config + weights + metrics, written atomically, loaded without running code.

A checkpoint is a plain dict (see :func:`make_checkpoint`) saved with ``torch.save`` and read back
with ``torch.load(weights_only=True)``, so a file from someone else can never execute code.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .config import model_from_config
from .network import SNN

FORMAT = "neuroratebp-checkpoint"
VERSION = 1


def make_checkpoint(model: SNN, config: Mapping[str, Any], metrics: Mapping[str, Any] | None = None,
                    **extra: Any) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "config": dict(config),
            "state_dict": model.state_dict(), "metrics": dict(metrics or {}), **extra}


def save_atomic(obj: Any, path: str | Path) -> None:
    """Write to a temporary file in the same directory, fsync, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint; anything else is refused with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle/zip errors, or an object that needs code to rebuild
        detail = " ".join(str(e).split())[:200]
        raise ValueError(f"{path} is not a loadable neuroratebp checkpoint "
                         f"({type(e).__name__}: {detail})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a neuroratebp checkpoint (missing format tag)")
    if ckpt.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {ckpt.get('version')!r}; "
                         f"this neuroratebp reads version {VERSION}")
    for key in ("config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise ValueError(f"{path} is a damaged checkpoint: {key!r} missing")
    return ckpt


def model_from_checkpoint(ckpt: Mapping[str, Any]) -> SNN:
    """Rebuild the network from a checkpoint's config and load its weights (eval mode)."""
    model = model_from_config(ckpt["config"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as e:
        raise ValueError(f"checkpoint weights do not match its config: "
                         f"{str(e).splitlines()[0]}") from None
    return model.eval()
