"""lava-dl netx HDF5 writer: the compiled Loihi 2 network as a file ``netx.hdf5.Network`` loads.

    neuroratebp export model.pt --to netx [-o model.net]

The file holds exactly the fixed-point network this target compiles (``graph.lower`` then
``quantize.compile_network``), restricted to what netx can express:

- a chain of layers: ``input`` (shape only, no neuron), then one ``conv`` or ``dense`` block per
  population (synapse + CUBA neuron), ``flatten`` between a conv block and a dense one. A graph
  whose populations are not a chain (a residual fan-in, a shortcut needing a delay) is refused
  with a ValueError naming the node: netx has no add.
- pooling is folded into the synapses as the lowering already does: non-overlapping Sum/AvgPool
  before a Conv2d becomes one conv with kernel ``k*K``, stride ``k*s``, padding ``k*p`` (the
  kernel repeated k x k); before an Affine it is the expanded dense matrix. A conv whose folded
  matrix is not a convolution (per-neuron thresholds or gains that differ within a channel,
  pooling on a map not divisible by k, dilation with pooling) is written as a dense layer with
  the expanded matrix (``flatten`` before it), which netx runs unchanged, only larger.
- weights are the quantized integers with ``weight_exp = 0`` (``compile_network(...,
  weight_exp=False)``): netx re-derives exponent, weight bits and sign mode from the stored
  integers (``optimize_weight_bits``), which is lossless for them, and Lava's Conv ignores
  exponents anyway. Biases are ``bias_mant`` at netx's fixed ``bias_exp = 6`` (one a-unit
  resolution); the compile is told so (:func:`netx_spec`) and shrinks a population's scale until
  its biases fit the 13-bit mantissa there.
- precision cost against the target's own compile: with no weight exponent a weight is a whole
  a-unit, so the threshold may rise up to ``vth_cap`` (default 2**14, 8x per-step headroom under
  the 24-bit current) to give small weights (the first layer's) more bits; a first layer whose
  folded input normalisation makes large biases stays bias-limited. Measured on the digits MLP
  of tests/test_end_to_end.py: 98.3 % argmax agreement with torch (target's compile: 99.4 %).
- neurons: CUBA with ``iDecay = 4096`` (Lava ``du = iDecay - 1 = 4095``: no current memory),
  ``vDecay = dv``, ``vThMant = vth``.
- readout: the last dense block with an explicit never-firing integrator neuron (``iDecay =
  4096, vDecay = 0, vThMant = 2**17 - 1``) so its ``v`` after a window is ``T * logits`` times
  ``readout_unit = 64 * scale``, biases included. (netx's default for a dense block without
  ``neuron`` integrates the input in ``u`` and adds the bias only once, so it is not used.)

How to run the file (what :class:`NetxRunner` does; the numbers are root attributes of the file)::

    net = netx.hdf5.Network(net_config=path, input_message_bits=8,
                            reset_interval=window, reset_offset=1)
    source = RingBuffer(data=payload[..., None])    # one column, resent every step
    source.s_out.connect(net.inp)
    net.run(RunSteps(window), Loihi2SimCfg(select_tag="fixed_pt"))
    logits = net.layers[-1].neuron.v.get() / (readout_unit * timesteps)

- input: graded spikes, payload ``round(255 * x)`` of the raw image ``x`` in [0, 1]
  (normalisation is folded into the first layer), 8 message bits into the first synapse.
  Layout: flat torch C-order ``[C*H*W]`` when the first layer is dense, ``(W, H, C)`` (netx's
  XYZ, i.e. ``x.transpose(2, 1, 0)``) when it is a conv.
- timing: every block delays one step, so a sample needs ``window = T + layers`` steps; with
  ``reset_interval = window`` and ``reset_offset = 1`` netx resets block ``i`` (1-based) at step
  ``i + 1`` of each window, the step its first input of the sample arrives, exactly as the
  target's Lava backend does. Samples then stream with only the source data changing.

:func:`plan_netx` returns the layers together with the ``ChipNet`` holding the very numbers in
the file, so ``emulator.emulate(plan.chip, ...)`` reproduces Lava on the file bit-exactly.
"""
from __future__ import annotations

import io
import os
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import nir
import numpy as np
import scipy.sparse as sp

