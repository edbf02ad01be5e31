"""The Lava learning graph against the emulator (fixed_pt bit for bit, floating_pt to float
precision) and torch, on tiny nets; Lava always stopped; no deadlocking connection."""
from __future__ import annotations

import multiprocessing
import signal

import numpy as np
import pytest

from hw_targets.loihi2.target import import_lava

import_lava()  # Lava before anything creates a multiprocessing lock

from hw_targets.loihi2 import examples as ex  # noqa: E402
from hw_targets.loihi2.learning import LearnOptions, make_plan  # noqa: E402
from hw_targets.loihi2.learning import lava_graph  # noqa: E402
from hw_targets.loihi2.learning.emulator import LearningEmulator  # noqa: E402
from hw_targets.loihi2.learning.session import run_plan  # noqa: E402
from learning_reference import cosine, sgd_updates  # noqa: E402

TIMEOUT = 240


class LavaHung(BaseException):
    """Not an Exception: Lava's runtime loops catch those and keep waiting."""


@pytest.fixture(autouse=True)
def lava_timeout():
    """A hung Lava run fails the test instead of the suite (SIGALRM interrupts blocking waits)."""
    def fail(*_):
        raise LavaHung(f"Lava run exceeded {TIMEOUT} s")
    old = signal.signal(signal.SIGALRM, fail)
    signal.alarm(TIMEOUT)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _setup(graph, precision, layers, n, lr=0.5, **options):
    x = ex.random_images(graph, n)
    labels = np.arange(n) % 4
    plan = make_plan(graph, precision, LearnOptions(layers=layers, lr=dict.fromkeys(layers, lr),
                                                    **options), (x, labels))
    learn = np.ones(n, bool)
    learn[[0, 1, n // 2, n - 1]] = False  # held-out windows in between
    return plan, x, labels, learn


def _assert_same(lava, emu, exact: bool):
    check = np.testing.assert_array_equal if exact else \
        (lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9))
    check(lava.logits, emu.logits)
    check(lava.errors, emu.errors)
    for group in ("activity", "factors", "weights", "feedback"):
        got, want = getattr(lava, group), getattr(emu, group)
        assert got.keys() == want.keys()
        for key in want:
            check(got[key], want[key])
    for key in emu.neuron_counts or {}:
        check(lava.neuron_counts[key], emu.neuron_counts[key])


MLP = dict(sizes=(16, 24, 20, 10), timesteps=4, gain=3.0)


@pytest.mark.parametrize("graph_fn, layers, n, options", [
    (lambda: ex.mlp_graph(**MLP), ("fc1", "fc2"), 50, {}),
    (lambda: ex.mlp_graph(**MLP), ("fc1", "fc2"), 12, {"feedback": "resync", "resync_every": 3}),
    (ex.pool_dense_graph, ("fc1", "fc2"), 30, {"kappa": "triangle", "rounding": "nearest"}),
    (lambda: ex.mlp_graph(**MLP), ("fc2",), 20, {})],
    ids=["mlp_learned_feedback_50", "mlp_resync", "pooled_relay_triangle", "output_only"])
def test_emulator_is_bit_exact_to_lava_fixed(graph_fn, layers, n, options):
    """Weights after every window, logits, errors, spike counts per neuron, third factors:
    identical, Lava's stochastic rounding streams included."""
    plan, x, labels, learn = _setup(graph_fn(), "fixed", layers, n, **options)
    emu = LearningEmulator(plan, record_neurons=True).run(x, labels, learn)
    lava, _ = run_plan(plan, x, labels, learn, "lava", record_neurons=True)
    _assert_same(lava, emu, exact=True)
    for name in layers:  # the run learned something
        assert np.any(emu.weights[name] != plan.layer(name).weights)


def test_lava_float_equals_emulator_and_torch():
    graph = ex.mlp_graph(**MLP)
    plan, x, labels, learn = _setup(graph, "float", ("fc1", "fc2"), 6, lr=0.05)
    learn[:] = True
    emu = LearningEmulator(plan, record_neurons=True).run(x, labels, learn)
    lava, _ = run_plan(plan, x, labels, learn, "lava", record_neurons=True)
    _assert_same(lava, emu, exact=False)
    one, _ = run_plan(plan, x[:1], labels[:1], learn[:1], "lava")
    ref = sgd_updates(graph, x[:1], labels[:1], {"fc1": 0.05, "fc2": 0.05}, plan.timesteps)[0]
    for name in ("fc1", "fc2"):
        layer = plan.layer(name)
        got = (one.weights[name] - layer.weights) / layer.row_scale[:, None]
        assert cosine(got, ref[name]) > 0.9999


@pytest.mark.parametrize("precision", ["fixed", "float"])
def test_fast_learning_models_equal_lavas_own(precision, monkeypatch):
    """FastLearningDense* only compute faster: Lava's stock LearningDense models give the same."""
    plan, x, labels, learn = _setup(ex.mlp_graph(**MLP), precision, ("fc1", "fc2"), 10)
    fast, _ = run_plan(plan, x, labels, learn, "lava")
    from lava.proc.dense.models import PyLearningDenseModelBitApproximate, PyLearningDenseModelFloat
    stock = PyLearningDenseModelBitApproximate if precision == "fixed" else PyLearningDenseModelFloat
    monkeypatch.setattr(lava_graph, "LEARNING_MODELS",
                        {**lava_graph.LEARNING_MODELS, precision: stock})
    slow, _ = run_plan(plan, x, labels, learn, "lava")
    _assert_same(slow, fast, exact=precision == "fixed")


def test_graph_never_connects_a_back_propagating_action_potential():
    """LearningLIF.s_out_bap -> LearningDense.s_in_bap deadlocks Lava 0.10 (ONCHIP pitfall 14):
    the learning graph leaves every s_in_bap unconnected."""
    plan, x, labels, learn = _setup(ex.pool_dense_graph(), "fixed", ("fc1", "fc2"), 4)
    graph = lava_graph.LavaLearningGraph(plan, plan.chip.encode(x), labels, learn)
    dense = [*graph.learning.values(), *graph.feedback.values()]
    assert dense and all(not getattr(p, "s_in_bap", None) or not p.s_in_bap.in_connections
                         for p in dense)


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt])
def test_lava_is_stopped_on_error_and_interrupt(error):
    plan, x, labels, learn = _setup(ex.mlp_graph(**MLP), "fixed", ("fc2",), 4)
    graph = lava_graph.LavaLearningGraph(plan, plan.chip.encode(x), labels, learn)
    with pytest.raises(error):
        with graph:
            graph.run(1)
            assert multiprocessing.active_children()
            raise error("stop")
    assert not multiprocessing.active_children()
