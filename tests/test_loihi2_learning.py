"""On-chip rate-BP learning without Lava: the emulator against torch rate-BP, the plan's rate
conversion and refusals, the learning engine's arithmetic, the CLI."""
from __future__ import annotations

import json

import nir
import numpy as np
import pytest

from hw_targets.loihi2 import examples as ex
from hw_targets.loihi2.learning import LearnOptions, make_plan
from hw_targets.loihi2.learning.emulator import LearningEmulator
from hw_targets.loihi2.learning.engine import LearningSynapse, Stream, decay, weight_steps
from hw_targets.loihi2.learning.plan import PRODUCT_SHIFT, choose_rate
from hw_targets.loihi2.learning.session import schedule
from cli_run import run_cli
from learning_reference import cosine, sgd_sequence, sgd_updates

MLP = dict(sizes=(16, 24, 20, 10), timesteps=4, gain=3.0)


def mlp():
    return ex.mlp_graph(**MLP)


def _plan(graph, precision, layers, lr=0.05, n=16, **options):
    x = ex.random_images(graph, n)
    labels = np.arange(n) % 4
    rates = {name: lr for name in layers}
    plan = make_plan(graph, precision, LearnOptions(layers=tuple(layers), lr=rates, **options),
                     (x, labels))
    return plan, x, labels, rates


def _delta_nir(plan, run, name):
    layer = plan.layer(name)
    return (run.weights[name] - layer.weights) * layer.lsb / layer.row_scale[:, None]


@pytest.mark.parametrize("graph_fn, layers", [(mlp, ("fc1", "fc2")),
                                              (ex.pool_dense_graph, ("fc1", "fc2"))],
                         ids=["mlp_hidden_and_output", "pooled_dense_tied"])
def test_float_update_is_the_torch_rate_bp_step(graph_fn, layers):
    """One learning window from the same start = one rate-BP SGD step (float engine); the
    pooled dense layer learns its tied NIR weight through the relay."""
    graph = graph_fn()
    plan, x, labels, lr = _plan(graph, "float", layers)
    ref = sgd_updates(graph, x[:6], labels[:6], lr, plan.timesteps)
    emu = LearningEmulator(plan)
    for i in range(6):
        run = emu.run(x[i:i + 1], labels[i:i + 1], np.ones(1, bool))
        for name in layers:
            got, want = _delta_nir(plan, run, name), ref[i][name]
            assert cosine(got, want) > 0.9999
            assert np.linalg.norm(got) / np.linalg.norm(want) == pytest.approx(1, abs=1e-9)


def test_float_sequence_equals_sequential_sgd():
    """20 learning windows in a row = 20 SGD steps of batch 1, to float rounding; the learned
    feedback stays W_out^T. Float traces must not decay: at tau = 2^24 a silent input's factor
    x1 - 1 and the feedback's x1 - 64 were off by W/2^24 and 64 W/2^24 every window, so the
    feedback drifted linearly (1e-6 per window here) and fc1 differed from torch by 1e-6 of its
    change here, 1e-3 on the zoo head."""
    graph = mlp()
    plan, x, labels, lr = _plan(graph, "float", ("fc1", "fc2"), lr=0.05, n=20)
    run = LearningEmulator(plan).run(x, labels, np.ones(20, bool))
    ref = sgd_sequence(graph, x, labels, lr, plan.timesteps)
    for name in ("fc1", "fc2"):
        layer = plan.layer(name)
        start = layer.weights / layer.row_scale[:, None]
        got = run.weights[name] / layer.row_scale[:, None]
        change = np.abs(ref[name] - start).max()
        assert change > 0.05
        assert np.abs(got - ref[name]).max() < 1e-9 * change
    hidden = plan.hidden[0]
    assert hidden.learned
    w_out = run.weights["fc2"]
    drift = np.abs(run.feedback[hidden.name] - w_out.T).max()
    assert drift < 1e-12 * np.abs(w_out - plan.layer("fc2").weights).max()


def test_fixed_updates_agree_in_expectation():
    """Fixed point at ~1 LSB per update: single updates align with SGD, their mean over windows
    at different positions of the rounding stream aligns better."""
    graph = mlp()
    plan, x, labels, lr = _plan(graph, "fixed", ("fc2",), lr=0.5)
    ref = sgd_updates(graph, x[:1], labels[:1], lr, plan.timesteps)[0]["fc2"]
    emu = LearningEmulator(plan)
    deltas = []
    for repeat in range(16):  # the same sample from the same start, one window later each time
        learn = np.r_[np.zeros(repeat, bool), True]
        run = emu.run(np.repeat(x[:1], repeat + 1, 0), np.repeat(labels[:1], repeat + 1), learn)
        deltas.append(_delta_nir(plan, run, "fc2"))
    single = np.mean([cosine(d, ref) for d in deltas])
    mean = cosine(np.mean(deltas, axis=0), ref)
    assert single > 0.8 and mean > 0.97 and mean >= single


