"""Discrete leaky integrate-and-fire neuron with the three behaviours rate-BP needs.

One step (t = 1..T)::

    u_t = lam * v_{t-1} + I_t          membrane before firing
    s_t = H(u_t - theta)                spike (>= or strict >)
    v_t = u_t * (1 - s_t)               hard reset to 0   (Loihi / Lava)
    v_t = u_t - theta * s_t             soft reset        (rate-BP paper)

The :class:`LIF` module runs in one of three phases, set by the engine (``neuroratebp.engine``):

``bptt``   spikes with a surrogate gradient, autograd through time (the baseline).
``spike``  graph-free: spikes plus the per-neuron rate ``r`` and eligibility ``kappa = d r / d c``
           kept online in O(1) memory per neuron, independent of T.
``rate``   one differentiable call on the time-averaged current ``c``: value ``r``,
           Jacobian ``diag(kappa)``.

and in one of two step modes: ``m`` (multi-step, input ``(T*B, ...)`` time-major) or ``s``
(single-step, called T times, state kept between calls).

The multi-step loops (spike stage with traces, BPTT forward and its reverse-time backward) are
written in place and run as :class:`~neuroratebp.kernels.Kernel` s: one fused pass per window
where ``torch.compile`` works, op by op otherwise.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .kernels import Kernel

Reset = Literal["hard", "soft"]
Comparison = Literal["ge", "gt"]
Phase = Literal["bptt", "spike", "rate"]
StepMode = Literal["m", "s"]

DECAY_BITS = 12
"""Loihi/Lava quantize the voltage decay to 12 bits: lam = 1 - dv / 4096."""


@dataclass(frozen=True)
class NeuronConfig:
    """Parameters of the discrete LIF neuron and of its surrogate gradient."""

    lam: float = 0.2
    theta: float = 1.0
    reset: Reset = "soft"
    comparison: Comparison = "ge"
    detach_reset: bool = True
    alpha: float = 4.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"neuron lam must lie in [0, 1], got {self.lam}")
        if self.theta <= 0:
            raise ValueError(f"neuron theta must be positive, got {self.theta}")
        if self.reset not in ("hard", "soft"):
            raise ValueError(f"neuron reset must be 'hard' or 'soft', got {self.reset!r}")
        if self.comparison not in ("ge", "gt"):
            raise ValueError(f"neuron comparison must be 'ge' or 'gt', got {self.comparison!r}")
        if self.alpha <= 0:
            raise ValueError(f"neuron alpha must be positive, got {self.alpha}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def snap_decay(lam: float, bits: int = DECAY_BITS) -> float:
    """Nearest decay on the chip's grid lam = 1 - k / 2**bits."""
    scale = 2 ** bits
    return 1.0 - round((1.0 - lam) * scale) / scale


PRESETS: dict[str, NeuronConfig] = {
    # The rate-BP paper's defaults (official code): reproduces its results.
    "paper": NeuronConfig(lam=0.2, theta=1.0, reset="soft", comparison="ge", detach_reset=True),
    # What Lava's LIF computes: reset to 0, spike when v > vth, 12-bit decay.
    "chip": NeuronConfig(lam=snap_decay(0.2), theta=1.0, reset="hard", comparison="gt",
                         detach_reset=True),
}


def neuron_config(preset: str = "chip", **overrides: Any) -> NeuronConfig:
    """A preset with overrides; the chip preset keeps lam on the 12-bit decay grid."""
    if preset not in PRESETS:
        raise ValueError(f"unknown neuron preset {preset!r}; choose from {sorted(PRESETS)}")
    cfg = replace(PRESETS[preset], **overrides)
    if preset == "chip":
        cfg = replace(cfg, lam=snap_decay(cfg.lam))
    return cfg


def surrogate_grad(x: Tensor, alpha: float) -> Tensor:
    """Derivative of sigmoid(alpha * x): peak alpha / 4 at x = 0 (the threshold)."""
    sig = torch.sigmoid(alpha * x)
    return alpha * sig * (1.0 - sig)


def heaviside(x: Tensor, comparison: Comparison) -> Tensor:
    return (x > 0).to(x.dtype) if comparison == "gt" else (x >= 0).to(x.dtype)


