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

The steps (spike stage with traces, BPTT forward and its reverse-time backward) are written in
place and run as :class:`~neuroratebp.kernels.Kernel` s: one fused pass over memory per step
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


def _fire(u: Tensor, theta: float, strict: bool, out: Tensor) -> Tensor:
    """Spikes of membrane ``u`` as 0/1 values, written into ``out``."""
    return torch.gt(u, theta, out=out) if strict else torch.ge(u, theta, out=out)


# One step per kernel call, in place, written so that eager and compiled runs round alike
# (no ``alpha=`` adds: eager CPU fuses those into one rounding, the compiler does not). A
# window's steps could be unrolled into one compiled kernel, but the compiler then stores
# every step's membrane (T buffers), and a step's state is small enough to stay in cache.

@Kernel
def _trace_step(x: Tensor, scale: Tensor | None, shift: Tensor | None, v: Tensor, e: Tensor,
                elig: Tensor, count: Tensor, spikes: Tensor | None, lam: float, theta: float,
                alpha: float, hard: bool, detach: bool, strict: bool) -> None:
    """One spike-stage step of the neuron and of its traces, in place.

    The current is ``scale * x + shift`` (a batch norm folded in) or ``x``. Advances the
    membrane ``v``, the sensitivity ``e`` = du_t/dc (e_1 = 1, e_{t+1} = 1 + lam rho_t e_t, rho_t
    = dv_t/du_t as the reset mode and detach setting define it), and the sums ``elig`` +=
    e_t g(u_t) (g = surrogate / alpha) and ``count`` += s_t; writes s_t into ``spikes``, or
    over ``x`` if None (not as the same tensor twice: the compiler mishandles aliased
    arguments). A window starts at v = 0, e = 1, sums 0.
    """
    current = x if scale is None else torch.addcmul(shift, x, scale)
    u = v.mul_(lam).add_(current)  # the membrane lives in v's storage
    s = _fire(u, theta, strict, x if spikes is None else spikes)
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


@Kernel
def _lif_step(x: Tensor, v: Tensor, spikes: Tensor, u_kept: Tensor | None, lam: float,
              theta: float, hard: bool, strict: bool) -> None:
    """One plain LIF step in place (BPTT's forward, inference): spikes, and u_t if kept."""
    u = v.mul_(lam).add_(x)
    if u_kept is not None:
        u_kept.copy_(u)
    s = _fire(u, theta, strict, spikes)
    if hard:
        u.mul_(torch.rsub(s, 1.0))
    else:
        u.sub_(s, alpha=theta)


@Kernel
def _lif_step_backward(grad_spikes: Tensor, u: Tensor, carry: Tensor, grad_x: Tensor,
                       accumulate: bool, lam: float, theta: float, alpha: float, hard: bool,
                       detach: bool, strict: bool) -> None:
    """One reverse-time step of :func:`_lif_step`, in place.

    dL/du_t = dL/ds_t g(u_t) + ``carry`` rho_t, with the surrogate g and the reset derivative
    rho_t recomputed from the kept membrane u_t; written (or added) into ``grad_x``; ``carry``
    becomes dL/dv_{t-1} = lam dL/du_t (it starts at 0).
    """
    sig = torch.sub(u, theta).mul_(alpha).sigmoid_()
    du = torch.ops.aten.sigmoid_backward(grad_spikes, sig).mul_(alpha)
    if hard:
        rho = (u <= theta if strict else u < theta).to(u.dtype)  # 1 - s_t
        if not detach:
            rho.addcmul_(u, sig.addcmul_(sig, sig, value=-1.0), value=-alpha)
        du.addcmul_(carry, rho)
    elif detach:
        du.add_(carry)
    else:
        du.addcmul_(carry, sig.addcmul_(sig, sig, value=-1.0).mul_(-theta * alpha).add_(1.0))
    if accumulate:
        grad_x.add_(du)
    else:
        grad_x.copy_(du)
    carry.copy_(du).mul_(lam)


