"""The training loss of each task: its one formula, and the loss of one batch as the metrics see it.

:func:`classification_loss` and :func:`next_token_loss` are the losses the training steps
(``cmrepro.training.steps``, which fold them into an optimizer step) and the metrics both use.
The metrics differentiate the loss twice and split batches into smaller ones, so they need it
as a plain function of ``(model, batch)`` (:class:`BatchLoss`), in float32 and without the
optimizer around it.
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


def classification_loss(logits: Tensor, labels: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of class logits ``[B, C]`` against labels ``[B]``, computed in float32.

    Under autocast the logits may be bfloat16; cross-entropy runs in float32 either way (autocast
    lists it among its float32 operations), so the cast only makes that explicit.
    """
    return F.cross_entropy(logits.float(), labels, reduction=reduction)


def next_token_loss(logits: Tensor, targets: Tensor) -> Tensor:
    """Mean cross-entropy of next-token logits ``[T, B, V]`` against the tokens ``[T, B]``, in float32."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1))


def _classification_loss(model: nn.Module, batch: Batch) -> Tensor:
    x, y = batch
    return classification_loss(model(x), y)


def _language_model_loss(model: nn.Module, batch: Batch) -> Tensor:
    # Each batch starts from a zero state: the loss of a batch must not depend
    # on which batches were scored before it.
    x, y = batch
    logits, _ = model(x, model.init_hidden(x.shape[1], x.device))
    return next_token_loss(logits, y)


LOSSES = {
    "classification": BatchLoss(_classification_loss, batch_dim=0),
    "language_model": BatchLoss(_language_model_loss, batch_dim=1, needs_native_kernels=True),
}


def loss_for(task: str) -> BatchLoss:
    return LOSSES[task]


def on_device(batch: Batch, device: torch.device) -> Batch:
    return tuple(t.to(device, non_blocking=True) for t in batch)
