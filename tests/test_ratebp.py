"""Fidelity of the rate-BP engine: the six tests of RATEBP.md section 8, for every reset mode."""
from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F

from neuroratebp.architectures import build_model
from neuroratebp.engine import forward_backward
from neuroratebp.network import SNN
from neuroratebp.neuron import LIF, NeuronConfig
from neuroratebp.profiling import saved_tensor_bytes

# Every reset behaviour the engine offers (threshold test as the chip or the paper uses it).
RESET_MODES = [
    NeuronConfig(reset="soft", detach_reset=True, comparison="ge"),
    NeuronConfig(reset="soft", detach_reset=False, comparison="ge"),
    NeuronConfig(reset="hard", detach_reset=True, comparison="gt"),
    NeuronConfig(reset="hard", detach_reset=False, comparison="gt"),
]
MODE_IDS = [f"{n.reset}-{'detach' if n.detach_reset else 'attached'}" for n in RESET_MODES]

SMALL_NETS = {
    "mlp": dict(arch="mlp", input_shape=[1, 8, 8], hidden=[32, 24], batchnorm=True),
    "vgg": dict(arch="vgg", input_shape=[3, 12, 12], features=[8, "A", 12, "S", 12], hidden=[16],
                batchnorm=True),
    "resnet": dict(arch="resnet", input_shape=[3, 12, 12], stem=8, widths=[8, 12], blocks=[1, 1]),
}
# A 3-conv-layer net at CIFAR shape for gradient alignment (as in RATEBP.md section 6).
CONV3 = dict(arch="vgg", input_shape=[3, 32, 32], features=[32, "A", 64, "A", 64], hidden=[],
             batchnorm=True)


def with_lam(neuron: NeuronConfig, lam: float) -> NeuronConfig:
    return NeuronConfig(**{**neuron.to_dict(), "lam": lam})


def gradients(model: SNN, x: torch.Tensor, y: torch.Tensor, method: str, T: int,
              state: dict) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    model.load_state_dict(state)
    model.zero_grad()
    model.train()
    result = forward_backward(model, x, y, method, T)
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return grads, result.loss, result.logits


def flat(grads: dict[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([g.flatten() for g in grads.values()])


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0))


def fixture_net(cfg: dict, neuron: NeuronConfig, batch: int, seed: int = 0):
    torch.manual_seed(seed)
    model = build_model(cfg, neuron)
    x = torch.rand(batch, *cfg["input_shape"])
    y = torch.randint(0, 10, (batch,))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    return model, x, y, state


# -- 1. trace identity ----------------------------------------------------------------------------
@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
@pytest.mark.parametrize("lam", [0.2, 0.5])
@pytest.mark.parametrize("T", [1, 4, 10])
def test_kappa_equals_autograd_rate_derivative(neuron: NeuronConfig, lam: float, T: int) -> None:
    lif = LIF(with_lam(neuron, lam))
    c = torch.linspace(-0.5, 3.0, 400, dtype=torch.float64)
    # BPTT: d(mean_t s_t)/dc for a constant current, per neuron (neurons are independent).
    c_grad = c.clone().requires_grad_(True)
    lif.phase, lif.step_mode, lif.timesteps = "bptt", "m", T
    rate = lif(c_grad.unsqueeze(0).expand(T, -1).reshape(-1)).reshape(T, -1).mean(0)
    (autograd_kappa,) = torch.autograd.grad(rate.sum(), c_grad)
    # Spike stage: kappa kept online.
    lif.phase = "spike"
    with torch.no_grad():
        lif(c.unsqueeze(0).expand(T, -1).reshape(-1))
    assert torch.allclose(lif.rate, rate.detach())
    assert autograd_kappa.abs().max() > 0.1  # the sweep crosses the threshold
    assert torch.allclose(lif.kappa, autograd_kappa, atol=1e-5, rtol=0)


# -- 2. T = 1 equals BPTT -------------------------------------------------------------------------
@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
@pytest.mark.parametrize("arch", sorted(SMALL_NETS))
def test_single_step_window_gradients_equal_bptt(arch: str, neuron: NeuronConfig) -> None:
    model, x, y, state = fixture_net(SMALL_NETS[arch], neuron, batch=8)
    for rate_method, bptt_method in (("rate_m", "bptt"), ("rate_s", "bptt_s")):
        g_rate, _, _ = gradients(model, x, y, rate_method, 1, state)
        g_bptt, _, _ = gradients(model, x, y, bptt_method, 1, state)
        assert g_rate.keys() == g_bptt.keys()
        a, b = flat(g_rate), flat(g_bptt)
        assert b.norm() > 0
        assert cosine(a, b) == pytest.approx(1.0, abs=1e-5)
        assert float(a.norm() / b.norm()) == pytest.approx(1.0, abs=1e-4)


