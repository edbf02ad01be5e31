"""NIR from anywhere on the Loihi 2 target: the chip network does not depend on how a file maps
the discrete neuron to NIR (dt, r, threshold scale), graphs without our metadata run given
--dt/--timesteps, and a map-shaped readout is compared sample by sample, never broadcast."""
from __future__ import annotations

import copy
import json

import nir
import numpy as np
import pytest
import scipy.sparse as sp

from hw_targets.loihi2 import examples as ex
from hw_targets.loihi2 import target
from hw_targets.loihi2.graph import lower
from hw_targets.loihi2.quantize import compile_network
from neuroratebp.cli import main
from neuroratebp.interchange import export_nir
from nir_models import T, zoo_model

LAM, THETA = 0.8, 1.0  # what examples.lif writes (r = tau/dt: gain 1)


def remapped(graph: nir.NIRGraph, dt: float, r: float) -> nir.NIRGraph:
    """The same discrete network written with another step and input resistance: tau = dt/(1-lam),
    v_threshold = theta * r dt/tau (so v/gain still fires at theta)."""
    out = copy.deepcopy(graph)
    out.metadata["dt"] = dt
    for node in out.nodes.values():
        if isinstance(node, nir.LIF):
            tau = dt / (1 - LAM)
            node.tau = np.full_like(node.tau, tau)
            node.r = np.full_like(node.r, r)
            node.v_threshold = np.full_like(node.v_threshold, THETA * r * dt / tau)
    return out


def dense(m) -> np.ndarray:
    return np.asarray(sp.csr_matrix(m).todense()) if sp.issparse(m) else np.asarray(m)


def assert_same_network(a, b) -> None:
    assert [p.name for p in a.populations] == [p.name for p in b.populations]
    for p, q in zip(a.populations, b.populations):
        assert p.lam == pytest.approx(q.lam, rel=1e-12) and p.theta == pytest.approx(q.theta, rel=1e-12)
        np.testing.assert_allclose(p.bias, q.bias, rtol=1e-12, atol=1e-15)
        for s, t in zip(p.synapses, q.synapses):
            assert (s.source, s.delay) == (t.source, t.delay)
            np.testing.assert_allclose(dense(s.weights), dense(t.weights), rtol=1e-12, atol=1e-15)


def assert_same_chip(a, b) -> None:
    for p, q in zip(a.populations, b.populations):
        assert (p.du, p.dv, p.vth, p.bias_exp, p.scale) == (q.du, q.dv, q.vth, q.bias_exp, q.scale)
        np.testing.assert_array_equal(p.bias_mant, q.bias_mant)
        for s, t in zip(p.synapses, q.synapses):
            assert s.weight_exp == t.weight_exp
            np.testing.assert_array_equal(dense(s.weights), dense(t.weights))


@pytest.mark.parametrize("kind", ["mlp", "conv", "residual"])
@pytest.mark.parametrize("dt, r", [(1e-4, 1.0), (1e-3, 1.0), (1e-3, 7.5), (0.02, 1.0)])
def test_any_mapping_of_the_same_neuron_lowers_to_the_same_chip_network(kind, dt, r):
    graph = {"mlp": ex.mlp_graph, "conv": ex.conv_graph, "residual": ex.residual_graph}[kind]()
    other = remapped(graph, dt, r)
    assert not np.allclose(other.nodes["lif0"].v_threshold, graph.nodes["lif0"].v_threshold)
    assert_same_network(lower(other), lower(graph))
    assert_same_chip(compile_network(lower(other), "fixed")[0],
                     compile_network(lower(graph), "fixed")[0])


def test_exports_at_any_dt_lower_alike():
    """Our export: 'unit-r' at dt = 1e-4 (default) and at 1e-3 give one chip network, whose
    weights are the trained ones (the (1 - lam) input gain went into the threshold)."""
    model = zoo_model("vgg")
    config = {"train": {"timesteps": T}}
    default, coarse = (lower(export_nir(model, config, dt=dt)) for dt in (1e-4, 1e-3))
    assert_same_network(default, coarse)
    assert_same_chip(compile_network(default, "fixed")[0], compile_network(coarse, "fixed")[0])
    lif1 = default.population("lif1")
    assert lif1.lam == pytest.approx(0.75) and lif1.theta == pytest.approx(1.0)
    bn = model.layers["bn1"]
    bn_scale = (bn.weight / (bn.running_var + bn.eps).sqrt()).detach().numpy()
    trained = model.layers["conv1"].weight.detach().numpy() * bn_scale[:, None, None, None]
    syn = lif1.synapses[0]
    np.testing.assert_allclose(syn.conv.kernel_of(syn.weights), trained, rtol=1e-12)


