"""Whether the files a dataset config reads are there, without reading them: for a command that
launches many runs (a sweep, a paper table) to refuse missing data once, before it starts any.

A dataset config needs one or more :class:`Need`\\ s: a source dataset (``cifar10``, ``mnist``,
...) in a folder. Many runs share a need, so a caller gathers the needs of all its runs first and
checks each distinct one once (:meth:`Need.problem`). The check is the first one the dataset's
builder makes before it reads anything (the same function, or the builder's reader where it
stops at once on a missing file), so its message is the one a run would print: what was expected
where, what was found, and the ``python -m cmrepro.data prepare`` command that fixes it. A file
that is there but broken is left to the run, which reads it.

No needs: stand-in data (``dataset.stand_in``), data made in memory, and a dataset whose run
fetches its own files (``dataset.download=true``, :mod:`.on_demand`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .base import DataError
from .registry import DATASETS
from .settings import FiveDatasetsSettings, data_dir


@dataclass(frozen=True)
class Need:
    """Source dataset ``name``'s files in ``root``; ``check`` raises the builder's DataError if
    they are not there."""

    name: str
    root: Path
    check: Callable[[], object] = field(compare=False, hash=False, repr=False)

    def problem(self) -> str | None:
        """The one line a run would stop with for lack of these files, else None."""
        try:
            self.check()
        except DataError as error:
            return str(error)
        return None


def _cifar(name: str, root: Path) -> Callable[[], object]:
    from .vision import CIFAR_FORMATS, check_cifar_files

    return lambda: check_cifar_files(CIFAR_FORMATS[name], root)


def _idx(name: str, root: Path, splits: tuple[str, ...]) -> Callable[[], object]:
    def check() -> None:
        from . import digit_formats

        fmt = {"mnist": digit_formats.MNIST, "fashion_mnist": digit_formats.FASHION_MNIST}[name]
        for split in splits:
            if any(digit_formats.find_idx(fmt, root, stem) is None for stem in digit_formats.IDX_FILES[split]):
                digit_formats.read_idx_split(fmt, root, split)  # stops, before reading, with the run's line

    return check


def _svhn(root: Path, splits: tuple[str, ...]) -> Callable[[], object]:
    def check() -> None:
        from .digit_formats import read_svhn_split, svhn_path

        for split in splits:
            if not svhn_path(root, split).is_file():
                read_svhn_split(root, split)  # stops, before reading, with the run's line

    return check


def _notmnist(root: Path) -> Callable[[], object]:
    from .digit_formats import notmnist_folder

    return lambda: notmnist_folder(root)


def _one_folder(name: str, cfg: Mapping) -> list[Need]:
    root = data_dir(cfg)
    if name in ("cifar10", "cifar100"):
        return [Need(name, root, _cifar(name, root))]
    if name == "imagenet":
        from .vision import check_imagenet_folders

        return [Need(name, root, lambda: check_imagenet_folders(root))]
    if name == "ptb":
        from .text import check_ptb_files

        return [Need(name, root, lambda: check_ptb_files(root))]
    if name == "tinyimagenet":
        from .tinyimagenet import tiny_imagenet_folder

        return [Need(name, root, lambda: tiny_imagenet_folder(root))]
    return []


def _five_datasets(cfg: Mapping) -> list[Need]:
    settings = FiveDatasetsSettings.from_config(cfg, seed=0)  # the seed orders the tasks, not their files
    splits = ("train", "test") if settings.use_test else ("train",)
    needs = []
    for name in settings.tasks:
        root = settings.roots[name]
        if name == "cifar10":
            check = _cifar(name, root)
        elif name == "svhn":
            check = _svhn(root, splits)
        elif name == "notmnist":
            check = _notmnist(root)
        else:
            check = _idx(name, root, splits)
        needs.append(Need(name, root, check))
    return needs


def data_needs(cfg: Mapping) -> list[Need]:
    """The files the resolved dataset config ``cfg`` reads from disk, as needs to check (none for
    stand-in or generated data, or where the run downloads its own). A value the settings refuse
    gives no needs: the run itself reports it, as it would any config problem."""
    name = cfg.get("name")
    entry = DATASETS.get(name)
    if entry is None or cfg.get("stand_in") or (entry.fetch is not None and cfg.get("download") is True):
        return []
    try:
        return _five_datasets(cfg) if name == "five_datasets" else _one_folder(name, cfg)
    except (ValueError, DataError):
        return []


def missing_data(configs: list[Mapping]) -> list[str]:
    """One line per source dataset, in a folder, that the dataset configs ``configs`` need and
    that is not there; each distinct need is checked once, however many configs share it."""
    needs = dict.fromkeys(need for cfg in configs for need in data_needs(cfg))
    problems = (need.problem() for need in needs)
    return list(dict.fromkeys(problem for problem in problems if problem))
