"""Lower a NIR graph to neuron populations fed by synapse matrices (the chip's view of a net).

A chip has neurons and synapses, nothing else. So every run of linear NIR nodes between two
spiking populations (Flatten, Sum/AvgPool2d, then one Conv2d or Affine) becomes one synapse
group: an effective weight matrix applied after an optional 0/1 pooling matrix. A node with two
incoming edges sums them (a residual connection): one population with two synapse groups.

What the lowering folds away, so that backends only see ``v <- lam*v + W x + b; spike if v > theta;
reset to 0``:
- the NIR neuron's input scale g = r*dt/tau, into its threshold (theta = v_threshold / g), so
  every mapping of the same discrete neuron (any dt, r, threshold scaling) lowers alike,
- per-neuron thresholds, by row scaling,
- the input normalisation (x - mean) / std: the network input is the raw image in [0, 1],
- AvgPool's 1/k^2 (into the weights after it, so the pooling matrix stays 0/1).

Depth = synapse layers from the input. Each synapse delays one step on Loihi/Lava; a group that
skips layers (a residual shortcut) gets the extra delay that realigns it.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import nir
import numpy as np
import scipy.sparse as sp

from neuroratebp.interchange.validation import check_graph, check_normalization, check_timing

INPUT = "input"
"""Source name of the network input (raw image in [0, 1], flattened C-order)."""

Matrix = np.ndarray | sp.csr_matrix


@dataclass(frozen=True)
class Meta:
    """What the graph's metadata says about time and I/O (see :func:`read_metadata`)."""

    dt: float
    timesteps: int
    mean: np.ndarray
    std: np.ndarray
    encoding: str = "direct"
    readout: str = "mean"
    reset: str = "hard"
    comparison: str = "gt"

    def warnings(self) -> list[str]:
        """Semantics the chip cannot reproduce exactly (it resets to 0 and spikes on v > vth)."""
        out = []
        if self.reset != "hard":
            out.append(f"trained with {self.reset!r} reset; Loihi resets to 0 (accuracy may drop)")
        if self.comparison != "gt":
            out.append(f"trained with threshold comparison {self.comparison!r}; Loihi spikes on v > vth")
        return out


def _pick(meta: Mapping[str, Any], *keys: str, default: Any = None) -> Any:
    for key in keys:
        if key in meta:
            return meta[key]
    return default


def read_metadata(graph: nir.NIRGraph) -> Meta:
    """The one place that knows the exporter's metadata key names."""
    meta = dict(graph.metadata or {})
    norm = _pick(meta, "normalization", "normalize", default={}) or {}
    dt = _pick(meta, "dt")
    timesteps = _pick(meta, "timesteps", "T", "num_steps")
    missing = [f"{key!r} (--{key})" for key, value in (("dt", dt), ("timesteps", timesteps))
               if value is None]
    if missing:
        raise ValueError(f"the graph metadata has no {' and no '.join(missing)}: give the time "
                         "step the NIR dynamics are meant for (1e-4 for snnTorch and SpikingJelly "
                         "files) and the steps per sample")
    encoding = str(_pick(meta, "input_encoding", "encoding", default="direct"))
    readout = str(_pick(meta, "readout", default="mean"))
    if readout not in ("mean", "mean_over_timesteps"):
        raise ValueError(f"readout {readout!r} is not supported (only the mean over T)")
    if encoding != "direct":
        raise ValueError(f"input encoding {encoding!r} is not supported (only 'direct')")
    mean = _pick(meta, "input_mean", "mean", default=norm.get("mean", 0.0) if isinstance(norm, Mapping) else 0.0)
    std = _pick(meta, "input_std", "std", default=norm.get("std", 1.0) if isinstance(norm, Mapping) else 1.0)
    dt, timesteps = check_timing(graph, dt, timesteps)
    mean, std = check_normalization(mean, std)
    return Meta(dt=dt, timesteps=timesteps, mean=mean, std=std, encoding=encoding, readout=readout,
                reset=str(_pick(meta, "reset", default="hard")),
                comparison=str(_pick(meta, "comparison", default="gt")))


def with_time(graph: nir.NIRGraph, dt: float | None = None, timesteps: int | None = None
              ) -> nir.NIRGraph:
    """``graph`` with the caller's ``dt`` / ``timesteps`` (e.g. ``--dt`` / ``--timesteps`` for a
    file from another framework) in its metadata, replacing what is there; None keeps it.
    The values are checked where every graph's are: :func:`read_metadata`."""
    given = {"dt": dt, "timesteps": timesteps}
    graph.metadata = {**(graph.metadata or {}), **{k: v for k, v in given.items() if v is not None}}
    return graph


