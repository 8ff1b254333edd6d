"""Image files that cannot be decoded (truncated, empty, not an image): skipped, each named once
on stderr, and counted against ``dataset.max_bad_files``, past which the run stops with one line.

Big image sets hold a few broken files (notMNIST's archives do, a copied ImageNet may). Decoding
happens in DataLoader worker processes, mid-epoch, so the record of what was skipped has to be
shared between processes and outlive a resumed run: with a run directory it is the file
``<run_dir>/bad_files.txt``, one path (relative to the dataset's folder, so a moved dataset
keeps its record) per line, appended with ``O_APPEND`` so that workers can write at once;
readers de-duplicate. Without a run directory (tests, notebooks) the record lives in the
memory of each process, and each worker process counts on its own.

A skipped sample is replaced by the next readable one of the same dataset (wrapping around):
which one depends only on the files, so a run reads the same data with or without workers and
after a resume.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from .base import DataError

RECORD_FILE = "bad_files.txt"
# How many of the files a too-many error names; the record file lists them all.
NAMED_IN_ERROR = 10
# PIL's ways of refusing a broken file: OSError (truncated, unidentified, unreadable), and
# ValueError / SyntaxError / EOFError from some of its format plugins.
UNREADABLE_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)


class UnreadableImage(Exception):
    """An image file that cannot be decoded; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)
        self.reason = reason


class TooManyBadFiles(DataError):
    """More unreadable files than ``dataset.max_bad_files``.

    Raised in a DataLoader worker, it reaches the main process re-created by PyTorch from the
    message "Caught TooManyBadFiles in DataLoader worker process N. Original Traceback ...":
    this class takes its own one-line message back out of that text, so the main process gets
    the same one line (and type) that a run without workers gets.
    """

    def __init__(self, message: str) -> None:
        super().__init__(_message_from_worker(str(message), type(self).__name__))


def _message_from_worker(text: str, name: str) -> str:
    """The original message inside PyTorch's worker wrapping of an exception of class ``name``."""
    if not text.startswith(f"Caught {name} "):
        return text
    _, found, message = text.rstrip().splitlines()[-1].partition(f"{name}: ")
    return message if found else text


def open_image(path: Path | str, mode: str):
    """The image at ``path`` decoded and converted to PIL ``mode`` ("RGB", "L"); UnreadableImage
    if the file is not a readable image. Conversion loads every pixel, so a truncated file
    fails here, not later in a transform."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return image.convert(mode)
    except UNREADABLE_IMAGE_ERRORS as error:
        raise UnreadableImage(path, f"{type(error).__name__}: {error}") from None


def read_rgb(path: str) -> Any:
    """An RGB PIL image (the ``loader`` of torchvision's ImageFolder); UnreadableImage if broken."""
    return open_image(path, "RGB")


def warn(message: str) -> None:
    """One line on stderr, as the training entry point prints its notes."""
    print(f"cmrepro.train: {message}", file=sys.stderr, flush=True)


class BadFiles:
    """The unreadable files of one dataset in one run, and the limit on their number.

    ``add`` records a file (naming it on stderr the first time any process of the run meets it)
    and raises :class:`TooManyBadFiles` past ``limit``. Picklable, so worker processes get a copy;
    with ``run_dir`` the copies share ``<run_dir>/bad_files.txt``.
    """

    def __init__(self, dataset: str, root: Path, limit: int, run_dir: Path | None, how: str) -> None:
        self.dataset = dataset
        self.root = root
        self.limit = limit
        self.how = how  # how to get intact files, for the too-many error
        self.path = None if run_dir is None else Path(run_dir) / RECORD_FILE
        # The files this process knows of, in the order recorded (the whole record without a file).
        self.known: dict[str, None] = {}

    def recorded(self) -> list[str]:
        """The distinct files recorded so far, as paths relative to ``root``, first seen first."""
        if self.path is not None:
            try:
                lines = self.path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
            except FileNotFoundError:
                lines = []
            self.known.update(dict.fromkeys(line for line in lines if line))
        return list(self.known)

    def add(self, path: Path, reason: str) -> None:
        """Record ``path`` as unreadable; TooManyBadFiles if that makes more than ``limit``."""
        name = self._relative(path)
        if name in self.known:  # this process has named and counted it already
            self.check(list(self.known))
            return
        recorded = self.recorded()
        if name not in recorded:
            self._append(name)
            recorded.append(name)
            self.known[name] = None
            warn(
                f"{self.dataset}: skipping unreadable image {path} ({reason}); {len(recorded)} such file(s) so far,"
                f" at most dataset.max_bad_files={self.limit}"
            )
        self.check(recorded)

    def check(self, recorded: Sequence[str] | None = None) -> None:
        """TooManyBadFiles if more than ``limit`` files are recorded."""
        recorded = self.recorded() if recorded is None else recorded
        if len(recorded) > self.limit:
            raise TooManyBadFiles(self._too_many(recorded))

    def note_recorded(self) -> None:
        """At the start of a resumed run: check the record and say how many files it skips."""
        recorded = self.recorded()
        self.check(recorded)
        if recorded:
            warn(f"{self.dataset}: skipping the {len(recorded)} unreadable image file(s) listed in {self.path}")

    def none_readable(self, count: int) -> TooManyBadFiles:
        """The error for a dataset of ``count`` files of which none could be decoded."""
        return TooManyBadFiles(
            f"{self.dataset}: none of the {count} image files of a split under {self.root} is readable"
            f" (e.g. {', '.join(self.recorded()[:3])}); {self.how}"
        )

    def _too_many(self, recorded: Sequence[str]) -> str:
        named = ", ".join(recorded[:NAMED_IN_ERROR])
        more = f" and {len(recorded) - NAMED_IN_ERROR} more" if len(recorded) > NAMED_IN_ERROR else ""
        listed = f" (all listed in {self.path})" if self.path is not None else ""
        return (
            f"{self.dataset}: {len(recorded)} unreadable image files under {self.root}, more than"
            f" dataset.max_bad_files={self.limit}: {named}{more}{listed}; {self.how},"
            f" or raise dataset.max_bad_files to skip them"
        )

    def _relative(self, path: Path) -> str:
        try:
            return Path(path).relative_to(self.root).as_posix()
        except ValueError:  # outside the dataset's folder (dataset.roots elsewhere): keep it whole
            return str(path)

    def _append(self, name: str) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # One write of one short line with O_APPEND: lines of concurrent workers do not interleave.
        handle = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(handle, f"{name}\n".encode("utf-8", "surrogateescape"))
        finally:
            os.close(handle)


class SkipUnreadable(Dataset):
    """``dataset`` with each sample whose image raises :class:`UnreadableImage` replaced by the
    next readable sample (its image and its label), wrapping around at the end."""

    def __init__(self, dataset: Dataset, record: BadFiles) -> None:
        self.dataset = dataset
        self.record = record

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        size = len(self.dataset)
        for offset in range(size):
            try:
                return self.dataset[(index + offset) % size]
            except UnreadableImage as error:
                self.record.add(error.path, error.reason)
        raise self.record.none_readable(size)
