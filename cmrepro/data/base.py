"""The data interface shared by every dataset family: the error, the bundle, the
epoch-seeded train loaders and ``build_data``, which picks the family from ``cfg["name"]``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

if TYPE_CHECKING:
    from .online import TaskStream

# Dataset name -> task, so configs can be checked against the model before any data is read.
DATASET_TASKS: dict[str, str] = {
    "cifar10": "classification",
    "cifar100": "classification",
    "imagenet": "classification",
    "ptb": "language_model",
    "synthetic_image": "classification",
    "synthetic_text": "language_model",
    # Task streams (online learning, Table 4): build_data gives a TaskStream for these.
    "tinyimagenet": "classification",
    "five_datasets": "classification",
    "synthetic_stream": "classification",
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASET_TASKS)
STREAM_DATASETS: tuple[str, ...] = ("tinyimagenet", "five_datasets", "synthetic_stream")


def is_task_stream(name: str) -> bool:
    """Whether dataset ``name`` is a stream of tasks learned one after another (cmrepro.data.online)."""
    return name in STREAM_DATASETS


class DataError(Exception):
    """Data missing or malformed. The message is one line: the expected path, what was
    found there, and how to get the data."""

    def __init__(self, message: str) -> None:
        # One line so that logs and the CLI can print it as is; exception text from
        # below (pickle, urllib, PIL) may carry line breaks.
        super().__init__(" ".join(str(message).splitlines()))


def data_error(name: str, expected: str | os.PathLike, found: str, how: str) -> DataError:
    """``DataError("cifar10: expected <path>, found <found>; <how>")``."""
    return DataError(f"{name}: expected {expected}, found {found}; {how}")


@dataclass
class DataBundle:
    """What a training run needs from a dataset.

    ``train(epoch)`` gives that epoch's batches (its order depends only on the run seed
    and ``epoch``); ``len(train)`` is the number of batches per epoch. ``val`` and
    ``test`` can be iterated any number of times in a fixed order. Classification
    batches are ``(x float32 [B, C, H, W], y int64 [B])``; language-model batches are
    ``(x, y)`` int64 ``[T, B]`` with ``y`` the next token of ``x``.
    """

    task: str
    train: Callable[[int], Iterable]
    val: Iterable
    test: Iterable | None
    num_classes: int | None
    vocab_size: int | None
    input_shape: tuple[int, ...]


# ---------------------------------------------------------------- config access


def get_int(cfg: Mapping, key: str, default: int | None = None, *, minimum: int = 1) -> int:
    """``cfg[key]`` (or ``default``) as an int of at least ``minimum``."""
    value = cfg.get(key, default)
    if value is None:
        raise ValueError(f"invalid dataset.{key}: None (must be set for dataset {cfg.get('name')!r})")
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise ValueError(f"invalid dataset.{key}: {value!r} (must be an integer >= {minimum})")
    return int(value)


def get_bool(cfg: Mapping, key: str, default: bool) -> bool:
    """``cfg[key]`` (or ``default``) as a bool; strings like "true" are refused, not guessed."""
    value = cfg.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"invalid dataset.{key}: {value!r} (must be true or false)")
    return value


def data_dir(cfg: Mapping) -> Path:
    """``cfg["data_dir"]`` as an absolute path, so that error messages name the real place
    even when the run changed its working directory."""
    value = cfg.get("data_dir")
    if value is None or str(value) == "":
        found, how = "it unset", "set dataset.data_dir=<folder>"
        raise data_error(cfg["name"], "dataset.data_dir (the data folder)", found, how)
    return Path(os.path.abspath(os.path.expanduser(str(value))))


def batch_sizes(cfg: Mapping) -> tuple[int, int]:
    """``(batch_size, eval_batch_size)``; the eval size defaults to the train size."""
    train = get_int(cfg, "batch_size")
    return train, get_int(cfg, "eval_batch_size", train)


def loader_options(cfg: Mapping) -> dict[str, Any]:
    """DataLoader keyword arguments shared by every loader of a run."""
    workers = get_int(cfg, "num_workers", 0, minimum=0)
    # Pinned host batches let the train step's non_blocking copies overlap the GPU's work
    # (an ImageNet batch is 154 MB); "auto" pins when a CUDA device is visible.
    pin = cfg.get("pin_memory", "auto")
    return {
        "num_workers": workers,
        "persistent_workers": workers > 0,
        "pin_memory": torch.cuda.is_available() if pin == "auto" else get_bool(cfg, "pin_memory", False),
    }


# ---------------------------------------------------------------- loaders


def epoch_seed(seed: int, epoch: int, stream: int = 0) -> int:
    """A 64-bit seed mixed from ``(seed, epoch, stream)``.

    SeedSequence mixes its inputs, so neighbouring seeds or epochs give unrelated
    orders (``seed + epoch`` would make run 1 epoch 0 replay run 0 epoch 1).
    """
    words = [value % 2**64 for value in (seed, epoch, stream)]
    return int(np.random.SeedSequence(words).generate_state(1, dtype=np.uint64)[0])


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled batches of indices, the shuffle drawn from a generator seeded with
    ``(seed, epoch)``; ``set_epoch`` chooses the epoch.

    The permutation is drawn when iteration starts (``iter(loader)``), not lazily on the
    first batch, so an epoch's order is fixed the moment its iterator is created.
    """

    def __init__(self, size: int, batch_size: int, seed: int) -> None:
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.size, generator=generator).tolist()
        return iter([order[i : i + self.batch_size] for i in range(0, self.size, self.batch_size)])

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)