from neuroratebp.files import write_atomic

from .emulator import RunResult
from .graph import INPUT, NEURONS, STRUCTURE, WEIGHTED, Network, conv_matrix, lower
from .quantize import VTH_TARGET, ChipNet, ChipPopulation, LayerReport, compile_network
from .spec import SPEC_FILE, Spec, load_spec

FORMAT = "neuroratebp-netx"
FORMAT_VERSION = 1
SUFFIX = ".net"
INPUT_MESSAGE_BITS = 8
NETX_BIAS_EXP = 6
"""netx hard-codes ``bias_exp = 6`` for CUBA neurons: bias_mant is in a-units."""
VTH_CAP = 2 ** 14
"""Largest threshold the netx compile may pick (8x per-step headroom below the 17-bit vth / 24-bit u)."""
RESET_OFFSET = 1
"""``Network(reset_offset=1)``: block i (1-based) resets at step i + 1 of each window."""


@dataclass
class NetxLayer:
    """One netx block: a conv or dense synapse into one population."""

    kind: str
    """'conv' or 'dense'."""
    population: ChipPopulation
    shape: tuple[int, ...]
    """Block output shape in torch order: (C, H, W) for conv, (N,) for dense."""
    weight: np.ndarray
    """Integers: [Co, Ci, kH, kW] (torch cross-correlation layout) or [n_out, n_in]."""
    bias: np.ndarray | None
    """Integers per neuron in the block's torch-order shape, or None when all zero."""
    flatten_before: bool = False
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    note: str = ""
    """Why a convolution was written as a dense layer, if it was."""


@dataclass
class NetxPlan:
    chip: ChipNet
    """The parameters the file holds (weight_exp 0, bias_exp 6): emulate() is bit-exact to it."""
    input_shape: tuple[int, ...]
    """netx input layer shape in torch order: (N,) before a dense layer, (C, H, W) before a conv."""
    layers: list[NetxLayer]
    reports: list[LayerReport]
    warnings: list[str] = field(default_factory=list)

    @property
    def window(self) -> int:
        return self.chip.window

    @property
    def readout_unit(self) -> float:
        """logits = v_readout / (readout_unit * T)."""
        return 64.0 * self.chip.readout.scale

    def attrs(self) -> dict[str, Any]:
        """Root attributes of the file: what a user needs to feed it and read it."""
        return {"format": FORMAT, "format_version": FORMAT_VERSION,
                "input_message_bits": INPUT_MESSAGE_BITS, "input_scale": self.chip.input_scale,
                "input_shape": np.asarray(self.input_shape, np.int64),
                "input_layout": "WHC" if len(self.input_shape) == 3 else "flat",
                "timesteps": self.chip.timesteps, "window": self.window,
                "reset_interval": self.window, "reset_offset": RESET_OFFSET,
                "readout_unit": self.readout_unit,
                "usage": "payload = round(input_scale * x) for raw x in [0, 1] (C-order flat, or "
                         "x.transpose(2, 1, 0) for input_layout WHC); Network(net_config, "
                         "input_message_bits, reset_interval, reset_offset); run window steps "
                         "per sample; logits = layers[-1].neuron.v / (readout_unit * timesteps)"}


def _trace_path(graph: nir.NIRGraph, preds: dict[str, list[str]], start: str) -> list[str]:
    """NIR nodes between the spiking source (or Input) and a population, in forward order."""
    path, name = [], start
    while not isinstance(graph.nodes[name], (nir.Input, *NEURONS)):
        path.append(name)
        if len(preds[name]) != 1:
            break
        name = preds[name][0]
    return path[::-1]


def _pair(v) -> tuple[int, int]:
    a = np.broadcast_to(np.asarray(v, int), 2)
    return int(a[0]), int(a[1])


