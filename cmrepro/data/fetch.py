"""Check and unpack one dataset's files so that a run never reads half of one, and never
writes through a link planted in a shared data directory.

Archives unpack into a temporary directory beside the dataset's folder, the files a packaging
lists in ``contents`` are checked against their digests, a :data:`MARKER` file is written last,
and the finished tree replaces the folder in one rename: a folder without the marker is a
half-done one and is rebuilt. A folder on the way from the data directory down that is a link
is refused (:func:`real_folder`): the tree would land, and the old folder be removed, wherever
the link points. Downloading is :mod:`cmrepro.data.download`.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path

from .sources import Packaging, Remote, Source

MARKER = ".cmrepro-complete"
CHUNK = 1 << 20

Say = Callable[[str], None]

# What a corrupt, truncated or hostile archive raises while it unpacks (tarfile's filter refusals
# are TarErrors). Not OSError at large: a full disk says nothing against the archive.
BROKEN = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError)


class FetchError(Exception):
    """One line: which file, what went wrong, and what to do."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).splitlines()))


class BrokenArchive(FetchError):
    """The archive downloaded whole but is not the published one: it does not unpack, or what
    comes out of it is missing or fails its digest. A downloaded copy is deleted."""


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def kind_of(mode: int) -> str:
    """What a ``stat`` mode is, in words."""
    for test, name in ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a folder"), (stat.S_ISREG, "a file")):
        if test(mode):
            return name
    return "a special file (FIFO, socket or device)"


class Planted(FetchError):
    """A path under the data directory is not what prepare itself would have made there (a
    link, a special file): nothing is written through it and the dataset is not prepared."""


def planted(path: Path, found: str, wanted: str) -> Planted:
    return Planted(
        f"{path} is {found}, not {wanted}: refusing to use it (someone may have planted it); remove it and run again"
    )


def check_regular(path: Path) -> None:
    """FetchError unless ``path`` itself (not a link's target) is a regular file: reading a FIFO
    would hang, and a link planted in a shared folder points at someone else's file."""
    mode = path.lstat().st_mode
    if not stat.S_ISREG(mode):
        raise planted(path, kind_of(mode), "a regular file")


def real_folder(root: Path, relative: str | Path) -> Path:
    """``root / relative``, creating the folders below ``root`` that are missing; FetchError if
    one of them is a link or not a folder. ``root`` is the user's own choice and may be a link."""
    root.mkdir(parents=True, exist_ok=True)
    path = root
    for part in Path(relative).parts:
        path = path / part
        try:
            path.mkdir()
        except FileExistsError:
            mode = path.lstat().st_mode
            if not stat.S_ISDIR(mode):
                raise planted(path, kind_of(mode), "a folder") from None
    return path


def check_file(path: Path, remote: Remote, say: Say) -> None:
    """FetchError unless ``path`` is a regular file with the remote's size and digest; with no
    digest on record, print the actual SHA-256 so the user can compare it with a trusted one."""
    check_regular(path)
    size = path.stat().st_size
    if remote.size is not None and size != remote.size:
        raise FetchError(f"{path}: size {size} bytes, expected {remote.size} (incomplete or a different file)")
    for algorithm in ("sha256", "md5"):
        expected = getattr(remote, algorithm)
        if expected is not None:
            actual = file_digest(path, algorithm)
            if actual != expected:
                raise FetchError(f"{path}: {algorithm} {actual}, expected {expected} (corrupt or changed download)")
            return
    say(f"{remote.filename}: no digest on record; its sha256 is {file_digest(path, 'sha256')}")


def progress_bar(total: int | None, desc: str, quiet: bool, unit: str = "B"):
    """A tqdm bar on stderr (none under ``--quiet``); it leaves no line behind."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", disable=quiet, leave=False)


def _extract(archive: Path, kind: str, into: Path, quiet: bool) -> None:
    if kind == "tar":
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            with progress_bar(len(members), f"extract {archive.name}", quiet, "file") as bar:
                for member in members:
                    # "data": no absolute paths, nothing outside ``into``, no devices or links out.
                    tar.extract(member, into, filter="data")
                    bar.update(1)
        return
    if kind == "zip":
        with (
            zipfile.ZipFile(archive) as zipped,
            progress_bar(len(zipped.infolist()), f"extract {archive.name}", quiet, "file") as bar,
        ):
            for info in zipped.infolist():
                zipped.extract(info, into)  # zipfile drops "..", absolute parts
                bar.update(1)
        return
    raise ValueError(f"unknown archive kind: {kind!r} (must be tar, zip or file)")


def unpack(archive: Path, kind: str, into: Path, quiet: bool) -> None:
    """Extract ``archive`` (``tar``: any compression; ``zip``) into ``into``, refusing paths
    that leave it; ``file`` copies it as is. BrokenArchive (one line) if it cannot."""
    into.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        try:  # a hard link: no second copy of a large file on the same disk
            os.link(archive, into / archive.name)
        except OSError:
            shutil.copy2(archive, into / archive.name)
        return
    try:
        _extract(archive, kind, into, quiet)
    except tarfile.FilterError as error:
        raise BrokenArchive(f"{archive}: refused an unsafe member ({error})") from None
    except BROKEN as error:
        raise BrokenArchive(f"{archive}: cannot unpack it ({type(error).__name__}: {error})") from None


def check_contents(name: str, packaging: Packaging, tree: Path, files: Sequence[Path]) -> None:
    """BrokenArchive unless each of the packaging's ``contents`` has its MD5 under ``tree``."""
    for placed, expected in packaging.contents.items():
        actual = file_digest(tree / placed, "md5")
        if actual != expected:
            given = ", ".join(f.name for f in files)
            raise BrokenArchive(f"{name}: {placed} from {given}: md5 {actual}, expected {expected} (a different file)")


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def install(source: Source, packaging: Packaging, files: list[Path], data_dir: Path, quiet: bool) -> Path:
    """Unpack ``files`` beside the dataset's folder, move ``packaging.place``'s paths into a new
    tree, check its contents, mark it complete and swap it in for the folder (whose old content,
    if any, is removed). Returns the folder."""
    folder = Path(source.folder)
    target = real_folder(data_dir, folder.parent) / folder.name
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        unpacked, tree = staging / "unpacked", staging / "tree"
        for archive in files:
            unpack(archive, packaging.kind, unpacked, quiet)
        tree.mkdir()
        for inside, placed in packaging.place.items():
            origin, destination = unpacked / inside, tree / placed
            if not origin.exists():
                raise BrokenArchive(f"{source.name}: {inside} is not in {', '.join(f.name for f in files)}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(origin, destination)
        check_contents(source.name, packaging, tree, files)
        (tree / MARKER).write_text(json.dumps({"dataset": source.name, "files": [f.name for f in files]}) + "\n")
        if os.path.lexists(target):
            # Out of the way in one rename first, so a crash never leaves a mix of old and new
            # (a link is moved, not followed, and removed with the staging folder).
            os.replace(target, staging / "old")
        os.replace(tree, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
