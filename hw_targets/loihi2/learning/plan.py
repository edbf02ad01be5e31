"""Which NIR layers learn on the chip, how the learning graph is timed, and its rule constants.

One sample is one window of W steps (local step tau = 1..W); a population of depth d (synapse
layers from the input, every synapse delays one step) integrates its T steps at tau = d+1..d+T.

- Frozen populations are the inference graph's ``LIFReset`` neurons.
- A learning synapse group is a ``LearningDense`` with a ``Loihi3FLearningRule`` whose epoch is
  the window, so it applies one update per sample, at tau = W.
- Its pre-synaptic population is gated to its T steps and, at tau = W - 1, sends one graded
  "count spike" of payload ``2 (1 + k count)``: with ``GradedSpikeCfg.OVERWRITE`` the engine's
  pre trace becomes ``x1 = 1 + k count`` (k: trace impulse), restarted by every window without
  host help. The offset 1 makes a silent neuron overwrite its trace too.
- A pooling stage before a learning dense layer stays tied: the synapse keeps the NIR weight W
  (``W @ pool`` is what inference stores), fed by a relay population that forwards the pooled
  spike counts as graded spikes (``pool`` as 0/1 synapses into it, one more step of delay).
- The readout computes ``e = softmax(mean readout) - onehot(label)`` from preloaded labels at
  tau = D+T, quantizes it and sends it as the third factor of its learning synapses at tau = W
  (``y2 = e+``, ``y3 = e-``: chip traces are unsigned).
- A hidden learning population gets ``W_out^T e`` through a feedback synapse: the readout sends
  offset-binary graded spikes (payload 128 at tau = D+T-1, ``2 (64 + e_q)`` at tau = D+T), the
  hidden neuron subtracts the two sums it receives one step later and sends ``delta = kappa *
  (W_out^T e)`` as its synapses' third factor at tau = W. The feedback weights stay equal to
  ``W_out^T`` by learning with the transposed rule ``(x1 - 64) * y1`` (y1 = k count from the
  hidden neuron) or by a host re-sync every K samples.
So ``W = D + T + 1`` (D: depth of the readout in the learning graph).

Units: the user's learning rate is SGD on the NIR node's weight (``W_nir -= lr dL/dW_nir``, batch
1, biases frozen). The chip holds ``W = row_scale W_nir`` in integer steps of ``lsb``; the
fixed-point engine changes a weight by ``c/8 * x1 * y`` (two 7-bit traces and the 4-bit mantissa
lose 3 bits), floating point by ``c x1 y``. With ``x1 - 1 = k count`` and ``y = G delta`` that is
SGD at ``lr`` when ``c k G / 8 = lr row_scale^2 / (T lsb)``. A calibrated gain (``levels / p99
|delta|``) bounds G; :func:`choose_rate` picks c = m 2^e and the impulse k (``1 + k * most
counts <= 127``) that let G come closest to it, and G absorbs the rest exactly (per post neuron).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import scipy.sparse as sp

from ..graph import INPUT, Network
from ..quantize import ChipNet, ChipPopulation, mixed_grid
from ..spec import Spec, load_spec

KAPPAS = ("exact", "no-recursion", "triangle", "triangle-no-recursion")
"""Eligibility variants: rate-BP's exact kappa = alpha/T sum_t e_t sig'(u_t), without the e_t
recursion (e_t = 1), with a triangle surrogate, or both (cheaper in neuron microcode)."""
FEEDBACK = ("learned", "resync")
ROUNDING = ("stochastic", "nearest")

SPEC = load_spec()
TRACE_BITS = SPEC["learning.trace_bits"]
TRACE_MAX = 2 ** TRACE_BITS - 1
"""Learning-engine traces are 7-bit and saturate (spec.toml learning.trace_bits)."""
COUNT_OFFSET = 1
ERROR_OFFSET = 64
ERROR_LEVELS = 63
"""|e_q| when the error also drives a feedback synapse: 64 + e_q must fit the 7-bit trace."""
DELTA_LEVELS = 127
TRACE_TAU = {"fixed": 2 ** 24, "float": 2 ** 60}
"""Decay constant of every trace (x1 and the post traces y1..y3), per precision. Traces restart
every window, so decay is only an error source here, and mostly a simulator one: Lava decays a
trace from its epoch-end value over the whole epoch (the count spike is one step old, the decay W
steps long). Fixed point: at Lava's own post-trace default (2^16 - 1) the traces lost W steps in
~x/65535 of the epochs: the feedback copy drifted from W_out^T by a weight step in a third of its
entries over 1,000 samples of the zoo task; chip range unverified. Floating point: 2^60, where
exp(-1/tau) is 1.0 in float64, so traces do not decay (tau = 0 would mean that, but leaves Lava's
float trace history NaN). At 2^24 every float factor shrank by W/2^24, which is no longer a
relative error after the offsets: a silent input's x1 - 1 became -W/2^24 instead of 0 and the
feedback's x1 - 64 lost 64 W/2^24, so the learned feedback drifted from W_out^T by the same
amount every window and fc1 after 20 zoo windows differed from torch by 1.04e-3 of its change."""
MANTISSA_BITS = SPEC["learning.scale_mantissa_bits"]
MANTISSA_MAX = 2 ** (MANTISSA_BITS - 1) - 1
EXPONENT_RANGE = (SPEC["learning.scale_exp_min"], SPEC["learning.scale_exp_max"])
"""Rule constant c = m 2^e: signed mantissa, |m| <= 7; exponent range (spec.toml learning.*)."""
PRODUCT_SHIFT = 2 * TRACE_BITS + MANTISSA_BITS - (SPEC["learning.accumulator_bits"] - 1)
"""Fixed point drops 7 + 7 + 4 - 15 = 3 bits of a two-trace product before scaling (lava
LearningRuleApplierBitApprox: the product's widths beyond the unsigned accumulator)."""
EPOCH_TIME_BITS = SPEC["learning.epoch_time_bits"]


@dataclass(frozen=True)
class LearnOptions:
    """What learns and how; ``lr`` per NIR layer in SGD units of the NIR weight."""

    layers: tuple[str, ...]
    lr: Mapping[str, float]
    kappa: str = "exact"
    feedback: str = "learned"
    resync_every: int = 1
    """feedback="resync": samples between host re-syncs of W_out^T."""
    rounding: str = "stochastic"
    """How errors and deltas become integer third factors in fixed point."""
    alpha: float = 4.0
    """Surrogate sharpness of the trained neuron (rate-BP: g = alpha sig'(alpha (u - theta)))."""
    seed: int = 0
    headroom: float = 1.5
    """Fixed point: growth room of learning weights. A learning group keeps the compile's
    exponent if its largest weight stays below 254 / headroom, else takes coarser steps until
    it does (room to grow, at the price of resolution)."""
    percentile: float = 99.0
    """Error gains put this percentile of |error| / |delta| on the top level."""

    def __post_init__(self) -> None:
        if not self.layers:
            raise ValueError("no layers to learn: name at least one (e.g. --layers fc2)")
        for key, allowed in (("kappa", KAPPAS), ("feedback", FEEDBACK), ("rounding", ROUNDING)):
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}, got {getattr(self, key)!r}")
        missing = [n for n in self.layers if n not in self.lr]
        if missing:
            raise ValueError(f"no learning rate for {', '.join(missing)}")
        if any(not v > 0 for v in self.lr.values()):
            raise ValueError("learning rates must be positive")
        if self.resync_every < 1:
            raise ValueError(f"resync interval must be >= 1 sample, got {self.resync_every}")
        if not 0 < self.percentile <= 100:
            raise ValueError(f"percentile must lie in (0, 100], got {self.percentile}")
        if self.headroom < 1 or self.alpha <= 0:
            raise ValueError("headroom must be >= 1 and alpha > 0")


