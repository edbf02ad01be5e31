"""Checkpoints: config + weights + metrics, written atomically, loaded without running code.

A checkpoint is a plain dict (see :func:`make_checkpoint`) saved with ``torch.save`` and read back
with ``torch.load(weights_only=True)``, so a file from someone else can never execute code.
"""
from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .config import model_from_config, validate_config
from .files import write_atomic
from .network import SNN

FORMAT = "neuroratebp-checkpoint"
VERSION = 1


def make_checkpoint(model: SNN, config: Mapping[str, Any], metrics: Mapping[str, Any] | None = None,
                    **extra: Any) -> dict[str, Any]:
    return {"format": FORMAT, "version": VERSION, "config": dict(config),
            "state_dict": model.state_dict(), "metrics": dict(metrics or {}), **extra}


def save_atomic(obj: Any, path: str | Path) -> None:
    """``torch.save`` into memory, then :func:`files.write_atomic` (one-line OS errors, the old
    file intact on any failure)."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_atomic(path, buffer.getbuffer())


def _check_archive(path: Path) -> None:
    """torch.save writes a zip archive of uncompressed records. Anything else is refused before
    torch reads it, so what loading allocates is bounded by the file's own size (a compressed
    record could inflate to any size; the old non-zip format allocates what its header says)."""
    size = path.stat().st_size
    try:
        with zipfile.ZipFile(path) as archive:
            records = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise ValueError(f"{path} is not a checkpoint: not a zip archive as torch.save writes "
                         "(another kind of file, or cut short)") from None
    for record in records:
        if record.compress_type != zipfile.ZIP_STORED or record.file_size > size:
            raise ValueError(f"{path} is not a checkpoint: record {record.filename!r} is "
                             "compressed (torch.save stores records uncompressed)")
    if sum(r.file_size for r in records) > size:
        raise ValueError(f"{path} is not a checkpoint: its records claim more bytes than the file has")


BOILERPLATE = ("Weights only load failed", "Check the documentation", "Please file an issue")
"""Lines of torch's weights_only error that are the same for every file (the cause is the rest)."""


def _cause(e: Exception) -> str:
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    cause = [line for line in lines if not line.startswith(BOILERPLATE)]
    return " ".join(cause or lines[:1]) or type(e).__name__


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and validate a checkpoint; anything else is refused with a one-line reason."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"checkpoint not found: {path}")
    _check_archive(path)
    try:
        with warnings.catch_warnings():  # torch's notes on odd pickles: the refusal says enough
            warnings.simplefilter("ignore")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:  # weights_only refused an object: the cause says which
        raise ValueError(f"{path} is refused: it holds more than tensors and plain data "
                         f"({_cause(e)}); checkpoints are loaded without running code") from None
    except Exception as e:  # zip records or pickle data damaged
        raise ValueError(f"{path} is a damaged checkpoint ({type(e).__name__}: {_cause(e)})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ValueError(f"{path} is not a neuroratebp checkpoint (missing format tag)")
    if ckpt.get("version") != VERSION:
        raise ValueError(f"{path} has checkpoint version {ckpt.get('version')!r}; "
                         f"this neuroratebp reads version {VERSION}")
    for key in ("config", "state_dict"):
        if not isinstance(ckpt.get(key), dict):
            raise ValueError(f"{path} is a damaged checkpoint: {key!r} missing")
    ckpt["config"] = validate_config(ckpt["config"], f"checkpoint {path}: config")
    return ckpt


def model_from_checkpoint(ckpt: Mapping[str, Any]) -> SNN:
    """Rebuild the network from a checkpoint's config and load its weights (eval mode).

    The config's network is first built on the meta device and its weight shapes compared
    with the stored tensors, so the real model is only allocated when it matches them: memory
    then stays bounded by the file's size, whatever the config asks for."""
    weights = ckpt["state_dict"]
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items()):
        raise ValueError("checkpoint state_dict must map names to tensors")
    with torch.device("meta"):
        shell = model_from_config(ckpt["config"])
    expected = {k: tuple(v.shape) for k, v in shell.state_dict().items()}
    stored = {k: tuple(v.shape) for k, v in weights.items()}
    if expected != stored:
        key = next(k for k in sorted(set(expected) | set(stored)) if expected.get(k) != stored.get(k))
        raise ValueError(f"checkpoint weights do not match its config: {key!r} is "
                         f"{list(stored[key]) if key in stored else 'missing'} in the file, the "
                         f"config needs {list(expected[key]) if key in expected else 'nothing'}")
    model = model_from_config(ckpt["config"])
    model.load_state_dict(weights)
    return model.eval()
