"""NIR import: exact round trip of the zoo, graphs from elsewhere, bad files, CLI."""
from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import h5py
import nir
import numpy as np
import pytest
import torch

from neuroratebp.checkpoint import (load_checkpoint, make_checkpoint, model_from_checkpoint,
                                    save_atomic)
from neuroratebp.cli import main
from neuroratebp.config import model_from_config
from neuroratebp.engine import infer
from neuroratebp.interchange import export_nir, import_nir, read_nir, write_nir
from neuroratebp.layers import Add
from nir_models import T, ZOO, sample, spikes_and_logits, zoo_model
from nir_reference import simulate

CONFIG = {"data": {"mean": [0.5, 0.4, 0.3], "std": [0.2, 0.25, 0.3]},
          "train": {"timesteps": T, "method": "rate_s"}}


def exported_file(kind: str, tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    model = zoo_model(kind)
    path = tmp_path / f"{kind}.nir"
    write_nir(export_nir(model, CONFIG), path)
    return model, path


@pytest.mark.parametrize("kind", list(ZOO))
def test_round_trip_reproduces_spikes_and_logits(kind: str, tmp_path: Path) -> None:
    model, path = exported_file(kind, tmp_path)
    imported, config = import_nir(path, dtype=torch.float64)
    x = sample(kind, seed=7)
    logits, spikes = spikes_and_logits(model, x)
    logits2, spikes2 = spikes_and_logits(imported, x)
    assert set(spikes2) == set(spikes)
    for name, s in spikes.items():
        assert 0.02 < float(s.mean()) < 0.98, f"{name} is silent or saturated: test is vacuous"
        assert torch.equal(spikes2[name], s), name
    torch.testing.assert_close(logits2, logits, rtol=1e-10, atol=1e-10)
    assert config["train"] == {"timesteps": T, "method": "rate_s"}
    assert config["data"]["std"] == [0.2, 0.25, 0.3]
    assert config["model"]["num_classes"] == 5


def test_config_rebuilds_the_imported_network_and_is_plain_data(tmp_path: Path) -> None:
    _, path = exported_file("resnet", tmp_path)
    imported, config = import_nir(path)
    assert sum(isinstance(m, Add) for m in imported.layers.values()) == 2  # residual fan-in
    buffer = io.BytesIO()
    torch.save(config, buffer)
    buffer.seek(0)
    config = torch.load(buffer, weights_only=True)  # no numpy or custom objects inside
    rebuilt = model_from_config(config)
    rebuilt.load_state_dict(imported.state_dict())
    x = sample("resnet").float()
    torch.testing.assert_close(infer(rebuilt.eval(), x, T), infer(imported, x, T), rtol=0, atol=0)


def snntorch_style_graph(dt: float) -> nir.NIRGraph:
    """Input -> Affine -> LIF -> Affine, as snnTorch exports Leaky(beta, threshold)."""
    rng = np.random.default_rng(0)
    tau = dt / (1 - 0.9)  # beta = 0.9
    ones = np.ones(8)
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([5])),
               "fc.0": nir.Affine(weight=rng.normal(0, 1.5, (8, 5)), bias=rng.normal(0.3, 0.2, 8)),
               "lif.0": nir.LIF(tau=ones * tau, r=ones * tau / dt, v_leak=0 * ones,
                                v_threshold=0.8 * ones),
               "fc.1": nir.Affine(weight=rng.normal(0, 1, (3, 8)), bias=np.zeros(3)),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "fc.0"), ("fc.0", "lif.0"), ("lif.0", "fc.1"), ("fc.1", "output")])


def compare_with_reference(graph: nir.NIRGraph, dt: float, x: np.ndarray, steps: int) -> None:
    model, _ = import_nir(graph, dt=dt, dtype=torch.float64)
    logits, spikes = spikes_and_logits(model, torch.from_numpy(x), steps)
    ref_logits, ref_spikes = simulate(graph, x, steps, dt)
    assert len(ref_spikes) == len(spikes) > 0
    for (name, s), ref in zip(spikes.items(), ref_spikes.values()):
        assert 0.02 < float(s.mean()) < 0.98, f"{name} is silent or saturated: test is vacuous"
        np.testing.assert_array_equal(s.numpy(), ref, err_msg=name)
    np.testing.assert_allclose(logits.numpy(), ref_logits, rtol=1e-10, atol=1e-10)


