"""Task streams for the online-learning benchmarks of Section 5.4 (Table 4): TinyImageNet as
40 5-way tasks, 5-dataset as five 10-way tasks, and a synthetic stream of the same form.

A stream is a list of tasks, each with its own train, validation (and optionally test)
loaders and labels ``0..classes_per_task-1``: the model tells tasks apart by its heads (see
:class:`~cmrepro.models.task_heads.TaskHeads`). The task order, the class split and each
task's train/validation split are drawn from ``dataset.task_order_seed`` and
``dataset.split_seed`` (both the run seed in the configs, as in the La-MAML and Mehta et al.
code, where every seed sees its own stream). docs/online_learning.md gives the protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch.utils.data import Dataset

from ..seeds import SeedStream
from .bad_files import BadFiles, SkipUnreadable, UnreadableImage
from .base import DEFAULT_CONTEXT, DataContext, DataError, ShuffledTrainLoader, epoch_seed, eval_loader
from .settings import (
    FIVE_DATASETS,
    FiveDatasetsSettings,
    LoaderSettings,
    SyntheticStreamSettings,
    TinyImageNetSettings,
    five_tasks,
    get_int,
    stand_in_sizes,
)
from .synthetic import class_prototypes, noisy_samples
from .vision import IMAGENET_MEAN, IMAGENET_STD, NormalisedImages

# The classes of TinyImageNet: its stand-in, without a wnids.txt to count, cuts as many tasks.
TINY_IMAGENET_CLASSES = 200
# notMNIST has no official test split: Mehta et al. hold out a random tenth as its test set.
NOTMNIST_TEST_FRACTION = 0.1


@dataclass
class StreamTask:
    """One task of a stream: its name, its class names in head order, and its loaders."""

    name: str
    classes: tuple[str, ...]
    train: Callable[[int], Iterable]
    val: Iterable
    test: Iterable | None


@dataclass
class TaskStream:
    """The tasks of a stream, in the order they are learned."""

    tasks: list[StreamTask]
    classes_per_task: int
    input_shape: tuple[int, int, int]
    # Files skipped because they are not readable images, per source (notMNIST has some).
    skipped_files: dict[str, int] = field(default_factory=dict)

    # Every stream is classification, as DataBundle.task says for the other datasets.
    task: str = "classification"

    @property
    def num_tasks(self) -> int:
        return len(self.tasks)


# ---------------------------------------------------------------- shared pieces


def permutation(size: int, seed: int) -> list[int]:
    """A random order of ``range(size)`` fixed by ``seed``."""
    return torch.randperm(size, generator=torch.Generator().manual_seed(seed)).tolist()


def split_per_class(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, val)`` indices: a random ``fraction`` of each class (at least one image) for
    validation, the rest for training; both sorted."""
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        count = max(1, int(len(members) * fraction)) if len(members) > 1 else 0
        val.append(members[:count])
        train.append(members[count:])
    return torch.cat(train).sort().values, torch.cat(val).sort().values


class _Loaders:
    """Builds each task's loaders with the run's batch sizes and worker settings."""

    def __init__(self, settings: LoaderSettings, seed: int) -> None:
        self.seed = seed
        self.batch_size, self.eval_batch_size = settings.batch_size, settings.eval_batch_size
        # Forty tasks would keep forty sets of persistent workers alive; validation sets are
        # small and read often, so they are read in the main process.
        self.train_options = {**settings.options, "persistent_workers": False}
        self.eval_options = {**self.train_options, "num_workers": 0}

    def task(self, name: str, classes, train: Dataset, val: Dataset, test: Dataset | None) -> StreamTask:
        if len(val) == 0:
            raise DataError(f"{name}: no validation images (each class needs at least 2 training images)")
        return StreamTask(
            name=name,
            classes=tuple(classes),
            # The loader's seed is the run seed: each task trains in other (global) epochs,
            # so every task still gets its own shuffles.
            train=ShuffledTrainLoader(train, self.batch_size, self.seed, self.train_options),
            val=eval_loader(val, self.eval_batch_size, self.eval_options),
            test=None if test is None else eval_loader(test, self.eval_batch_size, self.eval_options),
        )