class EpochBatches:
    """One epoch of a shuffled train loader: iterable (once at a time) with ``len()``."""

    def __init__(self, owner: ShuffledTrainLoader, epoch: int) -> None:
        self.owner = owner
        self.epoch = epoch

    def __iter__(self) -> Iterator:
        return self.owner.iterate(self.epoch)

    def __len__(self) -> int:
        return len(self.owner)


class ShuffledTrainLoader:
    """``train(epoch)`` for map-style datasets.

    One DataLoader serves every epoch so that persistent workers live across epochs;
    each epoch re-seeds the batch sampler from ``(seed, epoch)``, so epoch ``e`` has the
    same order whether or not epochs ``0..e-1`` ran in this process (a resumed run
    replays it exactly). Workers draw their base seed from the DataLoader generator,
    re-seeded per epoch too; their augmentation is replayable only without workers,
    where it uses torch's global RNG, which the training loop checkpoints.
    """

    def __init__(self, dataset: Dataset, batch_size: int, seed: int, options: Mapping[str, Any]) -> None:
        self.seed = seed
        self.sampler = EpochBatchSampler(len(dataset), batch_size, seed)
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, generator=torch.Generator(), **options)

    def __call__(self, epoch: int) -> EpochBatches:
        return EpochBatches(self, epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def iterate(self, epoch: int) -> Iterator:
        self.sampler.set_epoch(epoch)
        self.loader.generator.manual_seed(epoch_seed(self.seed, epoch, stream=1))
        return iter(self.loader)


class SameEveryEpoch:
    """``train(epoch)`` for data read in a fixed order (language modelling): every epoch
    is the same iterable."""

    def __init__(self, batches: Sized) -> None:
        self.batches = batches

    def __call__(self, epoch: int) -> Sized:
        return self.batches

    def __len__(self) -> int:
        return len(self.batches)


def eval_loader(dataset: Dataset, batch_size: int, options: Mapping[str, Any]) -> DataLoader:
    """An unshuffled loader over ``dataset``, re-iterable, in dataset order."""
    return DataLoader(dataset, batch_size=batch_size, shuffle=False, **options)


# ---------------------------------------------------------------- dispatch


def _builders() -> dict[str, Callable[[Mapping, int], DataBundle]]:
    # Imported here: the family modules import this one, and text runs should not pay
    # for importing torchvision.
    from . import synthetic, text, vision

    return {
        "cifar10": vision.build_cifar,
        "cifar100": vision.build_cifar,
        "imagenet": vision.build_imagenet,
        "ptb": text.build_ptb,
        "synthetic_image": synthetic.build_synthetic_image,
        "synthetic_text": synthetic.build_synthetic_text,
    }


def build_data(cfg: Mapping, *, seed: int) -> DataBundle | TaskStream:
    """The loaders of dataset ``cfg["name"]`` (a :class:`~cmrepro.data.online.TaskStream` for
    the task streams); the data on disk is checked here, before any training, and problems
    raise :class:`DataError`."""
    name = cfg.get("name")
    if name not in DATASET_NAMES:
        raise DataError(f"unknown dataset name {name!r}; expected one of: {', '.join(DATASET_NAMES)}")
    if is_task_stream(name):
        from .online import build_stream  # a TaskStream; it builds its own stand-ins

        return build_stream(cfg, seed)
    if cfg.get("stand_in"):
        from .synthetic import build_stand_in

        return build_stand_in(cfg, seed)
    return _builders()[name](cfg, seed)