def test_rate_conversion_gives_the_sgd_rate():
    graph = mlp()
    plan, *_ = _plan(graph, "fixed", ("fc1", "fc2"), lr=0.05)
    for layer in plan.layers:
        rate = layer.constant * layer.impulse * layer.gain * plan.timesteps * layer.lsb \
            / (2 ** PRODUCT_SHIFT * layer.row_scale ** 2)
        np.testing.assert_allclose(rate, 0.05)
        assert 1 <= layer.impulse <= layer.max_impulse
        assert layer.impulse * layer.max_count + 1 <= 127  # the pre trace cannot saturate


def test_choose_rate_prefers_the_calibrated_gain_and_reports_the_floor():
    m, e, k = choose_rate(rate=50.0, calibrated=100.0, max_impulse=10)
    assert 50.0 / (m * 2.0 ** e * k) <= 100.0
    assert 50.0 / (m * 2.0 ** e * k) > 70.0  # near the calibrated gain, not far below
    assert choose_rate(rate=0.01, calibrated=100.0, max_impulse=10) == (1, -7, 1)  # the floor


def test_engine_random_streams_and_decay():
    s = Stream(5)
    rng = np.random.default_rng(5)
    assert [s[i] for i in range(5000)] == [rng.random(1)[0] for _ in range(5000)]
    # fixed decay: the random number decides; unchanged values stop the loop early
    assert decay(np.array([127, 3]), 12, 0.0).tolist() == [127, 3]
    assert decay(np.array([127]), 12, 1 - 1e-7).tolist() == [115]  # x/tau > 1 - r: -1 per step
    assert decay(np.array([1.0, 64.0, 127.0]), 63, None).tolist() == [1.0, 64.0, 127.0]  # float: none
    # dw = -1 * 2^-7 * q: ((-q) >> 3) << 0 in 1/128 of a weight step, then rounding at the
    # step with one random number (0.5 here)
    changes = weight_steps(np.array([640, -640, 512, 64, -7, 7, 0]), -1, -7, 0.5)
    # -80/128 = -0.625: floor -1, fraction 0.375 < 0.5 stays; +80/128: floor 0, fraction 0.625
    # rounds up; exactly -0.5: the fraction must exceed the random number; -8/128 rounds up to
    # 0; products below 8 truncate ((-7) >> 3 = -1, rounds up to 0); 0 changes nothing
    assert changes.tolist() == [-1, 1, -1, 0, 0, 0, 0]
    assert weight_steps(np.array([0]), -1, -7, 0.0).tolist() == [0]  # even with random 0


@pytest.mark.parametrize("layer, reason", [("conv0", "convolution"), ("fc0", "graded input")],
                         ids=["conv", "input"])
def test_layers_that_cannot_learn_say_why(layer, reason):
    graph = ex.pool_dense_graph() if layer == "conv0" else mlp()
    with pytest.raises(ValueError, match=reason):
        _plan(graph, "fixed", (layer,))


def test_unknown_layer_is_named():
    with pytest.raises(ValueError, match="no weighted NIR layer named 'fc9'"):
        _plan(mlp(), "fixed", ("fc9",))


def test_held_out_windows_do_not_change_weights_and_are_batched_alike():
    """Learn flag off: no weight changes; a held-out window gives the same logits whether it
    runs alone or in a batch."""
    graph = mlp()
    plan, x, labels, _ = _plan(graph, "fixed", ("fc1", "fc2"), lr=0.5)
    emu = LearningEmulator(plan)
    flags = schedule(4, 6)
    run = emu.run(np.concatenate([x[:6], x[6:10], x[:6]]), np.concatenate([labels[:6], labels[6:10], labels[:6]]),
                  flags)
    alone = emu.run(x[:1], labels[:1], np.zeros(1, bool))
    np.testing.assert_array_equal(alone.logits[0], run.logits[0])
    np.testing.assert_array_equal(alone.weights["fc1"], plan.layer("fc1").weights)
    assert not np.array_equal(run.weights["fc1"], plan.layer("fc1").weights)
    assert np.all(run.errors[:6] == 0) and np.any(run.errors[6:10] != 0)


