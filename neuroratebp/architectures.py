"""Architectures built from a config table: MLP, VGG-style conv net, ResNet (18/19 as in the paper).

Every spiking layer is ``synapse (conv/linear) -> [BatchNorm] -> LIF``; the last layer is a
non-spiking linear readout. Max pooling is not offered: a chip cannot compute it on spikes and NIR
has no node for it, so conv nets pool by averaging ("A") or summing ("S").
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

from .interchange.graph_spec import graph_nodes
from .layers import Add, BatchNorm, SumPool2d
from .network import INPUT, SNN, Node
from .neuron import LIF, NeuronConfig

RESNETS: dict[str, dict[str, Any]] = {
    # CIFAR ResNet-18: 3x3 stem, four stages of two basic blocks.
    "resnet18": {"stem": 64, "widths": [64, 128, 256, 512], "blocks": [2, 2, 2, 2], "hidden": []},
    # ResNet-19 of tdBN (Zheng et al. 2021), used by the rate-BP paper.
    "resnet19": {"stem": 128, "widths": [128, 256, 512], "blocks": [3, 3, 2], "hidden": [256]},
}


class _Builder:
    """Appends named nodes; each new node reads the previous one unless told otherwise."""

    def __init__(self, neuron: NeuronConfig, batchnorm: bool) -> None:
        self.neuron = neuron
        self.batchnorm = batchnorm
        self.nodes: list[Node] = []
        self._count: dict[str, int] = {}
        self.last = INPUT

    def add(self, kind: str, module: nn.Module, inputs: Sequence[str] | None = None) -> str:
        self._count[kind] = self._count.get(kind, 0) + 1
        name = f"{kind}{self._count[kind]}"
        self.nodes.append(Node(name, module, tuple(inputs) if inputs else (self.last,)))
        self.last = name
        return name

    def norm(self, channels: int) -> None:
        if self.batchnorm:
            self.add("bn", BatchNorm(channels))

    def spiking_conv(self, c_in: int, c_out: int, stride: int = 1) -> str:
        self.add("conv", nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=not self.batchnorm))
        self.norm(c_out)
        return self.add("lif", LIF(self.neuron))

    def spiking_linear(self, n_in: int, n_out: int) -> str:
        self.add("fc", nn.Linear(n_in, n_out, bias=not self.batchnorm))
        self.norm(n_out)
        return self.add("lif", LIF(self.neuron))

    def head(self, n_in: int, hidden: Sequence[int], num_classes: int) -> None:
        for width in hidden:
            self.spiking_linear(n_in, int(width))
            n_in = int(width)
        self.add("fc", nn.Linear(n_in, num_classes))


def _pool(kind: str) -> nn.Module:
    if kind == "A":
        return nn.AvgPool2d(2)
    if kind == "S":
        return SumPool2d(2)
    raise ValueError(f"unknown pooling {kind!r} in features: use 'A' (average) or 'S' (sum); "
                     "max pooling has no spiking/NIR equivalent")


def build_mlp(b: _Builder, input_shape: Sequence[int], cfg: Mapping[str, Any], classes: int) -> None:
    if len(input_shape) > 1:
        b.add("flatten", nn.Flatten())
    b.head(math.prod(input_shape), cfg.get("hidden", [256]), classes)


def build_vgg(b: _Builder, input_shape: Sequence[int], cfg: Mapping[str, Any], classes: int) -> None:
    if len(input_shape) != 3:
        raise ValueError(f"vgg needs a (C, H, W) input_shape, got {list(input_shape)}")
    c, h, w = input_shape
    for item in cfg.get("features", [32, "A", 64, "A"]):
        if isinstance(item, str):
            b.add("pool", _pool(item))
            h, w = h // 2, w // 2
        else:
            b.spiking_conv(c, int(item))
            c = int(item)
    b.add("flatten", nn.Flatten())
    b.head(c * h * w, cfg.get("hidden", []), classes)


def build_resnet(b: _Builder, input_shape: Sequence[int], cfg: Mapping[str, Any], classes: int) -> None:
    if len(input_shape) != 3:
        raise ValueError(f"resnet needs a (C, H, W) input_shape, got {list(input_shape)}")
    spec = dict(RESNETS.get(cfg.get("depth", "resnet18"), {}))
    if "depth" in cfg and cfg["depth"] not in RESNETS:
        raise ValueError(f"unknown resnet depth {cfg['depth']!r}; choose from {sorted(RESNETS)}")
    spec.update({k: cfg[k] for k in ("stem", "widths", "blocks", "hidden") if k in cfg})
    c, h, w = input_shape
    b.spiking_conv(c, int(spec["stem"]))
    c = int(spec["stem"])
    for stage, (width, n_blocks) in enumerate(zip(spec["widths"], spec["blocks"])):
        for i in range(int(n_blocks)):
            stride = 2 if stage > 0 and i == 0 else 1
            entry = b.last
            b.spiking_conv(c, int(width), stride)
            b.add("conv", nn.Conv2d(int(width), int(width), 3, padding=1, bias=False))
            b.add("bn", BatchNorm(int(width)))
            main = b.last
            if stride != 1 or c != int(width):
                b.add("conv", nn.Conv2d(c, int(width), 1, stride=stride, bias=False), [entry])
                b.add("bn", BatchNorm(int(width)))
                shortcut = b.last
            else:
                shortcut = entry
            b.add("add", Add(), [main, shortcut])
            b.add("lif", LIF(b.neuron))
            c = int(width)
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
    b.add("pool", nn.AvgPool2d((h, w)))
    b.add("flatten", nn.Flatten())
    b.head(c, spec["hidden"], classes)


def build_graph(b: _Builder, input_shape: Sequence[int], cfg: Mapping[str, Any],
                classes: int) -> None:
    """Layers listed as plain data (e.g. an imported NIR graph), see interchange.graph_spec."""
    b.nodes.extend(graph_nodes(cfg.get("layers", []), b.neuron))


ARCHITECTURES = {"mlp": build_mlp, "vgg": build_vgg, "resnet": build_resnet, "graph": build_graph}


def build_model(model: Mapping[str, Any], neuron: NeuronConfig) -> SNN:
    """Network from the ``[model]`` table of a config (see models/*.toml)."""
    arch = model.get("arch")
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown model arch {arch!r}; choose from {sorted(ARCHITECTURES)}")
    input_shape = [int(d) for d in model.get("input_shape", [])]
    if not input_shape:
        raise ValueError("model input_shape is missing")
    classes = int(model.get("num_classes", 10))
    b = _Builder(neuron, bool(model.get("batchnorm", arch == "resnet")))
    if arch == "resnet" and not b.batchnorm:
        raise ValueError("resnet needs batchnorm = true")
    ARCHITECTURES[arch](b, input_shape, model, classes)
    return SNN(input_shape, b.nodes)
