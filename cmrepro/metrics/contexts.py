"""Context managers that let a metric look at the model without leaving a trace on training.

Metrics run between epochs of a run that must resume bit for bit: they may
not change a parameter, a BatchNorm statistic, a module's train/eval flag or
the state of any random-number generator the training draws from.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import torch
from torch import Tensor, nn


@contextmanager
def evaluation_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode inside the block; every module's own flag restored afterwards.

    BatchNorm then uses its running statistics (and does not update them) and
    dropout is off, so the loss is a fixed function of the parameters: the
    Hessian of a train-mode loss would change with the batch composition and
    the dropout draw. Flags are restored module by module, not with
    ``model.train()``, because a caller may keep some submodules in eval mode.
    """
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Restore Python's, numpy's and torch's (CPU and CUDA) generators after the block."""
    python, numpy = random.getstate(), np.random.get_state()
    # Only devices already in use: forking would otherwise start a CUDA context on a CPU run.
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        try:
            yield
        finally:
            random.setstate(python)
            np.random.set_state(numpy)


@contextmanager
def restored_parameters(params: list[Tensor]) -> Iterator[Callable[[], None]]:
    """Copy the parameter values back after the block, bit for bit; yields that restore to call earlier too.

    Subtracting a perturbation again would leave rounding errors in the
    weights, and a resumed run would then differ from an uninterrupted one.
    """
    saved = [p.detach().clone() for p in params]

    @torch.no_grad()
    def restore() -> None:
        torch._foreach_copy_(params, saved)

    try:
        yield restore
    finally:
        restore()


def trainable_parameters(model: nn.Module) -> list[Tensor]:
    """The parameters the optimizer moves, in ``model.parameters()`` order."""
    return [p for p in model.parameters() if p.requires_grad]