def test_inputs_summed_ahead_equal_fresh_sums(monkeypatch):
    """Fixed point: the learning windows' static inputs summed AHEAD at a time and corrected by
    the updates made since give the run that sums every window afresh, bit for bit (also across
    learning runs cut by held-out windows)."""
    graph = mlp()
    plan, x, labels, _ = _plan(graph, "fixed", ("fc1", "fc2"), lr=0.5, n=40)
    flags = np.ones(40, bool)
    flags[[0, 11, 12, 25]] = False
    runs, prefetched = [], []
    prefetch = LearningSynapse.prefetch
    monkeypatch.setattr(LearningSynapse, "prefetch",
                        lambda self, pre, windows: (prefetched.append(list(windows)), prefetch(self, pre, windows)))
    for exact in (True, False):
        with monkeypatch.context() as m:
            m.setattr(LearningSynapse, "exact_sums", property(lambda self, e=exact: e and self.fixed))
            runs.append(LearningEmulator(plan).run(x, labels, flags))
    ahead, fresh = runs
    assert prefetched[:3] == [[1, 2, 3, 4, 5, 6, 7, 8], [9, 10], [13, 14, 15, 16, 17, 18, 19, 20]]
    for name in ahead.weights:
        np.testing.assert_array_equal(ahead.weights[name], fresh.weights[name])
        assert not np.array_equal(ahead.weights[name], plan.layer(name).weights)
    np.testing.assert_array_equal(ahead.logits, fresh.logits)
    np.testing.assert_array_equal(ahead.errors, fresh.errors)
    syn = LearningSynapse(plan.layer("fc1").weights, 1, -7, 1, True, 0)
    syn.prefetch(np.ones((2, 4, syn.matrix_t.shape[0]), np.int16), [3, 4])
    with pytest.raises(RuntimeError, match="window 5 asked for, 3 prefetched next"):
        syn.forward_next(np.ones((1, 4, syn.matrix_t.shape[0]), np.int16), 5)


def test_feasibility_flags_an_epoch_longer_than_63_steps():
    graph = ex.mlp_graph(**{**MLP, "timesteps": 62})
    plan, *_ = _plan(graph, "fixed", ("fc2",), n=4)
    from hw_targets.loihi2.learning import feasibility
    window = next(i for i in feasibility(plan) if i["item"].startswith("learning epoch"))
    assert window["value"] == 62 + 3 + 1 and window["ok"] is False


def test_check_cli_reports_learning(tmp_path):
    path = tmp_path / "net.nir"
    nir.write(str(path), ex.pool_dense_graph())
    rc, out = run_cli("check", str(path), "--learn", "fc1,fc2", "--json")
    report = json.loads(out)
    items = {i["item"]: i for i in report["learning"]["feasibility"]}
    assert items["conv0: cannot learn"]["ok"] is False
    assert "relay" in " ".join(items)
    assert report["learning"]["window"] == 1 + 1 + 1 + 1 + 4 + 1  # conv, relay, fc1, fc2, T, +1


def test_learn_cli_writes_a_nir_that_deploys(tmp_path):
    """learn on digits (8x8) writes the learned weights as NIR; simulating that file gives the
    run's after-accuracy; export --to netx compiles it."""
    graph = ex.mlp_graph((64, 32, 24, 10), timesteps=4, gain=3.0)
    path, out = tmp_path / "net.nir", tmp_path / "learned.nir"
    nir.write(str(path), graph)
    rc, text = run_cli("learn", str(path), "--data", "digits", "--limit", "60", "--heldout", "80",
                       "--layers", "fc1,fc2", "--lr", "0.1", "-o", str(out), "--json")
    assert rc == 0
    report = json.loads(text.strip().splitlines()[-1])
    assert report["output"] == str(out) and report["learning_samples"] == 60
    assert set(report["layers"]) == {"fc1", "fc2"}
    learned = nir.read(str(out))
    assert not np.allclose(learned.nodes["fc1"].weight, graph.nodes["fc1"].weight)
    rc, text = run_cli("simulate", str(out), "--data", "digits", "--limit", "80", "--json")
    deployed = json.loads(text.strip().splitlines()[-1])
    assert abs(deployed["accuracy"] - report["accuracy_after"]) <= 0.05
    rc, text = run_cli("export", str(out), "--to", "netx", "-o", str(tmp_path / "l.net"), "--json")
    assert rc == 0 and (tmp_path / "l.net").is_file()


def test_learn_cli_rejects_bad_options(tmp_path, capsys):
    path = tmp_path / "net.nir"
    nir.write(str(path), mlp())
    from neuroratebp.cli import main
    assert main(["learn", str(path), "--layers", "fc0"]) == 2
    assert "cannot learn on the chip" in capsys.readouterr().err
    assert main(["learn", str(path), "--layers", "fc2", "--lr", "fc1=0.1"]) == 2
    assert "do not learn" in capsys.readouterr().err


def test_learn_cli_never_writes_over_its_input(tmp_path, capsys):
    """-o naming the model it reads is refused before anything runs; the model is unchanged."""
    path = tmp_path / "net.nir"
    nir.write(str(path), mlp())
    before = path.read_bytes()
    from neuroratebp.cli import main
    assert main(["learn", str(path), "--data", "digits", "--limit", "4", "-o", str(path)]) == 2
    assert "would destroy it" in capsys.readouterr().err
    assert path.read_bytes() == before
