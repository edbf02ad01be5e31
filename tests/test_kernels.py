"""Kernel selection: compiled where it works, eager otherwise; both compute the same."""
from __future__ import annotations

import pytest
import torch
from torch import Tensor

from neuroratebp import kernels
from neuroratebp.architectures import build_model
from neuroratebp.engine import forward_backward
from neuroratebp.kernels import Kernel
from neuroratebp.neuron import LIF, neuron_config


def double_plus_one(x: Tensor) -> Tensor:
    return x * 2 + 1


def no_compiler(*args, **kwargs):
    """What torch.compile gives on a machine without a working compiler: a failing call."""
    def call(*a, **k):
        raise RuntimeError("InductorError: no C++ compiler found\nmore detail")
    return call


def test_auto_mode_falls_back_to_eager_with_one_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURORATEBP_KERNELS", "auto")
    monkeypatch.setattr(torch, "compile", no_compiler)
    kernel = Kernel(double_plus_one)
    x = torch.ones(kernels.MIN_ELEMENTS)
    with pytest.warns(RuntimeWarning, match="torch.compile failed, running eagerly.*no C"):
        assert torch.equal(kernel(x.numel(), x), torch.full_like(x, 3.0))
    assert kernel.broken is not None
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert torch.equal(kernel(x.numel(), x), torch.full_like(x, 3.0))  # no second warning


def test_compiled_mode_surfaces_the_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURORATEBP_KERNELS", "compiled")
    monkeypatch.setattr(torch, "compile", no_compiler)
    with pytest.raises(RuntimeError, match="no C\\+\\+ compiler"):
        Kernel(double_plus_one)(1, torch.ones(1))


def test_small_tensors_and_eager_mode_never_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args, **kwargs):
        raise AssertionError("compiled")
    monkeypatch.setattr(torch, "compile", refuse)
    kernel = Kernel(double_plus_one)
    monkeypatch.setenv("NEURORATEBP_KERNELS", "auto")
    assert torch.equal(kernel(kernels.MIN_ELEMENTS - 1, torch.ones(2)), torch.full((2,), 3.0))
    monkeypatch.setenv("NEURORATEBP_KERNELS", "eager")
    assert torch.equal(kernel(10 * kernels.MIN_ELEMENTS, torch.ones(2)), torch.full((2,), 3.0))


def test_unknown_kernel_mode_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEURORATEBP_KERNELS", "fast")
    with pytest.raises(ValueError, match="NEURORATEBP_KERNELS='fast'"):
        Kernel(double_plus_one)(1, torch.ones(1))


@pytest.fixture(scope="module")
def compiler() -> None:
    """Skip where torch.compile cannot build kernels (no C++ compiler / Triton)."""
    try:
        torch.compile(double_plus_one, fullgraph=True)(torch.ones(4))
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"torch.compile cannot build kernels on this machine (no C++ compiler or "
                    f"Triton: {type(err).__name__}); the eager kernels are tested without it")


def run(monkeypatch: pytest.MonkeyPatch, mode: str, method: str, neuron_preset: str):
    monkeypatch.setenv("NEURORATEBP_KERNELS", mode)
    torch.manual_seed(0)
    model = build_model(dict(arch="vgg", input_shape=[1, 12, 12], features=[8, "A", 8],
                             hidden=[16], batchnorm=True), neuron_config(neuron_preset))
    x, y = 2.0 * torch.rand(8, 1, 12, 12), torch.randint(0, 10, (8,))
    spikes: list[Tensor] = []
    for m in model.modules():
        if isinstance(m, LIF):
            m.register_forward_hook(lambda mod, i, out: spikes.append(out.detach().clone()))
    result = forward_backward(model, x, y, method, 4)
    traces = [(m.rate, m.kappa if m._elig_sum is not None else None)
              for m in model.modules() if isinstance(m, LIF)]
    return result, spikes, traces, {n: p.grad for n, p in model.named_parameters()}


@pytest.mark.parametrize("method", ["rate_m", "bptt"])
def test_compiled_kernels_equal_eager(monkeypatch: pytest.MonkeyPatch, compiler: None,
                                      method: str) -> None:
    compare_kernels(monkeypatch, method, "chip")


@pytest.mark.slow
@pytest.mark.parametrize("preset", ["chip", "paper"])
@pytest.mark.parametrize("method", ["rate_s", "bptt_s", "rate_m", "bptt"])
def test_compiled_kernels_equal_eager_every_mode(monkeypatch: pytest.MonkeyPatch, compiler: None,
                                                 method: str, preset: str) -> None:
    compare_kernels(monkeypatch, method, preset)


def compare_kernels(monkeypatch: pytest.MonkeyPatch, method: str, preset: str) -> None:
    eager = run(monkeypatch, "eager", method, preset)
    fused = run(monkeypatch, "compiled", method, preset)
    assert len(eager[1]) == len(fused[1]) > 0
    assert all(torch.equal(a, b) for a, b in zip(eager[1], fused[1]))  # identical spikes
    for (rate_a, kappa_a), (rate_b, kappa_b) in zip(eager[2], fused[2]):
        assert torch.equal(rate_a, rate_b)
        if kappa_a is not None:
            torch.testing.assert_close(kappa_a, kappa_b, rtol=0, atol=1e-6)
    torch.testing.assert_close(eager[0].loss, fused[0].loss, rtol=0, atol=1e-6)
    for name, grad in eager[3].items():
        torch.testing.assert_close(grad, fused[3][name], rtol=1e-4, atol=1e-6)
