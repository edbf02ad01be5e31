"""Memory accounting shared by tests and benchmarks.

"Bytes saved for backward" is what autograd keeps alive between forward and backward: the
quantity rate-BP makes independent of T. It is measured with
``torch.autograd.graph.saved_tensors_hooks`` as the peak, over the block, of the bytes of the
distinct storages the autograd graph holds. A tensor is held for as long as the graph node that
saved it lives, so one saved by a branch that is dropped before backward (BPTT's membrane after
the last step) stops counting when it is freed, and its address, once reused, counts afresh.
"""
from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

StorageKey = tuple[int, int]


class _Saved:
    """What the graph holds instead of the tensor; its lifetime is the saving node's."""

    __slots__ = ("tensor", "__weakref__")

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


@dataclass
class SavedBytes:
    total: int = 0
    """Peak bytes of distinct storages held for backward."""
    _held: int = 0
    _refs: dict[StorageKey, int] = field(default_factory=dict, repr=False)

    def pack(self, t: Tensor) -> _Saved:
        storage = t.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in self._refs:
            self._held += storage.nbytes()
            self.total = max(self.total, self._held)
        self._refs[key] = self._refs.get(key, 0) + 1
        saved = _Saved(t.detach())  # detached: an output that saves itself makes no cycle
        weakref.finalize(saved, self._release, key)
        return saved

    def _release(self, key: StorageKey) -> None:
        self._refs[key] -= 1
        if not self._refs[key]:
            del self._refs[key]
            self._held -= key[1]


@contextmanager
def saved_tensor_bytes() -> Iterator[SavedBytes]:
    """Count the peak bytes of distinct storages autograd saves for backward inside the block."""
    counter = SavedBytes()
    with torch.autograd.graph.saved_tensors_hooks(counter.pack, lambda s: s.tensor):
        yield counter
