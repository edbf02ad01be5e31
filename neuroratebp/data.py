"""Datasets as in-memory CPU tensors, their normalization, augmentation and batching.

Every loader returns images as float tensors in [0, 1] with shape ``(N, C, H, W)`` and int64
labels. The data sets used here fit in memory, so batching is tensor indexing: no worker
processes, no per-sample Python, and torch's intra-op threads keep the cores busy. Randomness
(shuffling, augmentation) comes from generators seeded by (seed, epoch, rank), so a resumed or
repeated run sees exactly the same batches without any hidden global RNG state.
"""
from __future__ import annotations

import gzip
import math
import pickle
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
"""Where Debian's package ``dataset-fashion-mnist`` installs the idx files."""

CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST = "test_batch"


@dataclass(frozen=True)
class ImageSet:
    """Images ``(N, C, H, W)`` (or samples reshaped to a network's input, ``(N, ...)``) and
    their int64 labels ``(N,)``."""

    images: Tensor
    labels: Tensor

    def __post_init__(self) -> None:
        if self.images.dim() < 2 or self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(f"images {tuple(self.images.shape)} and labels "
                             f"{tuple(self.labels.shape)} do not form a data set")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def head(self, n: int | None) -> ImageSet:
        """The first ``n`` samples (all when ``n`` is None)."""
        return self if n is None else ImageSet(self.images[:n], self.labels[:n])


@dataclass(frozen=True)
class Splits:
    train: ImageSet
    test: ImageSet
    num_classes: int


def _images(array: np.ndarray, scale: float) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / scale)


def _labels(array: Sequence[int] | np.ndarray) -> Tensor:
    return torch.as_tensor(np.asarray(array, dtype=np.int64))


# -- Fashion-MNIST (idx gz) -------------------------------------------------------------------
def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format, unsigned bytes), gzip-compressed."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an idx file of unsigned bytes")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    if len(raw) - header != int(np.prod(dims)):
        raise ValueError(f"{path} is truncated: header says {dims}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def load_fashion_mnist(path: str | Path = FASHION_MNIST_DIR) -> Splits:
    """Fashion-MNIST, 60k train / 10k test 28x28 grey images, 10 classes."""
    root = Path(path)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        files = [root / f"{prefix}-{kind}-idx{n}-ubyte.gz" for kind, n in (("images", 3), ("labels", 1))]
        missing = [f.name for f in files if not f.is_file()]
        if missing:
            raise ValueError(f"Fashion-MNIST not found in {root} (missing {', '.join(missing)}); "
                             "install the Debian package dataset-fashion-mnist, or name the "
                             "directory with --data DIR ([data] path)")
        images, labels = read_idx(files[0]), read_idx(files[1])
        if images.ndim != 3 or labels.shape != images.shape[:1]:
            raise ValueError(f"Fashion-MNIST {split} files in {root} do not match each other")
        parts[split] = ImageSet(_images(images[:, None], 255.0), _labels(labels))
    return Splits(parts["train"], parts["test"], 10)


# -- scikit-learn digits ----------------------------------------------------------------------
def load_digits(test_fraction: float = 0.2) -> Splits:
    """sklearn's 8x8 digits (1797 samples) with a fixed stratified train/test split."""
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    x, y = sk_digits(return_X_y=True)
    x_tr, x_te, y_tr, y_te = train_test_split(x, y, test_size=test_fraction, random_state=0,
                                              stratify=y)

    def as_set(xs: np.ndarray, ys: np.ndarray) -> ImageSet:
        return ImageSet(_images(xs.reshape(-1, 1, 8, 8), 16.0), _labels(ys))

    return Splits(as_set(x_tr, y_tr), as_set(x_te, y_te), 10)


# -- synthetic --------------------------------------------------------------------------------
def synthetic(shape: Sequence[int], num_classes: int = 10, train_size: int = 1024,
              test_size: int = 256, seed: int = 0) -> Splits:
    """Any-shape learnable data (class prototype + noise, in [0, 1]) for benchmarks and tests."""
    if len(shape) != 3:
        raise ValueError(f"synthetic data needs a (C, H, W) shape, got {list(shape)}")
    gen = torch.Generator().manual_seed(seed)
    prototypes = torch.rand(num_classes, *shape, generator=gen)

    def draw(n: int) -> ImageSet:
        labels = torch.randint(num_classes, (n,), generator=gen)
        noise = 0.25 * torch.randn(n, *shape, generator=gen)
        return ImageSet((prototypes[labels] + noise).clamp_(0, 1), labels)

    return Splits(draw(train_size), draw(test_size), num_classes)


# -- CIFAR-10 (python pickle batches) ---------------------------------------------------------
class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only plain containers and numpy arrays: a CIFAR batch from elsewhere must not
    be able to run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"),
               ("_codecs", "encode")}  # how protocol-2 pickles from Python 3 spell bytes

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def _cifar_batch(path: Path) -> ImageSet:
    if not path.is_file():
        raise ValueError(f"CIFAR-10 batch not found: {path} (expected the python version: "
                         f"{', '.join(CIFAR10_TRAIN)}, {CIFAR10_TEST})")
    try:
        with path.open("rb") as f:
            batch = _ArrayUnpickler(f, encoding="bytes").load()
        batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
        data = np.asarray(batch["data"], dtype=np.uint8)
        labels = np.asarray(batch["labels"], dtype=np.int64)
    except Exception as e:  # noqa: BLE001 -- any decoding failure means a malformed file
        raise ValueError(f"{path} is not a CIFAR-10 python batch: {e}") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.shape != data.shape[:1]:
        raise ValueError(f"{path} is not a CIFAR-10 python batch: data {data.shape}, "
                         f"labels {labels.shape}")
    if labels.size and not 0 <= labels.min() <= labels.max() <= 9:
        raise ValueError(f"{path} has labels outside 0..9")
    return ImageSet(_images(data.reshape(-1, 3, 32, 32), 255.0), _labels(labels))


