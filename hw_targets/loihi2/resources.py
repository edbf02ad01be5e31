"""Does a compiled network fit one Loihi 2 chip? Neurons, synapses, bits and cores per layer.

Core allocation model (a lower bound a real mapper can only exceed): each population is split
over its own cores; a core holds at most ``neurons_per_core`` neurons and
``synaptic_memory_per_core`` bytes of the synapses *into* its neurons, so
``cores = max(ceil(neurons / neurons_per_core), ceil(synapse_bytes / memory_per_core))``.
Synapses are counted as connections (nonzero entries of the expanded matrix), which is what the
simulated Lava processes (Dense/Sparse) store: 1 byte per weight for dense groups, 3 bytes
(weight + 16-bit index) for sparse ones (convolutions, pooling). Loihi 2 can share convolution
weights, which would need only the kernel ("stored weights", also reported), but its per-core
limits for that encoding are not in our sources, so fitting uses the conservative count.
The input is graded spikes from the host and uses no neuro-core.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp

from .quantize import ChipNet, LayerReport
from .spec import Spec, load_spec

SPARSE_BYTES = 3
DENSE_BYTES = 1


@dataclass
class LayerUsage:
    name: str
    neurons: int
    synapses: int
    stored_weights: int
    synapse_bytes: int
    cores: int
    cores_by_neurons: int
    cores_by_memory: int
    max_delay: int
    vth_bits: int
    bias_bits: int
    weight_exp: list[int]


def layer_usage(pop, spec: Spec) -> LayerUsage:
    syn_count, stored, nbytes = 0, 0, 0
    for syn in pop.synapses:
        m = syn.matrix()
        n = int(m.nnz) if sp.issparse(m) else int(np.count_nonzero(m))
        syn_count += n
        stored += syn.stored_weights
        nbytes += n * (SPARSE_BYTES if sp.issparse(m) else DENSE_BYTES)
    by_neurons = math.ceil(pop.size / spec["chip.neurons_per_core"])
    by_memory = math.ceil(nbytes / spec["chip.synaptic_memory_per_core_bytes"])
    bias = np.abs(np.asarray(pop.bias_mant, np.int64)).max(initial=0)
    return LayerUsage(pop.name, pop.size, syn_count, stored, nbytes, max(by_neurons, by_memory, 1),
                      by_neurons, by_memory, max((1 + s.delay for s in pop.synapses), default=1),
                      int(pop.vth).bit_length(), int(bias).bit_length() + 1 + int(pop.bias_exp),
                      [s.weight_exp for s in pop.synapses])


def check_fit(chip: ChipNet, reports: list[LayerReport], spec: Spec | None = None) -> dict:
    """Per-layer usage, totals, and every reason the network does not fit one chip."""
    spec = spec or load_spec()
    if chip.precision != "fixed":
        raise ValueError("resource checks need the fixed-point compilation")
    layers = [layer_usage(p, spec) for p in chip.populations]
    totals = {key: sum(getattr(u, key) for u in layers)
              for key in ("neurons", "synapses", "stored_weights", "synapse_bytes", "cores")}
    limits = {"cores": spec["chip.cores_per_chip"], "neurons": spec["chip.neurons_per_chip"],
              "synapses": spec["chip.synapses_per_chip"]}
    problems = [f"{key}: {totals[key]:,} > {limit:,} per chip" for key, limit in limits.items()
                if totals[key] > limit]
    problems += [f"{u.name}: synaptic delay {u.max_delay} > {spec['chip.max_synaptic_delay']}"
                 for u in layers if u.max_delay > spec["chip.max_synaptic_delay"]]
    exp_range = (spec["synapse.weight_exp_min"], spec["synapse.weight_exp_max"])
    problems += [f"{u.name}: weight_exp {e} outside {list(exp_range)}" for u in layers
                 for e in u.weight_exp if not exp_range[0] <= e <= exp_range[1]]
    warnings = [f"{r.name}: {w}" for r in reports for w in r.warnings]
    return {"target": spec.name, "fits": not problems, "problems": problems, "warnings": warnings,
            "totals": totals, "limits": limits, "timesteps": chip.timesteps, "window": chip.window,
            "layers": [asdict(u) for u in layers],
            "quantization": [asdict(r) for r in reports],
            "model": {"cores": "max(neurons/neurons_per_core, synapse bytes/memory_per_core) per layer",
                      "synapses": "connections of the expanded matrix (dense 1 B, sparse 3 B each)"}}
