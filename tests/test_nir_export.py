"""NIR export: faithful to an independent Euler simulation, metadata, refusals, CLI."""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import nir
import numpy as np
import pytest
from torch import nn

from neuroratebp.checkpoint import make_checkpoint, save_atomic
from neuroratebp.cli import main
from neuroratebp.layers import BatchNorm
from neuroratebp.network import SNN, Node
from neuroratebp.neuron import LIF, neuron_config
from neuroratebp.interchange import ApproximationWarning, export_nir, write_nir
from nir_models import T, ZOO, sample, spikes_and_logits, zoo_model
from nir_reference import simulate

CONFIG = {"train": {"timesteps": T, "method": "rate_m"}}
STANDARD = (nir.Input, nir.Output, nir.Affine, nir.Conv2d, nir.LIF, nir.IF, nir.Flatten,
            nir.SumPool2d, nir.AvgPool2d)


def written(graph: nir.NIRGraph, tmp_path: Path) -> nir.NIRGraph:
    path = tmp_path / "model.nir"
    write_nir(graph, path)
    return nir.read(path)  # type-checked read of the file on disk


@pytest.mark.parametrize("kind", list(ZOO))
def test_euler_simulation_of_the_file_reproduces_the_network(kind: str, tmp_path: Path) -> None:
    model = zoo_model(kind)
    x = sample(kind)
    logits, spikes = spikes_and_logits(model, x)
    graph = written(export_nir(model, CONFIG), tmp_path)
    ref_logits, ref_spikes = simulate(graph, x.numpy(), T, float(graph.metadata["dt"]))
    assert set(ref_spikes) == set(spikes)
    for name, s in spikes.items():
        assert 0.02 < float(s.mean()) < 0.98, f"{name} is silent or saturated: test is vacuous"
        np.testing.assert_array_equal(ref_spikes[name], s.numpy(), err_msg=name)
    np.testing.assert_allclose(ref_logits, logits.numpy(), rtol=1e-10, atol=1e-10)


def test_non_leaky_neurons_become_if_nodes(tmp_path: Path) -> None:
    model = zoo_model("vgg", neuron_config("chip", lam=1.0))
    x = sample("vgg")
    logits, spikes = spikes_and_logits(model, x)
    graph = written(export_nir(model, CONFIG), tmp_path)
    dt = float(graph.metadata["dt"])
    ifs = {n: node for n, node in graph.nodes.items() if isinstance(node, nir.IF)}
    assert set(ifs) == set(spikes)
    assert all(np.allclose(node.r, 1.0 / dt) for node in ifs.values())
    ref_logits, ref_spikes = simulate(graph, x.numpy(), T, dt)
    for name, s in spikes.items():
        np.testing.assert_array_equal(ref_spikes[name], s.numpy(), err_msg=name)
    np.testing.assert_allclose(ref_logits, logits.numpy(), rtol=1e-10, atol=1e-10)


def test_graph_uses_standard_nodes_with_folded_batchnorm_and_fan_in(tmp_path: Path) -> None:
    model = zoo_model("resnet")
    graph = written(export_nir(model, CONFIG), tmp_path)
    assert all(isinstance(node, STANDARD) for node in graph.nodes.values())
    bns = [n for n, m in model.layers.items() if isinstance(m, BatchNorm)]
    folded = ",".join(str(node.metadata.get("folded_batchnorm", ""))
                      for node in graph.nodes.values())
    assert sorted(f for f in folded.split(",") if f) == sorted(bns)
    # The residual junctions: LIF nodes fed by two edges (main branch conv + shortcut).
    fan_in = {dst for _, dst in graph.edges if sum(d == dst for _, d in graph.edges) == 2}
    adds = [n for n, m in model.layers.items() if type(m).__name__ == "Add"]
    assert len(fan_in) == len(adds) == 2
    assert all(isinstance(graph.nodes[n], nir.LIF) for n in fan_in)


