"""An independent NIR simulator for the tests, written from NIR's node equations alone (numpy).

It knows nothing about neuroratebp: every node is stepped with forward Euler at ``dt``; within a
step each node reads its sources' outputs of the same step, fan-in is summed.
"""
from __future__ import annotations

import nir
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _windows(x: np.ndarray, kernel, stride, padding, dilation=(1, 1)) -> np.ndarray:
    """(B, C, H', W', kh, kw) windows of a zero-padded (B, C, H, W) array."""
    ph, pw = (int(p) for p in padding)
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = (int(k) for k in kernel)
    dh, dw = (int(d) for d in dilation)
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[..., ::dh, ::dw]
    return win[:, :, ::int(stride[0]), ::int(stride[1])]


def conv2d(x: np.ndarray, node: nir.Conv2d) -> np.ndarray:
    """Cross-correlation, as NIR (and torch) define Conv2d."""
    w = np.asarray(node.weight)
    groups = int(node.groups)
    win = _windows(x, w.shape[2:], node.stride, node.padding, node.dilation)
    ci, co = w.shape[1], w.shape[0] // groups
    out = [np.einsum("bchwij,ocij->bohw", win[:, g * ci:(g + 1) * ci], w[g * co:(g + 1) * co])
           for g in range(groups)]
    return np.concatenate(out, axis=1) + np.asarray(node.bias)[None, :, None, None]


def pool(x: np.ndarray, node: nir.SumPool2d | nir.AvgPool2d) -> np.ndarray:
    total = _windows(x, node.kernel_size, node.stride, node.padding).sum(axis=(-2, -1))
    if isinstance(node, nir.AvgPool2d):
        total = total / float(np.prod(node.kernel_size))
    return total


def flatten(x: np.ndarray, node: nir.Flatten) -> np.ndarray:
    start = int(node.start_dim) + 1  # NIR dims exclude the batch
    end = int(node.end_dim)
    end = x.ndim if end == -1 else (end + 2 if end >= 0 else x.ndim + end + 1)
    return x.reshape(*x.shape[:start], -1, *x.shape[end:])


def topological(graph: nir.NIRGraph) -> list[str]:
    order: list[str] = []
    remaining = dict(graph.nodes)
    while remaining:
        for name in list(remaining):
            if all(src in order for src, dst in graph.edges if dst == name):
                order.append(name)
                del remaining[name]
    return order


def simulate(graph: nir.NIRGraph, x: np.ndarray, steps: int, dt: float
             ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Mean over ``steps`` of the Output's input for a constant input ``x`` (B, ...), and the
    spikes (steps, B, ...) of every LIF/IF node."""
    order = topological(graph)
    v: dict[str, np.ndarray] = {}
    spikes: dict[str, list[np.ndarray]] = {}
    total = 0.0
    for _ in range(steps):
        out: dict[str, np.ndarray] = {}
        for name in order:
            node = graph.nodes[name]
            if isinstance(node, nir.Input):
                out[name] = x
                continue
            i = sum(out[src] for src, dst in graph.edges if dst == name)
            if isinstance(node, nir.Output):
                total = total + i
            elif isinstance(node, nir.Affine):
                out[name] = i @ np.asarray(node.weight).T + np.asarray(node.bias)
            elif isinstance(node, nir.Linear):
                out[name] = i @ np.asarray(node.weight).T
            elif isinstance(node, nir.Conv2d):
                out[name] = conv2d(i, node)
            elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
                out[name] = pool(i, node)
            elif isinstance(node, nir.Flatten):
                out[name] = flatten(i, node)
            elif isinstance(node, (nir.LIF, nir.IF)):
                vn = v.get(name, np.zeros_like(i))
                if isinstance(node, nir.LIF):  # tau dv/dt = (v_leak - v) + r I
                    a = dt / np.asarray(node.tau)
                    vn = (1 - a) * vn + a * (np.asarray(node.v_leak) + np.asarray(node.r) * i)
                else:  # dv/dt = r I
                    vn = vn + dt * np.asarray(node.r) * i
                s = vn > np.asarray(node.v_threshold)
                v[name] = np.where(s, np.asarray(node.v_reset), vn)
                out[name] = s.astype(np.float64)
                spikes.setdefault(name, []).append(out[name])
            else:
                raise NotImplementedError(type(node).__name__)
    return total / steps, {k: np.stack(s) for k, s in spikes.items()}
