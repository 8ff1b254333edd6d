"""Datasets of the paper's experiments behind one call: ``build_data(cfg, seed=...)``.

Families: CIFAR10/100 and ImageNet (:mod:`.vision`), Penn Treebank (:mod:`.text`),
file-free synthetic data (:mod:`.synthetic`), and the task streams of online learning
(:mod:`.online`: TinyImageNet, 5-dataset, a synthetic stream).
"""

from .base import DATASET_NAMES, DATASET_TASKS, DataBundle, DataError, build_data, is_task_stream

__all__ = ["DATASET_NAMES", "DATASET_TASKS", "DataBundle", "DataError", "build_data", "is_task_stream"]