def test_neuron_parameters_and_shapes(tmp_path: Path) -> None:
    model = zoo_model("vgg")
    graph = written(export_nir(model, CONFIG), tmp_path)
    dt = float(graph.metadata["dt"])
    assert dt == 1e-4 and graph.metadata["neuron_convention"] == "unit-r"
    lif1 = graph.nodes["lif1"]
    assert lif1.tau.shape == (4, 8, 8)  # like the conv output, (C, H, W)
    np.testing.assert_allclose(1.0 - dt / lif1.tau, 0.75)
    # unit-r: r = 1 (Norse ignores r), so the Euler gain is dt/tau = 1 - lam and the threshold
    # is theta * (1 - lam): v <- lam v + (1 - lam) I is the trained neuron with v scaled
    assert np.all(lif1.r == 1) and np.allclose(lif1.v_threshold, 0.25)
    assert np.all(lif1.v_leak == 0) and np.all(lif1.v_reset == 0)
    assert graph.nodes["lif3"].tau.shape == (12,)
    assert lif1.metadata == {"lam": 0.75, "theta": 1.0, "reset": "hard", "comparison": "gt"}
    flatten = graph.nodes["flatten1"]
    assert (flatten.start_dim, flatten.end_dim) == (-3, -1)
    assert list(flatten.output_type["output"]) == [6 * 2 * 2]
    assert list(graph.nodes["conv1"].input_shape) == [8, 8]
    assert list(graph.nodes["output"].output_type["output"]) == [5]


def test_average_pooling_is_a_sum_pool_with_its_scale_in_the_next_synapse(tmp_path: Path) -> None:
    model = zoo_model("vgg")  # conv1 -> lif1 -> AvgPool 'pool1' -> conv2 ...; SumPool 'pool2'
    graph = written(export_nir(model, CONFIG), tmp_path)
    assert graph.metadata["average_pooling"] == "sumpool-folded"
    assert isinstance(graph.nodes["pool1"], nir.SumPool2d)
    assert isinstance(graph.nodes["pool2"], nir.SumPool2d)
    assert graph.nodes["pool1"].metadata["scale_folded_into"] == "conv2"
    assert not any(isinstance(node, nir.AvgPool2d) for node in graph.nodes.values())
    # conv2's kernel is the trained one (BN folded) times 1/4; its bias is untouched
    plain = export_nir(model, CONFIG)
    bn = model.layers["bn2"]
    scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().numpy()
    expected = model.layers["conv2"].weight.detach().numpy() * scale[:, None, None, None] / 4
    np.testing.assert_allclose(graph.nodes["conv2"].weight, expected, rtol=1e-12)
    np.testing.assert_array_equal(plain.nodes["conv2"].bias, graph.nodes["conv2"].bias)


def test_average_pooling_without_a_synapse_after_it_stays_avgpool(tmp_path: Path) -> None:
    lif = neuron_config("chip", lam=0.75)
    model = SNN([1, 4, 4], [Node("conv", nn.Conv2d(1, 2, 3, padding=1), ("input",)),
                            Node("lif", LIF(lif), ("conv",)),
                            Node("pool", nn.AvgPool2d(2), ("lif",)),
                            Node("lif2", LIF(lif), ("pool",)),
                            Node("flat", nn.Flatten(), ("lif2",)),
                            Node("fc", nn.Linear(8, 2), ("flat",))]).double().eval()
    graph = written(export_nir(model, CONFIG), tmp_path)
    assert isinstance(graph.nodes["pool"], nir.AvgPool2d)
    x = sample("vgg")[:, :1, :4, :4]
    logits, spikes = spikes_and_logits(model, x)
    ref_logits, ref_spikes = simulate(graph, x.numpy(), T, float(graph.metadata["dt"]))
    np.testing.assert_allclose(ref_logits, logits.numpy(), rtol=1e-10, atol=1e-10)


def test_metadata_survives_the_file(tmp_path: Path) -> None:
    model = zoo_model("mlp")
    config = {"data": {"mean": [0.286], "std": [0.353]},
              "train": {"timesteps": 6, "method": "bptt"}}
    meta = written(export_nir(model, config, dt=0.5), tmp_path).metadata
    assert meta["format_version"] == 2 and meta["neuron_convention"] == "unit-r"
    assert meta["dt"] == 0.5 and meta["timesteps"] == 6 and meta["method"] == "bptt"
    assert meta["reset"] == "hard" and meta["comparison"] == "gt" and not meta["approximate"]
    assert meta["input_encoding"] == "direct" and meta["readout"] == "mean_over_timesteps"
    assert meta["readout_node"] == "fc3" and meta["format"] == "neuroratebp-nir"
    assert isinstance(meta["neuroratebp_version"], str) and "Euler" in meta["semantics"]
    np.testing.assert_allclose(meta["normalize"]["mean"], [0.286])
    np.testing.assert_allclose(meta["normalize"]["std"], [0.353])
    assert "approximations" not in meta