# ---------------------------------------------------------------- synthetic


def build_synthetic_stream(cfg: Mapping, seed: int, context: DataContext = DEFAULT_CONTEXT) -> TaskStream:
    """``num_tasks`` tasks of ``classes_per_task`` noisy prototypes each, new prototypes per task
    (so each task has its own solution to move to)."""
    s = SyntheticStreamSettings.from_config(cfg)
    loaders = _Loaders(s.loader, seed)
    generator = torch.Generator().manual_seed(seed)
    tasks = []
    for index in range(s.num_tasks):
        prototypes = class_prototypes(s.classes_per_task, s.channels, s.image_size, generator)
        train, val = noisy_samples(prototypes, s.num_train, generator), noisy_samples(prototypes, s.num_val, generator)
        test = noisy_samples(prototypes, s.num_val, generator) if s.use_test else None
        name = f"task{index + 1:02d}"
        tasks.append(loaders.task(name, [f"{name}/{c}" for c in range(s.classes_per_task)], train, val, test))
    return TaskStream(tasks, s.classes_per_task, (s.channels, s.image_size, s.image_size))


def _stream_structure(cfg: Mapping) -> tuple[int, int]:
    """``(num_tasks, classes_per_task)`` of the real stream ``cfg["name"]``."""
    name = cfg["name"]
    if name == "five_datasets":
        return len(five_tasks(cfg)), 10
    per_task = get_int(cfg, "classes_per_task", SyntheticStreamSettings.classes_per_task, minimum=2)
    if name == "tinyimagenet":
        return get_int(cfg, "num_tasks", TINY_IMAGENET_CLASSES // per_task), per_task
    return get_int(cfg, "num_tasks", SyntheticStreamSettings.num_tasks), per_task


def build_stand_in_stream(cfg: Mapping, seed: int, context: DataContext = DEFAULT_CONTEXT) -> TaskStream:
    """A synthetic stream with the real stream's tasks and classes per task, sized by the
    ``cfg["stand_in"]`` mapping (``train``/``val`` images per task, ``image_size``)."""
    sizes = stand_in_sizes(cfg)
    num_tasks, per_task = _stream_structure(cfg)
    settings = {
        **cfg,
        "num_tasks": num_tasks,
        "classes_per_task": per_task,
        "channels": 3,
        "num_train": sizes.get("train", 64),
        "num_val": sizes.get("val", 32),
        "image_size": sizes.get("image_size", 16),
    }
    return build_synthetic_stream(settings, seed)


# ---------------------------------------------------------------- TinyImageNet


def build_tinyimagenet(cfg: Mapping, seed: int, context: DataContext = DEFAULT_CONTEXT) -> TaskStream:
    """The classes (sorted wnids, then shuffled by the task order seed) cut into ``num_tasks``
    tasks of ``classes_per_task``; validation is a tenth of each class's training images and
    the official validation images are the test set (``use_test``), as in La-MAML. Unreadable
    images are skipped, up to ``dataset.max_bad_files``, and recorded in the run directory."""
    from .tinyimagenet import ImageFiles, how_to_get, read_wnids, tiny_imagenet_folder, train_files, val_files

    s = TinyImageNetSettings.from_config(cfg, seed)
    per_task = s.classes_per_task
    folder = tiny_imagenet_folder(s.root)
    wnids = read_wnids(folder)
    num_tasks = len(wnids) // per_task if s.num_tasks is None else s.num_tasks
    if num_tasks * per_task > len(wnids):
        raise ValueError(
            f"invalid dataset.num_tasks: {num_tasks} (the {len(wnids)} classes of {folder} give at most "
            f"{len(wnids) // per_task} tasks of {per_task})"
        )
    order = [wnids[i] for i in permutation(len(wnids), s.task_order_seed)][: num_tasks * per_task]
    train_paths = train_files(folder, order)
    test_paths = val_files(folder, wnids) if s.use_test else None
    loaders = _Loaders(s.loader, seed)
    intact = f"replace them with intact copies, or rebuild the folder: {how_to_get(s.root)}"
    bad_files = BadFiles("tinyimagenet", folder, s.max_bad_files, context.run_dir, intact)
    bad_files.note_recorded()

    def images(paths: list[Path], labels: list[int], aug: bool) -> SkipUnreadable:
        labels_t = torch.tensor(labels, dtype=torch.int64)
        files = ImageFiles(paths, s.image_size)
        return SkipUnreadable(NormalisedImages(files, labels_t, IMAGENET_MEAN, IMAGENET_STD, augment=aug), bad_files)

    tasks = []
    for index in range(num_tasks):
        classes = order[index * per_task : (index + 1) * per_task]
        paths = [path for wnid in classes for path in train_paths[wnid]]
        labels = torch.tensor([label for label, wnid in enumerate(classes) for _ in train_paths[wnid]])
        split = epoch_seed(s.split_seed, index, SeedStream.TASK_SPLIT)
        train_idx, val_idx = split_per_class(labels, s.val_fraction, split)
        train = images([paths[i] for i in train_idx], labels[train_idx].tolist(), s.augment)
        val = images([paths[i] for i in val_idx], labels[val_idx].tolist(), False)
        test = None
        if test_paths is not None:
            test_pairs = [(path, label) for label, wnid in enumerate(classes) for path in test_paths[wnid]]
            test = images([p for p, _ in test_pairs], [label for _, label in test_pairs], False)
        tasks.append(loaders.task(f"task{index + 1:02d}", classes, train, val, test))
    return TaskStream(tasks, per_task, (3, s.image_size, s.image_size))


# ---------------------------------------------------------------- 5-dataset


@dataclass
class _Source:
    """One dataset of 5-dataset as read from disk: uint8 images ``[N, C, H, W]`` and labels."""

    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor] | None
    classes: tuple[str, ...]
    unreadable: list[UnreadableImage] = field(default_factory=list)  # image files skipped (notMNIST)