@dataclass(frozen=True)
class ConvGeometry:
    """Where a synapse group's matrix came from a Conv2d: lets a simulator apply the kernel as a
    convolution instead of reading the expanded matrix (the chip's synapses stay the matrix)."""

    in_shape: tuple[int, int, int]
    kernel_shape: tuple[int, int, int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    dilation: tuple[int, int]

    def expand(self, kernel: np.ndarray) -> sp.csr_matrix:
        return conv_matrix(kernel, self.in_shape, self.stride, self.padding, self.dilation)[0]

    def kernel_of(self, m: Matrix) -> np.ndarray | None:
        """The kernel whose expansion is exactly ``m`` (quantized or row-scaled alike), or None
        once ``m`` is no longer one convolution (e.g. per-position scaling)."""
        size = int(np.prod(self.kernel_shape))
        where = self.expand(np.arange(1, size + 1, dtype=float).reshape(self.kernel_shape)).tocoo()
        elements, first = np.unique(where.data.astype(int) - 1, return_index=True)
        kernel = np.zeros(size)
        kernel[elements] = np.asarray(sp.csr_matrix(m)[where.row[first], where.col[first]]).ravel()
        kernel = kernel.reshape(self.kernel_shape)
        return kernel if abs(self.expand(kernel) - m).max() == 0 else None


@dataclass
class Synapse:
    """Synapse group: ``a = weights @ (pool @ x_source)``, arriving 1 + ``delay`` steps later."""

    source: str
    weights: Matrix
    pool: sp.csr_matrix | None = None
    delay: int = 0
    weight_exp: int = 0
    """Chip weights are ``weights * 2**weight_exp`` (Lava shifts the summed input); 0 in float."""
    stored_weights: int = 0
    """Distinct weights a weight-sharing (convolutional) encoding stores; dense: rows*cols."""
    conv: ConvGeometry | None = None
    """Set for a convolution (``weights`` is its expansion), see :class:`ConvGeometry`."""
    node: str | None = None
    """Name of the NIR Conv2d/Affine node whose weight this group holds (None: pooling only)."""
    row_scale: np.ndarray | None = None
    """Per output neuron, ``weights = row_scale[:, None] * node.weight`` (pooling's 1/k^2,
    threshold normalisation); None where the input normalisation also
    scales columns. What on-chip learning needs to speak in the NIR weight's units."""

    @property
    def shared(self) -> bool:
        """A convolution: one kernel shared by every output position (Loihi 2 can store it once)."""
        return self.conv is not None

    def matrix(self) -> Matrix:
        """The full [n_out, n_source] matrix (what one Lava Dense/Sparse holds)."""
        if self.pool is None:
            return self.weights
        return sp.csr_matrix(sp.csr_matrix(self.weights) @ self.pool)

    @property
    def connections(self) -> int:
        m = self.matrix()
        return int(m.nnz) if sp.issparse(m) else int(np.count_nonzero(m))


@dataclass
class Population:
    """LIF neurons sharing one decay and threshold (one Lava LIF process), or the readout."""

    name: str
    shape: tuple[int, ...]
    lam: float
    theta: float
    bias: np.ndarray
    synapses: list[Synapse] = field(default_factory=list)
    depth: int = 0
    readout: bool = False
    potential_scale: np.ndarray | None = None
    """Per neuron: membrane potential here per unit of the discrete neuron that NIR's node
    steps (``v_nir / (r dt / tau)``, which fires at ``v_threshold / (r dt / tau)``), threshold
    normalisation included. A surrogate gradient of the trained neuron acts on ``v / scale``.
    None for the readout."""

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))


@dataclass
class Network:
    """Populations in topological order; the last one is the readout integrator."""

    input_shape: tuple[int, ...]
    populations: list[Population]
    meta: Meta

    @property
    def readout(self) -> Population:
        return self.populations[-1]

    @property
    def window(self) -> int:
        """Steps per sample: T plus the readout's latency."""
        return self.meta.timesteps + self.readout.depth

    def population(self, name: str) -> Population:
        return next(p for p in self.populations if p.name == name)


NEURONS = (nir.LIF, nir.IF)
STRUCTURE = (nir.Flatten, nir.SumPool2d, nir.AvgPool2d)
WEIGHTED = (nir.Conv2d, nir.Affine, nir.Linear)


