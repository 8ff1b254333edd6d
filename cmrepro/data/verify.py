"""What is on disk for each dataset, read with the same readers a run uses: one summary
line per dataset, or a one-line :class:`~cmrepro.data.base.DataError` naming the command that
fixes it. Counts are compared with the source table's where it records them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from .base import DataError

Counter = Callable[[Path], dict[str, int]]


def fix_command(name: str) -> str:
    return f"python -m cmrepro.data prepare {name}"


def _cifar(name: str) -> Counter:
    def count(folder: Path) -> dict[str, int]:
        from .vision import CIFAR_FORMATS, check_cifar_files, check_cifar_meta, read_cifar_split

        fmt = CIFAR_FORMATS[name]
        files = check_cifar_files(fmt, folder)
        check_cifar_meta(fmt, files, folder)
        _, train = read_cifar_split(fmt, files, fmt.train_files, folder)
        _, test = read_cifar_split(fmt, files, (fmt.test_file,), folder)
        return {"train": len(train), "test": len(test), "classes": fmt.num_classes}

    return count


def _ptb(folder: Path) -> dict[str, int]:
    from .text import build_vocabulary, check_ptb_files, read_sentences

    sentences = {split: read_sentences(path) for split, path in check_ptb_files(folder).items()}
    tokens = {f"{split} tokens": sum(len(s) for s in lines) for split, lines in sentences.items()}
    return {**tokens, "vocabulary": len(build_vocabulary(sentences["train"]))}


def _tinyimagenet(folder: Path) -> dict[str, int]:
    from .tinyimagenet import read_wnids, tiny_imagenet_folder, train_files, val_files

    tree = tiny_imagenet_folder(folder)
    wnids = read_wnids(tree)
    train, val = train_files(tree, wnids), val_files(tree, wnids)
    return {"classes": len(wnids), "train": sum(map(len, train.values())), "val": sum(map(len, val.values()))}


def _idx(fmt_name: str) -> Counter:
    def count(folder: Path) -> dict[str, int]:
        from . import digit_formats

        fmt = getattr(digit_formats, fmt_name)
        return {split: len(digit_formats.read_idx_split(fmt, folder, split)[1]) for split in ("train", "test")}

    return count


def _svhn(folder: Path) -> dict[str, int]:
    from .digit_formats import read_svhn_split

    return {split: len(read_svhn_split(folder, split)[1]) for split in ("train", "test")}


def _notmnist(folder: Path) -> dict[str, int]:
    from .digit_formats import read_notmnist

    _, labels, skipped = read_notmnist(folder)
    return {"images": len(labels), "letters": len(set(labels.tolist())), "unreadable skipped": skipped}


def _imagenet(folder: Path) -> dict[str, int]:
    from .vision import check_imagenet_folders

    classes = check_imagenet_folders(folder)
    counts = {"classes": len(classes)}
    for split in ("train", "val"):
        counts[split] = sum(1 for c in classes for p in (folder / split / c).iterdir() if p.is_file())
    return counts


COUNTERS: dict[str, Counter] = {
    "cifar10": _cifar("cifar10"),
    "cifar100": _cifar("cifar100"),
    "ptb": _ptb,
    "tinyimagenet": _tinyimagenet,
    "mnist": _idx("MNIST"),
    "fashion_mnist": _idx("FASHION_MNIST"),
    "svhn": _svhn,
    "notmnist": _notmnist,
    "imagenet": _imagenet,
}
FOLDERS = {"imagenet": "imagenet"}


def dataset_folder(name: str, data_dir: Path) -> Path:
    from .sources import sources

    table = sources()
    return data_dir / (table[name].folder if name in table else FOLDERS[name])


def verify(name: str, data_dir: Path, expected: Mapping[str, int] | None = None) -> str:
    """``"<name>: ok, <counts> in <folder>"``; DataError (one line, ending with the prepare
    command) if the files are missing, unreadable or fewer than ``expected``."""
    folder = dataset_folder(name, data_dir)
    try:
        counts = COUNTERS[name](folder)
    except DataError as error:
        if fix_command(name) in str(error):  # the readers name it
            raise
        raise DataError(f"{error}; or run: {fix_command(name)} --data-dir {data_dir}") from None
    wrong = {key: (counts.get(key), value) for key, value in (expected or {}).items() if counts.get(key) != value}
    if wrong:
        found = ", ".join(f"{counts.get(k)} {k} instead of {v}" for k, (_, v) in wrong.items())
        raise DataError(f"{name}: {folder} holds {found}; run: {fix_command(name)} --data-dir {data_dir}")
    summary = ", ".join(f"{value} {key}" for key, value in counts.items())
    return f"{name}: ok, {summary} in {folder}"