def _conv_geometry(graph: nir.NIRGraph, path: list[str], in_shape: tuple[int, ...]
                   ) -> tuple[dict | None, str]:
    """Kernel size/stride/padding/dilation of the synapse as one conv on the source map."""
    nodes = [graph.nodes[n] for n in path]
    convs = [n for n in nodes if isinstance(n, nir.Conv2d)]
    if not convs:
        return None, ""
    conv = convs[0]
    if len(in_shape) != 3:
        return None, "its input is not a (C, H, W) map"
    k = np.ones(2, int)
    for node in nodes:
        if isinstance(node, (nir.SumPool2d, nir.AvgPool2d)):
            k *= np.broadcast_to(np.asarray(node.kernel_size, int), 2)
    kh, kw = np.asarray(conv.weight).shape[2:]
    stride, padding, dilation = (_pair(a) for a in (conv.stride, conv.padding, conv.dilation))
    if np.any(k > 1):
        if dilation != (1, 1):
            return None, "pooling before a dilated conv is not a conv"
        if in_shape[1] % k[0] or in_shape[2] % k[1]:
            return None, f"pooling {k.tolist()} does not tile the {list(in_shape)} map"
    return {"kernel": (int(kh * k[0]), int(kw * k[1])),
            "stride": (stride[0] * int(k[0]), stride[1] * int(k[1])),
            "padding": (padding[0] * int(k[0]), padding[1] * int(k[1])),
            "dilation": dilation}, ""


def _extract_kernel(m: sp.csr_matrix, co: int, in_shape: tuple[int, int, int], geo: dict
                    ) -> tuple[np.ndarray | None, tuple[int, int, int]]:
    """The integer kernel whose convolution is exactly ``m``, or None if ``m`` is no conv."""
    ci = in_shape[0]
    kh, kw = geo["kernel"]
    n = co * ci * kh * kw
    ids = np.arange(1, n + 1, dtype=float).reshape(co, ci, kh, kw)
    pattern, out = conv_matrix(ids, in_shape, geo["stride"], geo["padding"], geo["dilation"])
    if pattern.shape != m.shape:
        return None, out
    p = pattern.tocoo()
    kernel = np.zeros(n)
    kernel[p.data.astype(int) - 1] = np.asarray(m[p.row, p.col]).reshape(-1)
    kernel = kernel.reshape(co, ci, kh, kw)
    check, _ = conv_matrix(kernel, in_shape, geo["stride"], geo["padding"], geo["dilation"])
    if abs(check - m).max() != 0:
        return None, out
    return np.rint(kernel).astype(np.int64), out


def netx_spec() -> Spec:
    """The chip spec as the compiler must see it for netx, whose CUBA neurons fix bias_exp at 6.

    The compiler shrinks a population's scale until its biases fit ``mant << exp`` with
    ``exp <= 7``; a 12-bit mantissa there (2047 << 7 = 4094 << 6) is the same bound as netx's
    13-bit mantissa at exponent 6, so :func:`_netx_bias` never has to clip.
    """
    with open(SPEC_FILE, "rb") as f:
        table = tomllib.load(f)
    bits = table["neuron"]["bias_mant_bits"]["value"]
    table["neuron"]["bias_mant_bits"] = {
        "value": bits - 1, "confidence": "high",
        "source": f"netx: bias_exp fixed at {NETX_BIAS_EXP}; {bits}-bit mantissa << "
                  f"{NETX_BIAS_EXP} == {bits - 1}-bit mantissa << 7"}
    return Spec(table)


def _netx_bias(bias: np.ndarray, scale: float) -> tuple[np.ndarray, float]:
    """bias_mant at bias_exp 6 (a-units), clipped to the 13-bit signed mantissa."""
    mant_max = 2 ** (load_spec()["neuron.bias_mant_bits"] - 1) - 1
    raw = np.rint(np.asarray(bias, float) * scale)
    mant = np.clip(raw, -mant_max - 1, mant_max).astype(np.int64)
    return mant, float(np.mean(mant != raw)) if raw.size else 0.0


def _dense_weight(m) -> np.ndarray:
    return np.rint(m.toarray() if sp.issparse(m) else np.asarray(m)).astype(np.int64)


