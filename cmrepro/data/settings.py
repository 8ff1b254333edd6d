"""The ``dataset`` config (``conf/dataset/*.yaml``) read into typed settings, one class per family.

Each family's builder reads its config here, once, before any file is opened: every bad
value stops the run with one line (``invalid dataset.KEY: VALUE (must be ...)``, a
ValueError, which the training's config check reports as a ConfigError), and the code below
never touches the raw config. A field's default is its dataclass default, written once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from ..validation import check, is_number
from .base import data_error

FIVE_DATASETS = ("cifar10", "mnist", "fashion_mnist", "svhn", "notmnist")
# La-MAML (--validation 0.1) and Mehta et al. (a 90/10 random split) both validate on a
# tenth of each task's training images.
VAL_FRACTION = 0.1


# ---------------------------------------------------------------- one value


def get_int(cfg: Mapping, key: str, default: int | None = None, *, minimum: int = 1) -> int:
    """``cfg[key]`` (or ``default``) as an int of at least ``minimum``; 3.0 counts as 3."""
    value = cfg.get(key, default)
    check(value is not None, f"dataset.{key}", value, f"set for dataset {cfg.get('name')!r}")
    is_whole = is_number(value) and int(value) == value
    check(is_whole and value >= minimum, f"dataset.{key}", value, f"an integer >= {minimum}")
    return int(value)


def get_bool(cfg: Mapping, key: str, default: bool) -> bool:
    """``cfg[key]`` (or ``default``) as a bool; strings like "true" are refused, not guessed."""
    value = cfg.get(key, default)
    check(isinstance(value, bool), f"dataset.{key}", value, "true or false")
    return value


def _fraction(cfg: Mapping, key: str, default: float) -> float:
    value = cfg.get(key, default)
    check(is_number(value) and 0 < value < 1, f"dataset.{key}", value, "a number between 0 and 1, exclusive")
    return float(value)


def _optional_int(cfg: Mapping, key: str, *, minimum: int = 1) -> int | None:
    """``cfg[key]`` as an int, or None where the key is absent or null (the builder decides)."""
    return None if cfg.get(key) is None else get_int(cfg, key, minimum=minimum)


def data_dir(cfg: Mapping) -> Path:
    """``cfg["data_dir"]`` as an absolute path, so that error messages name the real place
    even when the run changed its working directory."""
    value = cfg.get("data_dir")
    if value is None or str(value) == "":
        found, how = "it unset", "set dataset.data_dir=<folder>"
        raise data_error(cfg["name"], "dataset.data_dir (the data folder)", found, how)
    return Path(os.path.abspath(os.path.expanduser(str(value))))


# ---------------------------------------------------------------- loaders


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


@dataclass(frozen=True)
class LoaderSettings:
    """The batch sizes of a run's loaders and the DataLoader options they share."""

    batch_size: int
    eval_batch_size: int
    options: Mapping[str, Any]  # num_workers, persistent_workers, pin_memory

    @classmethod
    def from_config(cls, cfg: Mapping) -> LoaderSettings:
        return cls(*batch_sizes(cfg), loader_options(cfg))


# ---------------------------------------------------------------- supervised families


@dataclass(frozen=True)
class CifarSettings:
    """``cifar10`` and ``cifar100`` (:func:`cmrepro.data.vision.build_cifar`)."""

    name: str
    root: Path
    loader: LoaderSettings
    val_size: int = 10000  # validation images held out of the 50K training images (Table 6)
    split_seed: int = 0  # fixed, so that every run seed validates on the same images
    augment: bool = True
    use_test: bool = False
    download: bool = False
    on_device: bool = False  # the images on the training device, cropped there (data.on_device)

    @classmethod
    def from_config(cls, cfg: Mapping) -> CifarSettings:
        return cls(
            name=cfg["name"],
            root=data_dir(cfg),
            loader=LoaderSettings.from_config(cfg),
            val_size=get_int(cfg, "val_size", cls.val_size),
            split_seed=get_int(cfg, "split_seed", cls.split_seed, minimum=0),
            augment=get_bool(cfg, "augment", cls.augment),
            use_test=get_bool(cfg, "use_test", cls.use_test),
            download=get_bool(cfg, "download", cls.download),
            on_device=get_bool(cfg, "on_device", cls.on_device),
        )


