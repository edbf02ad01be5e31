"""Memory accounting shared by tests and benchmarks.

"Bytes saved for backward" is what autograd keeps alive between forward and backward: the
quantity rate-BP makes independent of T. It is measured with
``torch.autograd.graph.saved_tensors_hooks``, counting each distinct storage once.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor


@dataclass
class SavedBytes:
    total: int = 0
    _seen: set[tuple[int, int]] = field(default_factory=set, repr=False)

    def pack(self, t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in self._seen:
            self._seen.add(key)
            self.total += storage.nbytes()
        return t


@contextmanager
def saved_tensor_bytes() -> Iterator[SavedBytes]:
    """Count the bytes of distinct storages autograd saves for backward inside the block."""
    counter = SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda t: t):
        yield counter