def load_cifar10(path: str | Path) -> Splits:
    """CIFAR-10 from a user-supplied directory (``cifar-10-batches-py`` layout)."""
    root = Path(path)
    train = [_cifar_batch(root / name) for name in CIFAR10_TRAIN]
    test = _cifar_batch(root / CIFAR10_TEST)
    return Splits(ImageSet(torch.cat([b.images for b in train]), torch.cat([b.labels for b in train])),
                  test, 10)


# -- dispatch from a config's [data] table ----------------------------------------------------
DATASETS = ("fmnist", "digits", "cifar10", "synthetic")
"""Data set names, the same on the command line (``--data``) and in ``[data] dataset``."""
DATASET_ALIASES = {"fashion_mnist": "fmnist"}
"""Names older configs and checkpoints use (the shipped zoo model says fashion_mnist)."""
SYNTHETIC_OPTIONS = ("shape", "num_classes", "train_size", "test_size", "seed")
"""``[data]`` keys of the synthetic data set (recorded with an exported model)."""
DIRECTORY_DATASETS = ("fmnist", "cifar10")
"""Data sets read from files in a directory (the others are generated or ship with sklearn)."""
DEFAULT_DATASET = "fmnist"
"""What a model that records no data set (a NIR graph from another tool) is tested on."""


def dataset_name(name: Any) -> Any:
    return DATASET_ALIASES.get(name, name) if isinstance(name, str) else name


