"""Torch rate-BP references for on-chip learning: the project's engine on the NIR graph's own
parameterisation (``import_nir``: NIR weights, pooling before a dense layer kept tied), only the
learning layers' weights trainable (biases frozen, as on the chip)."""
from __future__ import annotations

from collections.abc import Sequence

import nir
import numpy as np
import torch

from hw_targets.loihi2.graph import read_metadata
from neuroratebp.engine import forward_backward
from neuroratebp.interchange import import_nir


def model_for(graph: nir.NIRGraph, layers: Sequence[str]):
    model, _ = import_nir(graph, dtype=torch.float64)
    names = {f"layers.{n}.weight": n for n in layers}
    for name, p in model.named_parameters():
        p.requires_grad_(name in names)
    return model, names


def normalised(graph: nir.NIRGraph, x: np.ndarray) -> torch.Tensor:
    meta = read_metadata(graph)
    shape = (-1, 1, 1) if x.ndim == 3 and meta.mean.size > 1 else ()
    mean = meta.mean.reshape(shape) if shape else meta.mean[0]
    std = meta.std.reshape(shape) if shape else meta.std[0]
    return torch.as_tensor((x - mean) / std)[None]


def sgd_updates(graph: nir.NIRGraph, images: np.ndarray, labels: np.ndarray,
                lr: dict[str, float], timesteps: int) -> list[dict[str, np.ndarray]]:
    """Per sample, from the same start: the SGD change -lr dL/dW of every learning layer."""
    model, names = model_for(graph, list(lr))
    out = []
    for x, y in zip(images, labels):
        forward_backward(model, normalised(graph, x), torch.tensor([int(y)]), "rate_m", timesteps)
        out.append({names[n]: -lr[names[n]] * p.grad.numpy().copy()
                    for n, p in model.named_parameters() if n in names})
        model.zero_grad()
    return out


def sgd_steps(graph: nir.NIRGraph, model, names: dict[str, str], images: np.ndarray,
              labels: np.ndarray, lr: dict[str, float], timesteps: int) -> None:
    """One rate-BP SGD step (batch 1) per sample, in order, on ``model`` (from ``_model``)."""
    for x, y in zip(images, labels):
        forward_backward(model, normalised(graph, x), torch.tensor([int(y)]), "rate_m", timesteps)
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n in names:
                    p -= lr[names[n]] * p.grad
                    p.grad = None


def sgd_sequence(graph: nir.NIRGraph, images: np.ndarray, labels: np.ndarray,
                 lr: dict[str, float], timesteps: int) -> dict[str, np.ndarray]:
    """Weights of every learning layer after one SGD step (batch 1) per sample, in order."""
    model, names = model_for(graph, list(lr))
    sgd_steps(graph, model, names, images, labels, lr, timesteps)
    return {names[n]: p.detach().numpy().copy() for n, p in model.named_parameters() if n in names}


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.ravel(a), np.ravel(b)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))
