"""What makes two configs the same run: every key except those that only say where or how a run
is carried out.

One list, :data:`INCIDENTAL_KEYS`, serves both places that need it: the run directory's name
(Hydra's ``override_dirname`` leaves out the overrides of these keys; Hydra matches whole keys,
so ``conf/config.yaml`` spells them out, and a test keeps its list equal to
:func:`dirname_exclude_keys`) and the check that a directory being resumed or skipped holds this
very run (``cmrepro.training.run_setup.check_same_run``). A key left off the list would fork the
run directory, or refuse a resume, whenever it changes: staging data to a job's scratch disk,
running on another device, or turning a logger on must do neither. Standard library only.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

# Config keys (and whole subtrees) that never change what a run computes. Whether a copy of the
# data holds the same images is checked by the dataset's fingerprint instead of its path.
INCIDENTAL_KEYS = (
    "run_dir",
    "paths",  # data_dir, output_dir
    "logger",  # local or wandb, project, mode, entity
    "dataset.data_dir",
    "dataset.roots",  # where each task of the 5-dataset stream lies (its files are fingerprinted)
    "dataset.download",
    "dataset.num_workers",
    "dataset.pin_memory",
    "dataset.max_bad_files",  # how many unreadable images to skip before failing, not which
    "trainer.device",
    "trainer.progress",
    "trainer.keep_checkpoint",
    "trainer.checkpoint_every",  # when checkpoints are written, not what is trained
    "trainer.compile",  # the same computation, compiled; resuming eagerly is allowed
)

# Command-line keys already spelled out by the run directory's path (conf/config.yaml's run_dir),
# or that choose where the runs go (scale=smoke also moves paths.output_dir).
PATH_KEYS = ("dataset", "optimizer", "scale")


def is_incidental(key: str) -> bool:
    """Whether the dotted config ``key`` is, or lies under, one of :data:`INCIDENTAL_KEYS`."""
    return any(key == k or key.startswith(k + ".") for k in INCIDENTAL_KEYS)


def dirname_exclude_keys(known_keys: Iterable[str]) -> list[str]:
    """What ``conf/config.yaml``'s ``override_dirname.exclude_keys`` must hold, given every key
    the configs define (``cmrepro.config_keys.known_keys``): the path keys and the incidental ones."""
    return sorted({*PATH_KEYS, *(key for key in known_keys if is_incidental(key))})


def without_incidental(config: Mapping) -> dict:
    """A copy of the nested ``config`` without its incidental keys: what the run computes."""
    config = copy.deepcopy(dict(config))
    for key in INCIDENTAL_KEYS:
        *parents, leaf = key.split(".")
        node = config
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(leaf, None)
    return config