def test_foreign_lif_graph_needs_dt_and_then_matches_nir_semantics() -> None:
    graph = snntorch_style_graph(dt=1e-4)
    with pytest.raises(ValueError, match="'lif.0'.*dt"):
        import_nir(graph)
    x = np.random.default_rng(1).uniform(0, 1, (6, 5))
    compare_with_reference(graph, 1e-4, x, steps=8)
    model, config = import_nir(graph, dt=1e-4)
    assert "lif_0" in model.layers and model.layers["lif_0"].config.lam == pytest.approx(0.9)
    assert config["train"] == {} and config["data"] == {}


def test_if_gain_moves_into_the_threshold_and_fan_in_is_summed() -> None:
    rng = np.random.default_rng(2)
    dt = 0.01
    nodes = {"in": nir.Input(np.array([4])),
             "a": nir.Affine(weight=rng.normal(0, 1, (6, 4)), bias=np.full(6, 0.2)),
             "b": nir.Linear(weight=rng.normal(0.5, 1, (6, 4))),
             "if": nir.IF(r=np.full(6, 30.0), v_threshold=np.full(6, 0.5)),  # gain r*dt = 0.3
             "readout": nir.Affine(weight=rng.normal(0, 1, (2, 6)), bias=np.zeros(2)),
             "out": nir.Output(np.array([2]))}
    edges = [("in", "a"), ("in", "b"), ("a", "if"), ("b", "if"), ("if", "readout"),
             ("readout", "out")]
    graph = nir.NIRGraph(nodes=nodes, edges=edges)
    model, _ = import_nir(graph, dt=dt)
    assert isinstance(model.layers["if_sum"], Add) and model.edges["if"] == ("if_sum",)
    assert model.layers["if"].config.theta == pytest.approx(0.5 / 0.3)
    compare_with_reference(graph, dt, rng.uniform(0, 1, (6, 4)), steps=10)


def tiny_graph(neuron: nir.NIRNode) -> nir.NIRGraph:
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([3])),
               "fc": nir.Affine(weight=np.eye(3), bias=np.zeros(3)),
               "odd": neuron,
               "out": nir.Output(np.array([3]))},
        edges=[("input", "fc"), ("fc", "odd"), ("odd", "out")],
        metadata={"dt": 1e-3})


@pytest.mark.parametrize("neuron, message", [
    (nir.CubaLI(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3)),
     r"'odd' \(CubaLI\)"),
    (nir.CubaLIF(tau_syn=np.ones(3), tau_mem=np.ones(3), r=np.ones(3), v_leak=np.zeros(3),
                 v_threshold=np.ones(3)), r"'odd' \(CubaLIF\).*tau_syn.*no synaptic memory"),
    (nir.Delay(delay=np.ones(3)), r"'odd' \(Delay\).*delays"),
    (nir.LIF(tau=np.ones(3), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3),
             v_reset=np.array([0.0, 0.1, 0.0])), r"'odd'.*v_reset"),
    (nir.LIF(tau=np.array([1.0, 2.0, 1.0]), r=np.ones(3), v_leak=np.zeros(3),
             v_threshold=np.ones(3)), r"'odd'.*tau differs"),
    (nir.LIF(tau=np.ones(3), r=np.ones(3), v_leak=np.ones(3), v_threshold=np.ones(3)),
     r"'odd'.*v_leak"),
    (nir.LIF(tau=np.full(3, 1e-4), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)),
     r"'odd'.*shorter than the time step"),
])
def test_unsupported_nodes_are_named(neuron: nir.NIRNode, message: str, tmp_path: Path) -> None:
    graph = tiny_graph(neuron)
    with pytest.raises(ValueError, match=message):
        import_nir(graph)
    path = tmp_path / "odd.nir"
    nir.write(path, graph)
    with pytest.raises(ValueError, match=message):
        import_nir(path)


def peer_style_conv_graph(dt: float) -> nir.NIRGraph:
    """How snnTorch and SpikingJelly write a conv net: pool sizes as scalars, a bias-free Linear
    readout, Flatten from dim 0 of the batch-less shape, neuron gain 1 (r = tau/dt)."""
    rng = np.random.default_rng(3)
    tau = dt / (1 - 0.8)
    ones = np.ones((3, 6, 6))
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 6, 6])),
               "0": nir.Conv2d(input_shape=None, weight=rng.normal(0, 1.2, (3, 1, 3, 3)),
                               stride=1, padding=1, dilation=1, groups=1,
                               bias=rng.normal(0.4, 0.1, 3)),
               "1": nir.LIF(tau=tau * ones, r=tau / dt * ones, v_leak=0 * ones,
                            v_threshold=0.6 * ones, v_reset=0 * ones),
               "2": nir.AvgPool2d(kernel_size=2, stride=2, padding=0),
               "3": nir.Flatten(input_type=None, start_dim=0, end_dim=-1),
               "4": nir.Linear(weight=rng.normal(0, 1, (4, 27))),
               "output": nir.Output(np.array([4]))},
        edges=[("input", "0"), ("0", "1"), ("1", "2"), ("2", "3"), ("3", "4"), ("4", "output")])


