"""Layers other than the neuron: rate-aware batch norm, sum pooling and residual addition.

Convolutions, linear layers, average pooling and flatten are plain torch modules: they are linear,
so the same call serves a multi-step ``(T*B, ...)`` batch, a single step ``(B, ...)`` and the rate
pass on time-averaged data.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .neuron import Phase, StepMode


class BatchNorm(nn.BatchNorm2d):
    """Batch norm over ``(N, C)`` or ``(N, C, H, W)`` that supports the rate pass.

    Spike stage (training): normalises with the batch statistics of the spike-stage input and
    records them -- over all T*B samples in multi-step mode, or per step in single-step mode
    (combined as mu = mean_t mu_t, var = 1 / mean_t 1/(var_t + eps)).
    Rate pass (training): the statistics take their *value* from the spike stage and their
    *gradient* from the batch statistics of the time-averaged input. For a perturbation of the
    input that is constant in time both statistics move alike, so this is the rate-coded
    Jacobian; in multi-step mode the output value equals the time mean of the spike stage's.
    Eval: running statistics, a fixed affine map (what export folds into the weights).
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__(num_features, eps=eps, momentum=momentum)
        self.phase: Phase = "bptt"
        self.step_mode: StepMode = "m"
        self.reset_state()

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"BatchNorm expects (N, C) or (N, C, H, W) input, got {x.dim()}-D")

    def reset_state(self) -> None:
        self._mu_sum: Tensor | None = None
        self._inv_var_sum: Tensor | None = None
        self._steps = 0

    def _stats(self, x: Tensor) -> tuple[Tensor, Tensor, float]:
        """Per-channel batch mean, biased variance and sample count (overridden across ranks).

        Two passes, each reducing the spatial dims before the batch dim: on CPU this is about
        ten times faster than ``torch.var_mean`` over ``(N, H, W)`` and as exact (the variance
        is of centred values, not E[x^2] - E[x]^2).
        """
        n = x.numel() // x.shape[1]
        mu = _channel_sum(x) / n
        shape = (1, -1) + (1,) * (x.dim() - 2)
        var = _channel_sum((x - mu.view(shape)).square()) / n
        return mu, var, float(n)

    def _track(self, mu: Tensor, var: Tensor, n: float) -> None:
        """Update the running (inference) statistics, as torch's batch norm does."""
        with torch.no_grad():
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
            self.running_mean.lerp_(mu, factor)
            self.running_var.lerp_(var * (n / max(n - 1.0, 1.0)), factor)

    def _normalize(self, x: Tensor, mu: Tensor, var: Tensor) -> Tensor:
        """Affine batch norm with given statistics, differentiable through them."""
        shape = (1, -1) + (1,) * (x.dim() - 2)
        xhat = (x - mu.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        return xhat * self.weight.view(shape) + self.bias.view(shape)

    def _batch_norm(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, float]:
        """``x`` normalised with its own batch statistics, and those statistics.

        Returns the output, the per-channel mean, 1 / (variance + eps) and the sample count.
        One fused torch call, the same kernel BPTT's forward uses, so both see equal values.
        """
        out, mu, inv_std = torch.native_batch_norm(x, self.weight, self.bias, None, None, True,
                                                   0.0, self.eps)
        return out, mu, inv_std.square(), float(x.numel() // x.shape[1])

    def _spike_forward(self, x: Tensor) -> Tensor:
        """Normalise with batch statistics computed once, recorded for the rate pass."""
        out, mu, inv, n = self._batch_norm(x)
        if self._mu_sum is None or self._inv_var_sum is None or self.step_mode == "m":
            self._mu_sum, self._inv_var_sum, self._steps = mu, inv, 1
        else:
            self._mu_sum = self._mu_sum + mu
            self._inv_var_sum = self._inv_var_sum + inv
            self._steps += 1
        self._track(mu, (1.0 / inv - self.eps).clamp_min_(0.0), n)
        return out

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.phase == "spike":
            return self._spike_forward(x)
        if self.training and self.phase == "rate":
            return self._rate_forward(x)
        return super().forward(x)

    def _rate_forward(self, c: Tensor) -> Tensor:
        if self._mu_sum is None or self._inv_var_sum is None:
            raise RuntimeError("BatchNorm rate pass before a spike stage")
        mu_spike = self._mu_sum / self._steps
        var_spike = self._steps / self._inv_var_sum - self.eps
        mu_rate, var_rate, _ = self._stats(c)
        mu = mu_spike + (mu_rate - mu_rate.detach())
        var = var_spike + (var_rate - var_rate.detach())
        return self._normalize(c, mu, var)


def _channel_sum(x: Tensor) -> Tensor:
    """Sum of ``(N, C)`` or ``(N, C, H, W)`` over everything but the channel dim."""
    return (x.sum((2, 3)) if x.dim() == 4 else x).sum(0)


class SumPool2d(nn.AvgPool2d):
    """Sum over each pooling window (NIR SumPool2d); a chip does this with unit weights."""

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0) -> None:
        super().__init__(kernel_size, stride=stride, padding=padding, divisor_override=1)


class Add(nn.Module):
    """Residual junction: the sum of its inputs (NIR expresses it as fan-in)."""

    def forward(self, *inputs: Tensor) -> Tensor:
        out = inputs[0]
        for x in inputs[1:]:
            out = out + x
        return out

