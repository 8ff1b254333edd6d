"""The files a run directory holds, and writing and reading them while runs write them.

The contract between the training loop, which writes them (through :class:`RunRecords`, the
one writer of metrics.jsonl and result.json), and the report, which reads them, perhaps while
a sweep is still appending. Standard library only, so the report does not import torch to
read a directory (the checkpoint's own writer, which needs torch.save, is
``cmrepro.training.checkpoint``; its file name is here).

Every file is written as a process sharing the run directory expects: through a fresh temporary
file renamed into place (never through a link someone planted under the temporary's name), with
the mode the umask gives, and a failed write (a full disk) leaves the previous file whole and is one
line (:class:`RunFileError`). result.json carries the run's progress after every epoch; a reader
tells a run still training from one whose process is gone by its lock (:func:`run_status`).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

from .run_lock import is_held

METRICS = "metrics.jsonl"  # one JSON row per finished epoch (or task), appended
RESULT = "result.json"  # written atomically: running, then done, diverged, failed or interrupted
CHECKPOINT = "checkpoint.pt"  # the state after the last finished epoch, written atomically

# result.json's "status": "running" from the start (a run killed then is still found, with its
# config, by the report), then one of the others.
RUNNING = "running"
DONE = "done"
DIVERGED = "diverged"  # a non-finite loss: ended, not an error
FAILED = "failed"  # an error escaped; re-running resumes from the checkpoint
INTERRUPTED = "interrupted"  # stopped by a signal (Ctrl-C, Slurm's SIGTERM) after checkpointing; re-run to resume
ENDED = (DONE, DIVERGED)  # never trained again: a sweep re-run skips them
# Never written: what a reader (run_status) calls a run whose result.json says "running" while no
# process holds its lock (killed, its node lost); re-running resumes it.
STOPPED = "stopped"
# The suffix of the temporary files that become run files; one left behind by a kill is removed
# when the run directory is next locked (remove_temporaries).
TEMPORARY = ".tmp"


class RunFileError(ValueError):
    """A run file that cannot be read or written; the message is one line naming the file and the remedy."""


def read_jsonl(path: Path) -> list[dict]:
    """The rows of the JSON-lines file ``path`` (none if it does not exist).

    A last line without its newline that is not JSON is a torn append: a run
    killed, or its disk filled, in the middle of writing it, or a reader that
    caught a writer half-way. It is dropped; the epoch it belonged to is
    trained again on resume. Any other line that is not JSON is an error.
    """
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                break
            raise RunFileError(
                f"{path} line {number} is not JSON; delete that line, or the run directory to start over"
            ) from None
    return rows


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it into place: readers see the old or the new file.

    RunFileError (one line: the file, the error, the space left) if it cannot be written; then
    ``path`` is as it was and no temporary is left.
    """
    try:
        with atomic_file(path) as file:
            _write_all(file.fileno(), text.encode())
    except OSError as error:
        raise RunFileError(write_failure(path, error, "it is as it was")) from None


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """``with atomic_file(path) as file:`` a binary file that becomes ``path`` when the block ends
    without an error; otherwise it is removed and ``path`` is as it was.

    The temporary is made by ``mkstemp`` (a new file: a link planted in the directory is never
    written through) and given the mode a plain ``open`` would (the umask's), so that the group of a
    shared project directory can read and resume every file of a run alike.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, name = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=TEMPORARY)
    temporary = Path(name)
    try:
        os.fchmod(handle, 0o666 & ~current_umask())
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # there still if anything above raised (a full disk, say)


def current_umask() -> int:
    """The process's umask: from Linux's /proc (a read), else by setting it and back (a moment in
    which another thread's new file would get 022)."""
    with suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_failure(path: Path, error: BaseException, kept: str, what: str = "") -> str:
    """The one line for a run file (``what``, e.g. "checkpoint") that could not be written: which,
    why, the space left and what is ``kept``."""
    reason = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:120]}"
    try:
        free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free on its disk"
    except OSError:
        free = "its disk's free space unknown"
    return f"could not write {what + ' ' if what else ''}{path} ({reason}); {free}; {kept}"


