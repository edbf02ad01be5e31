"""The discrete LIF of this project <-> NIR's continuous-time LIF and IF nodes.

This project's neuron, one step (t = 1..T)::

    u_t = lam * v_{t-1} + I_t ;   s_t = [u_t > theta] ;   v_t = u_t * (1 - s_t)

NIR stores ODEs and no time step. A consumer that integrates NIR's LIF,
``tau dv/dt = (v_leak - v) + r I``, with forward Euler at step ``dt`` computes::

    v <- (1 - dt/tau) v + (dt/tau) (v_leak + r I)

The export writes ``tau = dt / (1 - lam)``, ``r = 1``, ``v_leak = 0``,
``v_threshold = theta (1 - lam)``, ``v_reset = 0`` (the 'unit-r' convention): the update is
``v <- lam v + (1 - lam) I``, i.e. the neuron above with ``v`` scaled by ``1 - lam``, so it
fires and resets at the same steps. ``r = 1`` because Norse ignores ``r``; ``dt = 1e-4`` because
snnTorch's importer hard-codes it (SpikingJelly's default too; Norse takes ``dt``). ``lam = 1``
(no leak) is NIR's IF, ``dv/dt = r I``, written with ``r = 1 / dt`` so the update is ``v <- v + I``
(what Norse's IAF does whatever ``r`` says, and what SpikingJelly requires).

Import inverts any such mapping for any ``dt``: ``lam = 1 - dt/tau`` and the input gain
``g = r dt / tau`` (IF: ``g = r dt``). A gain ``g != 1`` moves into the threshold: ``v / g``
follows ``v <- lam v + I`` and fires when ``v / g > theta / g``; the reset value 0 is unchanged.
"""
from __future__ import annotations

import math

import nir
import numpy as np

DEFAULT_DT = 1e-4
"""Seconds per time step written into exported graphs: the step snnTorch's importer assumes."""

CONVENTION = "unit-r"
"""Metadata name of the mapping above: LIF r = 1, v_threshold = theta (1 - lam); IF r = 1/dt."""


def nir_neuron(lam: float, theta: float, shape: tuple[int, ...], dt: float) -> nir.LIF | nir.IF:
    """NIR node whose forward-Euler step at ``dt`` is the chip neuron (per-neuron arrays)."""
    ones = np.ones(shape)
    zeros = np.zeros(shape)
    if lam == 1.0:
        return nir.IF(r=ones / dt, v_threshold=ones * theta, v_reset=zeros)
    return nir.LIF(tau=ones * (dt / (1.0 - lam)), r=ones, v_leak=zeros,
                   v_threshold=ones * (theta * (1.0 - lam)), v_reset=zeros)


def _uniform(name: str, field: str, values: np.ndarray) -> float:
    """The one value a per-layer neuron parameter may take; heterogeneous arrays are refused."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        raise ValueError(f"NIR node {name!r}: {field} is empty")
    first = float(arr.flat[0])
    if not np.allclose(arr, first, rtol=1e-9, atol=0.0):
        raise ValueError(f"NIR node {name!r}: {field} differs between neurons; a LIF layer of "
                         "this project has a single value per layer")
    return first


def discrete_neuron(name: str, node: nir.LIF | nir.IF | nir.CubaLIF, dt: float
                    ) -> tuple[float, float]:
    """``(lam, theta)`` of the discrete neuron that a NIR LIF/IF node computes at step ``dt``.

    A ``CubaLIF`` is that neuron when its synaptic current lasts one step (``tau_syn = dt``:
    Euler gives ``I <- w_in S``, the input of this step only, as snnTorch's ``Synaptic`` with
    ``alpha = 0``); with a longer ``tau_syn`` the current carries over and it is refused.
    """
    if _uniform(name, "v_reset", node.v_reset) != 0.0:
        raise ValueError(f"NIR node {name!r}: v_reset != 0 is not supported (the neurons of this "
                         "project reset to 0)")
    v_threshold = _uniform(name, "v_threshold", node.v_threshold)
    r = _uniform(name, "r", node.r)
    if isinstance(node, nir.IF):
        lam, gain = 1.0, r * dt
    else:
        if _uniform(name, "v_leak", node.v_leak) != 0.0:
            raise ValueError(f"NIR node {name!r}: v_leak != 0 is not supported")
        tau = _uniform(name, "tau_mem" if isinstance(node, nir.CubaLIF) else "tau",
                       node.tau_mem if isinstance(node, nir.CubaLIF) else node.tau)  # >= dt: validation
        lam, gain = 1.0 - dt / tau, r * dt / tau
        if isinstance(node, nir.CubaLIF):
            gain *= _one_step_synapse(name, node, dt)
    if not gain > 0.0:
        raise ValueError(f"NIR node {name!r}: input gain r*dt/tau = {gain:g} must be positive")
    theta = v_threshold / gain
    return _prefer_recorded(node.metadata, lam, theta)


def _one_step_synapse(name: str, node: nir.CubaLIF, dt: float) -> float:
    """Input weight ``w_in`` of a CubaLIF whose current is the input of the step alone."""
    tau_syn = _uniform(name, "tau_syn", node.tau_syn)
    if not math.isclose(dt / tau_syn, 1.0, rel_tol=1e-9):
        raise ValueError(f"NIR node {name!r} (CubaLIF): tau_syn={tau_syn:g} at dt={dt:g} keeps "
                         f"{1 - dt / tau_syn:.3g} of the synaptic current for the next step; this "
                         "project's LIF has no synaptic memory (only tau_syn = dt maps to it)")
    return _uniform(name, "w_in", node.w_in)


def _prefer_recorded(metadata: dict, lam: float, theta: float) -> tuple[float, float]:
    """Our exporter records the exact lam/theta; use them when they agree with the parameters.

    The parameters go through ``dt / (1 - lam)`` and back, which can move the last bit.
    """
    rec_lam, rec_theta = metadata.get("lam"), metadata.get("theta")
    if rec_lam is None or rec_theta is None:
        return lam, theta
    if (math.isclose(float(rec_lam), lam, rel_tol=1e-9, abs_tol=1e-12)
            and math.isclose(float(rec_theta), theta, rel_tol=1e-9)):
        return float(rec_lam), float(rec_theta)
    return lam, theta
