"""The compiled network as a Lava process graph, run with Loihi2SimCfg (fixed_pt or floating_pt).

Mapping (one Lava process per item; Lava starts one OS process for each):
- input: ``ImageSource`` (below) holding every sample, sending sample k's image as graded spikes
  (8-bit payload in fixed point) on each step of window k; the first synapse group has
  ``num_message_bits=8``.
- synapse group: ``Dense`` for dense matrices, ``Sparse`` for convolutions and pooling (expanded
  over the flattened maps, which also keeps ``weight_exp``: Lava's ``Conv`` Python model ignores
  it), ``DelaySparse`` where a shortcut needs extra delay to stay aligned.
- population: ``LIFReset`` with du = 4095 / 1.0 (no current memory), reset at the step its first
  input of a sample arrives (``reset_offset = depth + 1``, ``reset_interval`` = T + depth of the
  readout). Everything a layer integrated before that (bias only, or the previous sample's tail,
  also whatever sits in synapse buffers) is cleared, so samples stream with no ``Var.set`` on
  u, v or a_buff, and biases start exactly when the data does.
- readout: a ``LIFReset`` that never fires (vth at the 17-bit maximum, dv = 0): its v after the
  window is the sum of T readout inputs plus T biases, i.e. T * logits (times 64*s in fixed).
Synapse groups keep their full matrix as the process's weights (the chip's synapses); the models
below compute the same integer sums faster (``Factors``: pooling, then the conv kernel).
Build once for all samples, then per sample: run ``window`` steps, read the readout's v.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from hw_targets import lava_compat
from hw_targets.lava_runtime import LavaSession

from .emulator import RunResult, reset_step
from .graph import INPUT
from .quantize import ChipNet, ChipPopulation
from .spike_sum import Factors, SpikeSum

lava_compat.install()

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.dense.process import Dense  # noqa: E402
from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel  # noqa: E402
from lava.proc.lif.process import LIFReset  # noqa: E402
from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.model.py.model import PyLoihiProcessModel  # noqa: E402
from lava.magma.core.model.py.ports import PyOutPort  # noqa: E402
from lava.magma.core.model.py.type import LavaPyType  # noqa: E402
from lava.magma.core.process.ports.ports import OutPort  # noqa: E402
from lava.magma.core.process.process import AbstractProcess  # noqa: E402
from lava.magma.core.process.variable import Var  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.sparse.models import PySparseModelBitAcc, PySparseModelFloat  # noqa: E402
from lava.proc.sparse.process import DelaySparse, Sparse  # noqa: E402
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights  # noqa: E402

TAGS = {"fixed": "fixed_pt", "float": "floating_pt"}


# Lava's Sparse models sum binary spikes as ``weights[:, s].sum(axis=1)`` (CSR column slicing).
# These models differ from Lava's only in how they compute that sum (``SpikeSum``: the same
# integers; same weight clipping/truncation, same one-step buffer, same weight_exp shift); the
# emulator tests keep them bit-exact.
@implements(proc=Sparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("bit_accurate_loihi", "fixed_pt")
class SparseFixedMatVec(PySparseModelBitAcc):
    def run_spk(self):
        if self.num_message_bits.item() > 0:
            return super().run_spk()
        self.weight_exp = self.proc_params.get("weight_exp", 0)
        if not self.weights_set:
            sign_mode = self.proc_params.get("sign_mode") or determine_sign_mode(self.weights)
            bits = self.proc_params.get("num_weight_bits", 8)

            def chip(w):
                return truncate_weights(clip_weights(w, sign_mode, num_bits=8), sign_mode, bits)
            self.weights = chip(self.weights)
            factors = self.proc_params.get("factors")
            self.spike_sum = SpikeSum(self.weights, factors and factors.map(chip), np.int64)
            threadpool_limits(1)  # one process per group already shares the cores
            self.weights_set = True
        self.a_out.send(self.a_buff)
        a_accum = self.spike_sum(self.s_in.recv())
        self.a_buff = (np.left_shift(a_accum, self.weight_exp) if self.weight_exp > 0
                       else np.right_shift(a_accum, -self.weight_exp))


@implements(proc=Sparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class SparseFloatMatVec(PySparseModelFloat):
    def run_spk(self):
        if self.num_message_bits.item() > 0:
            return super().run_spk()
        if not hasattr(self, "spike_sum"):
            self.spike_sum = SpikeSum(self.weights, self.proc_params.get("factors"), float)
            threadpool_limits(1)
        self.a_out.send(self.a_buff)
        self.a_buff = self.spike_sum(self.s_in.recv())


def _synapse_process(syn, graded: bool):
    m = syn.matrix()
    kw = {"weight_exp": int(syn.weight_exp), "num_message_bits": 8 if graded else 0}
    if syn.delay:
        return DelaySparse(weights=sp.csr_matrix(m), delays=int(syn.delay), max_delay=syn.delay, **kw)
    if sp.issparse(m):
        if not graded:
            kw["factors"] = Factors.of(syn)
        return Sparse(weights=sp.csr_matrix(m), **kw)
    return Dense(weights=np.asarray(m), **kw)


class ImageSource(AbstractProcess):
    """Graded input spikes: column k of ``images`` [n_in, samples] on every step of window k.
    All samples are loaded once: a RingBuffer would need a ``Var.set`` per sample, which Lava
    sends one element per message."""

    def __init__(self, images: np.ndarray, window: int) -> None:
        super().__init__(window=window)
        self.data = Var(shape=images.shape, init=images)
        self.s_out = OutPort(shape=images.shape[:1])


class _ImageSourceModel(PyLoihiProcessModel):
    def run_spk(self) -> None:
        sample = (self.time_step - 1) // self.proc_params["window"]
        self.s_out.send(self.data[:, sample % self.data.shape[1]])


@implements(proc=ImageSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("fixed_pt")
class ImageSourceFixed(_ImageSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, np.int32)
    data: np.ndarray = LavaPyType(np.ndarray, np.int32)


@implements(proc=ImageSource, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class ImageSourceFloat(_ImageSourceModel):
    s_out: PyOutPort = LavaPyType(PyOutPort.VEC_DENSE, float)
    data: np.ndarray = LavaPyType(np.ndarray, float)


Record = Literal["none", "counts", "spikes"]


class LavaNetwork:
    """Process graph for a set of encoded inputs [samples, n_in], built once; :meth:`run` steps
    through them one window each. Use it in a ``with`` block: that is a
    :class:`~hw_targets.lava_runtime.LavaSession` (signals, teardown, no leftovers); outside one,
    always :meth:`stop`.

    ``record``: "counts" attaches an Extractor to every spiking population (spike rates),
    "spikes" also keeps every step's spikes ([samples, window, n] per population: memory)."""

    def __init__(self, chip: ChipNet, payload: np.ndarray, record: Record = "none") -> None:
        self.chip, self.record = chip, record
        self.window = chip.window
        dtype = float if chip.precision == "float" else np.int32
        self.samples = len(payload)
        self.source = ImageSource(np.asarray(payload, dtype).reshape(self.samples, -1).T, self.window)
        self.neurons: dict[str, LIFReset] = {}
        self.sinks: dict[str, Extractor] = {}
        self.synapses = []
        for pop in chip.populations:
            self.neurons[pop.name] = self._neuron(pop)
        for pop in chip.populations:
            for syn in pop.synapses:
                proc = _synapse_process(syn, syn.source == INPUT)
                src = self.source if syn.source == INPUT else self.neurons[syn.source]
                src.s_out.connect(proc.s_in)
                proc.a_out.connect(self.neurons[pop.name].a_in)
                self.synapses.append(proc)
            if record != "none" and not pop.readout:
                # Extractor streams each step's spikes as one array; a sink RingBuffer's
                # Var.get sends its buffer one element per message (~20 s per sample here)
                self.sinks[pop.name] = Extractor(shape=(pop.size,), buffer_size=self.window)
                self.neurons[pop.name].s_out.connect(self.sinks[pop.name].in_port)
        # models named explicitly: the Extractor's carries no tag. The compiler looks the process
        # instance up in this map before searching (importing) every module beside the process's
        # own, which fails for ours (relative imports), then selects by class: give both keys
        fixed = chip.precision == "fixed"
        source_model = ImageSourceFixed if fixed else ImageSourceFloat
        self.cfg = Loihi2SimCfg(select_tag=TAGS[chip.precision],
                                exception_proc_model_map={
                                    Extractor: PyLoihiExtractorModel,
                                    Sparse: SparseFixedMatVec if fixed else SparseFloatMatVec,
                                    ImageSource: source_model, self.source: source_model})
        self.started = False

    def _neuron(self, pop: ChipPopulation) -> LIFReset:
        fixed = self.chip.precision == "fixed"
        cast = (lambda a: np.asarray(a, np.int32)) if fixed else (lambda a: np.asarray(a, float))
        return LIFReset(shape=(pop.size,), du=pop.du, dv=pop.dv, vth=pop.vth,
                        bias_mant=cast(pop.bias_mant), bias_exp=cast(np.full(pop.size, pop.bias_exp)),
                        reset_interval=self.window, reset_offset=reset_step(pop, self.window),
                        name=pop.name)

    def run_sample(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Next sample's window: readout v and (if recorded) spikes [window, n] per population."""
        readout = self.neurons[self.chip.readout.name]
        readout.run(condition=RunSteps(num_steps=self.window), run_cfg=self.cfg)
        self.started = True
        spikes = {}
        for name, sink in self.sinks.items():
            # the run's window steps, in order (a full buffer would block the run: drain it)
            spikes[name] = np.stack([sink.receive() for _ in range(self.window)]).astype(bool)
        return readout.v.get(), spikes

    def run(self, progress: Callable[[int], None] | None = None) -> RunResult:
        """Every sample, one window each; ``seconds`` gets the wall time of every sample."""
        vs, self.seconds = [], []
        counts = {name: np.zeros(self.samples, np.int64) for name in self.sinks}
        trains: dict[str, list[np.ndarray]] = {name: [] for name in self.sinks}
        for k in range(self.samples):
            start = time.perf_counter()
            v, spikes = self.run_sample()
            self.seconds.append(time.perf_counter() - start)
            vs.append(np.array(v, dtype=float))
            for pop in self.chip.populations:
                if pop.name in spikes:
                    steps = slice(pop.depth, pop.depth + self.chip.timesteps)
                    counts[pop.name][k] = spikes[pop.name][steps].sum()
                    if self.record == "spikes":
                        trains[pop.name].append(spikes[pop.name])
            if progress is not None:
                progress(1)
        kept = {n: np.stack(t) for n, t in trains.items()} if self.record == "spikes" else None
        return RunResult(self.chip.logits(np.stack(vs)), counts, kept)

    def stop(self) -> None:
        if self.started:
            self.neurons[self.chip.readout.name].stop()
            self.started = False

    def __enter__(self) -> "LavaNetwork":
        self._session = LavaSession(self.neurons[self.chip.readout.name]).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.started = False
        self._session.__exit__(*exc)


def run_lava(chip: ChipNet, images: np.ndarray, record: Record = "none",
             progress: Callable[[int], None] | None = None) -> tuple[RunResult, float]:
    """Run images through Lava; also returns seconds per sample, the first (compile) excluded."""
    with LavaNetwork(chip, chip.encode(images), record) as net:
        result = net.run(progress)
    steady = net.seconds[1:] or net.seconds
    return result, float(np.mean(steady))
