"""``prepare <dataset>``: leave a dataset where ``paths.data_dir`` says, whole and verified.

A dataset that already verifies is left alone; anything else (absent, half-extracted, with a
file missing) is rebuilt from its archives: downloaded (or given with ``--from-archive``),
checked, unpacked beside its folder and swapped in (see :mod:`cmrepro.data.fetch`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .base import DataError
from .fetch import CONNECT_TIMEOUT_S, FetchError, Say, check_file, download, install, is_complete
from .sources import Remote, Source, sources
from .verify import dataset_folder, verify

DOWNLOADS = ".downloads"


def with_url(source: Source, url: str) -> Source:
    """``source`` fetched from ``url`` alone: the file's URL, or for a source of several files
    a base URL (ending in ``/``) that each file name is appended to."""
    if len(source.remotes) > 1 and not url.endswith("/"):
        names = ", ".join(r.filename for r in source.remotes)
        raise ValueError(f"invalid --url for {source.name}: {url!r} (must end in / : it has several files, {names})")
    remotes = tuple(replace(r, urls=(url + r.filename if url.endswith("/") else url,)) for r in source.remotes)
    return replace(source, remotes=remotes)


def given_archive(remote: Remote, archives: list[Path], single: bool) -> Path:
    """The path among ``archives`` (files, or folders holding it) that is ``remote``'s file."""
    for path in archives:
        if path.is_dir() and (path / remote.filename).is_file():
            return path / remote.filename
        if path.is_file() and (path.name == remote.filename or single):
            return path
    given = ", ".join(map(str, archives))
    raise FetchError(f"--from-archive: no {remote.filename} among {given} (give the file or the folder holding it)")


def fetch_files(source: Source, data_dir: Path, archives: list[Path] | None, say: Say, quiet: bool) -> list[Path]:
    """The checked archive files of ``source``: the user's, or downloaded into ``<data_dir>/.downloads``."""
    if archives:
        files = [given_archive(r, archives, len(source.remotes) == 1) for r in source.remotes]
        for remote, path in zip(source.remotes, files):
            check_file(path, remote, say)
        return files
    return [download(r, data_dir / DOWNLOADS, say, quiet, CONNECT_TIMEOUT_S) for r in source.remotes]


def prepare(
    name: str,
    data_dir: Path,
    *,
    url: str | None = None,
    archives: list[Path] | None = None,
    quiet: bool = False,
    say: Say = print,
) -> str:
    """Make ``name`` (one entry of the source table) complete under ``data_dir``; returns verify's
    summary line. FetchError / DataError (one line) if it cannot."""
    source = sources()[name]
    if url is not None:
        source = with_url(source, url)
    target = dataset_folder(name, data_dir)
    if not archives and url is None:
        try:
            return verify(name, data_dir, source.counts) + " (already there)"
        except DataError:
            if target.exists():
                state = "marked complete but fails verify" if is_complete(target) else "incomplete (no completion mark)"
                say(f"{name}: {target} is {state}: rebuilding it")
    files = fetch_files(source, data_dir, archives, say, quiet)
    install(source, files, target, quiet)
    return verify(name, data_dir, source.counts)


__all__ = ["prepare", "FetchError", "DataError"]