class SpikeFunction(torch.autograd.Function):
    """Heaviside step forward, sigmoid-derivative surrogate backward."""

    @staticmethod
    def forward(ctx, x: Tensor, alpha: float, comparison: str) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(x)
        ctx.alpha = alpha
        return heaviside(x, comparison)  # type: ignore[arg-type]

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (x,) = ctx.saved_tensors
        return grad * surrogate_grad(x, ctx.alpha), None, None


def _fire(u: Tensor, theta: float, strict: bool) -> Tensor:
    """Spikes of membrane ``u`` as 0/1 values of its dtype."""
    return (u > theta if strict else u >= theta).to(u.dtype)


# The kernels below mutate only their state arguments and intermediates (lean when eager) and
# return each step's output stacked, never writing into a view of an argument: under
# torch.compile such a write turns into a copy of the whole buffer at every step.

@Kernel
def _trace_window(xs: Tensor, constant: bool, steps: int, scale: Tensor | None,
                  shift: Tensor | None, v: Tensor, e: Tensor, elig: Tensor, count: Tensor,
                  lam: float, theta: float, alpha: float, hard: bool, detach: bool,
                  strict: bool) -> Tensor:
    """Spike stage: ``steps`` steps of the neuron and of its traces; returns the spikes.

    The current of step t is ``scale * x + shift`` (a batch norm folded in) or ``x``, with
    x = ``xs[t]``, or ``xs`` at every step when ``constant`` (static input). Advances in place
    the membrane ``v``, the sensitivity ``e`` = du_t/dc (e_1 = 1, e_{t+1} = 1 + lam rho_t e_t,
    rho_t = dv_t/du_t as the reset mode and detach setting define it), and the sums ``elig`` +=
    e_t g(u_t) (g = surrogate / alpha) and ``count`` += s_t. A window starts at v = 0, e = 1.
    """
    spikes = []
    for t in range(steps):
        x = xs if constant else xs[t]
        current = x if scale is None else torch.addcmul(shift, x, scale)
        u = torch.add(current, v, alpha=lam, out=v)  # the membrane lives in v's storage
        s = _fire(u, theta, strict)
        count.add_(s)
        sig = torch.sub(u, theta).mul_(alpha).sigmoid_()
        g = sig.addcmul_(sig, sig, value=-1.0)  # sig (1 - sig)
        elig.addcmul_(e, g)
        if hard:
            # Multiplying by the 0/1 mask of silent neurons, not masked_fill_: several times
            # faster on CPU, and the same values (u and e are finite).
            silent = torch.rsub(s, 1.0)
            e.mul_(silent if detach else torch.addcmul(silent, u, g, value=-alpha))
            u.mul_(silent)
        else:
            if not detach:
                e.mul_(g.mul_(-theta * alpha).add_(1.0))
            u.sub_(s, alpha=theta)
        e.mul_(lam).add_(1.0)
        spikes.append(s)
    return torch.stack(spikes)


@Kernel
def _lif_window(xs: Tensor, constant: bool, steps: int, v: Tensor, lam: float, theta: float,
                hard: bool, strict: bool, keep: bool) -> tuple[Tensor, Tensor | None]:
    """Plain LIF over ``steps`` steps (BPTT's forward, inference), advancing ``v`` in place.

    Inputs as :func:`_trace_window`. Returns the spikes and, if ``keep``, each step's membrane.
    """
    spikes, membranes = [], []
    for t in range(steps):
        x = xs if constant else xs[t]
        u = torch.add(x, v, alpha=lam) if keep else torch.add(x, v, alpha=lam, out=v)
        s = _fire(u, theta, strict)
        if hard:
            torch.mul(u, torch.rsub(s, 1.0), out=v)
        else:
            torch.sub(u, s, alpha=theta, out=v)
        spikes.append(s)
        membranes.append(u)
    return torch.stack(spikes), torch.stack(membranes) if keep else None


