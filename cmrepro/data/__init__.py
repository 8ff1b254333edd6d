"""Datasets of the paper's experiments behind one call: ``build_data(cfg, seed=...)``.

Families: CIFAR10/100 and ImageNet (:mod:`.vision`), Penn Treebank (:mod:`.text`),
file-free synthetic data (:mod:`.synthetic`), and the task streams of online learning
(:mod:`.online`: TinyImageNet, 5-dataset, a synthetic stream). Each reads its config into
the typed settings of :mod:`.settings`; :mod:`.registry` names them all and builds one.
"""

from .base import DataBundle, DataContext, DataError
from .registry import DATASET_NAMES, DATASET_TASKS, build_data, is_task_stream

__all__ = ["DATASET_NAMES", "DATASET_TASKS", "DataBundle", "DataContext", "DataError", "build_data", "is_task_stream"]
