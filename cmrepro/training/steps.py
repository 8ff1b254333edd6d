"""One optimizer step and one evaluation pass, per task.

SAM's and MEG's second forward-backward pass goes through the optimizer's
closure (``cmrepro.optim.needs_closure``), so the loop does not need to know
which optimizer it drives.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..metrics.losses import classification_loss, next_token_loss
from ..optim import needs_closure


@dataclass(frozen=True)
class StepSettings:
    device: torch.device
    precision: str  # "fp32" | "bf16"
    grad_clip: float | None

    def autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def _backward(compute_loss: Callable[[], Tensor], model: nn.Module, optimizer, settings: StepSettings) -> Tensor:
    optimizer.zero_grad(set_to_none=True)
    with settings.autocast():
        loss = compute_loss()
    loss.backward()
    if settings.grad_clip is not None:
        nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
    return loss.detach()


def optimizer_step(compute_loss: Callable[[], Tensor], model: nn.Module, optimizer, settings: StepSettings) -> Tensor:
    """Backward, clip, step; for SAM (MEG) the closure takes the gradient at the perturbed
    (extrapolated) point."""
    loss = _backward(compute_loss, model, optimizer, settings)
    if needs_closure(optimizer):
        optimizer.step(lambda: _backward(compute_loss, model, optimizer, settings))
    else:
        optimizer.step()
    return loss.float()


def _no_reduction(sums: Tensor) -> Tensor:
    return sums


class ClassificationTask:
    """Cross-entropy on images; validation accuracy in percent (higher is better)."""

    monitor, mode = "val_accuracy", "max"

    def begin_epoch(self) -> None:
        pass

    def train_step(self, model, optimizer, batch, settings: StepSettings, weight: float = 1.0) -> Tensor:
        """One step; ``weight`` scales the loss (a rank's share of an unevenly split global batch,
        ``cmrepro.data.base.Shard.loss_weight``), inside the closure so SAM's second pass has it too."""
        x, y = (t.to(settings.device, non_blocking=True) for t in batch)
        if weight == 1.0:
            return optimizer_step(lambda: classification_loss(model(x), y), model, optimizer, settings)
        return optimizer_step(lambda: classification_loss(model(x), y) * weight, model, optimizer, settings)

    @torch.no_grad()
    def evaluate(
        self, model, batches: Iterable, settings: StepSettings, prefix: str = "val", reduce=_no_reduction
    ) -> dict:
        """Loss and accuracy over ``batches``; ``reduce`` adds the sums over the processes of a
        distributed run (each evaluated its part), so the metrics are the whole set's, exactly."""
        sums = torch.zeros(3, dtype=torch.float64, device=settings.device)  # loss, correct, count
        for batch in batches:
            x, y = (t.to(settings.device, non_blocking=True) for t in batch)
            with settings.autocast():
                logits = model(x)
            sums[0] += classification_loss(logits, y, reduction="sum")
            sums[1] += (logits.argmax(dim=1) == y).sum()
            sums[2] += y.numel()
        loss_sum, correct, count = reduce(sums).tolist()
        return {f"{prefix}_loss": loss_sum / count, f"{prefix}_accuracy": 100.0 * correct / count}


class LanguageModelTask:
    """Next-token cross-entropy with truncated BPTT; validation perplexity (lower is better)."""

    monitor, mode = "val_perplexity", "min"

    def __init__(self) -> None:
        self.hidden = None

    def begin_epoch(self) -> None:
        self.hidden = None  # each epoch starts from a zero state, as does evaluation

    def _loss(self, model, x: Tensor, y: Tensor, hidden) -> tuple[Tensor, tuple]:
        logits, hidden = model(x, hidden)
        return next_token_loss(logits, y), hidden

    def train_step(self, model, optimizer, batch, settings: StepSettings, weight: float = 1.0) -> Tensor:
        # Language-model data is never split across processes (data.base.shard_bundle): weight is 1.
        x, y = (t.to(settings.device, non_blocking=True) for t in batch)
        if self.hidden is None or self.hidden[0].shape[1] != x.shape[1]:
            self.hidden = model.init_hidden(x.shape[1], settings.device)
        start = tuple(h.detach() for h in self.hidden)  # truncated BPTT
        outputs = {}

        def compute_loss() -> Tensor:
            loss, hidden = self._loss(model, x, y, start)
            outputs.setdefault("hidden", hidden)  # carry the state of the pass at theta, not SAM's/MEG's second
            return loss

        loss = optimizer_step(compute_loss, model, optimizer, settings)
        self.hidden = outputs["hidden"]
        return loss

    @torch.no_grad()
    def evaluate(
        self, model, batches: Iterable, settings: StepSettings, prefix: str = "val", reduce=_no_reduction
    ) -> dict:
        loss_sum, tokens, hidden = 0.0, 0, None
        total = torch.zeros((), dtype=torch.float64, device=settings.device)
        for batch in batches:
            x, y = (t.to(settings.device, non_blocking=True) for t in batch)
            if hidden is None:
                hidden = model.init_hidden(x.shape[1], settings.device)
            with settings.autocast():
                loss, hidden = self._loss(model, x, y, hidden)
            total += loss.double() * y.numel()
            tokens += y.numel()
        loss_sum = float(total) / tokens
        return {f"{prefix}_loss": loss_sum, f"{prefix}_perplexity": math.exp(min(loss_sum, 700.0))}


def task_for(kind: str):
    return {"classification": ClassificationTask, "language_model": LanguageModelTask}[kind]()
