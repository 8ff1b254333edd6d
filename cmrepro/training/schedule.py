"""The learning rate of each epoch: ``trainer.lr_milestones`` and ``trainer.lr_gamma``.

Both loops set it from this one rule at the start of every epoch: the supervised loop over the
run's epochs, the task-stream loop over the epochs of each task (its rate starts again from
``optimizer.lr`` at every task). A function of the epoch alone, so a resumed run needs no
scheduler state to continue on the rate an uninterrupted run would have had.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from torch.optim import Optimizer


class StepSchedule:
    """torch's ``MultiStepLR``, as a function of the epoch: the base rate times ``gamma`` once for
    each milestone reached.

    The factors are multiplied in one at a time, in milestone order, as ``MultiStepLR`` does
    step by step, so the rates are the same floats as the ones it gives.
    """

    def __init__(self, optimizer: Optimizer, milestones: Iterable[int], gamma: float) -> None:
        self.optimizer = optimizer
        self.counts = sorted(Counter(milestones).items())
        self.gamma = gamma
        # Read when built, before a checkpoint's optimizer state (with a decayed rate) is loaded.
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]

    def rate(self, base: float, epoch: int) -> float:
        """The rate of epoch ``epoch`` (counted from 0) for a group whose base rate is ``base``."""
        lr = base
        for milestone, count in self.counts:
            if milestone > epoch:
                break
            lr = lr * self.gamma**count
        return lr

    def set_epoch(self, epoch: int) -> float:
        """Set every group's rate for epoch ``epoch``; the first group's."""
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = self.rate(base, epoch)
        return self.optimizer.param_groups[0]["lr"]
