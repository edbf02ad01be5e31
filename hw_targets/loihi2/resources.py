"""Does a compiled network fit one Loihi 2 chip? Neurons, synapses, bits and cores per layer.

Core allocation model (a lower bound a real mapper can only exceed): each population is split
over its own cores; a core holds at most ``neurons_per_core`` neurons and
``synaptic_memory_per_core`` bytes of the synapses *into* its neurons. Two synapse encodings are
counted, and both are reported:

- expanded: every connection of the expanded matrix, which is what the simulated Lava processes
  (Dense/Sparse) store: 1 byte per weight for dense groups, 3 bytes (weight + 16-bit index) for
  sparse ones. ``cores = max(ceil(neurons / per core), ceil(bytes / memory per core))``.
- shared (decides "fits"): convolutions keep one kernel for all output positions, as Loihi 2
  deployments of conv nets do (lava-dl netx conv blocks). The population is cut into contiguous
  chunks of its flattened (C-order) neurons, one per core; a core stores the whole kernel of each
  conv group (pooling before the conv folded in: kernel x pool area, as netx folds it) plus one
  input-axon entry per distinct source neuron its chunk listens to; the smallest number of
  chunks where every core fits wins. Non-conv groups take the cheaper of dense (1 B per matrix
  entry) and sparse (3 B per connection). Per-core axon limits are not modelled (unknown for
  Loihi 2). The encoding's numbers are marked "assumed" in spec.toml.
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
MAX_SPLIT_TRIES = 256
"""Chunk counts tried above the neuron bound before the shared encoding is declared unmappable."""


@dataclass
class LayerUsage:
    name: str
    neurons: int
    synapses: int
    stored_weights: int
    synapse_bytes: int
    cores: int
    """Cores in the shared-weight encoding (decides the fit); 0 if no split fits a core."""
    shared_bytes_per_core: int
    """Largest core's synaptic memory in the shared-weight encoding."""
    cores_expanded: int
    """Cores if every connection is stored (what Lava's CPU simulation holds)."""
    cores_by_neurons: int
    cores_by_memory: int
    """Expanded encoding: synapse bytes / memory per core."""
    max_delay: int
    vth_bits: int
    bias_bits: int
    weight_exp: list[int]


def _pool_area(syn) -> int:
    return int(np.diff(syn.pool.indptr).max(initial=1)) if syn.pool is not None else 1


def shared_split(pop, spec: Spec) -> tuple[int, int]:
    """(cores, largest per-core bytes) of the shared-weight encoding; (0, bytes) if none fits."""
    memory = spec["chip.synaptic_memory_per_core_bytes"]
    axon = spec["synapse.shared_axon_bytes"]
    kernel, conv, rest = 0, [], 0
    for syn in pop.synapses:
        m = syn.matrix()
        if syn.shared:
            kernel += syn.stored_weights * _pool_area(syn) * spec["synapse.shared_weight_bytes"]
            conv.append(sp.csr_matrix(m))
        else:
            nnz = int(m.nnz) if sp.issparse(m) else int(np.count_nonzero(m))
            rest += min(nnz * SPARSE_BYTES, m.shape[0] * m.shape[1] * DENSE_BYTES)
    first = max(math.ceil(pop.size / spec["chip.neurons_per_core"]), 1)
    if not conv:  # memory splits in proportion to the neurons
        cores = max(first, math.ceil(rest / memory))
        return cores, math.ceil(rest / cores)
    worst = 0
    for cores in range(first, min(pop.size, first + MAX_SPLIT_TRIES) + 1):
        bounds = np.linspace(0, pop.size, cores + 1).round().astype(int)
        worst = 0
        for a, b in zip(bounds[:-1], bounds[1:]):
            axons = sum(np.count_nonzero(np.bincount(m.indices[m.indptr[a]:m.indptr[b]],
                                                     minlength=m.shape[1])) for m in conv)
            worst = max(worst, kernel + axons * axon + math.ceil(rest * (b - a) / pop.size))
        if worst <= memory:
            return cores, worst
        if kernel >= memory:
            break
    return 0, worst


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
    shared_cores, shared_bytes = shared_split(pop, spec)
    bias = np.abs(np.asarray(pop.bias_mant, np.int64)).max(initial=0)
    return LayerUsage(pop.name, pop.size, syn_count, stored, nbytes, shared_cores, shared_bytes,
                      max(by_neurons, by_memory, 1), by_neurons, by_memory, max((1 + s.delay for s in pop.synapses), default=1),
                      int(pop.vth).bit_length(), int(bias).bit_length() + 1 + int(pop.bias_exp),
                      [s.weight_exp for s in pop.synapses])


def check_fit(chip: ChipNet, reports: list[LayerReport], spec: Spec | None = None) -> dict:
    """Per-layer usage, totals, and every reason the network does not fit one chip."""
    spec = spec or load_spec()
    if chip.precision != "fixed":
        raise ValueError("resource checks need the fixed-point compilation")
    layers = [layer_usage(p, spec) for p in chip.populations]
    totals = {key: sum(getattr(u, key) for u in layers)
              for key in ("neurons", "synapses", "stored_weights", "synapse_bytes", "cores",
                          "cores_expanded")}
    limits = {"cores": spec["chip.cores_per_chip"], "neurons": spec["chip.neurons_per_chip"],
              "synapses": spec["chip.synapses_per_chip"]}
    problems = [f"{u.name}: kernel and input axons exceed one core's synaptic memory "
                f"({u.shared_bytes_per_core:,} B) however the layer is split" for u in layers if not u.cores]
    problems += [f"{key}: {totals[key]:,} > {limit:,} per chip" for key, limit in limits.items()
                 if totals[key] > limit]
    problems += [f"{u.name}: synaptic delay {u.max_delay} > {spec['chip.max_synaptic_delay']}"
                 for u in layers if u.max_delay > spec["chip.max_synaptic_delay"]]
    exp_range = (spec["synapse.weight_exp_min"], spec["synapse.weight_exp_max"])
    problems += [f"{u.name}: weight_exp {e} outside {list(exp_range)}" for u in layers
                 for e in u.weight_exp if not exp_range[0] <= e <= exp_range[1]]
    warnings = [f"{r.name}: {w}" for r in reports for w in r.warnings]
    return {"target": spec.name, "fits": not problems, "problems": problems, "warnings": warnings,
            "fits_expanded": totals["cores_expanded"] <= limits["cores"],
            "totals": totals, "limits": limits, "timesteps": chip.timesteps, "window": chip.window,
            "layers": [asdict(u) for u in layers],
            "quantization": [asdict(r) for r in reports],
            "model": {
                "cores": "shared-weight estimate: per core, conv kernels "
                         f"({spec['synapse.shared_weight_bytes']} B/weight, pooling folded in) + "
                         f"{spec['synapse.shared_axon_bytes']} B per distinct input axon + other groups "
                         "(min of dense 1 B/entry, sparse 3 B/connection) <= memory per core; "
                         "neurons <= neurons per core (confidence: assumed)",
                "cores_expanded": "max(neurons/neurons_per_core, expanded synapse bytes/memory_per_core)"
                                  " per layer: what Lava's Dense/Sparse store in simulation",
                "synapses": "connections of the expanded matrix (dense 1 B, sparse 3 B each)"}}
