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

from .base import (
    DataError,
    ShuffledTrainLoader,
    batch_sizes,
    data_dir,
    epoch_seed,
    eval_loader,
    get_bool,
    get_int,
    loader_options,
)
from .synthetic import class_prototypes, noisy_samples
from .vision import IMAGENET_MEAN, IMAGENET_STD, NormalisedImages

# La-MAML (--validation 0.1) and Mehta et al. (a 90/10 random split) both validate on a
# tenth of each task's training images.
VAL_FRACTION = 0.1
FIVE_DATASETS = ("cifar10", "mnist", "fashion_mnist", "svhn", "notmnist")
# notMNIST has no official test split: Mehta et al. hold out a random tenth as its test set.
NOTMNIST_TEST_FRACTION = 0.1
# epoch_seed streams of the splits, apart from those of the train loaders' shuffles (0, 1).
SPLIT_STREAM = 2
NOTMNIST_TEST_STREAM = 3


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


def _fraction(cfg: Mapping, key: str, default: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise ValueError(f"invalid dataset.{key}: {value!r} (must be a number between 0 and 1, exclusive)")
    return float(value)


def _seeds(cfg: Mapping, seed: int) -> tuple[int, int]:
    """``(task order seed, split seed)``; each defaults to the run seed."""
    return get_int(cfg, "task_order_seed", seed, minimum=0), get_int(cfg, "split_seed", seed, minimum=0)


class _Loaders:
    """Builds each task's loaders with the run's batch sizes and worker settings."""

    def __init__(self, cfg: Mapping, seed: int) -> None:
        self.seed = seed
        self.batch_size, self.eval_batch_size = batch_sizes(cfg)
        # Forty tasks would keep forty sets of persistent workers alive; validation sets are
        # small and read often, so they are read in the main process.
        self.train_options = {**loader_options(cfg), "persistent_workers": False}
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


def build_synthetic_stream(cfg: Mapping, seed: int) -> TaskStream:
    """``num_tasks`` tasks of ``classes_per_task`` noisy prototypes each, new prototypes per task
    (so each task has its own solution to move to)."""
    num_tasks = get_int(cfg, "num_tasks", 5)
    per_task = get_int(cfg, "classes_per_task", 5, minimum=2)
    size, channels = get_int(cfg, "image_size", 32), get_int(cfg, "channels", 3)
    num_train, num_val = get_int(cfg, "num_train", 128), get_int(cfg, "num_val", 64)
    use_test = get_bool(cfg, "use_test", False)
    loaders = _Loaders(cfg, seed)
    generator = torch.Generator().manual_seed(seed)
    tasks = []
    for index in range(num_tasks):
        prototypes = class_prototypes(per_task, channels, size, generator)
        train, val = noisy_samples(prototypes, num_train, generator), noisy_samples(prototypes, num_val, generator)
        test = noisy_samples(prototypes, num_val, generator) if use_test else None
        name = f"task{index + 1:02d}"
        tasks.append(loaders.task(name, [f"{name}/{c}" for c in range(per_task)], train, val, test))
    return TaskStream(tasks, per_task, (channels, size, size))


def _stream_structure(cfg: Mapping) -> tuple[int, int]:
    """``(num_tasks, classes_per_task)`` of the real stream ``cfg["name"]``."""
    name = cfg["name"]
    if name == "five_datasets":
        return len(_five_tasks(cfg)), 10
    if name == "tinyimagenet":
        per_task = get_int(cfg, "classes_per_task", 5, minimum=2)
        return get_int(cfg, "num_tasks", 200 // per_task), per_task
    return get_int(cfg, "num_tasks", 5), get_int(cfg, "classes_per_task", 5, minimum=2)


def build_stand_in_stream(cfg: Mapping, seed: int) -> TaskStream:
    """A synthetic stream with the real stream's tasks and classes per task, sized by the
    ``cfg["stand_in"]`` mapping (``train``/``val`` images per task, ``image_size``)."""
    sizes = cfg["stand_in"]
    if not isinstance(sizes, Mapping):
        raise ValueError(f"invalid dataset.stand_in: {sizes!r} (must be a mapping of stand-in sizes, or null)")
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


def build_tinyimagenet(cfg: Mapping, seed: int) -> TaskStream:
    """The classes (sorted wnids, then shuffled by the task order seed) cut into ``num_tasks``
    tasks of ``classes_per_task``; validation is a tenth of each class's training images and
    the official validation images are the test set (``use_test``), as in La-MAML."""
    from .tinyimagenet import ImageFiles, read_wnids, tiny_imagenet_folder, train_files, val_files

    per_task = get_int(cfg, "classes_per_task", 5, minimum=2)
    size = get_int(cfg, "image_size", 64)
    fraction = _fraction(cfg, "val_fraction", VAL_FRACTION)
    augment, use_test = get_bool(cfg, "augment", True), get_bool(cfg, "use_test", False)
    order_seed, split_seed = _seeds(cfg, seed)
    root = data_dir(cfg)
    folder = tiny_imagenet_folder(root)
    wnids = read_wnids(folder)
    num_tasks = get_int(cfg, "num_tasks", len(wnids) // per_task)
    if num_tasks * per_task > len(wnids):
        raise ValueError(
            f"invalid dataset.num_tasks: {num_tasks} (the {len(wnids)} classes of {folder} give at most "
            f"{len(wnids) // per_task} tasks of {per_task})"
        )
    order = [wnids[i] for i in permutation(len(wnids), order_seed)][: num_tasks * per_task]
    train_paths = train_files(folder, order)
    test_paths = val_files(folder, wnids) if use_test else None
    loaders = _Loaders(cfg, seed)

    def images(paths: list[Path], labels: list[int], aug: bool) -> NormalisedImages:
        labels_t = torch.tensor(labels, dtype=torch.int64)
        return NormalisedImages(ImageFiles(paths, size), labels_t, IMAGENET_MEAN, IMAGENET_STD, augment=aug)

    tasks = []
    for index in range(num_tasks):
        classes = order[index * per_task : (index + 1) * per_task]
        paths = [path for wnid in classes for path in train_paths[wnid]]
        labels = torch.tensor([label for label, wnid in enumerate(classes) for _ in train_paths[wnid]])
        train_idx, val_idx = split_per_class(labels, fraction, epoch_seed(split_seed, index, SPLIT_STREAM))
        train = images([paths[i] for i in train_idx], labels[train_idx].tolist(), augment)
        val = images([paths[i] for i in val_idx], labels[val_idx].tolist(), False)
        test = None
        if test_paths is not None:
            test_pairs = [(path, label) for label, wnid in enumerate(classes) for path in test_paths[wnid]]
            test = images([p for p, _ in test_pairs], [label for _, label in test_pairs], False)
        tasks.append(loaders.task(f"task{index + 1:02d}", classes, train, val, test))
    return TaskStream(tasks, per_task, (3, size, size))


# ---------------------------------------------------------------- 5-dataset


@dataclass
class _Source:
    """One dataset of 5-dataset as read from disk: uint8 images ``[N, C, H, W]`` and labels."""

    train: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor] | None
    classes: tuple[str, ...]
    skipped: int = 0


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
    from .digit_formats import NOTMNIST_LETTERS, read_notmnist

    images, labels, skipped = read_notmnist(root)
    seed = epoch_seed(split_seed, 0, NOTMNIST_TEST_STREAM)
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


def _five_tasks(cfg: Mapping) -> list[str]:
    tasks = cfg.get("tasks", list(FIVE_DATASETS))
    if (
        isinstance(tasks, str)
        or not isinstance(tasks, Iterable)
        or not tasks
        or not set(tasks) <= set(FIVE_DATASETS)
        or len(set(tasks)) != len(list(tasks))
    ):
        raise ValueError(f"invalid dataset.tasks: {tasks!r} (distinct names among: {', '.join(FIVE_DATASETS)})")
    return list(tasks)


def _five_root(cfg: Mapping, name: str) -> Path:
    """``dataset.roots.<name>`` if set, else ``<dataset.data_dir>/<name>``."""
    given = (cfg.get("roots") or {}).get(name)
    return data_dir({"name": name, "data_dir": given}) if given else data_dir(cfg) / name


def build_five_datasets(cfg: Mapping, seed: int) -> TaskStream:
    """CIFAR10, MNIST, Fashion-MNIST, SVHN and notMNIST as 10-way tasks in an order drawn from
    the task order seed, every image brought to ``3 x image_size x image_size`` (grey images
    repeated on three channels) and normalised with ImageNet's statistics, as Mehta et al. do."""
    from .digit_formats import resize_images

    names = _five_tasks(cfg)
    size = get_int(cfg, "image_size", 32)
    fraction = _fraction(cfg, "val_fraction", VAL_FRACTION)
    augment, use_test = get_bool(cfg, "augment", False), get_bool(cfg, "use_test", False)
    order_seed, split_seed = _seeds(cfg, seed)
    loaders = _Loaders(cfg, seed)
    # Read everything first: a missing dataset stops the run before any training.
    sources = {name: _FIVE_READERS[name](_five_root(cfg, name), use_test, split_seed) for name in names}

    def images(pair: tuple[torch.Tensor, torch.Tensor], aug: bool) -> NormalisedImages:
        # Grey [1, H, W] images broadcast against the 3-channel mean and std: they come out as
        # three identical channels, Mehta et al.'s convert("RGB") without storing three copies.
        pixels, labels = pair
        return NormalisedImages(resize_images(pixels, size), labels, IMAGENET_MEAN, IMAGENET_STD, augment=aug)

    tasks = []
    for index in permutation(len(names), order_seed):
        name, source = names[index], sources[names[index]]
        pixels, labels = source.train
        # Seeded by the dataset, not its place in the stream: each dataset keeps its split.
        split = epoch_seed(split_seed, FIVE_DATASETS.index(name), SPLIT_STREAM)
        train_idx, val_idx = split_per_class(labels, fraction, split)
        train = images((pixels[train_idx], labels[train_idx]), augment)
        val = images((pixels[val_idx], labels[val_idx]), False)
        test = None if source.test is None else images(source.test, False)
        tasks.append(loaders.task(name, source.classes, train, val, test))
    skipped = {name: source.skipped for name, source in sources.items() if name == "notmnist"}
    return TaskStream(tasks, 10, (3, size, size), skipped)


# ---------------------------------------------------------------- dispatch

_BUILDERS: dict[str, Callable[[Mapping, int], TaskStream]] = {
    "tinyimagenet": build_tinyimagenet,
    "five_datasets": build_five_datasets,
    "synthetic_stream": build_synthetic_stream,
}


def build_stream(cfg: Mapping, seed: int) -> TaskStream:
    """The task stream ``cfg["name"]``, or its synthetic stand-in when ``cfg["stand_in"]`` is set."""
    if cfg.get("stand_in"):
        return build_stand_in_stream(cfg, seed)
    return _BUILDERS[cfg["name"]](cfg, seed)
