"""The training loss of one batch, as the metrics see it, for each task.

The metrics differentiate the loss twice and split batches into smaller
ones, so they need the loss as a plain function of ``(model, batch)``, in
float32 and without the optimizer around it: the train steps of
``cmrepro.training.steps`` fold the loss into an optimizer step.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]


@dataclass(frozen=True)
class BatchLoss:
    """How a task's batches are scored, counted and cut into smaller ones."""

    loss: Callable[[nn.Module, Batch], Tensor]  # mean loss over the batch's examples (or tokens)
    batch_dim: int  # the dimension that indexes examples (sequences for language models)
    # cuDNN's LSTM kernels have no double backward and no backward in eval mode.
    needs_native_kernels: bool = False

    def kernels(self) -> contextlib.AbstractContextManager:
        """Where to differentiate this task's loss: without cuDNN where it cannot."""
        return torch.backends.cudnn.flags(enabled=False) if self.needs_native_kernels else contextlib.nullcontext()

    def size(self, batch: Batch) -> int:
        """Number of terms the batch's loss averages over."""
        return batch[1].numel()

    def split(self, batch: Batch, m: int) -> list[Batch]:
        """Cut a batch into mini-batches of ``m`` examples; a smaller remainder is dropped."""
        x, y = batch
        count = x.shape[self.batch_dim] // m
        return [(x.narrow(self.batch_dim, i * m, m), y.narrow(self.batch_dim, i * m, m)) for i in range(count)]


def _classification_loss(model: nn.Module, batch: Batch) -> Tensor:
    x, y = batch
    return F.cross_entropy(model(x).float(), y)


def _language_model_loss(model: nn.Module, batch: Batch) -> Tensor:
    # Each batch starts from a zero state: the loss of a batch must not depend
    # on which batches were scored before it.
    x, y = batch
    logits, _ = model(x, model.init_hidden(x.shape[1], x.device))
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1))


LOSSES = {
    "classification": BatchLoss(_classification_loss, batch_dim=0),
    "language_model": BatchLoss(_language_model_loss, batch_dim=1, needs_native_kernels=True),
}


def loss_for(task: str) -> BatchLoss:
    return LOSSES[task]


def on_device(batch: Batch, device: torch.device) -> Batch:
    return tuple(t.to(device, non_blocking=True) for t in batch)