@dataclass
class LearningLayer:
    """One learning synapse group (a LearningDense): NIR node ``name`` into population ``post``."""

    name: str
    post: str
    pre: str
    """Population whose count spike sets x1: the source, or the relay when pooling precedes."""
    source: str
    relay: bool
    pool: sp.csr_matrix | None
    group: int
    """Index of this group in the post population's synapse list."""
    weights: np.ndarray
    """Initial chip weights [n_post, n_pre]: integers at ``weight_exp`` (fixed) or floats."""
    weight_exp: int
    lsb: float
    """Float (lowered) units per integer weight step; 1 in float."""
    row_scale: np.ndarray
    """Chip weight per unit of NIR weight, per post neuron."""
    max_count: int
    """Most spikes (pooled: summed) a pre neuron can send in T steps."""
    levels: int
    lr: float
    clipped: float = 0.0
    """Fraction of initial weights clipped when the headroom exponent was applied."""
    mantissa: int = 0
    exponent: int = 0
    impulse: int = 0
    """Trace impulse k: the count spike sets x1 = 1 + k count."""
    gain: np.ndarray | None = None
    """Third-factor gain per post neuron (levels per unit of error / delta)."""
    calibrated_gain: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def constant(self) -> float:
        return self.mantissa * 2.0 ** self.exponent

    @property
    def max_impulse(self) -> int:
        """Largest trace impulse whose pre trace 1 + k count cannot saturate 7 bits."""
        return (TRACE_MAX - COUNT_OFFSET) // self.max_count

    def rule(self) -> str:
        """dw of the Loihi3F rule: -c (x1 - 1) y2 + c (x1 - 1) y3, evaluated at epoch end (u0)."""
        c = f"{self.mantissa}*2^{self.exponent}"
        return (f"-{c} * u0 * (x1 - {COUNT_OFFSET}) * y2 + "
                f"{c} * u0 * (x1 - {COUNT_OFFSET}) * y3")

    def feedback_rule(self) -> str:
        """dw of the feedback synapse W^T, pre = error units (x1 = 64 + e_q), y1 = k count."""
        return f"-{self.mantissa}*2^{self.exponent} * u0 * (x1 - {ERROR_OFFSET}) * y1"


