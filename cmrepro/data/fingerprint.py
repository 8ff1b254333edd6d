"""A cheap description of the files a dataset config reads, independent of where they lie.

``dataset_fingerprint(cfg)`` lists the files the dataset's builder reads, each as its path
relative to the dataset's folder and its size, and sums them up as ``{"files", "bytes",
"digest"}``. A run records it so that a resumed run can tell "the same data, moved or copied
elsewhere" (same fingerprint, go on) from "other data" (a different one), which comparing
``dataset.data_dir`` cannot. No file is opened: sizes come from the directory scan, so
ImageNet's 1.28M files cost one ``stat`` each and no reads. A file rewritten with the same
size is not noticed; a truncated, added or removed file is.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

from .settings import FiveDatasetsSettings, data_dir

# (path relative to the dataset's folder, with "/" separators; size in bytes)
Entry = tuple[str, int]
Lister = Callable[[Path, str], Iterator[Entry]]


def dataset_fingerprint(cfg: Mapping) -> dict | None:
    """``{"files": count, "bytes": total, "digest": sha256 hex}`` of the files that the dataset
    config ``cfg`` reads, or None for data not read from disk (synthetic datasets, stand-ins).

    A missing folder is not an error here (the builder reports it): it counts as no files.
    """
    name = cfg.get("name")
    if cfg.get("stand_in") or name not in _DATASET_LISTERS:
        return None
    return summarise(_DATASET_LISTERS[name](cfg))


def summarise(entries: Iterable[Entry]) -> dict:
    """The count, total size and digest of ``entries``; the digest is the sha256 of the sorted
    ``"relpath\\tsize"`` lines joined by newlines, so it does not depend on the scan order."""
    lines, total = [], 0
    for relpath, size in entries:
        lines.append(f"{relpath}\t{size}")
        total += size
    lines.sort()
    # surrogateescape: file names that are not valid UTF-8 still hash (to their original bytes).
    digest = hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()
    return {"files": len(lines), "bytes": total, "digest": digest}


# ---------------------------------------------------------------- scanning


def tree_files(
    folder: Path | str, keep: Callable[[str], bool], prefix: str = "", *, recurse: bool = True
) -> Iterator[Entry]:
    """Every file in ``folder``, and below it when ``recurse`` (following links into folders, as
    ImageFolder does), whose name passes ``keep``, its path relative to ``folder`` behind
    ``prefix``; nothing if ``folder`` is missing or unreadable."""
    try:
        with os.scandir(folder) as scan:
            entries = list(scan)
    except OSError:  # missing, not a folder, or not readable: the builder says which
        return
    for entry in entries:
        relpath = prefix + entry.name
        try:
            if entry.is_dir():
                if recurse:
                    yield from tree_files(entry.path, keep, relpath + "/")
            elif keep(entry.name) and entry.is_file():
                yield relpath, entry.stat().st_size
        except OSError:  # removed while scanning, or a broken link: not data the builder can read
            continue


def named_files(folder: Path, relpaths: Iterable[str], prefix: str = "") -> Iterator[Entry]:
    """Those of ``relpaths`` (relative to ``folder``) that are files, behind ``prefix``."""
    for relpath in relpaths:
        try:
            status = os.stat(folder / relpath)
        except OSError:
            continue
        if stat.S_ISREG(status.st_mode):
            yield prefix + relpath, status.st_size


def _relative(folder: Path, paths: Iterable[Path | None]) -> list[str]:
    return [path.relative_to(folder).as_posix() for path in paths if path is not None]


def _inside(prefix: str, root: Path, folder: Path) -> str:
    """``prefix`` extended by the path of ``folder`` (``root`` or a folder below it) below ``root``."""
    relpath = folder.relative_to(root).as_posix()
    return prefix if relpath == "." else f"{prefix}{relpath}/"


# ---------------------------------------------------------------- one folder per dataset


def _cifar(name: str) -> Lister:
    def files(root: Path, prefix: str) -> Iterator[Entry]:
        from .vision import CIFAR_FORMATS

        fmt = CIFAR_FORMATS[name]
        return named_files(root, [f"{fmt.folder}/{file}" for file in fmt.files], prefix)

    return files


def _imagenet(root: Path, prefix: str) -> Iterator[Entry]:
    from torchvision.datasets.folder import IMG_EXTENSIONS  # what ImageFolder reads

    def is_image(name: str) -> bool:
        return name.lower().endswith(IMG_EXTENSIONS)

    for split in ("train", "val"):
        yield from tree_files(root / split, is_image, f"{prefix}{split}/")


def _ptb(root: Path, prefix: str) -> Iterator[Entry]:
    from .text import PTB_FILES

    return named_files(root, PTB_FILES.values(), prefix)


def _tinyimagenet(root: Path, prefix: str) -> Iterator[Entry]:
    from .tinyimagenet import find_tiny_imagenet_folder

    folder = find_tiny_imagenet_folder(root)
    if folder is None:
        return
    inner = _inside(prefix, root, folder)
    yield from named_files(folder, ["wnids.txt", "val/val_annotations.txt"], inner)
    for split in ("train", "val"):  # the reader globs "*.JPEG"
        yield from tree_files(folder / split, lambda name: name.endswith(".JPEG"), f"{inner}{split}/")


def _idx(fmt_name: str) -> Lister:
    def files(root: Path, prefix: str) -> Iterator[Entry]:
        from . import digit_formats

        fmt = getattr(digit_formats, fmt_name)
        stems = [stem for pair in digit_formats.IDX_FILES.values() for stem in pair]
        found = [digit_formats.find_idx(fmt, root, stem) for stem in stems]
        return named_files(root, _relative(root, found), prefix)

    return files


def _svhn(root: Path, prefix: str) -> Iterator[Entry]:
    from .digit_formats import svhn_path

    return named_files(root, _relative(root, [svhn_path(root, split) for split in ("train", "test")]), prefix)


def _notmnist(root: Path, prefix: str) -> Iterator[Entry]:
    from .digit_formats import NOTMNIST_LETTERS, find_notmnist_folder

    folder = find_notmnist_folder(root)
    if folder is None:
        return
    inner = _inside(prefix, root, folder)
    for letter in NOTMNIST_LETTERS:  # the reader takes every file in each letter's folder
        yield from tree_files(folder / letter, lambda name: True, f"{inner}{letter}/", recurse=False)


_FIVE_LISTERS: dict[str, Lister] = {
    "cifar10": _cifar("cifar10"),
    "mnist": _idx("MNIST"),
    "fashion_mnist": _idx("FASHION_MNIST"),
    "svhn": _svhn,
    "notmnist": _notmnist,
}


def _five_datasets(cfg: Mapping) -> Iterator[Entry]:
    # Each source under its own name, so moving one of them (dataset.roots) changes nothing.
    settings = FiveDatasetsSettings.from_config(cfg, seed=0)
    for name in settings.tasks:
        yield from _FIVE_LISTERS[name](settings.roots[name], f"{name}/")


def _one_folder(lister: Lister) -> Callable[[Mapping], Iterator[Entry]]:
    def entries(cfg: Mapping) -> Iterator[Entry]:
        return lister(data_dir(cfg), "")

    return entries


_DATASET_LISTERS: dict[str, Callable[[Mapping], Iterable[Entry]]] = {
    "cifar10": _one_folder(_cifar("cifar10")),
    "cifar100": _one_folder(_cifar("cifar100")),
    "imagenet": _one_folder(_imagenet),
    "ptb": _one_folder(_ptb),
    "tinyimagenet": _one_folder(_tinyimagenet),
    "five_datasets": _five_datasets,
}