def _compile(net: Network, percentile: float, vth_cap: int
             ) -> tuple[ChipNet, list[LayerReport]]:
    """``compile_network(weight_exp=False)`` with thresholds allowed up to ``vth_cap``.

    Without weight exponents a weight is a whole a-unit, so the compiler's threshold-first scale
    (vth = 2**12) leaves small weights, typically the first layer's (gain 1/255 per input
    level), on a few bits. Compiling with every threshold divided by ``c = vth_cap / 2**12`` lets
    the scale grow up to c times; the true threshold is then ``theta * scale <= vth_cap``. The
    scale is still capped where the largest weight fills 8 bits or a bias its mantissa.
    """
    c = vth_cap / VTH_TARGET
    relaxed = replace(net, populations=[p if p.readout else replace(p, theta=p.theta / c)
                                        for p in net.populations])
    spec = netx_spec()
    chip, reports = compile_network(relaxed, "fixed", percentile=percentile, weight_exp=False,
                                    spec=spec)
    vth_max = 2 ** spec["neuron.vth_bits"] - 1
    pops = []
    for cp, p, r in zip(chip.populations, net.populations, reports):
        if not p.readout:
            vth = int(min(max(round(p.theta * cp.scale), 1), vth_max))
            cp = replace(cp, vth=vth)
            r.vth, r.threshold_rel_error = vth, abs(vth / cp.scale - p.theta) / p.theta
        pops.append(cp)
    return replace(chip, populations=pops), reports


def plan_netx(graph: nir.NIRGraph, percentile: float = 100.0, vth_cap: int = VTH_CAP) -> NetxPlan:
    """Lower, compile (weight_exp 0) and cut the network into netx blocks; ValueError if netx
    cannot express it."""
    net: Network = lower(graph)
    chip, reports = _compile(net, percentile, vth_cap)
    preds: dict[str, list[str]] = {n: [] for n in graph.nodes}
    for src, dst in graph.edges:
        preds[dst].append(src)
    warnings = net.meta.warnings() + [f"{r.name}: {w}" for r in reports for w in r.warnings]
    layers: list[NetxLayer] = []
    pops: list[ChipPopulation] = []
    prev_name, prev_shape = INPUT, tuple(net.input_shape)
    for i, (pop, fpop) in enumerate(zip(chip.populations, net.populations)):
        if len(pop.synapses) != 1:
            raise ValueError(f"node {pop.name!r} sums {len(pop.synapses)} inputs (a residual "
                             "connection); netx layers form a chain and have no add")
        (syn,) = pop.synapses
        if syn.source != prev_name or syn.delay:
            raise ValueError(f"node {pop.name!r} reads {syn.source!r}, not the layer before it; "
                             "netx layers form a chain")
        if pop.depth != i + 1:
            raise ValueError(f"node {pop.name!r} is not at depth {i + 1}; netx layers form a chain")
        start = pop.name if pop.readout else preds[pop.name][0]
        path = _trace_path(graph, preds, start)
        bad = [n for n in path if not isinstance(graph.nodes[n], (*STRUCTURE, *WEIGHTED))]
        if bad:
            raise ValueError(f"node {bad[0]!r} has no netx mapping")
        mant, clipped = _netx_bias(fpop.bias, pop.scale)
        if clipped:
            warnings.append(f"{pop.name}: {clipped:.2%} of biases clipped to the 13-bit mantissa "
                            f"at netx's bias_exp {NETX_BIAS_EXP}")
        pop = replace(pop, bias_mant=mant, bias_exp=NETX_BIAS_EXP)
        pops.append(pop)
        m = syn.matrix()
        geo, note = (None, "") if pop.readout else _conv_geometry(graph, path, prev_shape)
        kernel = None
        if geo is not None:
            co = int(np.asarray(next(graph.nodes[n] for n in path
                                     if isinstance(graph.nodes[n], nir.Conv2d)).weight).shape[0])
            kernel, out = _extract_kernel(sp.csr_matrix(m), co, prev_shape, geo)
            if kernel is None:
                note = "its folded matrix is not one convolution (per-neuron scaling)"
            elif int(np.prod(out)) != pop.size:
                kernel, note = None, f"conv output {list(out)} does not match {pop.size} neurons"
        if kernel is not None:
            bias = mant.reshape(out) if np.any(mant) else None
            layers.append(NetxLayer("conv", pop, tuple(out), kernel, bias, stride=geo["stride"],
                                    padding=geo["padding"], dilation=geo["dilation"]))
            prev_shape = tuple(out)
        else:
            if note:
                warnings.append(f"{pop.name}: convolution written as a dense layer ({note})")
            flatten = bool(layers) and len(prev_shape) == 3
            weight = _dense_weight(m)
            if not np.any(weight):
                raise ValueError(f"node {pop.name!r}: all weights quantize to zero; netx cannot "
                                 "store an all-zero layer")
            layers.append(NetxLayer("dense", pop, (pop.size,), weight,
                                    mant if np.any(mant) else None, flatten_before=flatten,
                                    note=note))
            prev_shape = (pop.size,)
        prev_name = pop.name
    chip = replace(chip, populations=pops)
    first = layers[0]
    input_shape = tuple(net.input_shape) if first.kind == "conv" else (int(np.prod(net.input_shape)),)
    return NetxPlan(chip, input_shape, layers, reports, warnings)


