"""Factored synaptic sums (pooling, conv kernel) against the expanded matrix, exactly."""
from __future__ import annotations

import nir
import numpy as np
import pytest
import scipy.sparse as sp

from hw_targets.loihi2.graph import ConvGeometry, Synapse, conv_matrix, pair, pool_matrix
from hw_targets.loihi2.spike_sum import Factors, SpikeSum


@pytest.mark.parametrize("stride, padding, dilation", [(1, 1, 1), (2, 0, 1), (1, 2, 2), ((2, 1), (1, 0), 1)])
def test_conv_factors_give_the_expanded_matrix_sums(stride, padding, dilation):
    """The Sparse models' convolution path equals the chip's matrix on 0/1 spikes, exactly."""
    rng = np.random.default_rng(0)
    kernel = rng.integers(-128, 128, (5, 3, 3, 3)).astype(float)
    geo = ConvGeometry((3, 9, 8), kernel.shape, pair(stride), pair(padding), pair(dilation))
    m = conv_matrix(kernel, geo.in_shape, stride, padding, dilation)[0]
    np.testing.assert_array_equal(geo.kernel_of(m), kernel)
    pool, pooled, _ = pool_matrix(nir.AvgPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
                                  (3, 18, 16))
    assert pooled == geo.in_shape
    syn = Synapse("lif", m, pool, conv=geo)
    factors = Factors.of(syn)
    assert factors is not None and factors.conv is not None
    full = sp.csr_matrix(syn.matrix())
    spike_sum = SpikeSum(full, factors, np.int64)
    fan_out = SpikeSum(full, None, np.int64)
    for rate in (0.0, 0.1, 0.6):
        s = rng.random(full.shape[1]) < rate
        expected = full.astype(np.int64) @ s.astype(np.int64)
        np.testing.assert_array_equal(spike_sum(s), expected)
        np.testing.assert_array_equal(fan_out(s), expected)
    batch = rng.random((40, full.shape[1])) < 0.2  # batched (the emulator), in im2col slices
    expected = (full.astype(np.int64) @ batch.T.astype(np.int64)).T
    np.testing.assert_array_equal(spike_sum(batch), expected)
    np.testing.assert_array_equal(fan_out(batch), expected)
    scaled = sp.csr_matrix(sp.diags(np.arange(1.0, m.shape[0] + 1)) @ m)  # per-position rows
    assert geo.kernel_of(scaled) is None


def test_pool_then_dense_uses_kernel_fan_out():
    rng = np.random.default_rng(1)
    pool, (c, h, w), _ = pool_matrix(nir.SumPool2d(np.array([2, 2]), np.array([2, 2]), np.array([0, 0])),
                                     (2, 6, 6))
    dense = rng.integers(-128, 128, (7, c * h * w)).astype(float)
    syn = Synapse("lif", dense, pool)
    factors = Factors.of(syn)
    assert factors is not None and factors.conv is None and factors.pool is not None
    s = rng.random(pool.shape[1]) < 0.3
    np.testing.assert_array_equal(SpikeSum(syn.matrix(), factors, np.int64)(s),
                                  (syn.matrix() @ s.astype(float)).astype(np.int64))


def test_graded_input_and_no_structure():
    """8-bit graded input through a conv (the first layer) and a plain matrix (no factors)."""
    rng = np.random.default_rng(2)
    kernel = rng.integers(-128, 128, (4, 2, 3, 3)).astype(float)
    geo = ConvGeometry((2, 7, 7), kernel.shape, (1, 1), (1, 1), (1, 1))
    syn = Synapse("input", geo.expand(kernel), conv=geo)
    x = rng.integers(0, 256, (5, 2 * 7 * 7))
    np.testing.assert_array_equal(SpikeSum.of(syn, np.int64)(x), (syn.weights @ x.T).T.astype(np.int64))
    plain = Synapse("lif", sp.random(6, 9, density=0.5, random_state=3, format="csr"))
    assert Factors.of(plain) is None
    np.testing.assert_allclose(SpikeSum.of(plain, float)(x[:, :9]), (plain.weights @ x[:, :9].T).T)
