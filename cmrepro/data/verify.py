"""What is on disk for each dataset, read with the same readers a run uses: one summary
line per dataset, or a one-line :class:`~cmrepro.data.base.DataError` naming the command that
fixes it. Counts are compared with the source table's where it records them.

:func:`check` sorts a dataset into ready, not prepared (its folder is absent or empty: nothing
went wrong, ``prepare`` has not run) or failed (files are there but unreadable, incomplete or of
the wrong counts: the reader's own message), and :func:`tally` sums several checks in one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .base import DataError

Counter = Callable[[Path], dict[str, int]]


READY, NOT_PREPARED, FAILED = "ready", "not prepared", "failed"
IMAGENET = "imagenet"
# ImageNet's archives need an account, so prepare never downloads them: it unpacks these.
IMAGENET_ARCHIVES = ("ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar", "ILSVRC2012_devkit_t12.tar.gz")


def fix_command(name: str) -> str:
    return f"python -m cmrepro.data prepare {name}"


def prepare_hint(names: Sequence[str], data_dir_option: str = "", archives: bool = True) -> str:
    """The command that prepares ``names``: one for the downloadable ones (``prepare all`` when
    that is all of them), and imagenet's own ``--from`` form, since its archives are copied by
    hand; ``archives``: name the archives DIR must hold (a tally line leaves that to the lines above)."""
    from .sources import expand

    option = f" {data_dir_option}" if data_dir_option else ""
    commands = []
    downloadable = [name for name in names if name != IMAGENET]
    if downloadable:
        every = len(downloadable) > 1 and set(downloadable) == set(expand("all"))
        commands.append(f"{fix_command('all' if every else ' '.join(downloadable))}{option}")
    if IMAGENET in names:
        held = f", DIR holding {', '.join(IMAGENET_ARCHIVES)} (from image-net.org, with an account)"
        commands.append(f"{fix_command(IMAGENET)} --from DIR{option}{held if archives else ''}")
    return "; ".join(commands)


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


@dataclass(frozen=True)
class Check:
    """One dataset's state (:data:`READY`, :data:`NOT_PREPARED`, :data:`FAILED`) and its line."""

    name: str
    state: str
    line: str


def is_prepared(name: str, data_dir: Path) -> bool:
    """Whether anything is in the dataset's folder: an absent or empty folder is one ``prepare``
    has not made yet, anything else is judged by the readers (a half-made folder fails)."""
    folder = dataset_folder(name, data_dir)
    if not folder.exists():
        return False
    return not folder.is_dir() or any(folder.iterdir())


def check(name: str, data_dir: Path, expected: Mapping[str, int] | None = None, data_dir_option: str = "") -> Check:
    """``name``'s :class:`Check` under ``data_dir``; ``data_dir_option``: what the prepare
    command needs to say where the data goes (``--data-dir DIR``, or "" for the default)."""
    if not is_prepared(name, data_dir):
        folder = dataset_folder(name, data_dir)
        return Check(
            name, NOT_PREPARED, f"{name}: not prepared (no {folder}); run: {prepare_hint([name], data_dir_option)}"
        )
    try:
        return Check(name, READY, verify(name, data_dir, expected))
    except DataError as error:
        return Check(name, FAILED, f"verify {name} failed: {' '.join(str(error).splitlines())}")


def tally(checks: Sequence[Check], data_dir_option: str = "") -> str:
    """One line over several checks: how many are ready, which are not prepared (with the
    commands that prepare them) and which failed (their lines above say why)."""
    ready = [c.name for c in checks if c.state == READY]
    missing = [c.name for c in checks if c.state == NOT_PREPARED]
    failed = [c.name for c in checks if c.state == FAILED]
    parts = [f"{len(ready)} of {len(checks)} ready"]
    if missing:
        parts.append(f"not prepared: {', '.join(missing)} (run: {prepare_hint(missing, data_dir_option, False)})")
    if failed:
        parts.append(f"failed: {', '.join(failed)} (present but unreadable: see each line above)")
    return f"verify: {'; '.join(parts)}"