class _LIFWindow(torch.autograd.Function):
    """BPTT through a window of LIF steps that keeps only each step's membrane u_t.

    Autograd through the step ops would keep two tensors a step (the surrogate's input and the
    reset mask) and zero-fill a (T, B, ...) gradient for every step's slice of the input.
    """

    @staticmethod
    def forward(ctx, xs: Tensor, config: NeuronConfig, steps: int,  # type: ignore[override]
                constant: bool) -> Tensor:
        shape = xs.shape if constant else xs.shape[1:]
        spikes = xs.new_empty((steps, *shape))
        u_seq = xs.new_empty((steps, *shape))
        _lif_steps(xs, constant, config, spikes, u_seq)
        ctx.save_for_backward(u_seq)
        ctx.config, ctx.constant = config, constant
        return spikes

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        (u_seq,) = ctx.saved_tensors
        c: NeuronConfig = ctx.config
        constant = ctx.constant
        carry = torch.zeros_like(u_seq[0])
        grad_x = torch.zeros_like(carry) if constant else torch.empty_like(u_seq)
        for t in range(u_seq.shape[0] - 1, -1, -1):
            _lif_step_backward(carry.numel(), grad[t], u_seq[t], carry,
                               grad_x if constant else grad_x[t], constant, c.lam, c.theta,
                               c.alpha, c.reset == "hard", c.detach_reset, c.comparison == "gt")
        return grad_x, None, None, None


def _lif_steps(xs: Tensor, constant: bool, config: NeuronConfig, spikes: Tensor,
               u_seq: Tensor | None) -> None:
    """A window of plain LIF steps from rest: ``spikes`` (and ``u_seq``) filled step by step."""
    v = torch.zeros_like(spikes[0])
    for t in range(spikes.shape[0]):
        _lif_step(v.numel(), xs if constant else xs[t], v, spikes[t],
                  None if u_seq is None else u_seq[t], config.lam, config.theta,
                  config.reset == "hard", config.comparison == "gt")


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

    def _traced_steps(self, xs: Tensor, constant: bool, scale: Tensor | None,
                      shift: Tensor | None, spikes: Tensor) -> None:
        """Spike-stage steps that advance the traces (state starts at the window's first)."""
        if self._e is None or self.v is None or self._elig_sum is None or self._spike_sum is None:
            shape = spikes.shape[1:]
            self.v, self._e = spikes.new_zeros(shape), spikes.new_ones(shape)
            self._elig_sum, self._spike_sum = spikes.new_zeros(shape), spikes.new_zeros(shape)
        c = self.config
        for t in range(spikes.shape[0]):
            x = xs if constant else xs[t]
            _trace_step(self.v.numel(), x, scale, shift, self.v, self._e, self._elig_sum,
                        self._spike_sum, None if spikes is xs else spikes[t], c.lam, c.theta,
                        c.alpha, c.reset == "hard", c.detach_reset, c.comparison == "gt")
        self._steps += spikes.shape[0]

    # -- phases -------------------------------------------------------------------------------
    def forward(self, x: Tensor, scale: Tensor | None = None, shift: Tensor | None = None,
                constant: bool = False, reuse: bool = False) -> Tensor:
        """Spikes for input current ``x`` (the rate pass: rates for time-averaged currents).

        Multi-step mode takes ``(T*B, ...)``, or with ``constant`` ``(B, ...)``: the same current
        at every step (static input), returning ``(T*B, ...)`` spikes. In the spike stage,
        ``scale * x + shift`` (per channel) is the current: a batch norm folded into the update,
        and with ``reuse`` the spikes overwrite ``x``, which nothing else reads (one (T*B, ...)
        tensor less at the spike stage's peak).
        """
        if self.phase == "rate":
            return _RateLIF.apply(x, *self.traces(x))
        if self.step_mode == "s":
            return self._single_step(x, scale, shift)
        return self._multi_step(x, scale, shift, constant, reuse)

    def _multi_step(self, x: Tensor, scale: Tensor | None, shift: Tensor | None,
                    constant: bool, reuse: bool) -> Tensor:
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
            out = xs if reuse and not constant else x.new_empty((T, *shape))
            self._traced_steps(xs, constant, scale, shift, out)
            self.v = self._e = None  # a multi-step window ends here
        elif torch.is_grad_enabled() and x.requires_grad:
            out = _LIFWindow.apply(xs, c, T, constant)
        else:
            out = x.new_empty((T, *shape))
            _lif_steps(xs, constant, c, out, None)
        if self.phase != "spike":
            self._spike_sum, self._steps = out.detach().sum(0), T
        return out.reshape(T * shape[0], *shape[1:])

    def _single_step(self, x: Tensor, scale: Tensor | None, shift: Tensor | None) -> Tensor:
        if self.phase == "spike":
            s = x.new_empty((1, *x.shape))
            self._traced_steps(x, True, scale, shift, s)
            return s[0]
        s, self.v = self._step(self.v, x)
        self._spike_sum = s.detach() if self._spike_sum is None else self._spike_sum + s.detach()
        self._steps += 1
        return s
