"""LIF dynamics, presets and the network graph."""
from __future__ import annotations

import pytest
import torch

from neuroratebp.architectures import RESNETS, build_model
from neuroratebp.neuron import LIF, NeuronConfig, neuron_config, snap_decay


def run_lif(cfg: NeuronConfig, currents: list[float]) -> tuple[list[float], list[float]]:
    """Spikes and post-reset membrane of one neuron driven step by step (single-step mode)."""
    lif = LIF(cfg)
    lif.phase, lif.step_mode = "bptt", "s"
    spikes, membrane = [], []
    with torch.no_grad():
        for c in currents:
            spikes.append(float(lif(torch.tensor([c]))))
            membrane.append(float(lif.v))
    return spikes, membrane


def test_chip_preset_resets_to_zero_and_fires_strictly_above_threshold() -> None:
    cfg = neuron_config("chip", lam=0.5)
    spikes, v = run_lif(cfg, [0.6, 0.7, 1.0, 0.25])
    # u: 0.6 -> 0.3+0.7=1.0 (not > 1: no spike) -> 0.5+1.0=1.5 spike, v=0 -> 0.25
    assert spikes == [0.0, 0.0, 1.0, 0.0]
    assert v == pytest.approx([0.6, 1.0, 0.0, 0.25])


def test_paper_preset_soft_reset_fires_at_threshold() -> None:
    cfg = neuron_config("paper", lam=0.5)
    spikes, v = run_lif(cfg, [0.6, 0.7, 1.0])
    # u: 0.6 -> 1.0 (>= 1: spike, v = 0) -> 1.0 spike, v = 0
    assert spikes == [0.0, 1.0, 1.0]
    assert v == pytest.approx([0.6, 0.0, 0.0])
    spikes, v = run_lif(cfg, [2.5, 0.0])
    assert spikes == [1.0, 0.0] and v == pytest.approx([1.5, 0.75])  # subtract theta, keep rest


def test_chip_decay_lies_on_the_12_bit_grid() -> None:
    for lam in (0.2, 0.37, 0.9):
        snapped = neuron_config("chip", lam=lam).lam
        assert ((1 - snapped) * 4096) == pytest.approx(round((1 - snapped) * 4096), abs=1e-9)
        assert abs(snapped - lam) <= 0.5 / 4096
    assert snap_decay(0.2) == 1 - 3277 / 4096
    assert neuron_config("paper", lam=0.37).lam == 0.37  # the paper's preset is not snapped


@pytest.mark.parametrize("bad, message", [
    (dict(lam=1.5), "lam"), (dict(theta=0.0), "theta"), (dict(reset="zero"), "reset"),
    (dict(comparison="gte"), "comparison"), (dict(alpha=-1.0), "alpha")])
def test_invalid_neuron_parameters_are_refused(bad: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        NeuronConfig(**bad)


def test_unknown_preset_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown neuron preset"):
        neuron_config("loihi3")


def test_rate_pass_before_spike_stage_is_an_error() -> None:
    lif = LIF(NeuronConfig())
    lif.phase = "rate"
    with pytest.raises(RuntimeError, match="spike phase first"):
        lif(torch.zeros(3))


@pytest.mark.parametrize("depth, weight_layers", [("resnet18", 18), ("resnet19", 19)])
def test_resnet_depth_counts_weight_layers_as_the_paper(depth: str, weight_layers: int) -> None:
    model = build_model({"arch": "resnet", "depth": depth, "input_shape": [3, 32, 32]},
                        neuron_config("paper"))
    layers = [m for m in model.layers.values()
              if isinstance(m, torch.nn.Linear)
              or (isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))]
    assert len(layers) == weight_layers  # 1x1 shortcut convs are not counted, as usual
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    last_conv = [m for m in layers if isinstance(m, torch.nn.Conv2d)][-1]
    assert last_conv.out_channels == RESNETS[depth]["widths"][-1]


def test_architecture_config_errors_name_the_problem() -> None:
    neuron = neuron_config()
    with pytest.raises(ValueError, match="unknown model arch"):
        build_model({"arch": "transformer", "input_shape": [1, 8, 8]}, neuron)
    with pytest.raises(ValueError, match="max pooling"):
        build_model({"arch": "vgg", "input_shape": [1, 8, 8], "features": [4, "M"]}, neuron)
    with pytest.raises(ValueError, match="input_shape"):
        build_model({"arch": "mlp"}, neuron)
