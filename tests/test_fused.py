"""The engine's fast paths equal the plain computations they replace.

* rate pass: batch norm + neuron as one autograd node vs the composition of differentiable ops
  (value from the spike-stage statistics, gradient from the rate-pass statistics, kappa trick);
* spike stage: batch norm folded into the neuron update vs normalising first;
* static input: the layers before the first neuron run once vs on the repeated sequence;
* BPTT: the window node that keeps only u_t vs autograd through single steps.
Every reset mode; multi-step and single-step; double precision, so differences are rounding.
"""
from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from neuroratebp.architectures import build_model
from neuroratebp.engine import forward_backward, run_steps
from neuroratebp.layers import Add, BatchNorm
from neuroratebp.network import INPUT, SNN, Node
from neuroratebp.neuron import LIF, NeuronConfig
from neuroratebp.profiling import saved_tensor_bytes

RESET_MODES = [
    NeuronConfig(lam=0.5, reset="soft", detach_reset=True, comparison="ge"),
    NeuronConfig(lam=0.5, reset="soft", detach_reset=False, comparison="ge"),
    NeuronConfig(lam=0.5, reset="hard", detach_reset=True, comparison="gt"),
    NeuronConfig(lam=0.5, reset="hard", detach_reset=False, comparison="gt"),
]
MODE_IDS = [f"{n.reset}-{'detach' if n.detach_reset else 'attached'}" for n in RESET_MODES]
NETS = {
    "vgg": dict(arch="vgg", input_shape=[2, 8, 8], features=[6, "A", 8], hidden=[12],
                batchnorm=True),
    "resnet": dict(arch="resnet", input_shape=[2, 8, 8], stem=6, widths=[6, 8], blocks=[1, 1]),
}
T = 5


def net(arch: str, neuron: NeuronConfig, seed: int = 0) -> tuple[SNN, Tensor, Tensor]:
    torch.manual_seed(seed)
    model = build_model(NETS[arch], neuron).double().train()
    for m in model.modules():  # batch norm away from its identity initialisation
        if isinstance(m, BatchNorm):
            nn.init.uniform_(m.weight, 0.5, 1.5)
            nn.init.uniform_(m.bias, -0.2, 0.4)
    x = 2.0 * torch.rand(6, *NETS[arch]["input_shape"], dtype=torch.float64)
    return model, x, torch.randint(0, 10, (6,))


def grads(model: SNN) -> dict[str, Tensor]:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def assert_grads_close(a: dict[str, Tensor], b: dict[str, Tensor], rtol: float = 1e-6) -> None:
    assert a.keys() == b.keys()
    for name in a:
        scale = max(float(b[name].abs().max()), 1e-3)
        assert float((a[name] - b[name]).abs().max()) <= rtol * scale, name


def record_spikes(model: SNN) -> dict[str, list[Tensor]]:
    """Every neuron's output at every call, recorded by forward hooks."""
    record: dict[str, list[Tensor]] = {}
    for name, m in model.layers.items():
        if isinstance(m, LIF):
            m.register_forward_hook(
                lambda mod, inp, out, name=name: record.setdefault(name, []).append(out.detach()))
    return record


def spike_stage(model: SNN, x: Tensor, mode: str, static: bool = True) -> None:
    model.set_phase("spike", mode, T)  # type: ignore[arg-type]
    with torch.no_grad():
        run_steps(model, x, static, mode, T)  # type: ignore[arg-type]


# -- rate pass: one node vs the composition of differentiable ops -------------------------------
def reference_rate_pass(model: SNN, x: Tensor) -> Tensor:
    """The rate pass as the plain autograd composition (what the fused node replaces)."""
    values = {INPUT: x}
    for node in model.nodes():
        inputs = [values[src] for src in node.inputs]
        m = node.module
        if isinstance(m, BatchNorm):
            (c,) = inputs
            shape = (1, -1) + (1,) * (c.dim() - 2)
            dims = [0, *range(2, c.dim())]
            mu_s = m._mu_sum / m._steps
            var_s = m._steps / m._inv_var_sum - m.eps
            mu_r = c.mean(dims)
            var_r = (c - mu_r.view(shape)).square().mean(dims)
            mu = mu_s + (mu_r - mu_r.detach())
            var = var_s + (var_r - var_r.detach())
            xhat = (c - mu.view(shape)) * torch.rsqrt(var.view(shape) + m.eps)
            values[node.name] = xhat * m.weight.view(shape) + m.bias.view(shape)
        elif isinstance(m, LIF):
            (c,) = inputs
            linear = m.kappa * c
            values[node.name] = m.rate + linear - linear.detach()
        else:
            values[node.name] = m(*inputs)
    return values[model.output]


