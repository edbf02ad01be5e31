"""Resource limits checked before anything is allocated; the user raises them by environment.

A 70 KB NIR file can declare a billion neurons and ``--timesteps 100000000`` asks for a 25 GB
tensor: sizes that come from a file or a flag are bounded here first, with an error that says
which variable raises the bound. The defaults are above one Loihi 2 chip (1M neurons, 120M
synapses), so any network that could fit a chip passes.
"""
from __future__ import annotations

import math
import numbers
import os
from dataclasses import dataclass

ENV = {"neurons": "NEURORATEBP_MAX_NEURONS", "synapses": "NEURORATEBP_MAX_SYNAPSES",
       "timesteps": "NEURORATEBP_MAX_TIMESTEPS"}


@dataclass(frozen=True)
class Limits:
    neurons: int = 2 ** 24
    """Neurons (and values per layer output) one network may have."""
    synapses: int = 2 ** 27
    """Connections after expanding convolutions; also the numbers a NIR file may store."""
    timesteps: int = 10_000
    """Time steps per sample."""

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults, overridden by ``NEURORATEBP_MAX_NEURONS`` / ``_SYNAPSES`` / ``_TIMESTEPS``."""
        values = {}
        for field, var in ENV.items():
            raw = os.environ.get(var)
            if raw is None:
                continue
            try:
                values[field] = int(raw.replace("_", ""))
            except ValueError:
                raise ValueError(f"{var}={raw!r} is not an integer") from None
            if values[field] < 1:
                raise ValueError(f"{var} must be positive, got {raw}")
        return cls(**values)

    def check(self, field: str, value: int, what: str) -> None:
        """Refuse ``value`` above the limit named ``field``, naming the variable that raises it."""
        bound = getattr(self, field)
        if value > bound:
            raise ValueError(f"{what}: {value:,} {field}, above the limit of {bound:,} (raise it "
                             f"with the environment variable {ENV[field]})")


def timesteps(value: object, what: str, limits: Limits | None = None) -> int:
    """A number of time steps: a positive integer (an integral float such as 4.0 is accepted)
    within the limit; 2.5, 0, NaN, True or 1e12 are refused with ``what`` in the message."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) \
            or not math.isfinite(value) or not float(value).is_integer() or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")
    number = int(value)
    (limits or Limits.from_env()).check("timesteps", number, what)
    return number