DIGITS = tuple(str(digit) for digit in range(10))


def _read_cifar10(root: Path, use_test: bool, split_seed: int) -> _Source:
    from .vision import CIFAR10, check_cifar_files, check_cifar_meta, read_cifar_split

    folder = check_cifar_files(CIFAR10, root)
    check_cifar_meta(CIFAR10, folder, root)
    train = read_cifar_split(CIFAR10, folder, CIFAR10.train_files, root)
    test = read_cifar_split(CIFAR10, folder, (CIFAR10.test_file,), root) if use_test else None
    return _Source(train, test, DIGITS)


def _idx_reader(fmt_name: str) -> Callable[[Path, bool, int], _Source]:
    def read(root: Path, use_test: bool, split_seed: int) -> _Source:
        from . import digit_formats

        fmt = getattr(digit_formats, fmt_name)
        test = digit_formats.read_idx_split(fmt, root, "test") if use_test else None
        return _Source(digit_formats.read_idx_split(fmt, root, "train"), test, DIGITS)

    return read


def _read_svhn(root: Path, use_test: bool, split_seed: int) -> _Source:
    from .digit_formats import read_svhn_split

    test = read_svhn_split(root, "test") if use_test else None
    return _Source(read_svhn_split(root, "train"), test, DIGITS)


def _read_notmnist(root: Path, use_test: bool, split_seed: int) -> _Source:
    from .digit_formats import NOTMNIST_LETTERS, read_notmnist_files

    images, labels, skipped = read_notmnist_files(root)
    seed = epoch_seed(split_seed, 0, SeedStream.NOTMNIST_TEST)
    train_idx, test_idx = split_per_class(labels, NOTMNIST_TEST_FRACTION, seed)
    test = (images[test_idx], labels[test_idx]) if use_test else None
    return _Source((images[train_idx], labels[train_idx]), test, tuple(NOTMNIST_LETTERS), skipped)