@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
@pytest.mark.parametrize("arch", sorted(NETS))
@pytest.mark.parametrize("mode", ["m", "s"])
def test_fused_rate_pass_gradients_equal_the_composition(arch: str, neuron: NeuronConfig,
                                                         mode: str) -> None:
    model, x, y = net(arch, neuron)
    spike_stage(model, x, mode)
    model.set_phase("rate", mode, T)  # type: ignore[arg-type]
    F.cross_entropy(reference_rate_pass(model, x), y).backward()
    expected = grads(model)
    model.zero_grad()
    logits = model(x)
    F.cross_entropy(logits, y).backward()
    assert_grads_close(grads(model), expected)
    model.fuse_norms = False  # batch norm and neuron as two nodes: the same gradient
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    assert_grads_close(grads(model), expected)
    assert any(v.abs().max() > 0 for v in expected.values())


def test_rate_pass_keeps_no_more_than_bptt_at_one_step() -> None:
    """A defect before: the rate-pass batch norm, built from separate ops, kept two centred
    copies of its input, so rate_M held more for backward than BPTT at T = 1."""
    model, x, y = net("vgg", RESET_MODES[2])
    model.float()
    x = x.float()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    saved = {}
    for method, steps in (("bptt", 1), ("rate_m", 1), ("rate_m", 8), ("rate_s", 8)):
        model.load_state_dict(state)
        with saved_tensor_bytes() as counter:
            forward_backward(model, x, y, method, steps)
        saved[method, steps] = counter.total
    assert saved["rate_m", 1] <= saved["bptt", 1]
    assert saved["rate_m", 8] <= saved["bptt", 1]
    assert saved["rate_s", 8] <= saved["bptt", 1]


# -- spike stage: batch norm folded into the neuron vs normalising first -------------------------
@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
@pytest.mark.parametrize("mode", ["m", "s"])
def test_folded_batch_norm_gives_identical_spikes_rates_and_kappa(neuron: NeuronConfig,
                                                                  mode: str) -> None:
    runs = []
    for fuse in (True, False):
        model, x, _ = net("resnet", neuron)
        model.fuse_norms = fuse
        record = record_spikes(model)
        spike_stage(model, x, mode)
        lifs = {n: m for n, m in model.layers.items() if isinstance(m, LIF)}
        runs.append((record, {n: (m.rate, m.kappa) for n, m in lifs.items()},
                     {k: v.clone() for k, v in model.state_dict().items()}))
    (spikes_a, traces_a, state_a), (spikes_b, traces_b, state_b) = runs
    for name in spikes_a:
        assert all(torch.equal(a, b) for a, b in zip(spikes_a[name], spikes_b[name])), name
        assert torch.equal(traces_a[name][0], traces_b[name][0])
        torch.testing.assert_close(traces_a[name][1], traces_b[name][1], rtol=0, atol=1e-12)
    for key in state_a:  # running statistics moved alike
        torch.testing.assert_close(state_a[key], state_b[key], rtol=0, atol=1e-12)