def _conv_out(size: int, k: int, s: int, p: int, d: int) -> int:
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def pair(a) -> tuple[int, int]:
    """A NIR scalar-or-pair parameter (stride, padding, ...) as two ints."""
    y, x = np.broadcast_to(np.asarray(a, int), 2)
    return int(y), int(x)


def conv_matrix(weight: np.ndarray, in_shape: tuple[int, int, int], stride, padding,
                dilation) -> tuple[sp.csr_matrix, tuple[int, int, int]]:
    """Cross-correlation (torch/NIR layout [Co,Ci,kH,kW]) as a sparse [Co*H'*W', Ci*H*W] matrix."""
    co, ci, kh, kw = weight.shape
    c, h, w = in_shape
    if c != ci:
        raise ValueError(f"Conv2d expects {ci} input channels, got a {list(in_shape)} map")
    (sy, sx), (py, px), (dy, dx) = (pair(a) for a in (stride, padding, dilation))
    ho, wo = _conv_out(h, kh, sy, py, dy), _conv_out(w, kw, sx, px, dx)
    o, i, ky, kx, y, x = np.meshgrid(np.arange(co), np.arange(ci), np.arange(kh), np.arange(kw),
                                     np.arange(ho), np.arange(wo), indexing="ij", sparse=True)
    iy, ix = y * sy - py + ky * dy, x * sx - px + kx * dx
    valid = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w) & (o >= 0) & (i >= 0)
    rows = np.broadcast_to((o * ho + y) * wo + x, valid.shape)[valid]
    cols = np.broadcast_to((i * h + iy) * w + ix, valid.shape)[valid]
    vals = np.broadcast_to(weight[o, i, ky, kx], valid.shape)[valid]
    m = sp.csr_matrix((vals.astype(float), (rows, cols)), shape=(co * ho * wo, ci * h * w))
    return m, (co, ho, wo)


def pool_matrix(node: nir.SumPool2d | nir.AvgPool2d, in_shape: tuple[int, ...]
                ) -> tuple[sp.csr_matrix, tuple[int, int, int], float]:
    """Non-overlapping pooling as a 0/1 sum matrix plus its scale (1/k^2 for AvgPool)."""
    k = np.broadcast_to(np.asarray(node.kernel_size, int), 2)
    s = np.broadcast_to(np.asarray(node.stride if node.stride is not None else k, int), 2)
    p = np.broadcast_to(np.asarray(node.padding, int), 2)
    if len(in_shape) != 3 or np.any(p) or np.any(s != k):
        raise ValueError(f"only non-overlapping unpadded 2-D pooling maps to synapses, got kernel "
                         f"{k.tolist()} stride {s.tolist()} padding {p.tolist()} on {list(in_shape)}")
    c = in_shape[0]
    eye = np.eye(c)[:, :, None, None] * np.ones((1, 1, *k))
    m, out = conv_matrix(eye, tuple(in_shape), k, 0, 1)
    m.eliminate_zeros()
    scale = 1.0 / float(np.prod(k)) if isinstance(node, nir.AvgPool2d) else 1.0
    return m, out, scale


def _weighted(node, in_shape: tuple[int, ...]
              ) -> tuple[Matrix, np.ndarray, tuple[int, ...], int, ConvGeometry | None]:
    """Matrix, bias per output neuron, output shape, stored-weight count and conv geometry
    (None for Affine/Linear) of a Conv2d/Affine."""
    w = np.asarray(node.weight, dtype=float)
    if isinstance(node, nir.Conv2d):
        if int(np.asarray(node.groups)) != 1:
            raise ValueError("grouped convolutions are not supported")
        geometry = ConvGeometry(tuple(int(d) for d in in_shape), tuple(w.shape), pair(node.stride),
                                pair(node.padding), pair(node.dilation))
        m, out = conv_matrix(w, geometry.in_shape, geometry.stride, geometry.padding, geometry.dilation)
        bias = np.repeat(np.asarray(node.bias, float).reshape(-1), out[1] * out[2]) \
            if node.bias is not None else np.zeros(m.shape[0])
        return m, bias, out, int(w.size), geometry
    if int(np.prod(in_shape)) != w.shape[-1]:
        raise ValueError(f"{type(node).__name__} expects {w.shape[-1]} inputs, got {list(in_shape)}")
    bias = np.asarray(getattr(node, "bias", 0.0), float) * np.ones(w.shape[0])
    return w, bias, (w.shape[0],), int(w.size), None


