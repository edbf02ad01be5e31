"""netx writer: files load in lava-dl netx and run bit-exactly like the target's own mapping."""
from __future__ import annotations

import h5py
import nir
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from hw_targets.loihi2.target import import_lava

run_lava = import_lava().run_lava  # Lava before anything creates a multiprocessing lock (tqdm)

from hw_targets.loihi2 import examples as ex  # noqa: E402
from hw_targets.loihi2.emulator import emulate  # noqa: E402
from hw_targets.loihi2.netx import NetxRunner, plan_netx, read_attrs, write_netx  # noqa: E402
from neuroratebp.architectures import build_model  # noqa: E402
from neuroratebp.checkpoint import make_checkpoint, save_atomic  # noqa: E402
from neuroratebp.cli import main  # noqa: E402
from neuroratebp.neuron import neuron_config  # noqa: E402


def _layers(path) -> list[str]:
    with h5py.File(path, "r") as f:
        return [f["layer"][str(i)]["type"][0].decode() for i in range(len(f["layer"]))]


@pytest.mark.parametrize("graph", [ex.mlp_graph(), ex.conv_graph((1, 6, 6), 2)], ids=["mlp", "conv"])
def test_netx_file_in_lava_is_bit_exact_to_emulator(graph, tmp_path):
    """netx.hdf5.Network on the written file, Loihi2SimCfg fixed_pt: readout v and every spike
    of every block equal the bit-exact emulator on the parameters the file holds."""
    path = tmp_path / "net.net"
    write_netx(graph, path)
    plan = plan_netx(graph)
    x = ex.random_images(graph, 3)
    with NetxRunner(path, record=True) as runner:
        got = runner.run(x)
    want = emulate(plan.chip, plan.chip.encode(x), record=True)
    np.testing.assert_array_equal(got.logits, want.logits)
    spiking = [p for p in plan.chip.populations if not p.readout]
    assert len(got.spikes) == len(spiking)
    for i, pop in enumerate(spiking):
        window = slice(pop.depth, pop.depth + plan.chip.timesteps)
        np.testing.assert_array_equal(got.spikes[i][:, window], want.spikes[pop.name][:, window])
        assert want.spikes[pop.name][:, window].any()  # only meaningful if neurons fire


def test_netx_equals_the_targets_own_lava_mapping(tmp_path):
    """Same parameters through the target's Lava backend (Dense/LIFReset processes, no netx)."""
    graph = ex.mlp_graph()
    write_netx(graph, tmp_path / "mlp.net")
    plan = plan_netx(graph)
    x = ex.random_images(graph, 3, seed=5)
    own, _ = run_lava(plan.chip, x)
    with NetxRunner(tmp_path / "mlp.net") as runner:
        np.testing.assert_array_equal(runner.run(x).logits, own.logits)


def test_layout_pooling_folded_into_conv(tmp_path):
    """conv -> LIF -> AvgPool2 -> conv3x3(pad 1): the second block is one 6x6 conv, stride 2,
    padding 2, kernel repeated 2x2; flatten before the dense readout; run parameters stored."""
    path = tmp_path / "conv.net"
    facts = write_netx(ex.conv_graph((1, 8, 8), 3), path)
    assert _layers(path) == ["input", "conv", "conv", "flatten", "dense"]
    assert facts["layers"] == "conv-conv-dense"
    with h5py.File(path, "r") as f:
        conv = f["layer/2"]
        w = conv["weight"][()]
        assert w.shape == (3, 3, 6, 6)
        np.testing.assert_array_equal(w, np.kron(w[:, :, ::2, ::2], np.ones((2, 2), int)))
        assert list(conv["stride"][()]) == [2, 2] and list(conv["padding"][()]) == [2, 2]
        assert list(f["layer/0/shape"][()]) == [1, 8, 8]
        readout = f["layer/4/neuron"]
        assert (readout["iDecay"][()], readout["vDecay"][()], readout["vThMant"][()]) == (4096, 0, 2 ** 17 - 1)
        for key in ("weight", "bias"):
            assert np.issubdtype(f[f"layer/1/{key}"].dtype, np.integer)
    attrs = read_attrs(path)
    assert (attrs["input_message_bits"], attrs["window"], attrs["reset_offset"]) == (8, 7, 1)
    assert attrs["input_layout"] == "WHC"


def test_mlp_input_is_flat_and_weights_fit_netx(tmp_path):
    path = tmp_path / "mlp.net"
    write_netx(ex.mlp_graph((16, 12, 8, 3)), path)
    assert _layers(path) == ["input", "dense", "dense", "dense"]
    with h5py.File(path, "r") as f:
        for i in (1, 2, 3):
            w = f[f"layer/{i}/weight"][()]
            assert w.min() >= -256 and w.max() <= 255
            assert int(f[f"layer/{i}/neuron/iDecay"][()]) == 4096  # Lava du = 4095
    assert read_attrs(path)["input_layout"] == "flat"


def test_conv_with_per_neuron_thresholds_falls_back_to_dense():
    """A folded matrix that is no convolution is written as the expanded dense matrix (and the
    conv after it too: a dense block's output is flat, netx convs need a map)."""
    graph = ex.conv_graph((1, 6, 6), 2)
    lif0 = graph.nodes["lif0"]
    theta = np.asarray(lif0.v_threshold, float).copy()
    theta[0, 0, 0] = 2.0
    graph.nodes["lif0"] = nir.LIF(tau=lif0.tau, r=lif0.r, v_leak=lif0.v_leak, v_threshold=theta,
                                  v_reset=lif0.v_reset)
    plan = plan_netx(graph)
    assert [layer.kind for layer in plan.layers] == ["dense", "dense", "dense"]
    assert [w.split(":")[0] for w in plan.warnings if "written as a dense layer" in w] == ["lif0", "lif1"]
    for layer, pop in zip(plan.layers, plan.chip.populations):  # the chip's expanded matrices
        m = pop.synapses[0].matrix()
        np.testing.assert_array_equal(layer.weight, m.toarray() if sp.issparse(m) else m)


def test_residual_graph_is_refused():
    with pytest.raises(ValueError, match="'lif2' sums 2 inputs"):
        plan_netx(ex.residual_graph())


def test_cli_refuses_residual_checkpoint_in_one_line(tmp_path, capsys):
    config = {"model": {"arch": "resnet", "input_shape": [1, 8, 8], "num_classes": 3, "stem": 4,
                        "widths": [4], "blocks": [1], "hidden": [], "batchnorm": True},
              "neuron": {"preset": "chip"}, "data": {}, "train": {"timesteps": 2}}
    torch.manual_seed(0)
    model = build_model(config["model"], neuron_config("chip")).eval()
    save_atomic(make_checkpoint(model, config), tmp_path / "res.pt")
    assert main(["export", str(tmp_path / "res.pt"), "--to", "netx"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("neuroratebp export: error: node ") and "residual" in err
    assert not (tmp_path / "res.net").exists()