# -- static input: run once vs run on the repeated sequence --------------------------------------
@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
@pytest.mark.parametrize("method", ["rate_m", "rate_s", "bptt", "bptt_s"])
def test_static_input_once_equals_the_repeated_sequence(neuron: NeuronConfig, method: str) -> None:
    model, x, y = net("vgg", neuron)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    record = record_spikes(model)
    once = forward_backward(model, x, y, method, T)
    g_once, s_once, stats_once = grads(model), dict(record), model.state_dict()
    stats_once = {k: v.clone() for k, v in stats_once.items()}
    model.load_state_dict(state)
    model.zero_grad()
    record.clear()
    repeated = forward_backward(model, x.unsqueeze(0).expand(T, *x.shape), y, method, T)
    torch.testing.assert_close(once.logits, repeated.logits, rtol=0, atol=1e-12)
    assert_grads_close(g_once, grads(model))
    for name in s_once:
        assert all(torch.equal(a, b) for a, b in zip(s_once[name], record[name])), name
    for key, value in model.state_dict().items():
        torch.testing.assert_close(stats_once[key], value, rtol=1e-12, atol=1e-12)


def test_static_value_meeting_a_spiking_one_is_repeated_over_the_steps() -> None:
    """A residual sum of a static branch (the input's synapse) and a spiking one: the static
    value is expanded to all T steps (multi-step) or reused at every step (single-step)."""
    torch.manual_seed(2)
    neuron = RESET_MODES[2]
    nodes = [Node("conv1", nn.Conv2d(2, 4, 3, padding=1), (INPUT,)),
             Node("lif1", LIF(neuron), ("conv1",)),
             Node("conv2", nn.Conv2d(2, 4, 1), (INPUT,)),
             Node("add", Add(), ("lif1", "conv2")),
             Node("lif2", LIF(neuron), ("add",)),
             Node("flatten", nn.Flatten(), ("lif2",)),
             Node("fc", nn.Linear(4 * 8 * 8, 10), ("flatten",))]
    model = SNN([2, 8, 8], nodes).double()
    x = 2.0 * torch.rand(6, 2, 8, 8, dtype=torch.float64)
    y = torch.randint(0, 10, (6,))
    for method in ("bptt", "bptt_s", "rate_m", "rate_s"):
        model.zero_grad()
        once = forward_backward(model, x, y, method, T)
        g_once = grads(model)
        model.zero_grad()
        repeated = forward_backward(model, x.unsqueeze(0).expand(T, *x.shape), y, method, T)
        torch.testing.assert_close(once.logits, repeated.logits, rtol=0, atol=1e-12)
        assert_grads_close(g_once, grads(model))
        assert float(once.logits.std()) > 0


# -- BPTT: the window node vs autograd through single steps ---------------------------------------
@pytest.mark.parametrize("neuron", RESET_MODES, ids=MODE_IDS)
@pytest.mark.parametrize("constant", [False, True], ids=["sequence", "constant"])
def test_bptt_window_equals_autograd_through_steps(neuron: NeuronConfig, constant: bool) -> None:
    torch.manual_seed(1)
    shape = (T, 40) if not constant else (40,)
    current = (2.5 * torch.rand(shape, dtype=torch.float64) - 0.5).requires_grad_(True)
    weight = torch.randn(T, 40, dtype=torch.float64)  # a loss that weighs every spike
    lif = LIF(neuron)
    lif.phase, lif.timesteps = "bptt", T
    window = lif(current if constant else current.flatten(), constant=constant).reshape(T, 40)
    (grad_window,) = torch.autograd.grad((window * weight).sum(), current)
    lif.step_mode = "s"
    lif.reset_state()
    steps = torch.stack([lif(current if constant else current[t]) for t in range(T)])
    (grad_steps,) = torch.autograd.grad((steps * weight).sum(), current)
    assert torch.equal(window, steps)
    assert grad_steps.abs().max() > 0.1
    torch.testing.assert_close(grad_window, grad_steps, rtol=1e-9, atol=1e-12)


def test_bptt_keeps_one_membrane_per_step() -> None:
    """A defect before: BPTT kept the surrogate's input and the reset mask at every step (two
    tensors a step), and each step's input slice zero-filled a whole (T, B, ...) gradient."""
    lif = LIF(NeuronConfig(reset="hard", comparison="gt"))
    lif.phase, lif.timesteps = "bptt", 8
    current = torch.rand(8 * 16, 100, requires_grad=True)
    with saved_tensor_bytes() as saved:
        lif(current).sum().backward()
    assert saved.total == current.numel() * current.element_size()
