"""Bytes saved for backward: distinct storages, counted while the graph holds them."""
from __future__ import annotations

import torch

from neuroratebp.profiling import saved_tensor_bytes


def test_a_storage_saved_twice_counts_once() -> None:
    x = torch.randn(1000, requires_grad=True)
    with saved_tensor_bytes() as saved:
        (x * x).sum().backward()  # mul saves x as both operands
    assert saved.total == x.numel() * x.element_size()


def test_branches_dropped_before_backward_do_not_count() -> None:
    x = torch.randn(1000, requires_grad=True)
    nbytes = x.numel() * x.element_size()
    with saved_tensor_bytes() as saved:
        for _ in range(5):  # exp saves its output; each graph dies before the next is built
            y = x.exp()
            del y
        kept = [x.exp() for _ in range(2)]  # two graphs alive at once: two storages
        sum(k.sum() for k in kept).backward()
    assert saved.total == 2 * nbytes