def _source_shape(graph: nir.NIRGraph, name: str) -> tuple[int, ...]:
    node = graph.nodes[name]
    if isinstance(node, nir.Input):
        return tuple(int(d) for d in np.asarray(node.input_type["input"]).reshape(-1))
    return tuple(np.shape(np.asarray(node.v_threshold))) or (1,)


def _trace(graph: nir.NIRGraph, preds: dict[str, list[str]], start: str) -> tuple[str, list[str]]:
    """Walk back from ``start`` through linear nodes to a spiking source or the input."""
    path: list[str] = []
    name = start
    while not isinstance(graph.nodes[name], (nir.Input, *NEURONS)):
        node = graph.nodes[name]
        if not isinstance(node, (*STRUCTURE, *WEIGHTED)):
            raise ValueError(f"node {name!r} ({type(node).__name__}) has no Loihi 2 mapping")
        if len(preds[name]) != 1:
            raise ValueError(f"linear node {name!r} has {len(preds[name])} inputs; only neurons and "
                             "the output may sum several inputs")
        path.append(name)
        name = preds[name][0]
    return name, path[::-1]


def _synapse(graph: nir.NIRGraph, source: str, path: list[str]) -> tuple[Synapse, np.ndarray, tuple]:
    """Compose one path: pools (0/1) first, then at most one weighted node; Flatten is free."""
    shape = _source_shape(graph, source)
    pool: sp.csr_matrix | None = None
    scale = 1.0
    weights: Matrix | None = None
    bias = np.zeros(0)
    stored, conv = 0, None
    node_name = None
    for name in path:
        node = graph.nodes[name]
        if isinstance(node, nir.Flatten):
            start, end = (int(np.asarray(d).reshape(-1)[0]) % len(shape)
                          for d in (node.start_dim, node.end_dim))
            if (start, end) != (0, len(shape) - 1):
                raise ValueError(f"Flatten {name!r} keeps some of the {list(shape)} axes; only a "
                                 "flatten of the whole sample maps to synapses")
            shape = (int(np.prod(shape)),)
        elif isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            if weights is not None:
                raise ValueError(f"pooling {name!r} after a weighted layer is not supported "
                                 "(its sums would not be 8-bit synapses)")
            m, shape, k = pool_matrix(node, shape)
            pool = m if pool is None else sp.csr_matrix(m @ pool)
            scale *= k
        else:
            if weights is not None:
                raise ValueError(f"two weighted layers in a row ({name!r}) need a neuron between them")
            weights, bias, shape, stored, conv = _weighted(node, shape)
            weights, node_name = weights * scale, name
    if weights is None:  # identity or pooling only: unit weights
        n = int(np.prod(shape))
        weights = sp.identity(n, format="csr") * scale
        bias, stored = np.zeros(n), 1
    rows = int(np.prod(shape))
    row_scale = np.full(rows, scale) if node_name is not None else None
    return (Synapse(source, weights, pool, stored_weights=stored, conv=conv, node=node_name,
                    row_scale=row_scale), bias, tuple(shape))


def _neuron_params(node, dt: float, name: str) -> tuple[float, np.ndarray, np.ndarray]:
    """lam, threshold and constant drive per neuron of ``v <- lam v + I + drive``, in units of
    the input current: NIR's ``v`` divided by the input gain g = r*dt/tau, so a file that scales
    r, tau/dt and the threshold together (another mapping of the same neuron) lowers alike."""
    threshold = np.asarray(node.v_threshold, float).reshape(-1)
    if np.any(np.asarray(node.v_reset if node.v_reset is not None else 0.0) != 0):
        raise ValueError(f"neuron {name!r}: Loihi resets to 0, got v_reset != 0")
    r = np.asarray(node.r, float).reshape(-1) * np.ones_like(threshold)
    if isinstance(node, nir.IF):
        lam, gain, drive = 1.0, r * dt, np.zeros_like(threshold)
    else:
        tau = np.asarray(node.tau, float).reshape(-1) * np.ones_like(threshold)
        lams = 1.0 - dt / tau
        if np.ptp(lams) > 1e-9:
            raise ValueError(f"neuron {name!r}: one Lava LIF process has one decay; got several taus")
        lam, gain = float(lams[0]), r * dt / tau
        drive = dt / tau * np.asarray(node.v_leak, float).reshape(-1) / gain
    return lam, threshold / gain, drive  # r, tau, thresholds > 0: validation


