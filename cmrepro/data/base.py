"""The bottom of the data package, shared by every dataset family: the error, the bundle a
supervised run gets, and the epoch-seeded loaders. It imports no other data module.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sized
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

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


@dataclass(frozen=True)
class Shard:
    """This process's part of the data when ``world_size`` processes train one model together
    (distributed data parallel): process ``rank`` takes the ``rank``-th contiguous part of
    every global batch and of every evaluation set."""

    rank: int
    world_size: int

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"invalid shard rank {self.rank} of {self.world_size}: need 0 <= rank < world_size")

    def part(self, count: int) -> range:
        """This rank's contiguous part of ``count`` items split as evenly as possible (the
        first ``count % world_size`` ranks get one item more); the parts, in rank order, are
        ``range(count)``."""
        base, extra = divmod(count, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return range(start, start + base + (self.rank < extra))

    def loss_weight(self, global_count: int) -> float:
        """The factor ``w_r`` on this rank's mean loss over its part of a global batch of
        ``global_count`` (N) examples that makes the gradient DistributedDataParallel averages
        over the W ranks that of the mean loss over the whole global batch:
        ``(1/W) sum_r w_r (sum of rank r's losses) / n_r = (sum of all losses) / N`` when
        ``w_r = n_r W / N``. 1.0 when the parts are equal."""
        return len(self.part(global_count)) * self.world_size / global_count


def check_shardable(size: int, batch_size: int, shard: Shard | None) -> None:
    """ValueError (one line) unless every rank gets a part of every global batch of ``size``
    examples in batches of ``batch_size``: equal parts of the full batches, and at least one
    example of the last one (a rank with no example would have no loss to take part in the
    gradient all-reduce with)."""
    if shard is None or shard.world_size == 1:
        return
    processes = shard.world_size
    if batch_size % processes:
        multiple = max(processes, batch_size - batch_size % processes)
        raise ValueError(
            f"dataset.batch_size={batch_size} does not split across {processes} processes: it is the global "
            f"batch, so it must be a multiple of {processes}; set it to e.g. {multiple} or change the process count"
        )
    last = size % batch_size
    if 0 < last < processes:
        raise ValueError(
            f"the last batch of the {size} training examples at dataset.batch_size={batch_size} holds {last}, "
            f"fewer than the {processes} processes, so one would get none; choose a batch size that leaves "
            f"0 or at least {processes} examples for the last batch, or run fewer processes"
        )


class EpochBatchSampler(Sampler[list[int]]):
    """Shuffled batches of indices, the shuffle drawn from a generator seeded with
    ``(seed, epoch)``; ``set_epoch`` chooses the epoch.

    The permutation is drawn when iteration starts (``iter(loader)``), not lazily on the
    first batch, so an epoch's order is fixed the moment its iterator is created.

    With a ``shard`` the batches are this rank's parts (:meth:`Shard.part`) of the global
    batches, which are the unsharded sampler's batches: ``batch_size`` stays the global batch,
    the same permutation is drawn on every rank, and the ranks' parts of step ``i`` put
    together, in rank order, are the single-process batch ``i``. :meth:`loss_weight` gives the
    factor on the step's loss that keeps the averaged gradient exact when the parts of the last
    batch differ in size.
    """

    def __init__(self, size: int, batch_size: int, seed: int, shard: Shard | None = None) -> None:
        check_shardable(size, batch_size, shard)
        self.size = size
        self.batch_size = batch_size
        self.seed = seed
        self.shard = shard
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch ``epoch`` from its batch ``start`` on (the batches before it are skipped)."""
        self.epoch = epoch
        self.start = start

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch, SeedStream.SHUFFLE))
        order = torch.randperm(self.size, generator=generator).tolist()
        batches = [order[i : i + self.batch_size] for i in range(0, self.size, self.batch_size)]
        if self.shard is not None:
            batches = [[batch[i] for i in self.shard.part(len(batch))] for batch in batches]
        return iter(batches[self.start :])

    def __len__(self) -> int:
        return -(-self.size // self.batch_size)

    def global_count(self, step: int) -> int:
        """The number of examples in global batch ``step`` (0-based, within an epoch)."""
        return min(self.batch_size, self.size - step * self.batch_size)

    def loss_weight(self, step: int) -> float:
        """The factor on this rank's mean loss at step ``step``: :meth:`Shard.loss_weight`; 1.0
        unsharded and for every full batch."""
        return 1.0 if self.shard is None else self.shard.loss_weight(self.global_count(step))


class EpochBatches:
    """One epoch of a shuffled train loader (``owner``: a :class:`ShuffledTrainLoader` or the
    on-device one, anything with ``iterate(epoch, start)`` and ``len()``): iterable (once at a
    time) with ``len()``; :meth:`starting_at` skips its first steps without reading them (a run
    resumed inside the epoch)."""

    def __init__(self, owner, epoch: int, start: int = 0) -> None:
        self.owner = owner
        self.epoch = epoch
        self.start = start

    def starting_at(self, step: int) -> EpochBatches:
        return EpochBatches(self.owner, self.epoch, step)

    def __iter__(self) -> Iterator:
        return self.owner.iterate(self.epoch, self.start)

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

    def __init__(
        self, dataset: Dataset, batch_size: int, seed: int, options: Mapping[str, Any], shard: Shard | None = None
    ) -> None:
        self.dataset, self.batch_size, self.seed, self.options = dataset, batch_size, seed, options
        self.sampler = EpochBatchSampler(len(dataset), batch_size, seed, shard)
        self.loader = DataLoader(dataset, batch_sampler=self.sampler, generator=torch.Generator(), **options)

    def sharded(self, shard: Shard) -> ShuffledTrainLoader:
        """The same loader, giving ``shard``'s part of every global batch (see :class:`EpochBatchSampler`)."""
        return ShuffledTrainLoader(self.dataset, self.batch_size, self.seed, self.options, shard)

    def loss_weight(self, step: int) -> float:
        """The factor on the mean loss of step ``step``'s batch: :meth:`EpochBatchSampler.loss_weight`."""
        return self.sampler.loss_weight(step)

    def __call__(self, epoch: int) -> EpochBatches:
        return EpochBatches(self, epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    # A run stopped inside an epoch resumes there (cmrepro.training.epoch): the sampler skips the
    # steps before it, which are never read.
    resumes_mid_epoch = True

    def iterate(self, epoch: int, start: int = 0) -> Iterator:
        self.sampler.set_epoch(epoch, start)
        self.loader.generator.manual_seed(self.worker_seed(epoch))
        return iter(self.loader)

    def worker_seed(self, epoch: int) -> int:
        """The DataLoader generator's seed in epoch ``epoch``. Sharded, the rank is mixed in: the
        ranks augment different images, and with one seed their workers would draw the same
        crops and flips for them."""
        seed = epoch_seed(self.seed, epoch, SeedStream.WORKERS)
        shard = self.sampler.shard
        return seed if shard is None else epoch_seed(seed, shard.rank, SeedStream.WORKERS)


class SameEveryEpoch:
    """``train(epoch)`` for data read in a fixed order (language modelling): every epoch
    is the same iterable."""

    def __init__(self, batches: Sized) -> None:
        self.batches = batches

    def __call__(self, epoch: int) -> Sized:
        return self.batches

    def __len__(self) -> int:
        return len(self.batches)


class EvalLoader(DataLoader):
    """An unshuffled DataLoader over ``dataset`` that can give a shard's part of it (:meth:`sharded`)."""

    def __init__(self, dataset: Dataset, batch_size: int, options: Mapping[str, Any]) -> None:
        super().__init__(dataset, batch_size=batch_size, shuffle=False, **options)
        self.options = options

    def sharded(self, shard: Shard) -> EvalLoader:
        """This loader over ``shard``'s contiguous part of the dataset (:meth:`Shard.part`): the
        ranks' parts are disjoint and together the whole set, so sums over them (losses, correct
        answers, counts), added across the ranks, are the whole set's. ``batch_size`` is per rank."""
        return EvalLoader(Subset(self.dataset, shard.part(len(self.dataset))), self.batch_size, self.options)


def eval_loader(
    dataset: Dataset, batch_size: int, options: Mapping[str, Any], shard: Shard | None = None
) -> EvalLoader:
    """An unshuffled loader over ``dataset`` (``shard``'s part of it), re-iterable, in dataset order."""
    loader = EvalLoader(dataset, batch_size, options)
    return loader if shard is None else loader.sharded(shard)


def shard_bundle(bundle: DataBundle, shard: Shard) -> DataBundle:
    """``bundle`` with every loader giving ``shard``'s part: the train batches split across the
    ranks (:meth:`ShuffledTrainLoader.sharded`), validation and test sets too (:meth:`EvalLoader.sharded`).

    ValueError (one line) for data read in a fixed order (language modelling), whose batches
    carry a recurrent state from one to the next and cannot be split this way yet.
    """
    unsplittable = [
        name
        for name, loader in (("train", bundle.train), ("val", bundle.val), ("test", bundle.test))
        if loader is not None and not hasattr(loader, "sharded")
    ]
    if unsplittable:
        raise ValueError(
            f"the {bundle.task} data's {', '.join(unsplittable)} loaders cannot be split across "
            f"{shard.world_size} processes; run this dataset in one process"
        )
    return replace(
        bundle,
        train=bundle.train.sharded(shard),
        val=bundle.val.sharded(shard),
        test=None if bundle.test is None else bundle.test.sharded(shard),
    )