# -- 3. forward values ----------------------------------------------------------------------------
@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
@pytest.mark.parametrize("arch", sorted(SMALL_NETS))
def test_rate_pass_logits_equal_spiking_forward(arch: str, neuron: NeuronConfig) -> None:
    model, x, y, state = fixture_net(SMALL_NETS[arch], neuron, batch=8)
    for rate_method, bptt_method in (("rate_m", "bptt"), ("rate_s", "bptt_s")):
        _, loss_rate, logits_rate = gradients(model, x, y, rate_method, 6, state)
        _, loss_bptt, logits_bptt = gradients(model, x, y, bptt_method, 6, state)
        assert torch.allclose(logits_rate, logits_bptt, atol=1e-5)
        assert float(loss_rate) == pytest.approx(float(loss_bptt), abs=1e-5)


def test_multi_and_single_step_agree_without_batch_norm() -> None:
    cfg = dict(SMALL_NETS["vgg"], batchnorm=False)
    model, x, y, state = fixture_net(cfg, RESET_MODES[2], batch=4)
    g_m, _, logits_m = gradients(model, x * 4, y, "bptt", 5, state)
    g_s, _, logits_s = gradients(model, x * 4, y, "bptt_s", 5, state)
    assert torch.allclose(logits_m, logits_s, atol=1e-5)
    assert cosine(flat(g_m), flat(g_s)) == pytest.approx(1.0, abs=1e-5)


# -- 4. alignment with BPTT -----------------------------------------------------------------------
@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
def test_gradient_alignment_with_bptt(neuron: NeuronConfig) -> None:
    model, x, y, state = fixture_net(CONV3, with_lam(neuron, 0.2), batch=32)
    head = ["layers.fc1.weight", "layers.fc1.bias"]
    for T in (2, 4, 8, 16):
        for rate_method, bptt_method in (("rate_m", "bptt"), ("rate_s", "bptt_s")):
            g_rate, _, _ = gradients(model, x, y, rate_method, T, state)
            g_bptt, _, _ = gradients(model, x, y, bptt_method, T, state)
            whole = cosine(flat(g_rate), flat(g_bptt))
            assert whole >= 0.99, f"{rate_method} T={T}: whole-gradient cosine {whole:.4f}"
            for name in head:
                assert cosine(g_rate[name], g_bptt[name]) == pytest.approx(1.0, abs=1e-5)


# -- 5. alignment falls as the decay grows ---------------------------------------------------------
@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
def test_alignment_decreases_with_lam(neuron: NeuronConfig) -> None:
    cosines = []
    for lam in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
        model, x, y, state = fixture_net(CONV3, with_lam(neuron, lam), batch=32)
        g_rate, _, _ = gradients(model, x, y, "rate_m", 4, state)
        g_bptt, _, _ = gradients(model, x, y, "bptt", 4, state)
        cosines.append(cosine(flat(g_rate), flat(g_bptt)))
    assert all(a > b for a, b in zip(cosines, cosines[1:])), cosines
    assert cosines[0] - cosines[-1] > 0.002, cosines  # a real fall, far above float noise


# -- 6. memory saved for backward ------------------------------------------------------------------
def saved_bytes(method: str, T: int, neuron: NeuronConfig) -> int:
    model, x, y, state = fixture_net(SMALL_NETS["resnet"], neuron, batch=8)
    model.load_state_dict(state)
    with saved_tensor_bytes() as saved:
        forward_backward(model, x, y, method, T)
    return saved.total


@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
@pytest.mark.parametrize("method", ["rate_m", "rate_s"])
def test_rate_bp_saved_memory_is_constant_in_T(method: str, neuron: NeuronConfig) -> None:
    sizes = {T: saved_bytes(method, T, neuron) for T in (1, 2, 4, 8, 16)}
    assert sizes[1] > 0
    for T, size in sizes.items():
        assert abs(size - sizes[1]) <= 0.05 * sizes[1], sizes


@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
@pytest.mark.parametrize("method", ["bptt", "bptt_s"])
def test_bptt_saved_memory_grows_linearly_in_T(method: str, neuron: NeuronConfig) -> None:
    sizes = {T: saved_bytes(method, T, neuron) for T in (1, 4, 8, 16)}
    step_4_8, step_8_16 = sizes[8] - sizes[4], sizes[16] - sizes[8]
    assert step_4_8 > 0
    assert step_8_16 == pytest.approx(2 * step_4_8, rel=0.05), sizes  # linear in T
    assert sizes[16] > 6 * sizes[1], sizes


def test_unknown_method_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown method"):
        forward_backward(build_model(SMALL_NETS["mlp"], RESET_MODES[0]), torch.rand(2, 1, 8, 8),
                         torch.tensor([0, 1]), "rate_x", 2)
