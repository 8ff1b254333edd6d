"""Datasets of the paper's experiments behind one call: ``build_data(cfg, seed=...)``.

Families: CIFAR10/100 and ImageNet (:mod:`.vision`), Penn Treebank (:mod:`.text`),
file-free synthetic data (:mod:`.synthetic`), and the task streams of online learning
(:mod:`.online`: TinyImageNet, 5-dataset, a synthetic stream). Each reads its config into
the typed settings of :mod:`.settings`; :mod:`.registry` names them all and builds one.
"""

from ..suite_check import require_suite_when_run

# `python -m cmrepro.data` runs this before __main__.py, and .base imports numpy: the command's
# one-line check belongs here (a library import keeps the usual ImportError).
require_suite_when_run(__name__)

from .base import DataBundle, DataContext, DataError  # noqa: E402
from .registry import DATASET_NAMES, DATASET_TASKS, build_data, is_task_stream  # noqa: E402

__all__ = ["DATASET_NAMES", "DATASET_TASKS", "DataBundle", "DataContext", "DataError", "build_data", "is_task_stream"]
