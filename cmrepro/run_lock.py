"""One process at a time in a run directory.

Two processes training the same directory (a sweep launched twice, a Slurm requeue while the old
job still runs) would both append every epoch to metrics.jsonl and overwrite each other's
checkpoint. A run holds an exclusive OS lock on ``<run_dir>/.lock`` for its whole life. The kernel
releases it when the process ends, however it ends (kill -9 included), so a lock is never stale;
the file itself stays, holding the last holder's PID and host for the message a second process
prints. ``flock`` is honoured across nodes on NFSv4 and Lustre mounted with ``flock``; on a file
system without it the lock only guards one node. The lock file is opened without following a
link, so a link planted in a shared directory never has the holder's line written through it.
:func:`is_held` lets a reader (the report) tell a run that is training from one whose process is
gone. Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from pathlib import Path

LOCK = ".lock"
# A reader's probe (is_held) holds the lock for microseconds; a process that meets it then
# tries again before it reports the directory busy.
ATTEMPTS, PAUSE_S = 3, 0.05


class RunLocked(RuntimeError):
    """Another process holds the run directory; the message is one line naming it and that process."""


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir`` for this process, or raises :class:`RunLocked` at once."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except OSError as error:  # ELOOP: a link where the lock file should be
            raise RunLocked(
                f"cannot open the lock file {self.path} ({error.strerror}); "
                "remove it if it is not a regular file, then re-run"
            ) from None
        if not _take(fd, fcntl.LOCK_EX):
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLocked(
                f"{self.path.parent} is being trained by {holder}; not starting a second copy "
                "(wait for it, or stop it, then re-run)"
            ) from None
        # Who holds it, for the second process's message; written after the lock is ours.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def is_held(run_dir: Path) -> bool:
    """Whether a process holds ``run_dir``'s lock now (False where there is no lock file).

    The report's test of a result.json that says ``running``: held, the run is training; free,
    its process is gone (killed, its node lost) and the record is as far as it got.
    """
    try:
        fd = os.open(Path(run_dir) / LOCK, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        return not _take(fd, fcntl.LOCK_SH, attempts=1)
    finally:
        os.close(fd)  # and with it the shared lock, if this probe took it


def _take(fd: int, operation: int, attempts: int = ATTEMPTS) -> bool:
    """Lock ``fd`` without waiting (``operation``: LOCK_EX or LOCK_SH); False if another holds it."""
    for attempt in range(attempts):
        try:
            fcntl.flock(fd, operation | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if attempt + 1 < attempts:
                time.sleep(PAUSE_S)
    return False


def _read_holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    return text or "another process"
