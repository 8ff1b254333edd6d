"""How far a run has got: the progress a checkpoint carries besides the model, optimizer and RNG states."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields


@dataclass
class RunState:
    """The progress of a supervised run, updated after every epoch.

    Its fields are top-level keys of the checkpoint (``epoch``, ``best``, ``wall_time``, ...), as
    they always were, so a checkpoint written before a field existed resumes unchanged.
    """

    epoch: int = 0  # epochs finished (and checkpointed)
    best: float | None = None  # the best value of the monitored metric so far
    wall_time: float = 0.0  # seconds spent training, over every resume
    # Inside an epoch that a signal stopped (.interrupts): the steps it had done and the sum of
    # their losses, so that the resumed epoch continues from there with the same mean loss.
    step: int = 0
    epoch_loss: float = 0.0
    # The data files' fingerprint (cmrepro.data.fingerprint), so that a resume on moved data goes
    # on and a resume on other data is refused.
    data_fingerprint: dict | None = None

    def end_epoch(self, seconds: float) -> None:
        self.epoch += 1
        self.wall_time += seconds
        self.step, self.epoch_loss = 0, 0.0

    def pause_epoch(self, seconds: float) -> None:
        """The epoch stopped part-way (``step`` and ``epoch_loss`` say where): count its time so far."""
        self.wall_time += seconds

    def improve(self, value: float, mode: str) -> float:
        """Record ``value`` of the monitored metric (``mode`` "max" or "min"); the best so far."""
        if self.best is None:
            self.best = value
        else:
            self.best = max(self.best, value) if mode == "max" else min(self.best, value)
        return self.best

    def checkpoint_entries(self) -> dict:
        """The checkpoint keys that hold this state."""
        return asdict(self)

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping) -> RunState:
        """The state a checkpoint holds; a key it lacks keeps its starting value."""
        return cls(**{f.name: checkpoint[f.name] for f in fields(cls) if f.name in checkpoint})


@dataclass
class StreamState(RunState):
    """The progress of a task-stream run: also the current task's epochs so far."""

    task_losses: list[float] = field(default_factory=list)  # training loss of each epoch of the task
    task_time: float = 0.0  # seconds spent on the task

    def start_task(self) -> None:
        self.task_losses, self.task_time = [], 0.0