def _string(group: h5py.Group, key: str, value: str) -> None:
    group.create_dataset(key, data=np.array([value.encode("ascii")], dtype="S10"))


def _neuron(group: h5py.Group, pop: ChipPopulation) -> None:
    n = group.create_group("neuron")
    _string(n, "type", "CUBA")
    n.create_dataset("iDecay", data=np.int64(pop.du) + 1)
    n.create_dataset("vDecay", data=np.int64(pop.dv))
    n.create_dataset("vThMant", data=np.int64(pop.vth))
    n.create_dataset("refDelay", data=np.int64(1))
    n.create_dataset("gradedSpike", data=False)


def _write_layer(group: h5py.Group, layer: NetxLayer) -> None:
    _string(group, "type", layer.kind)
    group.create_dataset("shape", data=np.asarray(layer.shape, np.int64))
    group.create_dataset("weight", data=layer.weight.astype(np.int32), compression="gzip")
    if layer.bias is not None:
        bias = layer.bias if layer.kind == "dense" else layer.bias.transpose(2, 1, 0)  # -> WHC
        group.create_dataset("bias", data=bias.astype(np.int32))
    if layer.kind == "conv":
        group.create_dataset("stride", data=np.asarray(layer.stride, np.int64))
        group.create_dataset("padding", data=np.asarray(layer.padding, np.int64))
        group.create_dataset("dilation", data=np.asarray(layer.dilation, np.int64))
        group.create_dataset("groups", data=np.int64(1))
        group.create_dataset("inChannels", data=np.int64(layer.weight.shape[1]))
        group.create_dataset("outChannels", data=np.int64(layer.weight.shape[0]))
        group.create_dataset("kernelSize", data=np.asarray(layer.weight.shape[2:], np.int64))
    _neuron(group, layer.population)


def write_netx(graph: nir.NIRGraph, path: str | os.PathLike[str], percentile: float = 100.0,
               vth_cap: int = VTH_CAP) -> dict[str, Any]:
    """Write the netx HDF5 file (atomically); returns facts for the export report."""
    plan = plan_netx(graph, percentile, vth_cap)
    buffer = io.BytesIO()  # the HDF5 image in memory: h5py writing on a full disk crashed
    with h5py.File(buffer, "w") as f:
        for key, value in plan.attrs().items():
            f.attrs[key] = value
        top = f.create_group("layer")
        g = top.create_group("0")
        _string(g, "type", "input")
        g.create_dataset("shape", data=np.asarray(plan.input_shape, np.int64))
        index = 1
        for layer in plan.layers:
            if layer.flatten_before:
                _string(top.create_group(str(index)), "type", "flatten")
                index += 1
            _write_layer(top.create_group(str(index)), layer)
            index += 1
    write_atomic(path, buffer.getbuffer())
    return {"layers": "-".join(layer.kind for layer in plan.layers),
            "timesteps": plan.chip.timesteps, "window": plan.window,
            "input_message_bits": INPUT_MESSAGE_BITS, "input_shape": list(plan.input_shape),
            "readout_unit": plan.readout_unit, "warnings": "; ".join(plan.warnings)}


