"""An independent NIR simulator for the tests, written from NIR's node equations alone (numpy).

It knows nothing about neuroratebp: every node is stepped with forward Euler at ``dt``; within a
step each node reads its sources' outputs of the same step, fan-in is summed.
"""
from __future__ import annotations

import nir
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


def _pair(value) -> tuple[int, int]:
    """NIR sizes are (h, w) pairs or one value for both."""
    h, w = np.broadcast_to(np.asarray(value, dtype=int), 2)
    return int(h), int(w)


def _windows(x: np.ndarray, kernel, stride, padding, dilation=(1, 1)) -> np.ndarray:
    """(B, C, H', W', kh, kw) windows of a zero-padded (B, C, H, W) array."""
    ph, pw = _pair(padding)
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    kh, kw = _pair(kernel)
    dh, dw = _pair(dilation)
    win = sliding_window_view(x, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    win = win[..., ::dh, ::dw]
    sh, sw = _pair(stride)
    return win[:, :, ::sh, ::sw]


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
        total = total / float(np.prod(_pair(node.kernel_size)))
    return total


def flatten(x: np.ndarray, node: nir.Flatten) -> np.ndarray:
    ndim = x.ndim - 1  # NIR dims exclude the batch; negative ones count from the end
    start, end = (int(d) % ndim + 1 for d in (node.start_dim, node.end_dim))
    return x.reshape(*x.shape[:start], -1, *x.shape[end + 1:])


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
    spikes (steps, B, ...) of every LIF/IF/CubaLIF node (the CubaLIF current is updated before
    the membrane within a step, as snnTorch's Synaptic and SpikingJelly's CUBALIFNode do)."""
    order = topological(graph)
    v: dict[str, np.ndarray] = {}
    current: dict[str, np.ndarray] = {}  # CubaLIF synaptic currents
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
            elif isinstance(node, (nir.LIF, nir.IF, nir.CubaLIF)):
                vn = v.get(name, np.zeros_like(i))
                if isinstance(node, nir.CubaLIF):  # tau_syn dI/dt = -I + w_in S, then as LIF
                    b = dt / np.asarray(node.tau_syn)
                    current[name] = (1 - b) * current.get(name, 0.0) + b * np.asarray(node.w_in) * i
                    i, tau = current[name], node.tau_mem
                else:
                    tau = getattr(node, "tau", None)
                if tau is not None:  # tau dv/dt = (v_leak - v) + r I
                    a = dt / np.asarray(tau)
                    vn = (1 - a) * vn + a * (np.asarray(node.v_leak) + np.asarray(node.r) * i)
                else:  # IF: dv/dt = r I
                    vn = vn + dt * np.asarray(node.r) * i
                s = vn > np.asarray(node.v_threshold)
                v[name] = np.where(s, np.asarray(node.v_reset), vn)
                out[name] = s.astype(np.float64)
                spikes.setdefault(name, []).append(out[name])
            else:
                raise NotImplementedError(type(node).__name__)
    return total / steps, {k: np.stack(s) for k, s in spikes.items()}
