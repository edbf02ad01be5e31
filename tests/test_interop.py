"""NIR across frameworks: our files run unmodified in snnTorch 1.0.0, Norse 1.1.0 and
SpikingJelly 2.0.0 (installed by `make setup`, the `interop` extra), and each one's own export of
a small MLP and conv net goes through our import -> check -> simulate and reproduces that
framework's outputs step by step. The 1,000-image accuracy figures: benchmarks/interop.py."""
from __future__ import annotations

import json
from pathlib import Path

import nir
import numpy as np
import pytest
import torch

from hw_targets.loihi2 import target
from hw_targets.loihi2.emulator import emulate_batches
from neuroratebp.checkpoint import load_checkpoint, model_from_checkpoint
from neuroratebp.cli import main
from neuroratebp.data import load_digits
from neuroratebp.interchange import export_nir, import_nir, write_nir
from neuroratebp.interchange.peers import KINDS, PEERS, peer_example, run_in_peer
from neuroratebp.neuron import neuron_config
from nir_models import T, readout_steps, sample, spikes_and_logits, zoo_model

CONFIG = {"train": {"timesteps": T, "method": "rate_m"}}


@pytest.mark.parametrize("kind", ["mlp", "vgg"])  # vgg: conv, AvgPool and SumPool, BN folded
@pytest.mark.parametrize("peer", PEERS)
def test_our_file_runs_unmodified_in_the_peer(peer: str, kind: str, tmp_path: Path) -> None:
    model = zoo_model(kind)
    path = tmp_path / "model.nir"
    write_nir(export_nir(model, CONFIG), path)
    graph = nir.read(path)
    x = sample(kind, batch=32, seed=3)
    ours = readout_steps(model, x)
    theirs = run_in_peer(peer, graph, x, T, float(graph.metadata["dt"]))
    assert theirs.shape == ours.shape
    # float32 in the peer, float64 here: the same spikes, so the outputs agree to rounding
    np.testing.assert_allclose(theirs.double().numpy(), ours.numpy(), atol=1e-5)
    assert torch.equal(theirs.mean(0).argmax(1), ours.mean(0).argmax(1))
    assert theirs.std(0).max() > 0.1  # the outputs change over the steps: the neurons do fire


@pytest.mark.parametrize("peer", PEERS)
def test_non_leaky_layers_run_in_norse_and_spikingjelly_not_snntorch(peer: str) -> None:
    """IF nodes (lam = 1) are written with r = 1/dt: SpikingJelly requires it, Norse adds the
    input whatever r is; snnTorch turns IF into Leaky(beta=0.9) and asserts r == 1."""
    model = zoo_model("vgg", neuron_config("chip", lam=1.0))
    graph = export_nir(model, CONFIG)
    x = sample("vgg", batch=16, seed=3)
    if peer == "snntorch":
        with pytest.raises(AssertionError, match="r != 1"):
            run_in_peer(peer, graph, x, T, float(graph.metadata["dt"]))
        return
    theirs = run_in_peer(peer, graph, x, T, float(graph.metadata["dt"]))
    np.testing.assert_allclose(theirs.double().numpy(), readout_steps(model, x).numpy(), atol=1e-5)


def digits(shape: list[int], n: int) -> tuple[torch.Tensor, np.ndarray]:
    test = load_digits().test.head(n)
    return test.images.reshape(n, *shape).float(), test.labels.numpy()


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("peer", PEERS)
def test_peer_export_goes_through_import_check_simulate(peer: str, kind: str, tmp_path: Path,
                                                        capsys) -> None:
    net = peer_example(peer, kind)
    (inp,) = (v for v in net.graph.nodes.values() if isinstance(v, nir.Input))
    n = 40
    x, labels = digits([int(d) for d in inp.input_type["input"]], n)
    outputs, spikes = net.run(x, T)
    assert all(0.02 < float(s.mean()) < 0.98 for s in spikes), "silent or saturated: vacuous"
    native_pred = outputs.mean(0).reshape(n, -1).argmax(1).numpy()
    time = ["--dt", repr(net.dt), "--timesteps", str(T)]

    path = tmp_path / f"{peer}.nir"
    if peer == "norse" and kind == "conv":
        # Norse's to_nir leaves Conv2d.input_shape None, which nir.write cannot store: the graph
        # exists in memory only, so it goes through the Python API instead of the commands.
        with pytest.raises(TypeError):
            nir.write(path, net.graph)
        model = import_nir(net.graph, dt=net.dt, timesteps=T, dtype=torch.float64)[0]
        graph = target.with_time(net.graph, net.dt, T)
        assert target.check(graph)["fits"]
        result = target.simulate(graph, x.double().numpy(), labels, "emulator", "float")
    else:
        nir.write(path, net.graph)
        ckpt = tmp_path / f"{peer}.pt"
        assert main(["import", str(path), "-o", str(ckpt), *time]) == 0
        model = model_from_checkpoint(load_checkpoint(ckpt)).double()
        assert main(["check", str(path), *time, "--json"]) == 0
        capsys.readouterr()
        assert main(["simulate", str(path), *time, "--data", "digits", "--limit", str(n),
                     "--backend", "emulator", "--precision", "float", "--json"]) == 0
        result = json.loads(capsys.readouterr().out)
        graph = target.with_time(nir.read(path), net.dt, T)
    # the imported network, step by step: every layer's spikes, the readout at every step
    _, ours = spikes_and_logits(model, x.double())
    assert len(ours) == len(spikes)
    for mine, theirs in zip(ours.values(), spikes):
        assert torch.equal(mine.reshape(theirs.shape).float(), theirs.float())
    np.testing.assert_allclose(readout_steps(model, x.double()).reshape(outputs.shape).numpy(),
                               outputs.double().numpy(), atol=1e-5)
    # the chip path (float emulator): same logits and predictions as the peer
    assert result["agreement_with_reference"] == 1.0
    assert result["accuracy"] == pytest.approx(float(np.mean(native_pred == labels)))
    _, chip, _ = target.compile_graph(graph, "float")
    np.testing.assert_allclose(emulate_batches(chip, x.double().numpy()).logits,
                               outputs.mean(0).reshape(n, -1).double().numpy(), atol=1e-5)
