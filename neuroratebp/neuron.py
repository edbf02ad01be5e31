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
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Literal

import torch
from torch import Tensor, nn

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

    # -- one step of the dynamics -------------------------------------------------------------
    def _step(self, v: Tensor | None, current: Tensor) -> tuple[Tensor, Tensor]:
        """Differentiable step (BPTT and inference): returns spikes and the next membrane."""
        c = self.config
        u = current if v is None else c.lam * v + current
        if torch.is_grad_enabled():
            s = SpikeFunction.apply(u - c.theta, c.alpha, c.comparison)
        else:
            s = heaviside(u - c.theta, c.comparison)
        s_reset = s.detach() if c.detach_reset else s
        v_next = u * (1.0 - s_reset) if c.reset == "hard" else u - c.theta * s_reset
        return s, v_next

    def _traced_step(self, v: Tensor | None, current: Tensor, spikes: Tensor) -> Tensor:
        """Graph-free step that also advances the traces; writes ``spikes``, returns v.

        kappa = mean_t e_t g(u_t) with e_1 = 1, e_{t+1} = 1 + lam rho_t e_t and
        rho_t = dv_t/du_t as the reset mode and detach setting define it. Works in place:
        the spike stage is the hot loop of rate-BP.
        """
        c = self.config
        u = current.clone() if v is None else torch.add(current, v, alpha=c.lam, out=v)
        fired = u > c.theta if c.comparison == "gt" else u >= c.theta
        spikes.copy_(fired)
        sig = u.sub(c.theta).mul_(c.alpha).sigmoid_()
        g = torch.addcmul(sig, sig, sig, value=-1.0)  # surrogate / alpha = sig (1 - sig)
        if self._e is None:
            self._elig_sum, self._spike_sum = g.clone(), spikes.clone()
            e = torch.ones_like(u)
        else:
            self._elig_sum.addcmul_(self._e, g)
            self._spike_sum.add_(spikes)
            e = self._e
        if c.reset == "soft":
            if not c.detach_reset:
                e.mul_(g.mul(-c.theta * c.alpha).add_(1.0))
            u.sub_(spikes, alpha=c.theta)
        else:
            # Multiplying by the 0/1 mask of silent neurons, not masked_fill_: several times
            # faster on CPU, and the same values (u and e are finite).
            silent = torch.sub(1.0, spikes)
            if c.detach_reset:
                e.mul_(silent)
            else:
                e.mul_(torch.addcmul(silent, u, g, value=-c.alpha))
            u.mul_(silent)
        self._e = e.mul_(c.lam).add_(1.0)
        self._steps += 1
        return u

    # -- phases -------------------------------------------------------------------------------
    def forward(self, x: Tensor) -> Tensor:
        if self.phase == "rate":
            return self._rate_forward(x)
        if self.step_mode == "s":
            return self._single_step(x)
        return self._multi_step(x)

    def _multi_step(self, x: Tensor) -> Tensor:
        T = self.timesteps
        if x.shape[0] % T:
            raise ValueError(f"LIF multi-step input has leading size {x.shape[0]}, "
                             f"not a multiple of T={T}")
        xs = x.reshape(T, x.shape[0] // T, *x.shape[1:])
        self.reset_state()
        v: Tensor | None = None
        if self.phase == "spike":
            out = torch.empty_like(xs)
            for t in range(T):
                v = self._traced_step(v, xs[t], out[t])
        else:
            spikes = []
            for t in range(T):
                s, v = self._step(v, xs[t])
                spikes.append(s)
            out = torch.stack(spikes)
            self._spike_sum, self._steps = out.detach().sum(0), T
        return out.reshape(x.shape)

    def _single_step(self, x: Tensor) -> Tensor:
        if self.phase == "spike":
            s = torch.empty_like(x)
            self.v = self._traced_step(self.v, x, s)
            return s
        s, self.v = self._step(self.v, x)
        self._spike_sum = s.detach() if self._spike_sum is None else self._spike_sum + s.detach()
        self._steps += 1
        return s

    def _rate_forward(self, current: Tensor) -> Tensor:
        rate, kappa = self.rate, self.kappa
        if rate is None or kappa is None:
            raise RuntimeError("rate pass before a spike stage: run the spike phase first")
        if current.shape != rate.shape:
            raise ValueError(f"rate pass current shape {tuple(current.shape)} does not match "
                             f"the spike stage's {tuple(rate.shape)}")
        linear = kappa * current
        return rate + linear - linear.detach()
