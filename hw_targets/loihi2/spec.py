"""Loihi 2 numbers (bit widths, resource limits) loaded from ``spec.toml``.

The numbers live in data, each with its source and a confidence marker, so the compiler and the
feasibility check cite one place and a new chip is mostly a new file.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

SPEC_FILE = Path(__file__).with_name("spec.toml")


@dataclass(frozen=True)
class Entry:
    value: int
    source: str
    confidence: str


class Spec:
    """Flat view ``spec["neuron.vth_bits"] -> 17``; ``spec.entry(key)`` keeps the source."""

    def __init__(self, table: dict) -> None:
        self.name: str = table["chip"]["name"]
        self._entries = {f"{group}.{key}": Entry(**item)
                         for group, items in table.items()
                         for key, item in items.items() if isinstance(item, dict)}

    def __getitem__(self, key: str) -> int:
        return self._entries[key].value

    def entry(self, key: str) -> Entry:
        return self._entries[key]

    def entries(self) -> dict[str, Entry]:
        return dict(self._entries)


@lru_cache(maxsize=None)
def load_spec(path: str | Path = SPEC_FILE) -> Spec:
    with open(path, "rb") as f:
        return Spec(tomllib.load(f))
