"""What the training loop calls: the metrics of one run, built once, computed after the epochs that are due.

Built before a checkpoint is loaded, so the distance is measured from the
parameters the run started from: they are the same on a resume because the
model is built from the same seed in the same order. The fixed batch set is
redrawn identically on a resume (see :func:`fixed_batches`). The path length
is a sum over the steps already taken, so it is the one piece of state the
checkpoint must carry: :meth:`TrainingMetrics.state_dict` and
:meth:`TrainingMetrics.load_state_dict` (after the model's own state). Computing the
metrics touches no random-number generator, parameter, BatchNorm statistic
or train/eval flag, so a run with metrics on trains exactly as one without.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn
from torch.optim import Optimizer

from ..data.base import epoch_seed
from ..seeds import SeedStream
from .batches import fixed_batches
from .buffer_statistics import buffer_metrics
from .contexts import preserved_rng
from .distance import PathLength, distance_from, snapshot
from .losses import loss_for
from .m_sharpness import m_sharpness
from .settings import MetricsSettings, metrics_settings
from .sharpness import sharpness


class TrainingMetrics:
    """The analysis metrics of a run, as columns of its metrics.jsonl rows."""

    def __init__(
        self,
        settings: MetricsSettings,
        model: nn.Module,
        train: Callable[[int], Iterable],
        task: str,
        *,
        seed: int,
        epochs: int,
        optimizer: Optimizer | None = None,
    ) -> None:
        """``optimizer``: the run's, whose every step the path length is summed over (its
        ``step`` post-hook); without it the path length is not measured."""
        self.settings = settings
        self.loss = loss_for(task)
        self.seed = seed
        self.epochs = epochs
        self.initial = snapshot(model) if settings.distance.enabled else None
        self.path = PathLength(model) if settings.path_length.enabled and optimizer is not None else None
        if self.path is not None:
            # After the whole step: a SAM or MEG step's inner moves are not part of the path.
            self._path_hook = optimizer.register_step_post_hook(lambda *_: self.path.advance())
        needed = settings.batches_needed
        self.batches = fixed_batches(train, needed, seed) if needed else []

    @classmethod
    def from_config(
        cls, cfg: Mapping, model: nn.Module, train, task: str, optimizer: Optimizer | None = None
    ) -> TrainingMetrics:
        """From a resolved run config (``metrics``, ``seed``, ``trainer.epochs``, ``dataset.batch_size``)."""
        settings = metrics_settings(cfg.get("metrics"), cfg["dataset"].get("batch_size"))
        return cls(settings, model, train, task, seed=cfg["seed"], epochs=cfg["trainer"]["epochs"], optimizer=optimizer)

    def state_dict(self) -> dict:
        """What a checkpoint must carry for the metrics to resume exactly: the path length so far."""
        return self.path.state_dict() if self.path is not None else {}

    def load_state_dict(self, state: dict | None) -> None:
        """Resume from :meth:`state_dict`, after the model's checkpoint is loaded.

        A checkpoint written before the path length existed cannot resume the sum exactly: the
        run resumes without it (the column stays absent, never a wrong value), with one line.
        """
        if self.path is None:
            return
        if not state or "path_length" not in state:
            print(
                "cmrepro.train: the checkpoint predates metrics.path_length; resuming without the path length",
                file=sys.stderr,
            )
            self._path_hook.remove()
            self.path = None
            return
        self.path.load_state_dict(state)

    def compute(self, epoch: int, model: nn.Module, optimizer: Optimizer) -> dict:
        """The metrics due after ``epoch`` (1-based), ``{}`` when none is."""
        s, row = self.settings, {}
        with preserved_rng():
            if s.distance.due(epoch, self.epochs):
                row["distance"] = distance_from(self.initial, model)
            if self.path is not None and s.path_length.due(epoch, self.epochs):
                row["path_length"] = self.path.value()
            if s.buffer.due(epoch, self.epochs):
                row.update(buffer_metrics(optimizer))
            if s.sharpness.schedule.due(epoch, self.epochs):
                row.update(self._sharpness(epoch, model))
            if s.m_sharpness.schedule.due(epoch, self.epochs):
                row.update(self._m_sharpness(model))
        return row

    def _sharpness(self, epoch: int, model: nn.Module) -> dict:
        s = self.settings.sharpness
        started = time.perf_counter()
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, SeedStream.SHARPNESS))
        estimate = sharpness(
            model, self.batches[: s.batches], self.loss, tol=s.tol, max_iterations=s.max_iterations, generator=generator
        )
        return {
            "sharpness": estimate.value,
            "sharpness_iterations": estimate.iterations,
            "sharpness_time_s": time.perf_counter() - started,
        }

    def _m_sharpness(self, model: nn.Module) -> dict:
        s = self.settings.m_sharpness
        started = time.perf_counter()
        value = m_sharpness(model, self.batches[: s.batches], self.loss, m=s.m, radius=s.radius)
        return {"m_sharpness": value, "m_sharpness_time_s": time.perf_counter() - started}