@Kernel
def _lif_window_backward(grad_spikes: Tensor, u_seq: Tensor, constant: bool, lam: float,
                         theta: float, alpha: float, hard: bool, detach: bool,
                         strict: bool) -> Tensor:
    """Reverse-time pass of :func:`_lif_window`: dL/dx_t (summed over t if ``constant``).

    dL/du_t = dL/ds_t g(u_t) + lam dL/du_{t+1} rho_t, with the surrogate g and the reset
    derivative rho_t recomputed from the kept membrane u_t.
    """
    grads: list[Tensor] = []
    total: Tensor | None = None
    carry: Tensor | None = None  # dL/dv_t = lam dL/du_{t+1}
    for t in range(u_seq.shape[0] - 1, -1, -1):
        u = u_seq[t]
        sig = torch.sub(u, theta).mul_(alpha).sigmoid_()
        du = torch.ops.aten.sigmoid_backward(grad_spikes[t], sig).mul_(alpha)
        if carry is not None:
            if hard:
                rho = (u <= theta if strict else u < theta).to(u.dtype)  # 1 - s_t
                if not detach:
                    rho.addcmul_(u, sig.addcmul_(sig, sig, value=-1.0), value=-alpha)
                du.addcmul_(carry, rho)
            elif detach:
                du.add_(carry)
            else:
                du.addcmul_(carry, sig.addcmul_(sig, sig, value=-1.0).mul_(-theta * alpha)
                            .add_(1.0))
        if constant:
            total = du if total is None else total + du
        else:
            grads.append(du)
        carry = du * lam
    if total is not None:
        return total
    grads.reverse()
    return torch.stack(grads)


class _LIFWindow(torch.autograd.Function):
    """BPTT through a window of LIF steps that keeps only each step's membrane u_t.

    Autograd through the step ops would keep two tensors a step (the surrogate's input and the
    reset mask) and zero-fill a (T, B, ...) gradient for every step's slice of the input.
    """

    @staticmethod
    def forward(ctx, xs: Tensor, config: NeuronConfig, steps: int,  # type: ignore[override]
                constant: bool) -> Tensor:
        shape = xs.shape if constant else xs.shape[1:]
        spikes, u_seq = _lif_window(shape.numel(), xs, constant, steps, xs.new_zeros(shape),
                                    config.lam, config.theta, config.reset == "hard",
                                    config.comparison == "gt", True)
        ctx.save_for_backward(u_seq)
        ctx.config, ctx.constant = config, constant
        return spikes

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (u_seq,) = ctx.saved_tensors
        c: NeuronConfig = ctx.config
        grad_x = _lif_window_backward(u_seq[0].numel(), grad, u_seq, ctx.constant, c.lam, c.theta,
                                      c.alpha, c.reset == "hard", c.detach_reset,
                                      c.comparison == "gt")
        return grad_x, None, None, None


class _RateLIF(torch.autograd.Function):
    """Rate pass of a neuron: value the spike stage's rate, Jacobian diag(kappa)."""

    @staticmethod
    def forward(ctx, current: Tensor, rate: Tensor, kappa: Tensor) -> Tensor:  # type: ignore[override]
        ctx.save_for_backward(kappa)
        return rate

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (kappa,) = ctx.saved_tensors
        return grad * kappa, None, None