_FIVE_READERS: dict[str, Callable[[Path, bool, int], _Source]] = {
    "cifar10": _read_cifar10,
    "mnist": _idx_reader("MNIST"),
    "fashion_mnist": _idx_reader("FASHION_MNIST"),
    "svhn": _read_svhn,
    "notmnist": _read_notmnist,
}


def build_five_datasets(cfg: Mapping, seed: int, context: DataContext = DEFAULT_CONTEXT) -> TaskStream:
    """CIFAR10, MNIST, Fashion-MNIST, SVHN and notMNIST as 10-way tasks in an order drawn from
    the task order seed, every image brought to ``3 x image_size x image_size`` (grey images
    repeated on three channels) and normalised with ImageNet's statistics, as Mehta et al. do."""
    from .digit_formats import resize_images

    s = FiveDatasetsSettings.from_config(cfg, seed)
    names, size = s.tasks, s.image_size
    loaders = _Loaders(s.loader, seed)
    sources = _read_five_sources(s)
    if "notmnist" in sources:
        _record_unreadable_letters(sources["notmnist"], s, context)

    def images(pair: tuple[torch.Tensor, torch.Tensor], aug: bool) -> NormalisedImages:
        # Grey [1, H, W] images broadcast against the 3-channel mean and std: they come out as
        # three identical channels, Mehta et al.'s convert("RGB") without storing three copies.
        pixels, labels = pair
        return NormalisedImages(resize_images(pixels, size), labels, IMAGENET_MEAN, IMAGENET_STD, augment=aug)

    tasks = []
    for index in permutation(len(names), s.task_order_seed):
        name, source = names[index], sources[names[index]]
        pixels, labels = source.train
        # Seeded by the dataset, not its place in the stream: each dataset keeps its split.
        split = epoch_seed(s.split_seed, FIVE_DATASETS.index(name), SeedStream.TASK_SPLIT)
        train_idx, val_idx = split_per_class(labels, s.val_fraction, split)
        train = images((pixels[train_idx], labels[train_idx]), s.augment)
        val = images((pixels[val_idx], labels[val_idx]), False)
        test = None if source.test is None else images(source.test, False)
        tasks.append(loaders.task(name, source.classes, train, val, test))
    skipped = {name: len(source.unreadable) for name, source in sources.items() if name == "notmnist"}
    return TaskStream(tasks, 10, (3, size, size), skipped)


def _read_five_sources(s: FiveDatasetsSettings) -> dict[str, _Source]:
    """Every dataset of the stream read into memory, so that a missing one stops the run before
    any training; one DataError naming every dataset that cannot be read, so that one round of
    fixes is enough."""
    sources, errors = {}, []
    for name in s.tasks:
        try:
            sources[name] = _FIVE_READERS[name](s.roots[name], s.use_test, s.split_seed)
        except DataError as error:
            errors.append((name, error))
    if len(errors) == 1:
        raise errors[0][1]
    if errors:
        names = ", ".join(name for name, _ in errors)
        each = " | ".join(str(error) for _, error in errors)
        raise DataError(f"five_datasets: {len(errors)} of its {len(s.tasks)} datasets cannot be read ({names}): {each}")
    return sources


def _record_unreadable_letters(source: _Source, s: FiveDatasetsSettings, context: DataContext) -> None:
    """Name notMNIST's unreadable files (once per run) and count them against ``dataset.max_bad_files``,
    as the images skipped while reading ImageNet and TinyImageNet are."""
    from .digit_formats import notmnist_how

    root = s.roots["notmnist"]
    intact = f"replace them with intact copies, or rebuild the folder: {notmnist_how(root)}"
    record = BadFiles("notmnist", root, s.max_bad_files, context.run_dir, intact)
    for error in source.unreadable:
        record.add(error.path, error.reason)