@dataclass
class Hidden:
    """A hidden population whose incoming synapses learn: kappa, feedback, delta."""

    name: str
    layer: str
    readout_group: int
    """Index of the readout's synapse group from this population."""
    feedback: np.ndarray
    """Initial feedback weights W_out^T [n_hidden, classes] (chip integers, exponent 0)."""
    learned: bool
    """Feedback learns with the transposed rule (else: static, or re-synced by the host)."""
    potential_scale: np.ndarray
    lam: float
    unit: float
    """Chip potential per unit of lowered potential: 64 s in fixed, 1 in float."""
    out_lsb: float
    """Float units per integer step of the readout weights (the feedback's scale)."""
    decode: float = 0.0
    """delta_in = decode * (feedback sum difference): W_out^T e in lowered units."""


@dataclass
class LearningPlan:
    precision: str
    timesteps: int
    window: int
    chip: ChipNet
    """The compiled network with the learning groups on their learning grid (headroom)."""
    net: Network
    layers: list[LearningLayer]
    hidden: list[Hidden]
    depth: dict[str, int]
    """Depth of every population (and relay, keyed by the layer name) in the learning graph."""
    delay: dict[tuple[str, str], int]
    """Extra delay of the frozen synapse groups of (population, source)."""
    error_levels: int
    options: LearnOptions
    error_gain: float = 0.0
    skipped: dict[str, str] = field(default_factory=dict)
    """Layers of the network that cannot learn on the chip, and why."""

    @property
    def fixed(self) -> bool:
        return self.precision == "fixed"

    @property
    def readout(self) -> ChipPopulation:
        return self.chip.readout

    @property
    def readout_depth(self) -> int:
        return self.depth[self.readout.name]

    def layer(self, name: str) -> LearningLayer:
        return next(layer for layer in self.layers if layer.name == name)

    def layer_into(self, post: str) -> LearningLayer | None:
        return next((layer for layer in self.layers if layer.post == post), None)

    def active(self, name: str) -> tuple[int, int]:
        """First and last local step of a population's (or relay's) T integration steps."""
        d = self.depth[name]
        return d + 1, d + self.timesteps

    @property
    def error_step(self) -> int:
        """The readout has its T steps at this local step and computes the error."""
        return self.readout_depth + self.timesteps

    @property
    def trace_step(self) -> int:
        return self.window - 1

    @property
    def impulse(self) -> dict[str, int]:
        """Trace impulse of every pre population (relays: ``<layer>.relay``), once calibrated."""
        return {layer.pre: layer.impulse for layer in self.layers}

    def calibrate(self, errors: np.ndarray, deltas: Mapping[str, np.ndarray]) -> None:
        """Set gains and rule constants from calibration signals: errors [N, classes] of the
        learning samples and, per hidden population, deltas [N, n] in lowered units."""
        p = self.options.percentile
        top = float(np.percentile(np.abs(errors), p)) if errors.size else 0.0
        self.error_gain = self.error_levels / top if top > 0 else float(self.error_levels)
        for layer in self.layers:
            if layer.post == self.readout.name:
                cal = self.error_gain
            else:
                rs2 = layer.row_scale ** 2 / np.median(layer.row_scale ** 2)
                d = np.abs(deltas[layer.post]) * rs2
                top = float(np.percentile(d, p)) if d.size else 0.0
                cal = layer.levels / top if top > 0 else float(layer.levels)
            _set_rate(layer, cal, self.fixed, self.timesteps)
            if layer.post == self.readout.name:
                self.error_gain = float(layer.gain[0])
        for h in self.hidden:
            h.decode = h.out_lsb / (2.0 * self.error_gain)