@dataclass(frozen=True)
class ImageNetSettings:
    """``imagenet`` (:func:`cmrepro.data.vision.build_imagenet`)."""

    root: Path
    loader: LoaderSettings
    image_size: int = 224
    resize: int = 256  # the evaluation transform's resize before its centre crop
    augment: bool = True
    max_bad_files: int = 100  # unreadable images skipped before the run stops (cmrepro.data.bad_files)

    @classmethod
    def from_config(cls, cfg: Mapping) -> ImageNetSettings:
        root, loader = data_dir(cfg), LoaderSettings.from_config(cfg)
        image_size, resize = get_int(cfg, "image_size", cls.image_size), get_int(cfg, "resize", cls.resize)
        if get_bool(cfg, "use_test", False):
            no_test = "imagenet has no labelled test split: set dataset.use_test=false (val/ is the held-out set)"
            raise ValueError(no_test)
        return cls(
            root,
            loader,
            image_size,
            resize,
            augment=get_bool(cfg, "augment", cls.augment),
            max_bad_files=get_int(cfg, "max_bad_files", cls.max_bad_files, minimum=0),
        )


@dataclass(frozen=True)
class PtbSettings:
    """``ptb`` (:func:`cmrepro.data.text.build_ptb`); text is batched in order, without workers."""

    root: Path
    batch_size: int
    eval_batch_size: int
    bptt: int = 35
    use_test: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping) -> PtbSettings:
        root, (batch_size, eval_batch_size) = data_dir(cfg), batch_sizes(cfg)
        return cls(
            root,
            batch_size,
            eval_batch_size,
            bptt=get_int(cfg, "bptt", cls.bptt),
            use_test=get_bool(cfg, "use_test", cls.use_test),
        )


@dataclass(frozen=True)
class SyntheticImageSettings:
    """``synthetic_image`` and the image stand-ins (:func:`cmrepro.data.synthetic.build_synthetic_image`)."""

    loader: LoaderSettings
    num_classes: int = 10
    image_size: int = 32
    channels: int = 3
    num_train: int = 512
    num_val: int = 256  # also the size of the test sample under use_test
    use_test: bool = False
    on_device: bool = False  # the images on the training device (data.on_device)

    @classmethod
    def from_config(cls, cfg: Mapping) -> SyntheticImageSettings:
        return cls(
            loader=LoaderSettings.from_config(cfg),
            num_classes=get_int(cfg, "num_classes", cls.num_classes, minimum=2),
            image_size=get_int(cfg, "image_size", cls.image_size),
            channels=get_int(cfg, "channels", cls.channels),
            num_train=get_int(cfg, "num_train", cls.num_train),
            num_val=get_int(cfg, "num_val", cls.num_val),
            use_test=get_bool(cfg, "use_test", cls.use_test),
            on_device=get_bool(cfg, "on_device", cls.on_device),
        )


@dataclass(frozen=True)
class SyntheticTextSettings:
    """``synthetic_text`` and the text stand-ins (:func:`cmrepro.data.synthetic.build_synthetic_text`)."""

    batch_size: int
    eval_batch_size: int
    vocab_size: int = 50
    bptt: int = 35
    num_train_tokens: int = 20000
    num_val_tokens: int = 4000  # also the length of the test split under use_test
    use_test: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping) -> SyntheticTextSettings:
        return cls(
            *batch_sizes(cfg),
            vocab_size=get_int(cfg, "vocab_size", cls.vocab_size, minimum=2),
            bptt=get_int(cfg, "bptt", cls.bptt),
            num_train_tokens=get_int(cfg, "num_train_tokens", cls.num_train_tokens),
            num_val_tokens=get_int(cfg, "num_val_tokens", cls.num_val_tokens),
            use_test=get_bool(cfg, "use_test", cls.use_test),
        )


def stand_in_sizes(cfg: Mapping) -> Mapping:
    """``cfg["stand_in"]``: the sizes of a synthetic stand-in for the real dataset."""
    sizes = cfg["stand_in"]
    check(isinstance(sizes, Mapping), "dataset.stand_in", sizes, "a mapping of stand-in sizes, or null")
    return sizes


# ---------------------------------------------------------------- task streams


def stream_seeds(cfg: Mapping, seed: int) -> tuple[int, int]:
    """``(task order seed, split seed)``; each defaults to the run seed."""
    return get_int(cfg, "task_order_seed", seed, minimum=0), get_int(cfg, "split_seed", seed, minimum=0)