def data_table(table: Mapping[str, Any], data: str | None) -> dict[str, Any]:
    """The ``[data]`` table a command reads: the model's, with ``--data NAME|DIR`` applied.

    A name replaces the data set (and drops a path recorded for another one); a directory sets
    the path, and the data set when its files tell which (Fashion-MNIST idx files, CIFAR-10
    batches). A model that records no data set gets :data:`DEFAULT_DATASET`.
    """
    table = dict(table)
    recorded = dataset_name(table.get("dataset"))
    if data is not None and dataset_name(data) in DATASETS:
        if dataset_name(data) != recorded:
            table.pop("path", None)
        table["dataset"] = dataset_name(data)
    elif data is not None:
        root = Path(data)
        if not root.is_dir():
            raise ValueError(f"--data {data!r} is neither a data set ({', '.join(DATASETS)}) nor "
                             "a directory")
        table["path"] = str(root)
        if any(root.glob("*-idx3-ubyte.gz")):
            table["dataset"] = "fmnist"
        elif (root / CIFAR10_TEST).is_file():
            table["dataset"] = "cifar10"
        elif recorded not in (None, *DIRECTORY_DATASETS):
            raise ValueError(f"--data {data}: no Fashion-MNIST idx files or CIFAR-10 batches "
                             f"there, and the model's data set {recorded} is not read from a "
                             "directory")
    table["dataset"] = dataset_name(table.get("dataset")) or DEFAULT_DATASET
    return table


def load_dataset(table: Mapping[str, Any]) -> Splits:
    """The data set a ``[data]`` table names (``dataset`` plus its ``path``/shape keys)."""
    name = dataset_name(table.get("dataset"))
    if name == "fmnist":
        return load_fashion_mnist(table.get("path", FASHION_MNIST_DIR))
    if name == "digits":
        return load_digits()
    if name == "cifar10":
        if "path" not in table:
            raise ValueError("cifar10 needs a directory with the python batches: [data] path or "
                             "--data DIR")
        return load_cifar10(table["path"])
    if name == "synthetic":
        return synthetic(table.get("shape", [1, 8, 8]), int(table.get("num_classes", 10)),
                         int(table.get("train_size", 1024)), int(table.get("test_size", 256)),
                         int(table.get("seed", 0)))
    raise ValueError(f"unknown dataset {name!r}; choose from {', '.join(DATASETS)} (--data NAME)")


def shaped_like(data: ImageSet, input_shape: Sequence[int], name: str) -> ImageSet:
    """Samples reshaped to a network's input (e.g. 28x28 images for a 784-input MLP); a data set
    whose samples do not hold that many values is refused, naming the flag that picks another."""
    shape = tuple(int(d) for d in input_shape)
    if tuple(data.images.shape[1:]) == shape:
        return data
    if int(np.prod(data.images.shape[1:])) != int(np.prod(shape)):
        raise ValueError(f"data set {name} has samples of shape {list(data.images.shape[1:])}; the "
                         f"network takes {list(shape)}: choose its data with --data NAME|DIR")
    return ImageSet(data.images.reshape(len(data), *shape), data.labels)


# -- normalization ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Normalization:
    """Per-channel ``(x - mean) / std``; stored in the config so consumers of an exported model
    know what the network expects from raw [0, 1] inputs."""

    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def fit(cls, images: Tensor) -> Normalization:
        """Channel statistics of a training set."""
        flat = images.transpose(0, 1).reshape(images.shape[1], -1).double()
        return cls(tuple(flat.mean(1).tolist()), tuple(flat.std(1).clamp_min(1e-8).tolist()))

    @classmethod
    def from_table(cls, table: Mapping[str, Any], train: ImageSet) -> Normalization:
        """Explicit ``mean``/``std`` from ``[data]``, else fitted (``normalize``, default true),
        else the identity."""
        channels = train.images.shape[1]
        if "mean" in table or "std" in table:
            norm = cls(tuple(map(float, table["mean"])), tuple(map(float, table["std"])))
        elif table.get("normalize", True):
            norm = cls.fit(train.images)
        else:
            norm = cls((0.0,) * channels, (1.0,) * channels)
        finite = all(math.isfinite(v) for v in (*norm.mean, *norm.std))
        if len(norm.mean) != channels or len(norm.std) != channels or not finite \
                or min(norm.std) <= 0:
            raise ValueError(f"[data] mean/std must list {channels} finite values with std > 0, "
                             f"got mean {list(norm.mean)}, std {list(norm.std)}")
        return norm

    def __call__(self, images: Tensor) -> Tensor:
        shape = (1, -1, 1, 1)
        mean = torch.tensor(self.mean, dtype=images.dtype).view(shape)
        std = torch.tensor(self.std, dtype=images.dtype).view(shape)
        return (images - mean) / std

    def apply(self, data: Splits) -> Splits:
        return Splits(ImageSet(self(data.train.images), data.train.labels),
                      ImageSet(self(data.test.images), data.test.labels), data.num_classes)