def choose_rate(rate: float, calibrated: float, max_impulse: int) -> tuple[int, int, int]:
    """(mantissa, exponent, impulse) for an engine update ``rate = c k G`` (c = m 2^e) that
    lets the gain G come as close to the calibrated one as possible without exceeding it.

    A larger G resolves the third factor more finely (rounding noise ~ 1/G); k only scales an
    exact count; and for a given rate the truncated product k count y m grows as 2^-e, so
    among equal gains the smallest exponent wins. If even the smallest constant asks for a gain
    below the calibrated one, the rate is below the engine's comfortable range (coarser third
    factors); if even the largest exceeds it, more third factors saturate."""
    lo, hi = EXPONENT_RANGE
    best, best_key = (1, lo, 1), None
    for e in range(lo, hi + 1):
        for m in range(1, MANTISSA_MAX + 1):
            for k in range(1, max_impulse + 1):
                gain = rate / (m * 2.0 ** e * k)
                key = (gain <= calibrated * (1 + 1e-9), gain if gain <= calibrated else -gain, -e, k)
                if best_key is None or key > best_key:
                    best, best_key = (m, e, k), key
    return best


def _set_rate(layer: LearningLayer, calibrated: float, fixed: bool, timesteps: int) -> None:
    """Rule constant, trace impulse and per-neuron gain for SGD at ``layer.lr``."""
    rs2 = layer.row_scale ** 2
    rate = (2 ** PRODUCT_SHIFT if fixed else 1.0) * layer.lr * rs2 / (timesteps * layer.lsb)
    ref = float(np.median(rate))
    layer.mantissa, layer.exponent, layer.impulse = choose_rate(ref, calibrated, layer.max_impulse)
    layer.gain = rate / (layer.constant * layer.impulse)
    layer.calibrated_gain = calibrated
    ratio = float(np.median(layer.gain)) / calibrated
    layer.notes = []
    if ratio < 0.5:
        layer.notes.append(f"learning rate below the engine's range at full resolution: rule constant "
                           f"{layer.constant:g} (the smallest), impulse {layer.impulse}, third-factor "
                           f"gain {ratio:.2g}x the calibrated one (coarser third factors)")
    elif ratio > 1 + 1e-9:
        layer.notes.append(f"learning rate above the engine's range: rule constant {layer.constant:g}, "
                           f"third-factor gain {ratio:.2g}x the calibrated one (more saturate)")


def lowered_group(net: Network, post: str, node: str) -> int:
    """Index of the synapse group of NIR node ``node`` into population ``post``."""
    groups = [i for i, s in enumerate(net.population(post).synapses) if s.node == node]
    if len(groups) != 1:
        raise ValueError(f"layer {node!r} feeds population {post!r} through {len(groups)} synapse "
                         "groups; a learning layer must be one group (use --split none)")
    return groups[0]


def why_not(net: Network, name: str) -> str | None:
    """Why NIR node ``name`` cannot learn on the chip in this tool, or None if it can."""
    found = [(p, s) for p in net.populations for s in p.synapses if s.node == name]
    if not found:
        return None
    pop, syn = found[0]
    if syn.shared:
        return ("convolution: Lava has no shared-weight learning synapse (only LearningDense / "
                "LearningSparse), and learning the expanded matrix would untie the kernel")
    if syn.source == INPUT:
        return "fed by the graded input image: input-layer learning is not implemented"
    if syn.delay:
        return "delayed (shortcut) synapse group: LearningDense has no synaptic delay"
    readout = net.readout
    if not pop.readout and not any(s.source == pop.name for s in readout.synapses):
        return ("its neurons do not feed the readout directly: the error would need more than one "
                "feedback connection (not implemented)")
    return None


