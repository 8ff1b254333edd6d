"""Download, check and unpack one dataset so that a run never reads half of one.

Downloads go to ``<file>.part`` beside their final name (in ``<data_dir>/.downloads``) and
resume with an HTTP Range request; a file is renamed to its final name only once its size and
digest match. Archives unpack into a temporary directory beside the dataset's folder, a
:data:`MARKER` file is written last, and the finished tree replaces the folder in one rename:
a folder without the marker is a half-done one and is rebuilt.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from .sources import Remote, Source

MARKER = ".cmrepro-complete"
CONNECT_TIMEOUT_S = 10.0
CHUNK = 1 << 20
# Tries per URL: a dropped connection resumes from the bytes already on disk.
ATTEMPTS = 3

Say = Callable[[str], None]


class FetchError(Exception):
    """One line: which file, what went wrong, and what to do."""


def _bar(total: int | None, desc: str, quiet: bool, unit: str = "B"):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, unit_scale=unit == "B", disable=quiet, leave=False)


def file_digest(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def check_file(path: Path, remote: Remote, say: Say) -> None:
    """FetchError unless ``path`` has the remote's size and digest; with no digest on record,
    print the actual SHA-256 so the user can compare it with a trusted one."""
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


def _request(url: str, start: int) -> urllib.request.Request:
    headers = {"User-Agent": "cmrepro-prepare"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.Request(url, headers=headers)


def download_once(url: str, part: Path, quiet: bool, timeout: float) -> None:
    """Fetch ``url`` into ``part``, resuming from its current length; OSError if the
    connection fails or ends before the announced length."""
    start = part.stat().st_size if part.exists() else 0
    try:
        response = urllib.request.urlopen(_request(url, start), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and start:  # nothing left to send: the part is whole
            return
        raise
    with response:
        resumed = start and response.status == 206
        mode = "ab" if resumed else "wb"  # a 200 answers with the whole file: restart
        offset = start if resumed else 0
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length is not None else None
        with open(part, mode) as out, _bar(total, part.name[: -len(".part")], quiet) as bar:
            bar.update(offset)
            received = offset
            while block := response.read(CHUNK):
                out.write(block)
                received += len(block)
                bar.update(len(block))
    if total is not None and received < total:
        raise ConnectionError(f"connection closed after {received} of {total} bytes")


def _fetch_with_retries(url: str, part: Path, quiet: bool, timeout: float) -> str | None:
    """None once ``part`` holds all of ``url``, else what went wrong on the last try."""
    problem = None
    for _ in range(ATTEMPTS):
        try:
            download_once(url, part, quiet, timeout)
            return None
        except (OSError, ValueError, http.client.HTTPException) as error:  # URLError, timeouts, cut connections
            problem = f"{url}: {type(error).__name__}: {getattr(error, 'reason', error)}"
            if isinstance(error, urllib.error.HTTPError) and error.code < 500:
                break  # the server refuses (404, 403): asking again will not help
            if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
                break  # no connection at all: retrying at once will not help
    return problem


def download(remote: Remote, folder: Path, say: Say, quiet: bool, timeout: float = CONNECT_TIMEOUT_S) -> Path:
    """``folder/<filename>`` checked against ``remote``, downloading (or resuming) it if needed.
    Each mirror is tried in turn; a bad digest deletes the file and moves to the next one."""
    folder.mkdir(parents=True, exist_ok=True)
    final, part = folder / remote.filename, folder / (remote.filename + ".part")
    if final.exists():
        try:
            check_file(final, remote, say)
            return final
        except FetchError as error:
            say(f"{error}: downloading it again")
            final.unlink()
    problems = []
    for url in remote.urls:
        problem = _fetch_with_retries(url, part, quiet, timeout)
        if problem is not None:
            problems.append(problem)
            continue
        try:
            check_file(part, remote, say)
        except FetchError as error:
            part.unlink()
            problems.append(str(error).replace(str(part), str(final)))
            continue
        os.replace(part, final)
        return final
    raise FetchError(
        f"{remote.filename}: could not download ({'; '.join(problems)}); check the network or use --from-archive"
    )


def unpack(archive: Path, kind: str, into: Path, quiet: bool) -> None:
    """Extract ``archive`` (``tar``: any compression; ``zip``) into ``into``, refusing paths
    that leave it; ``file`` copies it as is."""
    into.mkdir(parents=True, exist_ok=True)
    if kind == "file":
        try:  # a hard link: no second copy of a large file on the same disk
            os.link(archive, into / archive.name)
        except OSError:
            shutil.copy2(archive, into / archive.name)
        return
    if kind == "tar":
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            with _bar(len(members), f"extract {archive.name}", quiet, "file") as bar:
                for member in members:
                    tar.extract(member, into, filter="data")
                    bar.update(1)
        return
    if kind == "zip":
        with (
            zipfile.ZipFile(archive) as zipped,
            _bar(len(zipped.infolist()), f"extract {archive.name}", quiet, "file") as bar,
        ):
            for info in zipped.infolist():
                zipped.extract(info, into)  # zipfile drops "..", absolute parts
                bar.update(1)
        return
    raise ValueError(f"unknown archive kind: {kind!r} (must be tar, zip or file)")


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def install(source: Source, files: list[Path], target: Path, quiet: bool) -> None:
    """Unpack ``files`` beside ``target``, move ``source.place``'s paths into a new tree, mark it
    complete and swap it in for ``target`` (whose old content, if any, is removed)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        unpacked, tree = staging / "unpacked", staging / "tree"
        for archive in files:
            unpack(archive, source.kind, unpacked, quiet)
        tree.mkdir()
        for inside, placed in source.place.items():
            origin, destination = unpacked / inside, tree / placed
            if not origin.exists():
                raise FetchError(f"{source.name}: {inside} is not in {', '.join(f.name for f in files)}")
            destination.parent.mkdir(parents=True, exist_ok=True)
            os.replace(origin, destination)
        (tree / MARKER).write_text(json.dumps({"dataset": source.name, "files": [f.name for f in files]}) + "\n")
        if target.exists():
            # Out of the way in one rename first, so a crash never leaves a mix of old and new.
            os.replace(target, staging / "old")
        os.replace(tree, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
