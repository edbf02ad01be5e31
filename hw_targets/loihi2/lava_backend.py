"""The compiled network as a Lava process graph, run with Loihi2SimCfg (fixed_pt or floating_pt).

Mapping (one Lava process per item; Lava starts one OS process for each):
- input: ``io.source.RingBuffer`` holding one column, the image as graded spikes (8-bit payload
  in fixed point), resent every step; the first synapse group has ``num_message_bits=8``.
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
Build once, then per sample: set the source's data, run ``window`` steps, read the readout's v.
"""
from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from hw_targets import lava_compat

from .emulator import RunResult, reset_step
from .graph import INPUT
from .quantize import ChipNet, ChipPopulation

lava_compat.install()

from lava.magma.core.run_conditions import RunSteps  # noqa: E402
from lava.magma.core.run_configs import Loihi2SimCfg  # noqa: E402
from lava.proc.dense.process import Dense  # noqa: E402
from lava.proc.io.extractor import Extractor, PyLoihiExtractorModel  # noqa: E402
from lava.proc.io.source import RingBuffer as Source  # noqa: E402
from lava.proc.lif.process import LIFReset  # noqa: E402
from lava.magma.core.decorator import implements, requires, tag  # noqa: E402
from lava.magma.core.resources import CPU  # noqa: E402
from lava.magma.core.sync.protocols.loihi_protocol import LoihiProtocol  # noqa: E402
from lava.proc.sparse.models import PySparseModelBitAcc, PySparseModelFloat  # noqa: E402
from lava.proc.sparse.process import DelaySparse, Sparse  # noqa: E402
from lava.utils.weightutils import clip_weights, determine_sign_mode, truncate_weights  # noqa: E402

TAGS = {"fixed": "fixed_pt", "float": "floating_pt"}


# Lava's Sparse models sum binary spikes as ``weights[:, s].sum(axis=1)``: CSR column slicing,
# about 4x slower than the mat-vec product ``weights @ s``, which gives the same integers for
# 0/1 spikes. These models differ from Lava's only there (same weight clipping/truncation, same
# one-step buffer, same weight_exp shift); the emulator tests keep them bit-exact.
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
            self.weights = clip_weights(self.weights, sign_mode, num_bits=8)
            self.weights = truncate_weights(self.weights, sign_mode,
                                            self.proc_params.get("num_weight_bits", 8))
            self.weights_set = True
        self.a_out.send(self.a_buff)
        a_accum = self.weights.dot(self.s_in.recv().astype(bool).astype(np.int64))
        self.a_buff = (np.left_shift(a_accum, self.weight_exp) if self.weight_exp > 0
                       else np.right_shift(a_accum, -self.weight_exp))


@implements(proc=Sparse, protocol=LoihiProtocol)
@requires(CPU)
@tag("floating_pt")
class SparseFloatMatVec(PySparseModelFloat):
    def run_spk(self):
        if self.num_message_bits.item() > 0:
            return super().run_spk()
        self.a_out.send(self.a_buff)
        self.a_buff = self.weights.dot(self.s_in.recv().astype(bool).astype(float))


SPARSE_MODELS = {"fixed": SparseFixedMatVec, "float": SparseFloatMatVec}


def _synapse_process(syn, graded: bool):
    m = syn.matrix()
    kw = {"weight_exp": int(syn.weight_exp), "num_message_bits": 8 if graded else 0}
    if syn.delay:
        return DelaySparse(weights=sp.csr_matrix(m), delays=int(syn.delay), max_delay=syn.delay, **kw)
    if sp.issparse(m):
        return Sparse(weights=sp.csr_matrix(m), **kw)
    return Dense(weights=np.asarray(m), **kw)


class LavaNetwork:
    """Process graph built once; :meth:`run` streams samples; always :meth:`stop` (or ``with``)."""

    def __init__(self, chip: ChipNet, record: bool = False) -> None:
        self.chip = chip
        self.window = chip.window
        n_in = int(np.prod(chip.input_shape))
        self.source = Source(data=np.zeros((n_in, 1), dtype=float if chip.precision == "float" else np.int32))
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
            if record and not pop.readout:
                # Extractor streams each step's spikes as one array; a sink RingBuffer's
                # Var.get sends its buffer one element per message (~20 s per sample here)
                self.sinks[pop.name] = Extractor(shape=(pop.size,), buffer_size=self.window)
                self.neurons[pop.name].s_out.connect(self.sinks[pop.name].in_port)
        # the Extractor's model carries no tag: name it explicitly
        self.cfg = Loihi2SimCfg(select_tag=TAGS[chip.precision],
                                exception_proc_model_map={Extractor: PyLoihiExtractorModel,
                                                          Sparse: SPARSE_MODELS[chip.precision]})
        self.started = False

    def _neuron(self, pop: ChipPopulation) -> LIFReset:
        fixed = self.chip.precision == "fixed"
        cast = (lambda a: np.asarray(a, np.int32)) if fixed else (lambda a: np.asarray(a, float))
        return LIFReset(shape=(pop.size,), du=pop.du, dv=pop.dv, vth=pop.vth,
                        bias_mant=cast(pop.bias_mant), bias_exp=cast(np.full(pop.size, pop.bias_exp)),
                        reset_interval=self.window, reset_offset=reset_step(pop, self.window),
                        name=pop.name)

    def run_sample(self, payload: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Readout v and (if recorded) spikes [window, n] per population for one encoded input."""
        column = payload.reshape(-1, 1)
        if self.started:
            self.source.data.set(column)
        else:
            self.source.data.init = column
        readout = self.neurons[self.chip.readout.name]
        readout.run(condition=RunSteps(num_steps=self.window), run_cfg=self.cfg)
        self.started = True
        spikes = {}
        for name, sink in self.sinks.items():
            # the run's window steps, in order (a full buffer would block the run: drain it)
            spikes[name] = np.stack([sink.receive() for _ in range(self.window)]).astype(bool)
        return readout.v.get(), spikes

    def run(self, images: np.ndarray, progress: Callable[[int], None] | None = None) -> RunResult:
        """All images, one window each; ``seconds`` gets the wall time of every sample."""
        vs, trains, self.seconds = [], [], []
        for p in self.chip.encode(images):
            start = time.perf_counter()
            v, spikes = self.run_sample(p)
            self.seconds.append(time.perf_counter() - start)
            vs.append(np.array(v, dtype=float))
            trains.append(spikes)
            if progress is not None:
                progress(1)
        counts, record = {}, None
        if self.sinks:
            record = {n: np.stack([t[n] for t in trains]) for n in self.sinks}
            for pop in self.chip.populations:
                if not pop.readout:
                    window = record[pop.name][:, pop.depth:pop.depth + self.chip.timesteps]
                    counts[pop.name] = window.sum(axis=(1, 2))
        return RunResult(self.chip.logits(np.stack(vs)), counts, record)

    def stop(self) -> None:
        if self.started:
            self.neurons[self.chip.readout.name].stop()
            self.started = False

    def __enter__(self) -> "LavaNetwork":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def run_lava(chip: ChipNet, images: np.ndarray, record: bool = False,
             progress: Callable[[int], None] | None = None) -> tuple[RunResult, float]:
    """Run images through Lava; also returns seconds per sample, the first (compile) excluded."""
    with LavaNetwork(chip, record) as net:
        result = net.run(images, progress)
    steady = net.seconds[1:] or net.seconds
    return result, float(np.mean(steady))