def learnable_layers(net: Network) -> dict[str, str | None]:
    """Every weighted NIR node of the network: None if it can learn, else the reason."""
    names = dict.fromkeys(s.node for p in net.populations for s in p.synapses if s.node)
    return {n: why_not(net, n) for n in names}


def plan_learning(net: Network, chip: ChipNet, options: LearnOptions, spec: Spec | None = None
                  ) -> LearningPlan:
    """The learning graph's structure and chip weights (gains follow from :meth:`calibrate`)."""
    spec = spec or load_spec()
    fixed = chip.precision == "fixed"
    T = chip.timesteps
    choose_layers(net, options.layers)
    known = learnable_layers(net)
    pops = {p.name: p for p in chip.populations}
    lowered = {p.name: p for p in net.populations}
    posts: dict[str, str] = {}
    layers: list[LearningLayer] = []
    new_pops = {p.name: replace(p, synapses=list(p.synapses)) for p in chip.populations}
    for name in options.layers:
        post = next(p.name for p in net.populations for s in p.synapses if s.node == name)
        if post in posts:
            raise ValueError(f"layers {posts[post]!r} and {name!r} both feed {post!r}: one learning "
                             "group per population (its neurons send one third factor)")
        posts[post] = name
        g = lowered_group(net, post, name)
        chip_groups = [i for i, s in enumerate(pops[post].synapses) if s.node == name]
        if len(chip_groups) != 1:
            raise ValueError(f"layer {name!r} is split into {len(chip_groups)} synapse groups "
                             "(--split all); learning needs one (use --split input or none)")
        cg = chip_groups[0]
        syn, csyn = lowered[post].synapses[g], pops[post].synapses[cg]
        rs = np.asarray(syn.row_scale, float)
        weights = np.asarray(syn.weights.toarray() if sp.issparse(syn.weights) else syn.weights, float)
        clipped = 0.0
        if fixed:
            scale = pops[post].scale
            exp = int(csyn.weight_exp)
            while np.abs(weights).max(initial=0) * scale / 2.0 ** exp > 254 / options.headroom \
                    and exp < spec["synapse.weight_exp_max"]:
                exp += 1
            q, clip = mixed_grid(weights, scale, exp)
            weights, lsb, clipped = q, 2.0 ** exp / scale, float(clip.mean())
        else:
            exp, lsb = 0, 1.0
        new_pops[post].synapses[cg] = replace(csyn, weights=weights, weight_exp=exp)
        relay = syn.pool is not None
        pre = f"{name}.relay" if relay else syn.source
        area = int(np.diff(syn.pool.indptr).max(initial=1)) if relay else 1
        if (TRACE_MAX - COUNT_OFFSET) // (T * area) < 1:
            raise ValueError(f"layer {name!r}: {T} steps x {area} pooled inputs overflow the 7-bit "
                             "pre trace even at impulse 1")
        layers.append(LearningLayer(name, post, pre, syn.source, relay,
                                    sp.csr_matrix(syn.pool) if relay else None, cg, weights, exp,
                                    lsb, rs, T * area, DELTA_LEVELS, float(options.lr[name]),
                                    clipped))
    readout = chip.readout.name
    hidden_posts = [layer.post for layer in layers if layer.post != readout]
    error_levels = ERROR_LEVELS if hidden_posts else DELTA_LEVELS
    for layer in layers:
        if layer.post == readout:
            layer.levels = error_levels
            if np.ptp(layer.row_scale) > 1e-9 * np.abs(layer.row_scale).max():
                raise ValueError(f"readout layer {layer.name!r} scales its rows differently; the "
                                 "feedback decode needs one error gain for all classes")
    new_chip = replace(chip, populations=[new_pops[p.name] for p in chip.populations])
    hidden = [_hidden(net, new_chip, layers, h, options, fixed) for h in hidden_posts]
    depth, delay = _timing(net, layers)
    _check_static(net, layers)
    pres = [layer.pre for layer in layers]
    if len(set(pres)) != len(pres):
        raise ValueError("two learning layers read the same pre-synaptic population; each needs "
                         "its own count spike (not implemented)")
    window = depth[readout] + T + 1
    skipped = {n: r for n, r in known.items() if r is not None}
    return LearningPlan(chip.precision, T, window, new_chip, net, layers, hidden, depth, delay,
                        error_levels, options, skipped=skipped)