class LIF(nn.Module):
    """LIF layer that runs BPTT, the graph-free spike stage with traces, or the rate pass."""

    def __init__(self, config: NeuronConfig) -> None:
        super().__init__()
        self.config = config
        self.phase: Phase = "bptt"
        self.step_mode: StepMode = "m"
        self.timesteps = 1
        self.reset_state()

    def extra_repr(self) -> str:
        c = self.config
        return f"lam={c.lam}, theta={c.theta}, reset={c.reset}, comparison={c.comparison}"

    def reset_state(self) -> None:
        """Forget membrane and trace accumulators (start of a new sample window)."""
        self.v: Tensor | None = None
        self._e: Tensor | None = None
        self._spike_sum: Tensor | None = None
        self._elig_sum: Tensor | None = None
        self._steps = 0

    @property
    def rate(self) -> Tensor | None:
        """Spikes per step of each neuron over the window so far."""
        return None if self._spike_sum is None else self._spike_sum / self._steps

    @property
    def kappa(self) -> Tensor | None:
        """Eligibility d rate / d (constant input current), from the spike stage."""
        if self._elig_sum is None:
            return None
        return self._elig_sum * (self.config.alpha / self._steps)

    def traces(self, current: Tensor) -> tuple[Tensor, Tensor]:
        """Rate and kappa of the spike stage, for a rate pass whose current is ``current``."""
        rate, kappa = self.rate, self.kappa
        if rate is None or kappa is None:
            raise RuntimeError("rate pass before a spike stage: run the spike phase first")
        if current.shape != rate.shape:
            raise ValueError(f"rate pass current shape {tuple(current.shape)} does not match "
                             f"the spike stage's {tuple(rate.shape)}")
        return rate, kappa

    # -- one step of the dynamics -------------------------------------------------------------
    def _step(self, v: Tensor | None, current: Tensor) -> tuple[Tensor, Tensor]:
        """Differentiable step (single-step BPTT): returns spikes and the next membrane."""
        c = self.config
        u = current if v is None else c.lam * v + current
        if torch.is_grad_enabled():
            s = SpikeFunction.apply(u - c.theta, c.alpha, c.comparison)
        else:
            s = heaviside(u - c.theta, c.comparison)
        s_reset = s.detach() if c.detach_reset else s
        v_next = u * (1.0 - s_reset) if c.reset == "hard" else u - c.theta * s_reset
        return s, v_next

    def _traced_steps(self, xs: Tensor, constant: bool, steps: int, scale: Tensor | None,
                      shift: Tensor | None) -> Tensor:
        """Spike-stage steps that advance the traces (state starts at the window's first)."""
        if self._e is None or self.v is None or self._elig_sum is None or self._spike_sum is None:
            shape = xs.shape if constant else xs.shape[1:]
            self.v, self._e = xs.new_zeros(shape), xs.new_ones(shape)
            self._elig_sum, self._spike_sum = xs.new_zeros(shape), xs.new_zeros(shape)
        c = self.config
        spikes = _trace_window(self.v.numel(), xs, constant, steps, scale, shift, self.v, self._e,
                               self._elig_sum, self._spike_sum, c.lam, c.theta, c.alpha,
                               c.reset == "hard", c.detach_reset, c.comparison == "gt")
        self._steps += steps
        return spikes

    # -- phases -------------------------------------------------------------------------------
    def forward(self, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None,
                constant: bool = False) -> Tensor:
        """Spikes for input current ``x`` (the rate pass: rates for time-averaged currents).

        Multi-step mode takes ``(T*B, ...)``, or with ``constant`` ``(B, ...)``: the same current
        at every step (static input), returning ``(T*B, ...)`` spikes. In the spike stage,
        ``scale * x + shift`` (per channel) is the current: a batch norm folded into the update.
        """
        if self.phase == "rate":
            return _RateLIF.apply(x, *self.traces(x))
        if self.step_mode == "s":
            return self._single_step(x, scale, shift)
        return self._multi_step(x, scale, shift, constant)

    def _multi_step(self, x: Tensor, scale: Tensor | None, shift: Tensor | None,
                    constant: bool) -> Tensor:
        T = self.timesteps
        if constant:
            xs, shape = x, x.shape
        else:
            if x.shape[0] % T:
                raise ValueError(f"LIF multi-step input has leading size {x.shape[0]}, "
                                 f"not a multiple of T={T}")
            xs = x.reshape(T, x.shape[0] // T, *x.shape[1:])
            shape = xs.shape[1:]
        self.reset_state()
        c = self.config
        if self.phase == "spike":
            out = self._traced_steps(xs, constant, T, scale, shift)
            self.v = self._e = None  # a multi-step window ends here
        elif torch.is_grad_enabled() and x.requires_grad:
            out = _LIFWindow.apply(xs, c, T, constant)
        else:
            out, _ = _lif_window(shape.numel(), xs, constant, T, x.new_zeros(shape), c.lam,
                                 c.theta, c.reset == "hard", c.comparison == "gt", False)
        if self.phase != "spike":
            self._spike_sum, self._steps = out.detach().sum(0), T
        return out.reshape(T * shape[0], *shape[1:])

    def _single_step(self, x: Tensor, scale: Tensor | None, shift: Tensor | None) -> Tensor:
        if self.phase == "spike":
            return self._traced_steps(x, True, 1, scale, shift)[0]
        s, self.v = self._step(self.v, x)
        self._spike_sum = s.detach() if self._spike_sum is None else self._spike_sum + s.detach()
        self._steps += 1
        return s
