"""Download one file into a shared data directory: resumable, checked, and never written
through a link.

Bytes go to ``<file>.part`` beside the final name (in ``<data_dir>/.downloads``) and resume with
an HTTP Range request, appended only where the server's ``Content-Range`` says they start; the
file is renamed to its final name only once its size and digest match. The ``.part`` is opened
without following links and must be a regular file with one name: a link (or hard link) planted
by a neighbour would otherwise have the download appended to the file it points at. A server
slower than :attr:`Limits.min_rate` over a window is left, keeping the bytes for a later resume.
"""

from __future__ import annotations

import http.client
import os
import re
import stat
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from .fetch import CHUNK, FetchError, Say, check_file, check_regular, kind_of, planted, progress_bar
from .sources import Remote

# Tries per URL: a dropped connection resumes from the bytes already on disk.
ATTEMPTS = 3


@dataclass(frozen=True)
class Limits:
    """When to give up on a server: no answer (or no byte) for ``timeout_s``, or fewer than
    ``min_rate`` bytes a second over ``window_s`` (curl's ``--speed-limit/--speed-time``)."""

    timeout_s: float = 10.0
    min_rate: float = 1024.0
    window_s: float = 30.0


LIMITS = Limits()


class TooSlow(Exception):
    """The server sends, but slower than the limit: trying again at once would not help."""