def _write_all(fd: int, data: bytes) -> None:
    """Write every byte of ``data`` to ``fd`` (``os.write`` may write part of it)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def remove_temporaries(run_dir: Path) -> list[Path]:
    """Delete the temporaries a process killed while writing a run file left in ``run_dir``
    (a checkpoint's can be 0.7 GB); call it holding the run's lock. The paths removed."""
    removed = []
    for name in (CHECKPOINT, RESULT, METRICS):
        for path in Path(run_dir).glob(f"{name}*{TEMPORARY}"):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def remove_if_unstarted(run_dir: Path, leftovers: Collection[str]) -> bool:
    """Delete ``run_dir`` if it holds nothing but ``leftovers`` (names of what a launch writes before
    its run starts: Hydra's log, the lock): a command that stopped before its run started leaves no
    directory behind. Whether it was deleted; a directory holding anything else is left alone."""
    if not run_dir.is_dir() or not all(entry.name in leftovers for entry in run_dir.iterdir()):
        return False
    shutil.rmtree(run_dir, ignore_errors=True)
    return True


def run_status(run_dir: Path, result: Mapping) -> str | None:
    """The status of the run ``result`` (its result.json) describes: as written, except ``running``
    with no process holding the run's lock, which is :data:`STOPPED` (as far as its epochs go)."""
    status = result.get("status")
    if status == RUNNING and not is_held(run_dir):
        return STOPPED
    return status


class RunRecords:
    """A run directory's metrics.jsonl (appended per epoch) and result.json, both safe to re-write on resume.

    ``writer=False``: the records as a process that only reads them sees them (the ranks other
    than 0 of a distributed run); its writes do nothing. ``launch_record``: files (relative path:
    text) saying how the run was launched (Hydra's ``.hydra/``), written when the run starts
    (:meth:`start`), so that a command refused before then changes nothing in the directory.
    """

    def __init__(self, run_dir: Path, writer: bool = True, launch_record: Mapping[str, str] | None = None) -> None:
        self.run_dir = run_dir
        self.metrics_path = run_dir / METRICS
        self.result_path = run_dir / RESULT
        self.writer = writer
        self.launch_record = dict(launch_record or {})
        self._progress: tuple[dict, Callable[[list[dict]], dict]] | None = None

    def start(self, result: dict, summarize: Callable[[list[dict]], dict]) -> None:
        """The run is accepted (locked, the same run as any it resumes): write its launch record
        and mark it running in result.json with ``result`` and its progress so far
        (``summarize`` of the metric rows), which every appended row then updates."""
        if not self.writer:
            return
        for name, text in self.launch_record.items():
            write_text_atomic(self.run_dir / name, text)
        self._progress = (result, summarize)
        self._write_progress()

    def started_here(self) -> bool:
        """Whether this process started the run (:meth:`start`): it may record how the run ended."""
        return self._progress is not None

    def hold_a_run(self) -> bool:
        """Whether the directory holds anything of a run: its result, metrics or checkpoint."""
        return any(path.exists() for path in (self.result_path, self.metrics_path, self.run_dir / CHECKPOINT))

    def _write_progress(self) -> None:
        if self._progress is not None:
            result, summarize = self._progress
            self.write_result({**result, **summarize(self.read_metrics())})

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def keep_epochs(self, epochs_done: int) -> None:
        """Drop rows of epochs after the checkpoint: a killed run may have logged an epoch it did not save."""
        if not self.writer:
            return
        rows = [row for row in self.read_metrics() if row["epoch"] <= epochs_done]
        write_text_atomic(self.metrics_path, "".join(json.dumps(row) + "\n" for row in rows))

    def append_metrics(self, row: dict) -> None:
        """Append ``row`` (one epoch's), then bring result.json's progress up to it (once :meth:`start`ed).

        A row that cannot be written whole (a full disk) is taken back, so that the file never
        holds a torn line, and raises RunFileError; the epoch is trained again on resume.
        """
        if not self.writer:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.metrics_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as error:  # ELOOP: a planted link, never appended through
            raise RunFileError(write_failure(self.metrics_path, error, "remove it if it is a link")) from None
        try:
            size = os.fstat(fd).st_size
            try:
                _write_all(fd, (json.dumps(row) + "\n").encode())
                os.fsync(fd)
            except OSError as error:
                with suppress(OSError):  # where even this fails, a reader drops the torn last line
                    os.ftruncate(fd, size)
                raise RunFileError(write_failure(self.metrics_path, error, "its earlier epochs are kept")) from None
        finally:
            os.close(fd)
        self._write_progress()

    def read_result(self) -> dict | None:
        if not self.result_path.exists():
            return None
        try:
            return json.loads(self.result_path.read_text())
        except json.JSONDecodeError:
            return None  # a torn or hand-edited result: the run is simply redone

    def write_result(self, result: dict) -> None:
        if not self.writer:
            return
        write_text_atomic(self.result_path, json.dumps(result, indent=2) + "\n")

    def finished(self) -> bool:
        """Whether the directory holds a run that ended (done or diverged)."""
        previous = self.read_result()
        return previous is not None and previous.get("status") in ENDED