def test_scalar_pool_sizes_and_bias_free_linear_import(tmp_path: Path) -> None:
    """snnTorch writes AvgPool2d sizes as scalars: that crashed in graph_spec._pair."""
    nir.write(tmp_path / "peer.nir", peer_style_conv_graph(dt=1e-4))
    graph = read_nir(tmp_path / "peer.nir")  # as read back from a file (type checks on)
    assert np.ndim(graph.nodes["2"].kernel_size) == 0
    x = np.random.default_rng(4).uniform(0, 1, (5, 1, 6, 6))
    compare_with_reference(graph, 1e-4, x, steps=6)
    model, _ = import_nir(graph, dt=1e-4)
    assert model.layers["2"].kernel_size == (2, 2) and model.layers["4"].bias is None


def cuba_graph(tau_syn: float, dt: float) -> nir.NIRGraph:
    """Affine -> CubaLIF -> Affine as snnTorch exports Synaptic(alpha, beta)."""
    rng = np.random.default_rng(5)
    ones = np.ones(8)
    tau_mem = dt / (1 - 0.7)
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([5])),
               "fc": nir.Affine(weight=rng.normal(0, 1.5, (8, 5)), bias=rng.normal(0.3, 0.2, 8)),
               "syn": nir.CubaLIF(tau_syn=tau_syn * ones, tau_mem=tau_mem * ones,
                                  r=tau_mem / dt * ones, v_leak=0 * ones, v_threshold=0.8 * ones,
                                  w_in=tau_syn / dt * ones),
               "readout": nir.Affine(weight=rng.normal(0, 1, (3, 8)), bias=np.zeros(3)),
               "output": nir.Output(np.array([3]))},
        edges=[("input", "fc"), ("fc", "syn"), ("syn", "readout"), ("readout", "output")])


def test_cuba_lif_with_a_one_step_synapse_is_our_lif() -> None:
    dt = 1e-4
    graph = cuba_graph(tau_syn=dt, dt=dt)  # snnTorch Synaptic(alpha=0): current lasts one step
    compare_with_reference(graph, dt, np.random.default_rng(6).uniform(0, 1, (6, 5)), steps=8)
    assert import_nir(graph, dt=dt)[0].layers["syn"].config.lam == pytest.approx(0.7)
    with pytest.raises(ValueError, match=r"'syn' \(CubaLIF\): tau_syn=0.0002 .* keeps 0.5"):
        import_nir(cuba_graph(tau_syn=2 * dt, dt=dt), dt=dt)  # alpha = 0.5: refused


def test_map_shaped_readout_gives_class_logits() -> None:
    """A Norse-style net ends in a Conv2d to (classes, 1, 1); logits must be (batch, classes)."""
    rng = np.random.default_rng(7)
    ones = np.ones((2, 4, 4))
    graph = nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 4, 4])),
               "c0": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 1, (2, 1, 3, 3)),
                                stride=1, padding=1, dilation=1, groups=1, bias=np.full(2, 0.5)),
               "lif": nir.LIF(tau=2e-3 * ones, r=ones, v_leak=0 * ones, v_threshold=0.2 * ones),
               "c1": nir.Conv2d(input_shape=(4, 4), weight=rng.normal(0, 1, (3, 2, 4, 4)),
                                stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(3)),
               "output": nir.Output(np.array([3, 1, 1]))},
        edges=[("input", "c0"), ("c0", "lif"), ("lif", "c1"), ("c1", "output")])
    model, config = import_nir(graph, dt=1e-3, timesteps=5)
    x = torch.rand(6, 1, 4, 4)
    assert infer(model, x, 5).shape == (6, 3)
    assert config["model"]["num_classes"] == 3 and config["train"]["timesteps"] == 5


def test_supported_leaky_neuron_with_metadata_dt_loads() -> None:
    model, _ = import_nir(tiny_graph(nir.LIF(tau=np.full(3, 4e-3), r=np.ones(3),
                                             v_leak=np.zeros(3), v_threshold=np.ones(3))))
    cfg = model.layers["odd"].config
    assert cfg.lam == pytest.approx(0.75) and cfg.theta == pytest.approx(1 / 0.25)
    assert (cfg.reset, cfg.comparison) == ("hard", "gt")


