"""Small random NIR graphs in the exporter's contract, for tests and speed measurements.

They let the chip side be tested without the training code: LIF nodes carry per-neuron arrays,
r*dt/tau = 1 (format 1's mapping; the lowering gives the same network for any mapping of the same
neuron), metadata has dt, T, direct encoding and input normalisation.
"""
from __future__ import annotations

from collections.abc import Sequence

import nir
import numpy as np

DT = 1e-3


def lif(shape: Sequence[int], lam: float = 0.8, theta: float = 1.0) -> nir.LIF:
    """NIR LIF that steps v <- lam*v + I (tau = dt/(1-lam), r = tau/dt)."""
    tau = DT / (1.0 - lam)
    ones = np.ones(tuple(shape))
    return nir.LIF(tau=tau * ones, r=tau / DT * ones, v_leak=0 * ones, v_threshold=theta * ones,
                   v_reset=0 * ones)


def _meta(timesteps: int) -> dict:
    return {"dt": DT, "timesteps": timesteps, "input_encoding": "direct", "readout": "mean",
            "normalization": {"mean": 0.25, "std": 0.5}}


def mlp_graph(sizes: Sequence[int] = (16, 12, 8, 3), timesteps: int = 4, seed: int = 0,
              lam: float = 0.8, gain: float = 1.5) -> nir.NIRGraph:
    """Input -> (Affine -> LIF)* -> Affine readout -> Output."""
    rng = np.random.default_rng(seed)
    nodes: dict = {"input": nir.Input(input_type=np.array([sizes[0]]))}
    edges, last = [], "input"
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = rng.normal(0, gain / np.sqrt(n_in), (n_out, n_in))
        nodes[f"fc{i}"] = nir.Affine(weight=w, bias=rng.normal(0, 0.1, n_out))
        edges.append((last, f"fc{i}"))
        last = f"fc{i}"
        if i < len(sizes) - 2:
            nodes[f"lif{i}"] = lif([n_out], lam)
            edges.append((last, f"lif{i}"))
            last = f"lif{i}"
    nodes["output"] = nir.Output(output_type=np.array([sizes[-1]]))
    edges.append((last, "output"))
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=_meta(timesteps))


def _conv_pool(rng: np.random.Generator, shape: Sequence[int], channels: int, lam: float,
               bias: float) -> dict:
    """Input -> Conv3x3(pad 1) -> LIF -> AvgPool2: the front of the conv examples."""
    c, h, w = shape
    return {
        "input": nir.Input(input_type=np.array(shape)),
        "conv0": nir.Conv2d(input_shape=(h, w), weight=rng.normal(0, 0.8, (channels, c, 3, 3)),
                            stride=1, padding=1, dilation=1, groups=1,
                            bias=rng.normal(bias, 0.1, channels)),
        "lif0": lif([channels, h, w], lam),
        "pool0": nir.AvgPool2d(kernel_size=np.array([2, 2]), stride=np.array([2, 2]),
                               padding=np.array([0, 0])),
    }


def conv_graph(shape: Sequence[int] = (1, 8, 8), channels: int = 4, classes: int = 3,
               timesteps: int = 4, seed: int = 0, lam: float = 0.8) -> nir.NIRGraph:
    """Conv3x3(pad 1) -> LIF -> AvgPool2 -> Conv3x3 -> LIF -> Flatten -> Affine."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    nodes = {
        **_conv_pool(rng, shape, channels, lam, 0.0),
        "conv1": nir.Conv2d(input_shape=(h // 2, w // 2),
                            weight=rng.normal(0, 1.0, (channels, channels, 3, 3)),
                            stride=1, padding=1, dilation=1, groups=1, bias=np.zeros(channels)),
        "lif1": lif([channels, h // 2, w // 2], lam),
        "flat": nir.Flatten(input_type={"input": np.array([channels, h // 2, w // 2])}, start_dim=0),
        "fc": nir.Affine(weight=rng.normal(0, 0.3, (classes, channels * h * w // 4)),
                         bias=rng.normal(0, 0.1, classes)),
        "output": nir.Output(output_type=np.array([classes])),
    }
    order = ["input", "conv0", "lif0", "pool0", "conv1", "lif1", "flat", "fc", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), metadata=_meta(timesteps))


def pool_dense_graph(shape: Sequence[int] = (1, 8, 8), channels: int = 3, hidden: int = 12,
                     classes: int = 4, timesteps: int = 4, seed: int = 0, lam: float = 0.8
                     ) -> nir.NIRGraph:
    """Conv3x3(pad 1) -> LIF -> AvgPool2 -> Flatten -> Affine -> LIF -> Affine: a dense layer
    after pooling, as in the zoo conv net's head."""
    rng = np.random.default_rng(seed)
    c, h, w = shape
    flat = channels * (h // 2) * (w // 2)
    nodes = {
        **_conv_pool(rng, shape, channels, lam, 0.2),
        "flat": nir.Flatten(input_type={"input": np.array([channels, h // 2, w // 2])}, start_dim=0),
        "fc1": nir.Affine(weight=rng.normal(0, 3.0 / np.sqrt(flat), (hidden, flat)),
                          bias=rng.normal(0.1, 0.1, hidden)),
        "lif1": lif([hidden], lam),
        "fc2": nir.Affine(weight=rng.normal(0, 1.0, (classes, hidden)), bias=rng.normal(0, 0.1, classes)),
        "output": nir.Output(output_type=np.array([classes])),
    }
    order = ["input", "conv0", "lif0", "pool0", "flat", "fc1", "lif1", "fc2", "output"]
    return nir.NIRGraph(nodes=nodes, edges=list(zip(order[:-1], order[1:])), metadata=_meta(timesteps))


def residual_graph(size: int = 10, classes: int = 3, timesteps: int = 4, seed: int = 0
                   ) -> nir.NIRGraph:
    """lif0 -> fc1 -> lif1 -> fc2 -> lif2 plus a shortcut lif0 -> fc_skip -> lif2 (fan-in)."""
    rng = np.random.default_rng(seed)
    aff = lambda n_out, n_in, g=1.2: nir.Affine(weight=rng.normal(0, g / np.sqrt(n_in), (n_out, n_in)),
                                                bias=rng.normal(0, 0.1, n_out))
    nodes = {"input": nir.Input(input_type=np.array([size])), "fc0": aff(size, size), "lif0": lif([size]),
             "fc1": aff(size, size), "lif1": lif([size]), "fc2": aff(size, size),
             "fc_skip": aff(size, size, 0.8), "lif2": lif([size]), "fc": aff(classes, size),
             "output": nir.Output(output_type=np.array([classes]))}
    edges = [("input", "fc0"), ("fc0", "lif0"), ("lif0", "fc1"), ("fc1", "lif1"), ("lif1", "fc2"),
             ("fc2", "lif2"), ("lif0", "fc_skip"), ("fc_skip", "lif2"), ("lif2", "fc"), ("fc", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=_meta(timesteps))


def random_images(graph: nir.NIRGraph, n: int, seed: int = 1) -> np.ndarray:
    """8-bit-valued images in [0, 1] shaped like the graph's input."""
    shape = next(np.asarray(node.input_type["input"]) for node in graph.nodes.values()
                 if isinstance(node, nir.Input))
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, *shape.tolist())) / 255.0
