"""A network described as plain data: the ``arch = "graph"`` model table.

An imported NIR graph has no architecture name in this project's zoo. Storing its layers as a list
of plain tables (type, inputs, hyperparameters; weights stay in the state_dict) lets a checkpoint
config rebuild it like any other model and keeps the config loadable with
``torch.load(weights_only=True)``. Example (TOML)::

    [model]
    arch = "graph"
    input_shape = [1, 8, 8]
    layers = [
      {name = "conv1", type = "conv2d", inputs = ["input"], in_channels = 1, out_channels = 4,
       kernel_size = [3, 3], padding = [1, 1]},
      {name = "lif1", type = "lif", lam = 0.8, theta = 1.0},
      {name = "flatten1", type = "flatten"},
      {name = "fc1", type = "linear", in_features = 256, out_features = 10},
    ]

``inputs`` defaults to the previous layer; a ``lif`` entry overrides fields of the ``[neuron]``
table (lam, theta, reset, comparison) for that layer only.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from torch import nn

from ..layers import Add, SumPool2d
from ..network import INPUT, Node
from ..neuron import LIF, NeuronConfig

LayerSpec = Mapping[str, Any]

NEURON_FIELDS = ("lam", "theta", "reset", "comparison")


def _pair(value: Any) -> tuple[int, int]:
    """(h, w) from one value or a pair; NIR writers store sizes either way, scalars too."""
    values = list(value) if isinstance(value, (list, tuple)) else [value]
    if len(values) not in (1, 2):
        raise ValueError(f"expected one value or a pair, got {value!r}")
    return int(values[0]), int(values[-1])


def _conv2d(spec: LayerSpec, _: NeuronConfig) -> nn.Module:
    padding = spec.get("padding", 0)
    return nn.Conv2d(int(spec["in_channels"]), int(spec["out_channels"]),
                     _pair(spec["kernel_size"]),
                     stride=_pair(spec.get("stride", 1)),
                     padding=padding if isinstance(padding, str) else _pair(padding),
                     dilation=_pair(spec.get("dilation", 1)), groups=int(spec.get("groups", 1)),
                     bias=bool(spec.get("bias", True)))


def _linear(spec: LayerSpec, _: NeuronConfig) -> nn.Module:
    return nn.Linear(int(spec["in_features"]), int(spec["out_features"]),
                     bias=bool(spec.get("bias", True)))


def _lif(spec: LayerSpec, neuron: NeuronConfig) -> nn.Module:
    return LIF(replace(neuron, **{k: spec[k] for k in NEURON_FIELDS if k in spec}))


def _flatten(spec: LayerSpec, _: NeuronConfig) -> nn.Module:
    return nn.Flatten(int(spec.get("start_dim", 1)), int(spec.get("end_dim", -1)))


def _pool_args(spec: LayerSpec) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    kernel = _pair(spec["kernel_size"])
    return kernel, _pair(spec.get("stride", kernel)), _pair(spec.get("padding", 0))


def _avgpool2d(spec: LayerSpec, _: NeuronConfig) -> nn.Module:
    return nn.AvgPool2d(*_pool_args(spec))


def _sumpool2d(spec: LayerSpec, _: NeuronConfig) -> nn.Module:
    return SumPool2d(*_pool_args(spec))  # type: ignore[arg-type]  # AvgPool2d takes pairs


def _add(_: LayerSpec, __: NeuronConfig) -> nn.Module:
    return Add()


LAYER_TYPES: dict[str, Callable[[LayerSpec, NeuronConfig], nn.Module]] = {
    "conv2d": _conv2d,
    "linear": _linear,
    "lif": _lif,
    "flatten": _flatten,
    "avgpool2d": _avgpool2d,
    "sumpool2d": _sumpool2d,
    "add": _add,
}


def graph_nodes(layers: Sequence[LayerSpec], neuron: NeuronConfig) -> list[Node]:
    """Network nodes for a ``layers`` list; errors name the offending layer."""
    nodes: list[Node] = []
    previous = INPUT
    for i, spec in enumerate(layers):
        name = str(spec.get("name", f"layer{i}"))
        kind = spec.get("type")
        if kind not in LAYER_TYPES:
            raise ValueError(f"graph layer {name!r}: unknown type {kind!r}; "
                             f"choose from {sorted(LAYER_TYPES)}")
        try:
            module = LAYER_TYPES[kind](spec, neuron)
        except KeyError as e:
            raise ValueError(f"graph layer {name!r} ({kind}) lacks {e.args[0]!r}") from None
        except (TypeError, ValueError) as e:
            raise ValueError(f"graph layer {name!r} ({kind}): {e}") from None
        nodes.append(Node(name, module, tuple(str(s) for s in spec.get("inputs", [previous]))))
        previous = name
    return nodes
