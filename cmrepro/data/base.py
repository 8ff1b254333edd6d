"""The bottom of the data package, shared by every dataset family: the error, the bundle a
supervised run gets, and the epoch-seeded loaders. It imports no other data module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..seeds import SeedStream


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


def prepare_command(name: str, root: Path, layout: str | None = None) -> str:
    """The command that puts ``name`` into ``root``, its folder ``<paths.data_dir>/<layout>``
    (``layout`` defaults to ``name``), for the "how to fix it" part of a DataError."""
    parts = Path(layout or name).parts
    command = f"run python -m cmrepro.data prepare {name}"
    if len(root.parts) > len(parts) and root.parts[-len(parts) :] == parts:
        return f"{command} --data-dir {root.parents[len(parts) - 1]}"
    return f"{command} --data-dir DIR (it fills DIR/{'/'.join(parts)}; point dataset.data_dir there)"


@dataclass(frozen=True)
class DataContext:
    """Where a run uses its data, for the builders that need to know: the training device (data
    kept on it, ``dataset.on_device``) and the run directory (files a run records about its
    data, such as the unreadable images it skipped). Not part of the config: neither changes
    what a run computes."""

    device: torch.device = torch.device("cpu")
    run_dir: Path | None = None


DEFAULT_CONTEXT = DataContext()


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


# ---------------------------------------------------------------- loaders


def epoch_seed(seed: int, epoch: int, stream: SeedStream) -> int:
    """A 64-bit seed mixed from ``(seed, epoch, stream)``; the streams are :class:`~cmrepro.seeds.SeedStream`.

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
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, SeedStream.SHUFFLE))
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
        self.loader.generator.manual_seed(epoch_seed(self.seed, epoch, SeedStream.WORKERS))
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
