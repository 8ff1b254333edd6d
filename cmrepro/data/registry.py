"""Every dataset by name, and ``build_data(cfg, seed=...)``, which builds the one a config names.

The top of the data package: it imports the families, none of them imports it. Each name has
one entry: the task (so configs are checked against the model before any data is read),
whether it is a task stream (learned one task after another, Table 4), and its builders.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from . import on_demand, online, synthetic, text, vision
from .base import DEFAULT_CONTEXT, DataBundle, DataContext, DataError
from .online import TaskStream

Builder = Callable[[Mapping, int, DataContext], DataBundle | TaskStream]


@dataclass(frozen=True)
class DatasetEntry:
    """How to build one dataset: the real one, and its synthetic stand-in (``dataset.stand_in``)."""

    task: str  # "classification" or "language_model"
    build: Builder
    stand_in: Builder | None  # None: no stand-in is defined
    stream: bool = False  # a TaskStream of tasks learned one after another, not a DataBundle
    on_device: bool = False  # can keep its images on the training device (dataset.on_device)
    fetch: Callable[[Mapping], None] | None = None  # dataset.download=true: fetch missing files first


DATASETS: dict[str, DatasetEntry] = {
    "cifar10": DatasetEntry(
        "classification", vision.build_cifar, synthetic.build_stand_in, on_device=True, fetch=on_demand.fetch_cifar
    ),
    "cifar100": DatasetEntry(
        "classification", vision.build_cifar, synthetic.build_stand_in, on_device=True, fetch=on_demand.fetch_cifar
    ),
    "imagenet": DatasetEntry("classification", vision.build_imagenet, synthetic.build_stand_in),
    "ptb": DatasetEntry("language_model", text.build_ptb, synthetic.build_stand_in),
    "synthetic_image": DatasetEntry("classification", synthetic.build_synthetic_image, None, on_device=True),
    "synthetic_text": DatasetEntry("language_model", synthetic.build_synthetic_text, None),
    "tinyimagenet": DatasetEntry(
        "classification", online.build_tinyimagenet, online.build_stand_in_stream, stream=True
    ),
    "five_datasets": DatasetEntry(
        "classification", online.build_five_datasets, online.build_stand_in_stream, stream=True
    ),
    "synthetic_stream": DatasetEntry(
        "classification", online.build_synthetic_stream, online.build_stand_in_stream, stream=True
    ),
}
DATASET_NAMES: tuple[str, ...] = tuple(DATASETS)
# Dataset name -> task, so configs can be checked against the model before any data is read.
DATASET_TASKS: dict[str, str] = {name: entry.task for name, entry in DATASETS.items()}
STREAM_DATASETS: tuple[str, ...] = tuple(name for name, entry in DATASETS.items() if entry.stream)


def is_task_stream(name: str) -> bool:
    """Whether dataset ``name`` is a stream of tasks learned one after another (:mod:`.online`)."""
    return name in STREAM_DATASETS


def build_data(cfg: Mapping, *, seed: int, context: DataContext = DEFAULT_CONTEXT) -> DataBundle | TaskStream:
    """The loaders of dataset ``cfg["name"]`` (a :class:`~cmrepro.data.online.TaskStream` for
    the task streams), or its stand-in when ``cfg["stand_in"]`` is set; the data on disk is
    checked here, before any training, and problems raise :class:`DataError`. ``context``: where
    the run uses the data (:class:`~cmrepro.data.base.DataContext`)."""
    name = cfg.get("name")
    if name not in DATASETS:
        raise DataError(f"unknown dataset name {name!r}; expected one of: {', '.join(DATASET_NAMES)}")
    entry = DATASETS[name]
    if cfg.get("on_device") == "auto":
        # On a GPU, host-side crops and copies starve a compiled step (a few ms): keep the data there.
        cfg = {**cfg, "on_device": entry.on_device and context.device.type == "cuda"}
    if cfg.get("on_device") and not entry.on_device:
        supported = ", ".join(n for n, e in DATASETS.items() if e.on_device)
        raise ValueError(f"invalid dataset.on_device: true for {name} (only {supported} keep their data on the device)")
    if not cfg.get("stand_in"):
        if entry.fetch is not None:
            entry.fetch(cfg)
        return entry.build(cfg, seed, context)
    if entry.stand_in is None:
        raise DataError(f"{name}: no synthetic stand-in is defined for this dataset; run it without dataset.stand_in")
    return entry.stand_in(cfg, seed, context)
