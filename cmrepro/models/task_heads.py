"""Multi-head output for task streams: one block of outputs per task, the active task's only.

La-MAML (Gupta et al., 2020) and Mehta et al. (2023) both give the network one output layer
with ``num_tasks * classes_per_task`` units and, for task ``t``, use only the units
``t * classes_per_task ... (t + 1) * classes_per_task - 1`` (La-MAML masks the others, Mehta
et al. slice them away). Each block's weights are rows of the shared layer, so this is the
same as separate heads; the task identity is given at training and at test time.
"""

from __future__ import annotations

from torch import Tensor, nn


class TaskHeads(nn.Module):
    """``network`` (with ``num_tasks * classes_per_task`` outputs) seen through the head of the
    active task: ``forward`` returns that task's ``classes_per_task`` logits.

    The active task is not a parameter: the training loop sets it (``set_task``) before it
    trains on or evaluates a task, so checkpoints hold the network alone.
    """

    def __init__(self, network: nn.Module, classes_per_task: int) -> None:
        super().__init__()
        self.network = network
        self.classes_per_task = classes_per_task
        self.task = 0

    def set_task(self, task: int) -> None:
        self.task = task

    def forward(self, x: Tensor) -> Tensor:
        start = self.task * self.classes_per_task
        return self.network(x)[:, start : start + self.classes_per_task]