def open_part(part: Path) -> BinaryIO:
    """``part`` opened for appending, created if absent; FetchError if it is anything but a
    regular file with a single name. Opened before it is checked (``O_NOFOLLOW`` refuses a link
    outright), so what is checked is what is written."""
    try:
        fd = os.open(part, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        if os.path.islink(part):
            raise planted(part, "a symbolic link", "a regular file") from None
        raise FetchError(f"{part}: cannot open it ({error.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
        os.close(fd)
        found = kind_of(info.st_mode) if not stat.S_ISREG(info.st_mode) else f"a file with {info.st_nlink} names"
        raise planted(part, found, "a regular file of its own")
    handle = os.fdopen(fd, "r+b")
    handle.seek(0, os.SEEK_END)
    return handle


def _request(url: str, start: int) -> urllib.request.Request:
    headers = {"User-Agent": "cmrepro-prepare"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.Request(url, headers=headers)


CONTENT_RANGE = re.compile(r"bytes (\d+)-\d+/(\d+|\*)")


def range_start(response) -> int | None:
    """Where the bytes of a 206 answer start, by its ``Content-Range``; None if it has none."""
    match = CONTENT_RANGE.fullmatch((response.headers.get("Content-Range") or "").strip())
    return int(match.group(1)) if match else None


def _open(url: str, start: int, timeout: float):
    """The answer to a GET of ``url`` from byte ``start``; None when there is nothing left to
    send (a 416 whose ``Content-Range`` says the file ends at ``start``). Any other 416 means
    the kept bytes are not a beginning of this file: the whole file is asked for instead."""
    try:
        return urllib.request.urlopen(_request(url, start), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not start:
            raise
        if (error.headers.get("Content-Range") or "").strip() == f"bytes */{start}":
            return None
        return urllib.request.urlopen(_request(url, 0), timeout=timeout)


def _copy(response, out: BinaryIO, received: int, total: int | None, limits: Limits, bar) -> int:
    """Append ``response``'s body to ``out``; the byte count at the end. TooSlow if fewer than
    ``limits.min_rate`` bytes a second arrive over a window."""
    window_start, window_bytes = time.monotonic(), received
    # read1: what has arrived, at most one receive; read(n) would wait for all n bytes.
    read = getattr(response, "read1", response.read)
    while block := read(CHUNK):
        out.write(block)
        received += len(block)
        bar.update(len(block))
        elapsed = time.monotonic() - window_start
        if elapsed >= limits.window_s:
            rate = (received - window_bytes) / elapsed
            if rate < limits.min_rate:
                raise TooSlow(f"{rate:.3g} bytes/s over {elapsed:.0f} s, below {limits.min_rate:.0f}")
            window_start, window_bytes = time.monotonic(), received
    return received


def download_once(url: str, part: Path, quiet: bool, limits: Limits) -> None:
    """Fetch ``url`` into ``part``, resuming from its current length where the server sends
    the rest; OSError if the connection fails or ends before the announced length."""
    with open_part(part) as out:
        start = out.tell()
        response = _open(url, start, limits.timeout_s)
        if response is None:
            return
        if start and response.status == 206 and range_start(response) != start:
            # Bytes from elsewhere in the file would corrupt it: start over with the whole file.
            response.close()
            start = 0
            response = _open(url, 0, limits.timeout_s)
        with response:
            offset = start if response.status == 206 else 0  # a 200 answers with the whole file
            out.seek(offset)
            out.truncate()
            length = response.headers.get("Content-Length")
            total = offset + int(length) if length is not None else None
            with progress_bar(total, part.name[: -len(".part")], quiet) as bar:
                bar.update(offset)
                received = _copy(response, out, offset, total, limits, bar)
    if total is not None and received < total:
        raise ConnectionError(f"connection closed after {received} of {total} bytes")


def _fetch_with_retries(url: str, part: Path, quiet: bool, limits: Limits) -> str | None:
    """None once ``part`` holds all of ``url``, else what went wrong on the last try."""
    problem = None
    for _ in range(ATTEMPTS):
        try:
            download_once(url, part, quiet, limits)
            return None
        except TooSlow as error:
            kept = part.stat().st_size
            return f"{url}: too slow ({error}); its {kept} bytes are kept in {part}: run again to resume"
        except (OSError, ValueError, http.client.HTTPException) as error:  # URLError, timeouts, cut connections
            problem = f"{url}: {type(error).__name__}: {getattr(error, 'reason', error)}"
            if isinstance(error, urllib.error.HTTPError) and error.code < 500:
                break  # the server refuses (404, 403): asking again will not help
            if isinstance(error, urllib.error.URLError) and not isinstance(error, urllib.error.HTTPError):
                break  # no connection at all: retrying at once will not help
    return problem


def kept_bytes(part: Path) -> int:
    """How many bytes ``part`` holds (creating it empty), once :func:`open_part` has found it safe."""
    with open_part(part) as handle:
        return handle.tell()


def fetch_checked(remote: Remote, url: str, part: Path, say: Say, quiet: bool, limits: Limits) -> str | None:
    """None once ``part`` holds ``remote``'s checked file from ``url``, else what went wrong. A
    file that fails its check is deleted; if it was resumed from bytes kept by an earlier run
    (which may not be what they seem), it is downloaded once more from the start."""
    kept = kept_bytes(part)
    if remote.size is not None and kept > remote.size:
        say(f"{part}: longer than {remote.filename} can be; starting it again from the beginning")
        part.unlink()
        kept = 0
    problem = _fetch_with_retries(url, part, quiet, limits)
    if problem is not None:
        if kept_bytes(part) == 0:  # nothing came: leave no empty file behind
            part.unlink()
        return problem
    try:
        check_file(part, remote, say)
        return None
    except FetchError as error:
        part.unlink()
        if not kept:
            return f"{str(error).replace(str(part), url)}; deleted it"
        say(f"{error}: it was resumed from an earlier run's bytes; downloading it again from the beginning")
        return fetch_checked(remote, url, part, say, quiet, limits)


def download(remote: Remote, folder: Path, say: Say, quiet: bool, limits: Limits | None = None) -> Path:
    """``folder/<filename>`` checked against ``remote``, downloading (or resuming) it if needed.
    Each mirror is tried in turn; a bad digest deletes the file and moves to the next one.
    ``folder`` must be a real folder (see :func:`~cmrepro.data.fetch.real_folder`); ``limits``
    default to :data:`LIMITS`."""
    limits = limits or LIMITS
    final, part = folder / remote.filename, folder / (remote.filename + ".part")
    if os.path.lexists(final):
        check_regular(final)
        try:
            check_file(final, remote, say)
            return final
        except FetchError as error:
            say(f"{error}: deleted it, downloading it again")
            final.unlink()
    problems = []
    for url in remote.urls:
        problem = fetch_checked(remote, url, part, say, quiet, limits)
        if problem is None:
            os.replace(part, final)
            return final
        problems.append(problem)
    raise FetchError(
        f"{remote.filename}: could not download ({'; '.join(problems)}); check the network or use --from-archive"
    )
