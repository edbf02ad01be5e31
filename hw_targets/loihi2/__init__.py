"""Loihi 2 target: NIR -> chip populations -> fixed point -> Lava processes (or the emulator).

Modules: ``spec`` (chip numbers with sources), ``graph`` (NIR lowering), ``quantize`` (fixed
point), ``resources`` (cores/synapses check), ``emulator`` (bit-exact numpy), ``lava_backend``
(Lava process graph), ``netx`` (lava-dl netx HDF5 writer), ``reference`` (float NIR reference).
"""
