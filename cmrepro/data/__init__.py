"""Datasets of the paper's experiments behind one call: ``build_data(cfg, seed=...)``.

Families: CIFAR10/100 and ImageNet (:mod:`.vision`), Penn Treebank (:mod:`.text`),
and file-free synthetic data (:mod:`.synthetic`).
"""

from .base import DATASET_NAMES, DATASET_TASKS, DataBundle, DataError, build_data

__all__ = ["DATASET_NAMES", "DATASET_TASKS", "DataBundle", "DataError", "build_data"]