# -- augmentation -----------------------------------------------------------------------------
@dataclass(frozen=True)
class Augment:
    """Random crop after padding and horizontal flip, per sample, on a whole batch tensor.

    ``fill`` is the per-channel value of a black raw pixel after normalization, so padding looks
    like background rather than like a grey frame.
    """

    crop_padding: int = 0
    hflip: bool = False
    fill: tuple[float, ...] = (0.0,)

    @classmethod
    def from_table(cls, table: Mapping[str, Any], norm: Normalization) -> Augment | None:
        spec = table.get("augment") or {}
        if not isinstance(spec, Mapping):
            raise ValueError("[data] augment must be a table like {crop_padding = 4, hflip = true}")
        unknown = set(spec) - {"crop_padding", "hflip"}
        if unknown:
            raise ValueError(f"unknown [data] augment keys {sorted(unknown)}")
        aug = cls(int(spec.get("crop_padding", 0)), bool(spec.get("hflip", False)),
                  tuple(-m / s for m, s in zip(norm.mean, norm.std)))
        return aug if aug.crop_padding or aug.hflip else None

    def __call__(self, x: Tensor, gen: torch.Generator) -> Tensor:
        n, c, h, w = x.shape
        if self.crop_padding:
            p = self.crop_padding
            padded = torch.tensor(self.fill, dtype=x.dtype, device=x.device).view(1, c, 1, 1)
            padded = padded.expand(n, c, h + 2 * p, w + 2 * p).clone()
            padded[:, :, p:p + h, p:p + w] = x
            dy, dx = (torch.randint(2 * p + 1, (2, n), generator=gen)).to(x.device)
            rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]
            cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]
            x = padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols]
            x = x.permute(0, 3, 1, 2)
        if self.hflip:
            flip = (torch.rand(n, generator=gen) < 0.5).to(x.device).view(n, 1, 1, 1)
            x = torch.where(flip, x.flip(3), x)
        return x.contiguous()


# -- batching ---------------------------------------------------------------------------------
def seeded_generator(*key: int) -> torch.Generator:
    """A CPU generator determined by integers such as (seed, epoch, rank)."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence(list(key)).generate_state(1)[0]))


def num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def batches(data: ImageSet, batch_size: int, *, device: torch.device | str = "cpu",
            order: torch.Generator | None = None, drop_last: bool = False, rank: int = 0,
            world_size: int = 1, transform: Callable[[Tensor], Tensor] | None = None,
            ) -> Iterator[tuple[Tensor, Tensor]]:
    """Batches of ``batch_size`` samples (the global batch), this rank's share of each.

    With ``order`` the samples are shuffled by that generator (the same on every rank); global
    batch ``b`` is split as ``batch[rank::world_size]``, so the ranks of a data-parallel run
    together see exactly the batches a single process would.
    """
    n = len(data)
    index = torch.randperm(n, generator=order) if order is not None else torch.arange(n)
    for b in range(num_batches(n, batch_size, drop_last)):
        idx = index[b * batch_size:(b + 1) * batch_size][rank::world_size]
        x = data.images[idx].to(device, non_blocking=True)
        if transform is not None:
            x = transform(x)
        yield x, data.labels[idx].to(device, non_blocking=True)