def lower(graph: nir.NIRGraph) -> Network:
    """NIR graph -> populations with folded synapse matrices (float, unquantized)."""
    check_graph(graph)
    meta = read_metadata(graph)
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        preds[dst].append(src)
    inputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Input)]
    outputs = [n for n, node in graph.nodes.items() if isinstance(node, nir.Output)]
    if len(inputs) != 1 or len(outputs) != 1 or len(preds[outputs[0]]) != 1:
        raise ValueError("the graph needs exactly one Input and one Output with one incoming edge")
    input_shape = _source_shape(graph, inputs[0])
    mean = np.broadcast_to(_per_input(meta.mean, input_shape), input_shape).reshape(-1)
    std = np.broadcast_to(_per_input(meta.std, input_shape), input_shape).reshape(-1)

    pops: dict[str, Population] = {}

    def build(name: str, readout: bool) -> Population:
        if name in pops:
            return pops[name]
        if readout:
            lam, theta, drive = 1.0, None, 0.0
        else:
            lam, theta, drive = _neuron_params(graph.nodes[name], meta.dt, name)
        entries = preds[outputs[0]] if readout else preds[name]
        if not entries:
            raise ValueError(f"neuron {name!r} has no input")
        synapses, total_bias, shape = [], 0.0, None
        for start in entries:
            source, path = _trace(graph, preds, start)
            if readout and not path:
                raise ValueError("the readout must be a linear layer (Affine) after the last neurons")
            syn, bias, out_shape = _synapse(graph, source, path)
            if shape is not None and int(np.prod(out_shape)) != int(np.prod(shape)):
                raise ValueError(f"inputs summed into {name!r} have different sizes")
            shape = out_shape
            if source == inputs[0]:
                syn.source = INPUT
                syn, bias = _fold_normalisation(syn, bias, mean, std)
            else:
                build(source, False)
            synapses.append(syn)
            total_bias = total_bias + bias
        if not readout:
            shape = tuple(np.shape(np.asarray(graph.nodes[name].v_threshold))) or shape
        size = int(np.prod(shape))
        bias = np.broadcast_to(np.asarray(total_bias, float), (size,)).copy()
        potential = None
        if readout:
            theta_ref = np.inf
        else:  # v in units where every neuron's threshold is theta_ref
            theta_ref = float(theta.max())
            norm = theta_ref / np.broadcast_to(theta, (size,))
            potential = norm
            for syn in synapses:
                syn.weights = _scale_rows(syn.weights, potential)
                if syn.row_scale is not None:
                    syn.row_scale = syn.row_scale * potential
            bias = (bias + drive) * norm
        depth = 1 + max(0 if s.source == INPUT else pops[s.source].depth for s in synapses)
        for syn in synapses:
            syn.delay = depth - 1 - (0 if syn.source == INPUT else pops[syn.source].depth)
        pop = Population(name, tuple(shape), lam, theta_ref, bias, synapses, depth, readout,
                         potential)
        pops[name] = pop
        return pop

    if isinstance(graph.nodes[preds[outputs[0]][0]], NEURONS):
        raise ValueError("the output must be a non-spiking linear readout (Affine), found neurons")
    build(preds[outputs[0]][0], True)
    order = sorted(pops.values(), key=lambda p: (p.readout, p.depth))
    return Network(input_shape, order, meta)


def _per_input(values: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    """Scalar or per-channel normalisation constants, broadcastable to the input."""
    if values.size == 1:
        return values.reshape(())
    if len(input_shape) == 3 and values.size == input_shape[0]:
        return values.reshape(-1, 1, 1)
    raise ValueError(f"normalisation with {values.size} values does not fit input {list(input_shape)}")


def _fold_normalisation(syn: Synapse, bias: np.ndarray, mean: np.ndarray, std: np.ndarray
                        ) -> tuple[Synapse, np.ndarray]:
    """W((x - m)/s) + b = (W/s) x + (b - W m/s): the chip sees the raw image."""
    inv = 1.0 / std
    if syn.pool is not None:
        if np.ptp(inv) > 0:
            raise ValueError("pooling the input needs one normalisation std for all channels")
        syn.weights = syn.weights * float(inv[0])
        shift = syn.weights @ (syn.pool @ mean)
    else:
        syn.weights = _scale_cols(syn.weights, inv)
        shift = syn.weights @ mean
    syn.row_scale = None
    return syn, bias - np.asarray(shift).reshape(-1)


def _scale_rows(m: Matrix, g: np.ndarray) -> Matrix:
    return sp.csr_matrix(sp.diags(g) @ m) if sp.issparse(m) else m * g[:, None]


def _scale_cols(m: Matrix, g: np.ndarray) -> Matrix:
    return sp.csr_matrix(m @ sp.diags(g)) if sp.issparse(m) else m * g[None, :]