def _hidden(net: Network, chip: ChipNet, layers: list[LearningLayer], post: str,
            options: LearnOptions, fixed: bool) -> Hidden:
    readout = chip.readout
    groups = [i for i, s in enumerate(readout.synapses) if s.source == post]
    if len(groups) != 1:
        raise ValueError(f"the readout receives {post!r} through {len(groups)} synapse groups; "
                         "the error feedback needs exactly one")
    g = groups[0]
    syn = readout.synapses[g]
    if syn.pool is not None or syn.shared or syn.delay:
        raise ValueError(f"the readout's synapses from {post!r} are pooled, shared or delayed: "
                         "no feedback path")
    w_out = np.asarray(syn.weights.toarray() if sp.issparse(syn.weights) else syn.weights, float)
    learns = any(layer.post == readout.name and layer.source == post for layer in layers)
    pop = next(p for p in chip.populations if p.name == post)
    lowered = net.population(post)
    if fixed:
        lam, unit = 1.0 - pop.dv / 2 ** 12, 64.0 * pop.scale
        out_lsb = 2.0 ** syn.weight_exp / readout.scale
    else:
        lam, unit, out_lsb = 1.0 - pop.dv, 1.0, 1.0
    return Hidden(post, next(layer.name for layer in layers if layer.post == post), g, w_out.T.copy(),
                  learns and options.feedback == "learned",
                  np.asarray(lowered.potential_scale, float), lam, unit, out_lsb)


def _timing(net: Network, layers: list[LearningLayer]) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """Depths with a relay population before every pooled learning layer, and the delays that
    keep frozen fan-in aligned."""
    by_group = {(layer.post, layer.name): layer for layer in layers}
    depth: dict[str, int] = {}
    delay: dict[tuple[str, str], int] = {}
    for pop in net.populations:
        arrivals = []
        for s in pop.synapses:
            src = 0 if s.source == INPUT else depth[s.source]
            layer = by_group.get((pop.name, s.node))
            if layer is not None and layer.relay:
                depth[layer.pre] = src + 1
                src += 1
            arrivals.append(src)
        depth[pop.name] = 1 + max(arrivals)
        for s, src in zip(pop.synapses, arrivals):
            extra = depth[pop.name] - 1 - src
            if (pop.name, s.node) in by_group and extra:
                raise ValueError(f"layer {s.node!r} would need a synaptic delay of {extra} in the "
                                 "learning graph; LearningDense has none")
            delay[pop.name, s.source] = extra
    return depth, delay


def _check_static(net: Network, layers: list[LearningLayer]) -> None:
    """Only the readout may sit after a learning population (the emulator precomputes the rest)."""
    posts = {layer.post for layer in layers}
    for pop in net.populations:
        if pop.readout or pop.name in posts:
            continue
        bad = [s.source for s in pop.synapses if s.source in posts]
        if bad:
            raise ValueError(f"population {pop.name!r} is fed by learning population {bad[0]!r}; "
                             "only the readout may follow a learning layer")


def choose_layers(net: Network, names: Sequence[str] | None) -> tuple[str, ...]:
    """The learning layers: those named (checked: they exist and can learn), or every layer
    that can learn."""
    known = learnable_layers(net)
    if not names:
        able = tuple(n for n, why in known.items() if why is None)
        if not able:
            raise ValueError("no layer of this network can learn on the chip")
        return able
    for name in names:
        if name not in known:
            raise ValueError(f"no weighted NIR layer named {name!r}; layers: {', '.join(known)}")
        if known[name] is not None:
            raise ValueError(f"layer {name!r} cannot learn on the chip: {known[name]}")
    if len(set(names)) != len(names):
        raise ValueError("a layer is named twice in the learning layers")
    return tuple(names)