def conv_readout_graph(meta: bool) -> nir.NIRGraph:
    """Conv -> LIF -> Conv to (classes, 1, 1): how a Norse conv net ends (no Flatten, no Affine)."""
    rng = np.random.default_rng(0)
    ones = np.ones((4, 8, 8))
    dt = 1e-3
    return nir.NIRGraph(
        nodes={"input": nir.Input(np.array([1, 8, 8])),
               "c0": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 0.8, (4, 1, 3, 3)),
                                stride=1, padding=1, dilation=1, groups=1, bias=np.full(4, 0.3)),
               "lif": nir.LIF(tau=dt / 0.5 * ones, r=ones, v_leak=0 * ones,
                              v_threshold=0.2 * ones, v_reset=0 * ones),
               "c1": nir.Conv2d(input_shape=(8, 8), weight=rng.normal(0, 0.3, (10, 4, 8, 8)),
                                stride=1, padding=0, dilation=1, groups=1, bias=np.zeros(10)),
               "output": nir.Output(np.array([10, 1, 1]))},
        edges=[("input", "c0"), ("c0", "lif"), ("lif", "c1"), ("c1", "output")],
        metadata={"dt": dt, "timesteps": 5} if meta else {})


def test_map_shaped_readout_is_compared_sample_by_sample():
    """The reference gave (N, 10, 1, 1) logits; argmax over axis 1 broadcast against the chip's
    (N, 10) and 'agreement' came out as nonsense (e.g. 0.92) for an exact float chip."""
    graph = conv_readout_graph(meta=True)
    images = ex.random_images(graph, 40)
    labels = np.arange(40) % 10
    assert target.reference_logits(graph, images).shape == (40, 10)
    result = target.simulate(graph, images, labels, "emulator", "float")
    assert result["agreement_with_reference"] == 1.0 and result["max_logit_error"] < 1e-9
    assert result["accuracy"] == result["reference_accuracy"]
    assert 0.02 < result["spike_rates"]["lif"] < 0.98


def test_output_shape_mismatch_is_an_error(monkeypatch):
    graph = conv_readout_graph(meta=True)
    images = ex.random_images(graph, 8)
    monkeypatch.setattr(target, "reference_logits", lambda g, x: np.zeros((len(x), 10, 1, 1)))
    with pytest.raises(ValueError, match=r"differ in shape"):
        target.simulate(graph, images, None, "emulator", "float")
    monkeypatch.undo()
    with pytest.raises(ValueError, match="labels"):
        target.simulate(graph, images, np.zeros((8, 1)), "emulator", "float")


def test_check_and_simulate_take_dt_and_timesteps_for_a_foreign_graph(tmp_path, capsys):
    path = tmp_path / "foreign.nir"
    nir.write(str(path), conv_readout_graph(meta=False))
    assert main(["check", str(path)]) == 2  # no metadata: one line that names the options
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--dt" in err and "--timesteps" in err
    assert main(["check", str(path), "--dt", "1e-3", "--timesteps", "5", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["timesteps"] == 5 and report["fits"]
    # the digits set is 8x8: the network's input
    assert main(["simulate", str(path), "--dt", "1e-3", "-T", "5", "--data", "digits",
                 "--limit", "30", "--backend", "emulator", "--precision", "float", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["samples"] == 30 and result["timesteps"] == 5
    assert result["agreement_with_reference"] == 1.0
    # the options override metadata that is there
    meta = tmp_path / "meta.nir"
    nir.write(str(meta), conv_readout_graph(meta=True))
    assert main(["check", str(meta), "-T", "7", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["timesteps"] == 7
