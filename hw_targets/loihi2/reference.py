"""Float reference: the NIR graph stepped as written (float64, no synaptic delays).

It reads the NIR nodes directly, not the lowered network, so it checks the lowering as well as
the backends: the chip is right when it reproduces this (delays aside) in floating point.
"""
from __future__ import annotations

from dataclasses import dataclass

import nir
import numpy as np
import torch
import torch.nn.functional as F

from .graph import read_metadata


@dataclass
class Result:
    logits: np.ndarray
    """[B, classes]: mean over T of the readout."""
    spikes: dict[str, np.ndarray]
    """Per neuron node: spike counts over T, [B, n] (flattened C-order)."""


def _topological(graph: nir.NIRGraph) -> list[str]:
    preds = {n: [s for s, d in graph.edges if d == n] for n in graph.nodes}
    order: list[str] = []
    while len(order) < len(graph.nodes):
        ready = [n for n in graph.nodes if n not in order and all(p in order for p in preds[n])]
        if not ready:
            raise ValueError("the graph has a cycle; recurrent networks are not supported")
        order += ready
    return order


def _pair(v) -> tuple[int, int]:
    a = np.broadcast_to(np.asarray(v, int), 2)
    return int(a[0]), int(a[1])


def _linear(node, x: torch.Tensor) -> torch.Tensor:
    if isinstance(node, nir.Conv2d):
        w = torch.as_tensor(np.asarray(node.weight, float))
        b = None if node.bias is None else torch.as_tensor(np.asarray(node.bias, float).reshape(-1))
        return F.conv2d(x, w, b, stride=_pair(node.stride), padding=_pair(node.padding),
                        dilation=_pair(node.dilation), groups=int(np.asarray(node.groups)))
    if isinstance(node, (nir.Affine, nir.Linear)):
        y = x @ torch.as_tensor(np.asarray(node.weight, float)).T
        return y + torch.as_tensor(np.asarray(node.bias, float)) if isinstance(node, nir.Affine) else y
    if isinstance(node, nir.Flatten):  # NIR dims exclude the batch
        start, end = (int(np.asarray(d).reshape(-1)[0]) % (x.ndim - 1) + 1
                      for d in (node.start_dim, node.end_dim))
        return x.flatten(start, end)
    if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
        k = _pair(node.kernel_size)
        y = F.avg_pool2d(x, k, _pair(node.stride), _pair(node.padding))
        return y if isinstance(node, nir.AvgPool2d) else y * (k[0] * k[1])
    raise ValueError(f"no reference for NIR node {type(node).__name__}")


def run_reference(graph: nir.NIRGraph, images: np.ndarray) -> Result:
    """Logits and spike counts for raw images in [0, 1], shape [B, *input_shape]."""
    meta = read_metadata(graph)
    order = _topological(graph)
    preds = {n: [s for s, d in graph.edges if d == n] for n in graph.nodes}
    x = torch.as_tensor(np.asarray(images, float))
    shape = (1, -1, 1, 1) if x.ndim == 4 and meta.mean.size > 1 else ()
    mean, std = (torch.as_tensor(a).reshape(shape) if shape else torch.as_tensor(float(a[0]))
                 for a in (meta.mean, meta.std))
    x = (x - mean) / std
    v: dict[str, torch.Tensor] = {}
    counts: dict[str, torch.Tensor] = {}
    out_sum = 0.0
    for _ in range(meta.timesteps):
        values: dict[str, torch.Tensor] = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                values[name] = x
                continue
            inp = sum(values[p] for p in preds[name])
            if isinstance(node, nir.Output):
                out_sum = out_sum + inp
            elif isinstance(node, (nir.LIF, nir.IF)):
                values[name] = _neuron_step(node, inp, v, name, meta.dt)
                counts[name] = counts.get(name, 0) + values[name]
            else:
                values[name] = _linear(node, inp)
    logits = (out_sum / meta.timesteps).reshape(x.shape[0], -1).numpy()  # e.g. (B, classes, 1, 1)
    return Result(logits, {k: c.reshape(c.shape[0], -1).numpy() for k, c in counts.items()})


def _neuron_step(node, inp: torch.Tensor, v: dict[str, torch.Tensor], name: str, dt: float
                 ) -> torch.Tensor:
    """Euler step of NIR LIF/IF with reset to v_reset (0 on Loihi)."""
    thr = torch.as_tensor(np.asarray(node.v_threshold, float))
    r = torch.as_tensor(np.asarray(node.r, float))
    reset = torch.as_tensor(np.asarray(node.v_reset if node.v_reset is not None else 0.0, float))
    prev = v.get(name, torch.zeros_like(inp))
    if isinstance(node, nir.IF):
        new = prev + dt * r * inp
    else:
        k = dt / torch.as_tensor(np.asarray(node.tau, float))
        new = (1 - k) * prev + k * torch.as_tensor(np.asarray(node.v_leak, float)) + k * r * inp
    spikes = (new > thr).to(new.dtype)
    v[name] = torch.where(spikes.bool(), reset, new)
    return spikes
