"""Small zoo networks with real activity and non-trivial batch-norm statistics, for NIR tests."""
from __future__ import annotations

import torch

from neuroratebp.architectures import build_model
from neuroratebp.engine import infer
from neuroratebp.network import SNN
from neuroratebp.neuron import LIF, NeuronConfig, neuron_config

T = 4

ZOO = {
    "mlp": {"arch": "mlp", "input_shape": [1, 6, 6], "hidden": [24, 16], "num_classes": 5},
    "vgg": {"arch": "vgg", "input_shape": [2, 8, 8], "features": [4, "A", 6, "S"], "hidden": [12],
            "batchnorm": True, "num_classes": 5},
    "resnet": {"arch": "resnet", "input_shape": [3, 8, 8], "stem": 4, "widths": [4, 6],
               "blocks": [1, 1], "hidden": [], "num_classes": 5},
}


def zoo_model(kind: str, neuron: NeuronConfig | None = None, seed: int = 0) -> SNN:
    """A float64 eval-mode model whose LIF layers all fire, with learned-looking BN statistics.

    Running statistics come from training-mode passes on shifted data and BN affine parameters
    are random, so folding them into the synapses is really exercised.
    """
    torch.manual_seed(seed)
    model = build_model(ZOO[kind], neuron or neuron_config("chip", lam=0.75)).double()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".bn" in name and name.endswith("weight"):
                p.uniform_(0.8, 2.0)
            elif ".bn" in name and name.endswith("bias"):
                p.uniform_(0.3, 1.2)
            elif kind == "mlp" and name.endswith("weight"):
                p.mul_(6.0)
    model.train()
    for _ in range(3):
        infer(model, 2.0 * torch.rand(16, *ZOO[kind]["input_shape"], dtype=torch.float64) - 0.5, T)
    return model.eval()


def sample(kind: str, batch: int = 5, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(batch, *ZOO[kind]["input_shape"], generator=g, dtype=torch.float64)


def spikes_and_logits(model: SNN, x: torch.Tensor, steps: int = T
                      ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Logits and the (T, B, ...) spikes of every LIF layer of a multi-step eval run."""
    recorded: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(
        lambda mod, args, out, name=name: recorded.__setitem__(
            name, out.reshape(steps, -1, *out.shape[1:]).clone()))
        for name, m in model.layers.items() if isinstance(m, LIF)]
    try:
        logits = infer(model, x, steps)
    finally:
        for h in hooks:
            h.remove()
    return logits, recorded


def readout_steps(model: SNN, x: torch.Tensor, steps: int = T) -> torch.Tensor:
    """The readout layer's output at every step, (T, B, ...) (the logits are their mean)."""
    recorded: list[torch.Tensor] = []
    hook = model.layers[model.output].register_forward_hook(
        lambda mod, args, out: recorded.append(out.reshape(steps, -1, *out.shape[1:]).clone()))
    try:
        infer(model, x, steps)
    finally:
        hook.remove()
    return recorded[0]
