"""On-chip rate-BP learning on Loihi 2, simulated: the Lava learning graph and its emulator.

Rate-BP needs, per sample, one weight update per learning synapse at the end of the sample's
window: ``dW = -lr * delta_post * rate_pre`` with ``delta = kappa * (W_next^T e)``. On the chip
that is a three-factor rule of the learning engine (Lava's ``Loihi3FLearningRule``, one epoch
per window): a pre trace ``x1`` holding the pre-synaptic spike count, and the post-synaptic
error or delta as the third factor ``y2 - y3``. Modules:

- ``plan``: which NIR layers learn, the window timing, the rule constants (learning rate in SGD
  units -> rule constant, trace impulse, error gain), feasibility of each part on Loihi 2.
- ``neurons``: the neuron-side arithmetic (gated LIF with rate and kappa, the readout's error,
  quantization of third factors): one implementation used by the Lava process models and the
  emulator alike.
- ``engine``: the learning engine's epoch update as Lava's models compute it (fixed_pt
  bit-approximate model and floating_pt), random streams included.
- ``emulator``: the whole learning graph in numpy, bit-exact to Lava fixed_pt.
- ``lava_graph``: the Lava processes (imported only for the lava backend).
- ``report``: learned NIR, per-run statistics and the feasibility report.
"""

from .plan import LearnOptions, choose_layers, learnable_layers, plan_learning
from .report import feasibility
from .session import LearnResult, learn, make_plan

__all__ = ["LearnOptions", "LearnResult", "choose_layers", "feasibility", "learn",
           "learnable_layers", "make_plan", "plan_learning"]
