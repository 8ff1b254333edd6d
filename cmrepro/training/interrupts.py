"""Stopping a run cleanly when it is asked to: SIGTERM (Slurm before it kills or requeues a job),
SIGINT (Ctrl-C) and SIGUSR1 (``sbatch --signal=USR1@120``).

A handler only records the request; the loop stops at the next step boundary, checkpoints, marks
result.json ``interrupted`` and raises :class:`Interrupted`, which the entry point turns into one
line and the exit code 128 + the signal number (130 for Ctrl-C, 143 for SIGTERM), as a shell
would. A second Ctrl-C while the run is finishing its step stops it at once.

Submitit (``hydra/launcher=slurm``) requeues a preempted or timed-out job from its own SIGUSR2
handler. That handler is chained, not replaced: on SIGUSR2 the run first checkpoints its progress,
then hands over to submitit, which requeues the job; the requeued job resumes from the checkpoint.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
# Stopped cleanly too, but only where a launcher (submitit) already handles it: it is then
# passed on to that handler once the run has checkpointed.
CHAINED_SIGNALS = (signal.SIGUSR2,)


class Interrupted(Exception):
    """The run stopped on a signal after checkpointing; ``exit_code`` is 128 + the signal number."""

    def __init__(self, signum: int, where: str) -> None:
        self.signum = signum
        self.exit_code = 128 + signum
        super().__init__(f"stopped by {signal.Signals(signum).name} {where}; re-run the same command to resume")


@dataclass
class StopRequest:
    """Set by the signal handlers, read by the loop at every step boundary."""

    signum: int | None = None
    # True where the signal came to another process of a distributed run, not to this one.
    adopted: bool = False
    _chained: dict[int, Callable] = field(default_factory=dict)

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def adopt(self, signum: int) -> None:
        """Stop as another process of the run was asked to, with its ``signum``: every process of
        a distributed run ends the same way (``interrupted``, the same exit code) wherever the
        signal landed. A signal this process received itself stands."""
        if self.signum is None:
            self.signum, self.adopted = signum, True

    def hand_over(self) -> None:
        """After the run has checkpointed: pass a chained signal on to the handler it replaced
        (only where it was received: a launcher's handler acts on its own process's signal)."""
        handler = None if self.adopted else self._chained.get(self.signum)
        if handler is not None:
            handler(self.signum, None)


def _previous_handler_is_python(handler) -> bool:
    return callable(handler) and handler is not signal.default_int_handler


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """Within the block, SIGTERM/SIGINT/SIGUSR1 (and SIGUSR2 where a launcher handles it) ask the
    run to stop at its next step boundary; the handlers before it are restored afterwards.

    Only the main thread can install handlers: elsewhere (a launcher running jobs in threads)
    the request never comes and signals do what they did before.
    """
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame) -> None:
        if request.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: the user wants out now
        if not request.requested:
            print(
                f"cmrepro.train: {signal.Signals(signum).name} received; stopping after this step",
                file=sys.stderr,
                flush=True,
            )
            request.signum = signum

    previous = {}
    for signum in STOP_SIGNALS:
        previous[signum] = signal.signal(signum, handle)
    for signum in CHAINED_SIGNALS:
        current = signal.getsignal(signum)
        if _previous_handler_is_python(current):
            request._chained[signum] = current
            previous[signum] = signal.signal(signum, handle)
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
