"""``trainer.checkpoint_every``: after which epochs a run writes its checkpoint.

A checkpoint of Adam+CM on a CIFAR ResNet34 is 731 MiB, written and fsynced; on one H200 a
compiled CIFAR epoch takes seconds, so a checkpoint after every epoch could double a run's
time. The default, ``auto``, bounds the cost instead: after the first epoch, a checkpoint is
written once the time trained since the last one is at least :data:`AUTO_RATIO` times what
that one took to write, so checkpointing costs at most 1 / (1 + AUTO_RATIO) = 5% of the run,
and a kill loses at most that much training. On a CPU, or with a small model, that is every
epoch. ``N`` (an integer) checkpoints every N epochs, ``"Nmin"`` once N minutes have passed
since the last one. Whatever the setting, the last epoch is checkpointed, and so is a run
stopped by a signal (:mod:`.interrupts`); a killed run resumes from its last checkpoint and
trains the epochs after it again (their rows in metrics.jsonl are dropped and rewritten).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

AUTO = "auto"
AUTO_RATIO = 19.0  # trained seconds per written second: checkpoints cost at most 5% of the run
_MINUTES = re.compile(r"^(\d+(?:\.\d+)?)\s*min$")


@dataclass(frozen=True)
class CheckpointEvery:
    """A parsed ``trainer.checkpoint_every``: ``auto``, every ``epochs`` epochs or every ``minutes``."""

    epochs: int | None = None
    minutes: float | None = None

    @property
    def auto(self) -> bool:
        return self.epochs is None and self.minutes is None

    @classmethod
    def parse(cls, setting) -> CheckpointEvery:
        """ValueError (one line) unless ``setting`` is ``auto``, a positive integer or ``"<N>min"``."""
        if setting == AUTO:
            return cls()
        if isinstance(setting, int) and not isinstance(setting, bool) and setting >= 1:
            return cls(epochs=setting)
        match = _MINUTES.match(setting) if isinstance(setting, str) else None
        if match and float(match.group(1)) > 0:
            return cls(minutes=float(match.group(1)))
        raise ValueError(
            f"invalid trainer.checkpoint_every: {setting!r} "
            "(auto, a number of epochs such as 5, or minutes such as 30min)"
        )


@dataclass
class CheckpointSchedule:
    """Decides, at the end of each epoch, whether to write the checkpoint, and writes it (``save``)."""

    every: CheckpointEvery
    save: Callable[[], None]
    # In a distributed run every process must write together (the checkpoint gathers each
    # rank's generator), so a decision taken on each process's own clock is agreed first:
    # ``agree(due)`` is whether any process found it due (one all-reduce), ``due`` alone in one process.
    agree: Callable[[bool], bool] = bool
    clock: Callable[[], float] = time.monotonic
    _last_end: float | None = field(default=None, init=False)  # when the last checkpoint was written
    _last_cost: float | None = field(default=None, init=False)  # how long it took; None: none written yet
    _epochs_since: int = field(default=0, init=False)
    unsaved: bool = field(default=False, init=False)  # an epoch ended since the last checkpoint

    @classmethod
    def started(cls, setting, save: Callable[[], None], agree: Callable[[bool], bool] = bool) -> CheckpointSchedule:
        """The schedule of ``trainer.checkpoint_every`` = ``setting``, counting from now."""
        schedule = cls(CheckpointEvery.parse(setting), save, agree=agree)
        schedule.start()
        return schedule

    def start(self) -> None:
        """The run (or its resumption) starts now: time counts from here."""
        self._last_end = self.clock()

    def epoch_ended(self, last: bool) -> bool:
        """Checkpoint now if due (always after the run's ``last`` epoch); whether it did."""
        self._epochs_since += 1
        self.unsaved = True
        if self.agree(last or self._due()):
            self.write()
            return True
        return False

    def write(self) -> None:
        """Write the checkpoint now (at a signal, at the end), and start counting again."""
        began = self.clock()
        self.save()
        self._last_end = self.clock()
        self._last_cost = self._last_end - began
        self._epochs_since = 0
        self.unsaved = False

    def write_if_unsaved(self) -> None:
        if self.unsaved:
            self.write()

    def _due(self) -> bool:
        if self.every.epochs is not None:
            return self._epochs_since >= self.every.epochs
        now = self.clock()
        since = now - (self._last_end if self._last_end is not None else now)
        if self.every.minutes is not None:
            return since >= 60 * self.every.minutes
        if self._last_cost is None:  # none written yet by this process: write one and learn its cost
            return True
        return since >= AUTO_RATIO * self._last_cost
