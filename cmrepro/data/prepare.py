"""``prepare <dataset>``: leave a dataset where ``paths.data_dir`` says, whole and verified.

A dataset that already verifies is left alone; anything else (absent, half-extracted, with a
file missing) is rebuilt from one of its packagings: downloaded (or given with
``--from-archive``), checked, unpacked beside its folder and swapped in (see
:mod:`cmrepro.data.fetch`). A downloaded archive that turns out broken (it does not unpack, or
what comes out fails its digest) is deleted, so the next try downloads it again, and the next
packaging is tried.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from .base import DataError
from .download import Limits, download
from .fetch import BrokenArchive, FetchError, Planted, Say, check_file, install, is_complete, real_folder
from .sources import Packaging, Source, sources
from .verify import dataset_folder, verify

DOWNLOADS = ".downloads"


def _at(packaging: Packaging, url_of) -> Packaging:
    return replace(packaging, remotes=tuple(replace(r, urls=(url_of(r),)) for r in packaging.remotes))


def with_url(source: Source, url: str) -> Source:
    """``source`` fetched from ``url`` alone: a base URL (ending in ``/``) that each file name of
    every packaging is appended to, or the URL of the file of a packaging of one file."""
    if url.endswith("/"):
        return replace(source, packagings=tuple(_at(p, lambda r: url + r.filename) for p in source.packagings))
    single = [p for p in source.packagings if len(p.remotes) == 1]
    # The packaging whose file the URL names, if one does (not a .tar.gz checked as the .zip).
    named = [p for p in single if url.split("?")[0].endswith("/" + p.remotes[0].filename)]
    if not single:
        names = ", ".join(r.filename for r in source.packagings[0].remotes)
        raise ValueError(f"invalid --url for {source.name}: {url!r} (must end in / : it has several files, {names})")
    return replace(source, packagings=tuple(_at(p, lambda r: url) for p in named or single))


def _named(filename: str, archives: list[Path]) -> Path | None:
    for path in archives:
        if path.is_dir() and (path / filename).is_file():
            return path / filename
        if path.is_file() and path.name == filename:
            return path
    return None


def given_files(source: Source, archives: list[Path]) -> tuple[Packaging, list[Path]]:
    """The first packaging whose files are all among ``archives`` (files, or folders holding
    them), with those files; a single file of another name stands for a packaging of one file."""
    for packaging in source.packagings:
        found = [_named(r.filename, archives) for r in packaging.remotes]
        if all(found):
            return packaging, [path.resolve() for path in found]
    if len(archives) == 1 and archives[0].is_file():
        for packaging in source.packagings:
            if len(packaging.remotes) == 1:
                return packaging, [archives[0].resolve()]
    wanted = " or ".join(" + ".join(r.filename for r in p.remotes) for p in source.packagings)
    given = ", ".join(map(str, archives))
    raise FetchError(f"--from-archive: no {wanted} among {given} (give the files or the folder holding them)")


def _from_archives(source: Source, data_dir: Path, archives: list[Path], say: Say, quiet: bool) -> None:
    packaging, files = given_files(source, archives)
    for remote, path in zip(packaging.remotes, files):
        check_file(path, remote, say)
    try:
        install(source, packaging, files, data_dir, quiet)
    except BrokenArchive as error:
        raise FetchError(f"{error}; get an intact copy") from None


def _downloaded(source: Source, data_dir: Path, say: Say, quiet: bool, limits: Limits | None) -> None:
    """Install the first packaging that downloads and unpacks whole, else FetchError naming
    what went wrong with each."""
    downloads = real_folder(data_dir, DOWNLOADS)
    problems = []
    for packaging in source.packagings:
        files: list[Path] = []
        try:
            files = [download(remote, downloads, say, quiet, limits) for remote in packaging.remotes]
            install(source, packaging, files, data_dir, quiet)
            return
        except Planted:
            raise  # a planted link is the user's to look at, not a reason to try elsewhere
        except BrokenArchive as error:
            for path in files:  # kept, every later prepare would unpack the same broken copy
                path.unlink(missing_ok=True)
            problems.append(f"{error}; deleted {', '.join(map(str, files))}")
        except FetchError as error:
            problems.append(str(error))
        if packaging is not source.packagings[-1]:
            say(f"{source.name}: {problems[-1]}: trying its next source")
    raise FetchError("; ".join(problems))


def prepare(
    name: str,
    data_dir: Path,
    *,
    url: str | None = None,
    archives: list[Path] | None = None,
    quiet: bool = False,
    say: Say = print,
    limits: Limits | None = None,
) -> str:
    """Make ``name`` (one entry of the source table) complete under ``data_dir``; returns verify's
    summary line. FetchError / DataError (one line) if it cannot. ``limits``: when to give up on
    a server (:data:`~cmrepro.data.download.LIMITS` by default)."""
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
    if archives:
        _from_archives(source, data_dir, archives, say, quiet)
    else:
        _downloaded(source, data_dir, say, quiet, limits)
    return verify(name, data_dir, source.counts)


__all__ = ["prepare", "FetchError", "DataError"]