def test_unknown_node_type_in_a_file_is_named(tmp_path: Path) -> None:
    _, path = exported_file("mlp", tmp_path)
    with h5py.File(path, "r+") as f:
        del f["node/nodes/lif2/type"]
        f["node/nodes/lif2"].create_dataset("type", data="Spiky", dtype=h5py.string_dtype())
    with pytest.raises(ValueError, match=r"'lif2' has unknown type 'Spiky'"):
        read_nir(path)


def test_garbage_and_truncated_files_give_one_line_errors(tmp_path: Path, capsys) -> None:
    _, good = exported_file("vgg", tmp_path)
    data = good.read_bytes()
    truncated = tmp_path / "truncated.nir"
    truncated.write_bytes(data[: len(data) // 2])
    garbage = tmp_path / "garbage.nir"
    garbage.write_bytes(pickle.dumps({"not": "hdf5"}))
    for path in (truncated, garbage, tmp_path / "missing.nir"):
        with pytest.raises(ValueError, match=path.name):
            read_nir(path)
        assert main(["import", str(path), "-o", str(tmp_path / "x.pt")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err and path.name in err
    assert not (tmp_path / "x.pt").exists()


def test_cli_import_writes_a_checkpoint_that_rebuilds(tmp_path: Path, capsys) -> None:
    _, path = exported_file("vgg", tmp_path)
    out = tmp_path / "imported.pt"
    assert main(["import", str(path), "-o", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["output"] == str(out) and report["lif_layers"] == 3 and report["timesteps"] == T
    ckpt = load_checkpoint(out)
    assert ckpt["config"]["model"]["arch"] == "graph"
    model = model_from_checkpoint(ckpt)
    direct, _ = import_nir(path)
    x = sample("vgg").float()
    torch.testing.assert_close(infer(model, x, T), infer(direct, x, T), rtol=0, atol=0)
    # Default output is beside the graph, and an existing checkpoint there is not replaced.
    assert main(["import", str(path)]) == 0
    default = path.with_suffix(".pt")
    assert load_checkpoint(default)["source"] == str(path)
    capsys.readouterr()
    assert main(["import", str(path)]) == 2
    assert "exists" in capsys.readouterr().err
    # The imported checkpoint exports again (arch = "graph" through the usual CLI path).
    assert main(["export", str(out), "--to", "nir", "-o", str(tmp_path / "again.nir")]) == 0
    again = nir.read(tmp_path / "again.nir")
    assert again.metadata["timesteps"] == T
    np.testing.assert_allclose(again.metadata["normalize"]["mean"], [0.5, 0.4, 0.3])


def test_checkpoint_made_in_the_test_round_trips_through_both_commands(tmp_path: Path) -> None:
    model = zoo_model("mlp").float()
    config = {"model": ZOO["mlp"], "neuron": {"preset": "chip", "lam": 0.75}, "data": {},
              "train": {"timesteps": T, "method": "bptt"}}
    ckpt = tmp_path / "model.pt"
    save_atomic(make_checkpoint(model, config), ckpt)
    assert main(["export", str(ckpt), "--to", "nir"]) == 0
    assert main(["import", str(ckpt.with_suffix(".nir")), "-o", str(tmp_path / "back.pt")]) == 0
    back = model_from_checkpoint(load_checkpoint(tmp_path / "back.pt")).double()
    x = sample("mlp")
    logits, spikes = spikes_and_logits(model.double(), x)
    logits2, spikes2 = spikes_and_logits(back, x)
    assert all(torch.equal(spikes[n], spikes2[n]) for n in spikes)
    torch.testing.assert_close(logits2, logits, rtol=0, atol=1e-12)


def test_cli_import_records_timesteps_of_a_foreign_graph(tmp_path: Path, capsys) -> None:
    """It wrote T = None for graphs without metadata; now T comes from --timesteps or it stops."""
    path = tmp_path / "snntorch.nir"
    nir.write(path, snntorch_style_graph(dt=1e-4))
    out = tmp_path / "m.pt"
    assert main(["import", str(path), "--dt", "1e-4", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--timesteps" in err and not out.exists()
    assert main(["import", str(path), "--dt", "1e-4", "--timesteps", "6", "-o", str(out),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["timesteps"] == 6
    assert load_checkpoint(out)["config"]["train"]["timesteps"] == 6
