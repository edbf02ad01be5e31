"""Data sets, normalization, augmentation and batching (neuroratebp.data)."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from neuroratebp import data


def test_fashion_mnist_from_debian_files() -> None:
    splits = data.load_fashion_mnist()
    assert splits.train.images.shape == (60000, 1, 28, 28)
    assert splits.test.images.shape == (10000, 1, 28, 28)
    assert splits.train.images.dtype == torch.float32 and splits.train.labels.dtype == torch.int64
    assert 0.0 <= float(splits.train.images.min()) and float(splits.train.images.max()) == 1.0
    assert torch.bincount(splits.train.labels).tolist() == [6000] * 10
    assert torch.bincount(splits.test.labels).tolist() == [1000] * 10


def test_fashion_mnist_missing_names_the_debian_package(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="dataset-fashion-mnist"):
        data.load_fashion_mnist(tmp_path)


def test_digits_fixed_stratified_split() -> None:
    a, b = data.load_digits(), data.load_digits()
    assert a.train.images.shape == (1437, 1, 8, 8) and a.test.images.shape == (360, 1, 8, 8)
    assert torch.equal(a.test.images, b.test.images) and torch.equal(a.train.labels, b.train.labels)
    assert float(a.train.images.max()) == 1.0 and float(a.train.images.min()) == 0.0
    assert torch.bincount(a.test.labels).min() >= 35  # every class present in the test split


def test_synthetic_any_shape_is_deterministic() -> None:
    a = data.synthetic([3, 5, 7], num_classes=4, train_size=20, test_size=6, seed=1)
    b = data.synthetic([3, 5, 7], num_classes=4, train_size=20, test_size=6, seed=1)
    assert a.train.images.shape == (20, 3, 5, 7) and len(a.test) == 6
    assert torch.equal(a.train.images, b.train.images)
    assert int(a.train.labels.max()) < 4 and 0.0 <= float(a.train.images.min())
    with pytest.raises(ValueError, match="C, H, W"):
        data.synthetic([10])


# -- CIFAR-10 ---------------------------------------------------------------------------------
def _write_cifar_batch(path: Path, images: np.ndarray, labels: list[int]) -> None:
    """The python-version layout: dict with byte keys, rows of 3072 bytes (R, G, B planes)."""
    batch = {b"batch_label": path.name.encode(), b"labels": labels,
             b"data": images.reshape(len(labels), -1),
             b"filenames": [f"img{i}.png".encode() for i in range(len(labels))]}
    with path.open("wb") as f:
        pickle.dump(batch, f, protocol=2)


def write_cifar(root: Path, per_batch: int = 4, seed: int = 0) -> np.ndarray:
    """A small CIFAR-10 directory; returns all images (N, 3, 32, 32) uint8, train then test."""
    rng = np.random.default_rng(seed)
    every = []
    for name in [*data.CIFAR10_TRAIN, data.CIFAR10_TEST]:
        images = rng.integers(0, 256, (per_batch, 3, 32, 32), dtype=np.uint8)
        _write_cifar_batch(root / name, images, rng.integers(0, 10, per_batch).tolist())
        every.append(images)
    return np.concatenate(every)


def test_cifar10_pickle_batches(tmp_path: Path) -> None:
    raw = write_cifar(tmp_path)
    splits = data.load_cifar10(tmp_path)
    assert splits.train.images.shape == (20, 3, 32, 32) and splits.test.images.shape == (4, 3, 32, 32)
    # plane layout: value of channel c, row h, column w is byte c*1024 + h*32 + w of the row
    assert float(splits.train.images[5, 2, 7, 9]) == pytest.approx(raw[5, 2, 7, 9] / 255.0)
    assert torch.equal(splits.test.images, torch.from_numpy(raw[20:]).float() / 255.0)


def test_cifar10_missing_or_malformed(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not found"):
        data.load_cifar10(tmp_path)
    write_cifar(tmp_path)
    _write_cifar_batch(tmp_path / "test_batch", np.zeros((2, 100), np.uint8), [0, 1])
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        data.load_cifar10(tmp_path)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return os.system, (f"touch {self.marker}",)


def test_cifar10_pickle_that_runs_code_is_refused(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    with (tmp_path / "data_batch_3").open("wb") as f:
        pickle.dump({b"data": _RunsCode(marker), b"labels": [0]}, f)
    with pytest.raises(ValueError, match="refusing to load"):
        data.load_cifar10(tmp_path)
    assert not marker.exists()


def test_load_dataset_dispatch_and_errors() -> None:
    assert len(data.load_dataset({"dataset": "digits"}).test) == 360
    with pytest.raises(ValueError, match="unknown dataset"):
        data.load_dataset({"dataset": "imagenet"})
    with pytest.raises(ValueError, match="path"):
        data.load_dataset({"dataset": "cifar10"})


# -- normalization, augmentation, batching ----------------------------------------------------
def test_normalization_fit_and_table() -> None:
    images = torch.rand(50, 3, 4, 4) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)
    train = data.ImageSet(images, torch.zeros(50, dtype=torch.int64))
    norm = data.Normalization.from_table({}, train)
    out = norm(images)
    assert torch.allclose(out.mean((0, 2, 3)), torch.zeros(3), atol=1e-5)
    assert torch.allclose(out.std((0, 2, 3)), torch.ones(3), atol=1e-3)
    explicit = data.Normalization.from_table({"mean": [0.5] * 3, "std": [0.25] * 3}, train)
    assert torch.allclose(explicit(images), (images - 0.5) / 0.25)
    assert torch.equal(data.Normalization.from_table({"normalize": False}, train)(images), images)
    with pytest.raises(ValueError, match="3 finite values"):
        data.Normalization.from_table({"mean": [0.5], "std": [0.25]}, train)


def test_random_crop_pads_with_fill_and_shifts() -> None:
    x = torch.arange(1.0, 1 + 64 * 36).view(64, 1, 6, 6)
    aug = data.Augment(crop_padding=2, fill=(-1.0,))
    out = aug(x, torch.Generator().manual_seed(0))
    padded = torch.full((64, 1, 10, 10), -1.0)
    padded[:, :, 2:8, 2:8] = x
    offsets = set()
    for i in range(64):  # every output is some 6x6 window of the padded image
        hits = [(dy, dx) for dy in range(5) for dx in range(5)
                if torch.equal(out[i], padded[i, :, dy:dy + 6, dx:dx + 6])]
        assert len(hits) == 1
        offsets.add(hits[0])
    assert len(offsets) > 5
    assert torch.equal(out, aug(x, torch.Generator().manual_seed(0)))


def test_hflip_flips_about_half() -> None:
    x = torch.rand(200, 3, 4, 5)
    out = data.Augment(hflip=True)(x, torch.Generator().manual_seed(1))
    flipped = torch.tensor([torch.equal(o, xi.flip(2)) for o, xi in zip(out, x)])
    kept = torch.tensor([torch.equal(o, xi) for o, xi in zip(out, x)])
    assert bool((flipped ^ kept).all()) and 60 < int(flipped.sum()) < 140


def test_augment_from_table() -> None:
    norm = data.Normalization((0.5,), (0.25,))
    assert data.Augment.from_table({}, norm) is None
    aug = data.Augment.from_table({"augment": {"crop_padding": 4, "hflip": True}}, norm)
    assert aug == data.Augment(4, True, (-2.0,))
    with pytest.raises(ValueError, match="unknown"):
        data.Augment.from_table({"augment": {"cutout": 8}}, norm)


def test_rank_shards_make_up_the_global_batch() -> None:
    images = torch.arange(30.0).view(30, 1, 1, 1)
    ds = data.ImageSet(images, torch.arange(30))

    def run(rank: int, world: int) -> list[torch.Tensor]:
        return [y for _, y in data.batches(ds, 8, order=data.seeded_generator(5, 2), drop_last=True,
                                           rank=rank, world_size=world)]

    single = run(0, 1)
    shards = [run(r, 2) for r in range(2)]
    assert len(single) == 3 and all(len(y) == 8 for y in single)  # 30 // 8, last partial dropped
    for b, y in enumerate(single):
        assert sorted(torch.cat([shards[0][b], shards[1][b]]).tolist()) == sorted(y.tolist())
    assert torch.cat(single).unique().numel() == 24  # a permutation, no repeats
    assert [y.tolist() for y in run(0, 1)] == [y.tolist() for y in single]
    assert [y.tolist() for _, y in data.batches(ds, 8)][-1] == list(range(24, 30))  # in order, kept