def test_soft_reset_and_ge_are_refused_unless_allowed(tmp_path: Path) -> None:
    model = zoo_model("mlp", neuron_config("paper"))
    with pytest.raises(ValueError, match=r"soft reset.*lif1, lif2.*v >= theta.*allow-approximate"):
        export_nir(model, CONFIG)
    with pytest.warns(ApproximationWarning, match="lif1, lif2"):
        graph = export_nir(model, CONFIG, allow_approximate=True)
    meta = written(graph, tmp_path).metadata
    assert meta["approximate"] and meta["reset"] == "soft" and meta["comparison"] == "ge"
    assert "soft reset" in meta["approximations"] and ">=" in meta["approximations"]


def test_ge_alone_is_refused() -> None:
    model = zoo_model("mlp", neuron_config("chip", comparison="ge"))
    with pytest.raises(ValueError, match=r"v >= theta.*lif1, lif2") as err:
        export_nir(model, CONFIG)
    assert "soft reset" not in str(err.value)


def test_unknown_layers_and_unfoldable_batchnorm_are_named() -> None:
    pooled = SNN([1, 4, 4], [Node("conv", nn.Conv2d(1, 2, 3, padding=1), ("input",)),
                             Node("maxpool", nn.MaxPool2d(2), ("conv",)),
                             Node("flat", nn.Flatten(), ("maxpool",)),
                             Node("fc", nn.Linear(8, 2), ("flat",))])
    with pytest.raises(ValueError, match="'maxpool' \\(MaxPool2d\\)"):
        export_nir(pooled, CONFIG)
    bn_after_lif = SNN([3], [Node("fc", nn.Linear(3, 3), ("input",)),
                             Node("lif", LIF(neuron_config()), ("fc",)),
                             Node("bn", BatchNorm(3), ("lif",)),
                             Node("out", nn.Linear(3, 2), ("bn",))])
    with pytest.raises(ValueError, match="BatchNorm 'bn' cannot be folded"):
        export_nir(bn_after_lif, CONFIG)


def test_timesteps_are_required() -> None:
    with pytest.raises(ValueError, match="timesteps"):
        export_nir(zoo_model("mlp"), {})
    assert export_nir(zoo_model("mlp"), {}, timesteps=3).metadata["timesteps"] == 3


def _checkpoint(tmp_path: Path, preset: str = "chip") -> Path:
    config = {"model": ZOO["vgg"], "neuron": {"preset": preset, "lam": 0.75}, "data": {},
              "train": {"timesteps": T, "method": "rate_m"}}
    model = zoo_model("vgg", neuron_config(preset, lam=0.75)).float()
    path = tmp_path / "run" / "model.pt"
    save_atomic(make_checkpoint(model, config), path)
    return path


def test_cli_export_writes_a_readable_file_beside_the_checkpoint(tmp_path: Path, capsys) -> None:
    ckpt = _checkpoint(tmp_path)
    assert main(["export", str(ckpt), "--to", "nir", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    out = ckpt.with_suffix(".nir")
    assert report["output"] == str(out) and report["target"] == "nir"
    graph = nir.read(out)
    assert graph.metadata["timesteps"] == T and "conv1" in graph.nodes
    assert report["nodes"] == len(graph.nodes)
    other = tmp_path / "elsewhere.nir"
    assert main(["export", str(ckpt), "--to", "nir", "-o", str(other)]) == 0
    assert str(other) in capsys.readouterr().out and nir.read(other).metadata["method"] == "rate_m"


def test_cli_export_takes_the_time_step(tmp_path: Path, capsys) -> None:
    ckpt = _checkpoint(tmp_path)
    out = tmp_path / "coarse.nir"
    assert main(["export", str(ckpt), "--dt", "1e-3", "-o", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["dt"] == 1e-3
    graph = nir.read(out)
    assert graph.metadata["dt"] == 1e-3
    np.testing.assert_allclose(graph.nodes["lif1"].tau, 1e-3 / 0.25)  # lam = 0.75
    assert main(["export", str(ckpt), "--dt", "0", "-o", str(out)]) == 2
    assert "dt must be a positive finite number" in capsys.readouterr().err


def test_cli_export_refuses_soft_reset_in_one_line(tmp_path: Path, capsys) -> None:
    ckpt = _checkpoint(tmp_path, preset="paper")
    assert main(["export", str(ckpt), "--to", "nir"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "allow-approximate" in err and "Traceback" not in err
    assert not ckpt.with_suffix(".nir").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the CLI reports the approximation itself
        assert main(["export", str(ckpt), "--to", "nir", "--allow-approximate"]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "soft reset" in err and "lif1" in err
    assert nir.read(ckpt.with_suffix(".nir")).metadata["approximate"]


def test_cli_export_bad_checkpoint_is_one_line(tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main(["export", str(bad), "--to", "nir"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad.pt" in err
