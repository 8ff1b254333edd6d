"""One training epoch, the same for both loops: its steps, its mean loss, and the finite-loss check."""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Callable, Sized

import torch
from torch import nn
from torch.optim import Optimizer
from tqdm import tqdm

from .steps import StepSettings

# Finite-loss checks read the loss on the host: every this many steps, not every step.
CHECK_EVERY = 50


def train_epoch(
    train: Callable[[int], Sized],
    epoch: int,
    task,
    model: nn.Module,
    optimizer: Optimizer,
    settings: StepSettings,
    *,
    max_steps: int | None,
    show: bool,
) -> float | None:
    """Mean training loss of epoch ``epoch`` of the loader ``train``, or None as soon as it is not finite.

    ``task`` does the steps (:mod:`.steps`); ``max_steps`` (``trainer.max_steps_per_epoch``)
    cuts the epoch short; ``show``: a progress bar.
    """
    model.train()
    task.begin_epoch()
    batches = train(epoch)
    steps = min(len(batches), max_steps) if max_steps else len(batches)
    total = torch.zeros((), dtype=torch.float64, device=settings.device)
    done = 0
    bar = tqdm(batches, total=steps, desc=f"epoch {epoch + 1}", leave=False, disable=not show, position=1)
    for batch in bar:
        if done == steps:
            break
        total += task.train_step(model, optimizer, batch, settings)
        done += 1
        _fault_injection(epoch * steps + done)
        if done % CHECK_EVERY == 0:
            mean = float(total) / done
            if not math.isfinite(mean):
                return None
            bar.set_postfix(loss=f"{mean:.4f}")
    mean = float(total) / max(done, 1)
    return mean if math.isfinite(mean) else None


def _fault_injection(global_step: int) -> None:
    """Testing hook: CMREPRO_KILL_AT_STEP=N kills this process with SIGKILL after step N."""
    target = os.environ.get("CMREPRO_KILL_AT_STEP")
    if target is not None and global_step == int(target):
        os.kill(os.getpid(), signal.SIGKILL)