def read_attrs(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The run parameters stored by :func:`write_netx`."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
    if attrs.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by neuroratebp's netx writer")
    return attrs


def encode(attrs: dict[str, Any], images: np.ndarray) -> np.ndarray:
    """Raw images in [0, 1] -> netx input payload [B, *port shape] (8-bit graded spikes)."""
    x = np.rint(np.asarray(images, float) * float(attrs["input_scale"])).astype(np.int64)
    shape = tuple(int(d) for d in np.asarray(attrs["input_shape"]).reshape(-1))
    if attrs["input_layout"] == "WHC":
        return x.reshape(len(x), *shape).transpose(0, 3, 2, 1)
    return x.reshape(len(x), -1)


class NetxRunner:
    """Load a written file with ``netx.hdf5.Network`` and stream samples through Lava fixed_pt.

    Use it in a ``with`` block (a :class:`~hw_targets.lava_runtime.LavaSession`); outside one,
    always :meth:`stop`. ``record`` adds a spike sink per spiking block.
    """

    def __init__(self, path: str | os.PathLike[str], record: bool = False) -> None:
        from hw_targets import lava_compat
        lava_compat.install()
        from lava.lib.dl.netx import hdf5
        from lava.magma.core.run_conditions import RunSteps
        from lava.magma.core.run_configs import Loihi2SimCfg
        from lava.proc.io.sink import RingBuffer as Sink
        from lava.proc.io.source import RingBuffer as Source

        self.attrs = read_attrs(path)
        self.window = int(self.attrs["window"])
        self.net = hdf5.Network(net_config=str(path),
                                input_message_bits=int(self.attrs["input_message_bits"]),
                                reset_interval=int(self.attrs["reset_interval"]),
                                reset_offset=int(self.attrs["reset_offset"]))
        port = tuple(self.net.inp.shape)
        self.source = Source(data=np.zeros((*port, 1), dtype=np.int32))
        self.source.s_out.connect(self.net.inp)
        self.sinks = []
        if record:
            for block in self.net.layers[:-1]:
                sink = Sink(shape=block.out.shape, buffer=self.window)
                block.out.connect(sink.a_in)
                self.sinks.append(sink)
        self.cfg = Loihi2SimCfg(select_tag="fixed_pt")
        self._run_steps = RunSteps
        self.started = False
        self.seconds: list[float] = []

    def run_sample(self, payload: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
        """Readout v and (if recorded) spikes [window, n] of each spiking block (C-order)."""
        column = np.asarray(payload, np.int32)[..., None]
        if self.started:
            self.source.data.set(column)
        else:
            self.source.data.init = column
        self.net.run(condition=self._run_steps(num_steps=self.window), run_cfg=self.cfg)
        self.started = True
        spikes = []
        for sink in self.sinks:
            data = sink.data.get()  # [*WHC or N, window]
            if data.ndim == 4:
                data = data.transpose(3, 2, 1, 0).reshape(self.window, -1)
            else:
                data = data.reshape(-1, self.window).T
            spikes.append(data.astype(bool))
        return np.asarray(self.net.layers[-1].neuron.v.get(), float).reshape(-1), spikes

    def run(self, images: np.ndarray, progress: Callable[[int], None] | None = None) -> RunResult:
        vs, trains = [], []
        for p in encode(self.attrs, images):
            start = time.perf_counter()
            v, spikes = self.run_sample(p)
            self.seconds.append(time.perf_counter() - start)
            vs.append(v)
            trains.append(spikes)
            if progress is not None:
                progress(1)
        logits = np.stack(vs) / (float(self.attrs["readout_unit"]) * int(self.attrs["timesteps"]))
        record = None
        if self.sinks:
            record = {i: np.stack([t[i] for t in trains]) for i in range(len(self.sinks))}
        return RunResult(logits, {}, record)

    def stop(self) -> None:
        if self.started:
            self.net.stop()
            self.started = False

    def __enter__(self) -> "NetxRunner":
        from hw_targets.lava_runtime import LavaSession
        self._session = LavaSession(self.net).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.started = False
        self._session.__exit__(*exc)


def write_netx_target(model, config, path: Path, options) -> dict[str, Any]:
    """``neuroratebp export --to netx`` (an ``export_cmd.TARGETS`` writer): the checkpoint goes
    through the NIR export first, so the netx file is compiled from the same graph a ``.nir``
    export would hold."""
    from neuroratebp.interchange import export_nir  # the export command's NIR step

    graph = export_nir(model, config, timesteps=options.timesteps,
                       allow_approximate=options.allow_approximate)
    return write_netx(graph, path)
