"""Lava process graph (Loihi2SimCfg) against the emulator and the float NIR reference."""
from __future__ import annotations

import numpy as np
import pytest

from hw_targets.loihi2 import examples as ex
from hw_targets.loihi2.emulator import emulate
from hw_targets.loihi2.graph import lower
from hw_targets.loihi2.quantize import compile_network
from hw_targets.loihi2.reference import run_reference
from hw_targets.loihi2.target import import_lava

run_lava = import_lava().run_lava


def _valid(chip, spikes):
    """Each population's T-step window (earlier steps hold the previous sample's tail)."""
    return {p.name: spikes[p.name][:, p.depth:p.depth + chip.timesteps]
            for p in chip.populations if not p.readout}


@pytest.mark.parametrize("graph, options", [
    (ex.mlp_graph((6, 5, 3)), {}), (ex.mlp_graph(), {}), (ex.conv_graph((1, 6, 6), 2), {}),
    (ex.conv_graph((1, 6, 6), 2), {"split": "none", "exponent": "mse"}),
    (ex.mlp_graph(), {"split": "all"})],
    ids=["dense_lif_2layer", "mlp", "conv", "conv_nosplit_mse", "mlp_split_all"])
def test_emulator_bit_exact_to_lava_fixed(graph, options):
    chip, _ = compile_network(lower(graph), "fixed", **options)
    x = ex.random_images(graph, 3)
    lava, _ = run_lava(chip, x, record="spikes")
    emu = emulate(chip, chip.encode(x), record=True)
    np.testing.assert_array_equal(lava.logits, emu.logits)
    lv, ev = _valid(chip, lava.spikes), _valid(chip, emu.spikes)
    for name in ev:
        np.testing.assert_array_equal(lv[name], ev[name])
        assert ev[name].any()  # the test means something only if neurons fire


def test_lava_float_reproduces_nir_reference_with_residual_delay():
    graph = ex.residual_graph()
    x = ex.random_images(graph, 3)
    ref = run_reference(graph, x)
    chip, _ = compile_network(lower(graph), "float")
    lava, _ = run_lava(chip, x, record="spikes")
    np.testing.assert_allclose(lava.logits, ref.logits, atol=1e-9)
    for name, counts in lava.spike_counts.items():
        np.testing.assert_array_equal(counts, ref.spikes[name].sum(axis=1))

