"""One process at a time in a run directory.

Two processes training the same directory (a sweep launched twice, a Slurm requeue while the old
job still runs) would both append every epoch to metrics.jsonl and overwrite each other's
checkpoint. A run holds an exclusive OS lock on ``<run_dir>/.lock`` for its whole life. The kernel
releases it when the process ends, however it ends (kill -9 included), so a lock is never stale;
the file itself stays, holding the last holder's PID and host for the message a second process
prints. ``flock`` is honoured across nodes on NFSv4 and Lustre mounted with ``flock``; on a file
system without it the lock only guards one node. Standard library only.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

LOCK = ".lock"


class RunLocked(RuntimeError):
    """Another process holds the run directory; the message is one line naming it and that process."""


class RunLock:
    """``with RunLock(run_dir):`` holds ``run_dir`` for this process, or raises :class:`RunLocked` at once."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
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


def _read_holder(fd: int) -> str:
    text = os.pread(fd, 200, 0).decode(errors="replace").strip()
    return text or "another process"
