"""Layers other than the neuron: rate-aware batch norm, sum pooling and residual addition.

Convolutions, linear layers, average pooling and flatten are plain torch modules: they are linear,
so the same call serves a multi-step ``(T*B, ...)`` batch, a single step ``(B, ...)`` and the rate
pass on time-averaged data.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .neuron import LIF, Phase, StepMode


_SLAB = 1 << 20
"""Elements per slab of the variance's centred squares."""


class BatchNorm(nn.BatchNorm2d):
    """Batch norm over ``(N, C)`` or ``(N, C, H, W)`` that supports the rate pass.

    Spike stage (training): normalises with the batch statistics of the spike-stage input and
    records them -- over all T*B samples in multi-step mode, or per step in single-step mode
    (combined as mu = mean_t mu_t, var = 1 / mean_t 1/(var_t + eps)). A neuron that reads only
    this batch norm takes the normalisation as a per-channel scale and shift of its input
    (:meth:`spike_affine`), so the normalised (T*B, ...) tensor is never written.
    Rate pass (training): the statistics take their *value* from the spike stage and their
    *gradient* from the batch statistics of the time-averaged input. For a perturbation of the
    input that is constant in time both statistics move alike, so this is the rate-coded
    Jacobian; in multi-step mode the output value equals the time mean of the spike stage's.
    BPTT (training): the batch statistics of the input, value and gradient.
    Training phases all run one autograd node (:class:`_BatchNormFn`) with the same formula for
    the value as the spike stage, so BPTT's forward and the spike stage see equal currents.
    Eval: running statistics, a fixed affine map (what export folds into the weights).

    An input may stand for ``steps`` identical time steps (the layers before the first neuron
    see a static image at every step and run once): statistics are those of the repeated batch
    and the running statistics move as they would over the ``steps`` steps.
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

    # -- statistics over the batch (of every process that shares it, see distributed.py) -------
    def _reduce(self, sums: Tensor) -> Tensor:
        """Per-channel sums over all processes sharing the batch (here: this one)."""
        return sums

    def _count(self, x: Tensor) -> float:
        """Samples per channel over all processes sharing the batch."""
        return float(x.numel() // x.shape[1])

    def _stats(self, x: Tensor, steps: int) -> tuple[Tensor, Tensor]:
        """Per-channel batch mean and 1 / sqrt(var + eps) (biased variance); tracked.

        Two passes, each reducing the spatial dims before the batch dim: on CPU this is about
        ten times faster than ``torch.var_mean`` over ``(N, H, W)`` and as exact (the variance
        is of centred values, not E[x^2] - E[x]^2). ``steps``: see the class doc.
        """
        with torch.no_grad():
            n = self._count(x)
            mu = self._reduce(_channel_sum(x)) / n
            centred = mu.view(_channel_shape(x))
            # A slab of samples at a time: no temporary the size of x (the spike stage's peak).
            rows = max(1, _SLAB // max(x[0].numel(), 1))
            var = self._reduce(sum(_channel_sum((part - centred).square_())  # type: ignore[misc]
                                   for part in x.split(rows))) / n
            self._track(mu, var, n, steps)
            return mu, (var + self.eps).rsqrt_()

    def _track(self, mu: Tensor, var: Tensor, n: float, steps: int) -> None:
        """Update the running (inference) statistics as torch's batch norm does, over
        ``steps`` identical steps: one update over steps*n samples in multi-step mode, else
        ``steps`` updates."""
        if self.step_mode == "m":
            n, steps = n * steps, 1
        for _ in range(steps):
            self.num_batches_tracked.add_(1)
            factor = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                      else self.momentum)
            self.running_mean.lerp_(mu, factor)
            self.running_var.lerp_(var * (n / max(n - 1.0, 1.0)), factor)

    # -- phases ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, steps: int = 1) -> Tensor:
        """Batch norm of ``x``, which stands for ``steps`` identical time steps (class doc)."""
        if not self.training:
            return super().forward(x)
        if self.phase == "rate":
            return self.rate_forward(x)
        if self.phase == "spike":
            scale, shift = self.spike_affine(x, steps)
            return torch.addcmul(shift, x, scale)
        mu, istd = self._stats(x, steps)
        return _BatchNormFn.apply(x, self.weight, self.bias, self, mu, istd, True, None, None)

    def spike_affine(self, x: Tensor, steps: int = 1) -> tuple[Tensor, Tensor]:
        """Spike stage: record the batch statistics of ``x``; the normalisation as scale, shift.

        ``scale * x + shift`` (per channel, broadcastable to ``x``) is the batch norm's output,
        computed exactly as in BPTT's forward.
        """
        mu, istd = self._stats(x, steps)
        inv = istd.square()
        if self.step_mode == "m":  # the statistics of one (T*B, ...) batch
            self._mu_sum, self._inv_var_sum, self._steps = mu, inv, 1
        elif self._mu_sum is None or self._inv_var_sum is None:
            self._mu_sum, self._inv_var_sum, self._steps = mu * steps, inv * steps, steps
        else:
            self._mu_sum = self._mu_sum + mu * steps
            self._inv_var_sum = self._inv_var_sum + inv * steps
            self._steps += steps
        return _scale_shift(self.weight.detach(), self.bias.detach(), mu, istd, x)

    def rate_forward(self, c: Tensor, neuron: LIF | None = None) -> Tensor:
        """Rate pass of the batch norm, or, given the ``neuron`` that reads it, of both."""
        if self._mu_sum is None or self._inv_var_sum is None:
            raise RuntimeError("BatchNorm rate pass before a spike stage")
        rate, kappa = neuron.traces(c) if neuron is not None else (None, None)
        mu = self._mu_sum / self._steps
        istd = self._inv_var_sum.div(self._steps).sqrt_()  # 1 / sqrt(var + eps), combined
        return _BatchNormFn.apply(c, self.weight, self.bias, self, mu, istd, False, rate, kappa)


class _BatchNormFn(torch.autograd.Function):
    """Batch norm as one autograd node that keeps only its input (and the neuron's kappa).

    Value: the input normalised with given statistics (mu, istd = 1 / sqrt(var + eps)) --
    BPTT's own batch statistics (``own``) or the rate pass's spike-stage ones; fused with the
    neuron that reads it, the neuron's rate instead (the normalised current is then not even
    computed). Gradient, with g the output gradient (times kappa when fused), n the count and
    mu_b the input's batch mean, as if mean and variance were the input's batch statistics:

        dL/dc = w istd (g - sum g / n - istd^2 (c - mu_b) sum g (c - mu) / n)

    (BPTT: mu_b = mu, torch's batch-norm gradient; otherwise mu_b is computed in backward, so
    no more is kept than for BPTT). The sums span every process sharing the batch
    (``norm._reduce``), so the same node serves data-parallel training.
    """

    @staticmethod
    def forward(ctx, c: Tensor, weight: Tensor, bias: Tensor,  # type: ignore[override]
                norm: BatchNorm, mu: Tensor, istd: Tensor, own: bool, rate: Tensor | None,
                kappa: Tensor | None) -> Tensor:
        ctx.save_for_backward(c, weight, kappa, mu, istd)
        ctx.norm, ctx.own = norm, own
        if rate is not None:
            return rate
        scale, shift = _scale_shift(weight, bias, mu, istd, c)
        return torch.addcmul(shift, c, scale)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        c, weight, kappa, mu, istd = ctx.saved_tensors
        norm: BatchNorm = ctx.norm
        g = grad if kappa is None else grad * kappa
        # Per-channel sum g and sum g (c - mu) istd: the batch-norm backward kernel's sums.
        _, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            g, c, weight, None, None, mu, istd, True, norm.eps, [False, True, True])
        sums = [grad_bias, grad_weight] if ctx.own else [grad_bias, grad_weight, _channel_sum(c)]
        n = norm._count(c)
        sum_g, sum_g_xhat, *sum_c = norm._reduce(torch.stack(sums)).unbind(0)
        mu_batch = mu if ctx.own else sum_c[0] / n
        shape = _channel_shape(c)
        gain = weight * istd
        slope = gain * istd * sum_g_xhat / n
        offset = slope * mu_batch - gain * sum_g / n
        grad_c = torch.addcmul(offset.view(shape), c, slope.view(shape), value=-1.0)
        grad_c.addcmul_(g, gain.view(shape))
        return grad_c, grad_weight, grad_bias, None, None, None, None, None, None


def _scale_shift(weight: Tensor, bias: Tensor, mu: Tensor, istd: Tensor,
                 x: Tensor) -> tuple[Tensor, Tensor]:
    """Batch norm with statistics (mu, istd) as ``scale * x + shift``, shaped to broadcast."""
    scale = weight * istd
    shape = _channel_shape(x)
    return scale.view(shape), (bias - mu * scale).view(shape)


def _channel_shape(x: Tensor) -> tuple[int, ...]:
    """Shape that broadcasts a per-channel vector over ``(N, C)`` or ``(N, C, H, W)``."""
    return (1, -1) + (1,) * (x.dim() - 2)


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