@dataclass(frozen=True)
class SyntheticStreamSettings:
    """``synthetic_stream`` and the stream stand-ins (:func:`cmrepro.data.online.build_synthetic_stream`)."""

    loader: LoaderSettings
    num_tasks: int = 5
    classes_per_task: int = 5
    image_size: int = 32
    channels: int = 3
    num_train: int = 128  # per task
    num_val: int = 64  # per task, and the test sample's size under use_test
    use_test: bool = False

    @classmethod
    def from_config(cls, cfg: Mapping) -> SyntheticStreamSettings:
        return cls(
            loader=LoaderSettings.from_config(cfg),
            num_tasks=get_int(cfg, "num_tasks", cls.num_tasks),
            classes_per_task=get_int(cfg, "classes_per_task", cls.classes_per_task, minimum=2),
            image_size=get_int(cfg, "image_size", cls.image_size),
            channels=get_int(cfg, "channels", cls.channels),
            num_train=get_int(cfg, "num_train", cls.num_train),
            num_val=get_int(cfg, "num_val", cls.num_val),
            use_test=get_bool(cfg, "use_test", cls.use_test),
        )


@dataclass(frozen=True)
class TinyImageNetSettings:
    """``tinyimagenet`` (:func:`cmrepro.data.online.build_tinyimagenet`)."""

    root: Path
    loader: LoaderSettings
    task_order_seed: int
    split_seed: int
    classes_per_task: int = 5
    num_tasks: int | None = None  # None: as many as the classes on disk allow
    image_size: int = 64
    val_fraction: float = VAL_FRACTION
    augment: bool = True
    use_test: bool = False  # the official val/ images as each task's test set
    max_bad_files: int = 100  # unreadable images skipped before the run stops (cmrepro.data.bad_files)

    @classmethod
    def from_config(cls, cfg: Mapping, seed: int) -> TinyImageNetSettings:
        order_seed, split_seed = stream_seeds(cfg, seed)
        return cls(
            root=data_dir(cfg),
            loader=LoaderSettings.from_config(cfg),
            task_order_seed=order_seed,
            split_seed=split_seed,
            classes_per_task=get_int(cfg, "classes_per_task", cls.classes_per_task, minimum=2),
            num_tasks=_optional_int(cfg, "num_tasks"),
            image_size=get_int(cfg, "image_size", cls.image_size),
            val_fraction=_fraction(cfg, "val_fraction", cls.val_fraction),
            augment=get_bool(cfg, "augment", cls.augment),
            use_test=get_bool(cfg, "use_test", cls.use_test),
            max_bad_files=get_int(cfg, "max_bad_files", cls.max_bad_files, minimum=0),
        )


@dataclass(frozen=True)
class FiveDatasetsSettings:
    """``five_datasets`` (:func:`cmrepro.data.online.build_five_datasets`)."""

    tasks: tuple[str, ...]
    roots: Mapping[str, Path]  # where each task's files are
    loader: LoaderSettings
    task_order_seed: int
    split_seed: int
    image_size: int = 32
    val_fraction: float = VAL_FRACTION
    augment: bool = False
    use_test: bool = False  # the official test sets (notMNIST: a held-out tenth)
    max_bad_files: int = 100  # unreadable notMNIST images skipped before the run stops

    @classmethod
    def from_config(cls, cfg: Mapping, seed: int) -> FiveDatasetsSettings:
        tasks = five_tasks(cfg)
        order_seed, split_seed = stream_seeds(cfg, seed)
        return cls(
            tasks=tasks,
            roots={name: _five_root(cfg, name) for name in tasks},
            loader=LoaderSettings.from_config(cfg),
            task_order_seed=order_seed,
            split_seed=split_seed,
            image_size=get_int(cfg, "image_size", cls.image_size),
            val_fraction=_fraction(cfg, "val_fraction", cls.val_fraction),
            augment=get_bool(cfg, "augment", cls.augment),
            use_test=get_bool(cfg, "use_test", cls.use_test),
            max_bad_files=get_int(cfg, "max_bad_files", cls.max_bad_files, minimum=0),
        )


def five_tasks(cfg: Mapping) -> tuple[str, ...]:
    """``cfg["tasks"]``: distinct names among :data:`FIVE_DATASETS`, all five by default."""
    tasks = cfg.get("tasks", list(FIVE_DATASETS))
    if (
        isinstance(tasks, str)
        or not isinstance(tasks, Iterable)
        or not tasks
        or not set(tasks) <= set(FIVE_DATASETS)
        or len(set(tasks)) != len(list(tasks))
    ):
        # This rule reads "distinct names among", not "must be": the message keeps its own wording.
        raise ValueError(f"invalid dataset.tasks: {tasks!r} (distinct names among: {', '.join(FIVE_DATASETS)})")
    return tuple(tasks)


def _five_root(cfg: Mapping, name: str) -> Path:
    """``dataset.roots.<name>`` if set, else ``<dataset.data_dir>/<name>``."""
    given = (cfg.get("roots") or {}).get(name)
    return data_dir({"name": name, "data_dir": given}) if given else data_dir(cfg) / name
