"""The task-stream loop, for online learning (Section 5.4, Table 4): the tasks are learned one
after another by one model and one optimizer, whose state carries over from task to task
(escaping the last task's solution is what the critical-momenta buffer is meant to help with).

``trainer.epochs`` is the number of epochs *per task*; ``trainer.lr_milestones`` count epochs
within a task, so the learning rate starts from ``optimizer.lr`` again at every task (the
paper's configs keep it constant, as La-MAML and Mehta et al. do). ``online.reset_optimizer``
gives every task a fresh optimizer state instead, for comparison.

After the last epoch of each task the model is evaluated on every task's validation set (one
row of the accuracy matrix); ``metrics.jsonl`` gets one row per task and ``result.json`` the
matrix and the metrics of :mod:`.stream_metrics`, with ``learning_accuracy`` as the monitor.
Checkpoints are written after every epoch, so a killed run resumes inside a task too.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from ..data.online import TaskStream
from ..models import ModelSpec, build_model
from ..models.task_heads import TaskHeads
from ..optim import optimizer_from_config
from ..run_files import DIVERGED, DONE, RunRecords
from .checkpoint import save_checkpoint
from .checkpoint_policy import AUTO, CheckpointSchedule
from .checks import ConfigError, check_bool, check_buffer_memory
from .compiled import forward_module
from .console import compile_notice, say, say_ended, say_stopped
from .distributed import DistEnv
from .epoch import stop_inside_epoch, train_epoch
from .interrupts import Interrupted, StopRequest
from .loggers import NullLogger, WandbLogger, log_epoch
from .run_setup import (
    announce_setup,
    announce_start,
    load_data,
    open_records,
    resume,
    setup_torch,
    show_progress,
    steps_per_epoch,
)
from .run_state import StreamState
from .schedule import StepSchedule
from .steps import ClassificationTask, StepSettings
from .stream_metrics import stream_metrics

MONITOR = "learning_accuracy"
# What a task's line shows: its own validation accuracy after its last epoch (the learning
# accuracy is the mean of these over the tasks so far).
MONITOR_PER_TASK = "val_accuracy"


def check_stream_config(cfg) -> None:
    """The stream-only settings, checked before any data is read."""
    check_bool("online.reset_optimizer", OmegaConf.select(cfg, "online.reset_optimizer", default=False))


def run_stream(cfg: DictConfig, run_dir: Path, records: RunRecords, stop: StopRequest, env: DistEnv) -> dict:
    """Train (or resume) the stream run ``cfg``; write and return result.json's content.

    Raises :class:`~.interrupts.Interrupted` after checkpointing when ``stop`` is requested."""
    check_stream_config(cfg)
    if env.enabled:  # every task would need its own split loaders; the stream models are small
        raise ConfigError(f"{cfg.dataset.name} is a task stream, trained in one process: run it without torchrun")
    settings = setup_torch(cfg, env)
    announce_start(run_dir, settings.device, env)
    stream, fingerprint = load_data(cfg, settings.device, run_dir)

    spec = ModelSpec(
        "classification",
        num_classes=stream.num_tasks * stream.classes_per_task,
        in_channels=stream.input_shape[0],
        image_size=stream.input_shape[-1],
    )
    model = TaskHeads(build_model(cfg.model, spec), stream.classes_per_task).to(settings.device)
    learner = _Learner(cfg, model)
    check_buffer_memory(learner.optimizer, settings.device)  # before the first step would allocate it
    state, _ = resume(run_dir, OmegaConf.to_container(cfg), model, learner.optimizer, StreamState, fingerprint, env)
    steps = steps_per_epoch(stream.tasks[0].train, cfg.trainer.max_steps_per_epoch) if stream.tasks else None
    announce_setup(cfg, model, state, steps, env, tasks=stream.num_tasks)

    result, logger = open_records(cfg, run_dir, records, state, stream_summary)
    run = _StreamRun(
        cfg=cfg,
        run_dir=run_dir,
        stream=stream,
        model=model,
        # What the forward passes go through: the same network, compiled under trainer.compile. The
        # head's slicing stays outside the compiled graph, so switching tasks never recompiles.
        runner=TaskHeads(forward_module(model.network, cfg.trainer.compile), stream.classes_per_task),
        learner=learner,
        settings=settings,
        records=records,
        logger=logger,
        state=state,
        stop=stop,
    )
    try:
        with compile_notice():
            status = run.train_remaining_epochs()
        result.update(status=status, **stream_summary(records.read_metrics()))
    except Interrupted:
        say_stopped(run_dir)
        raise
    finally:
        logger.finish()
    result["tasks"] = [{"name": task.name, "classes": list(task.classes)} for task in stream.tasks]
    result["skipped_files"] = dict(stream.skipped_files)
    result["wall_time_s"] = state.wall_time
    records.write_result(result)
    say_ended(result, run_dir, cfg.trainer)
    return result


class _Learner:
    """The optimizer of a stream run and its per-task learning-rate schedule."""

    def __init__(self, cfg, model: TaskHeads) -> None:
        self.cfg = cfg
        self.model = model
        self.reset_per_task = OmegaConf.select(cfg, "online.reset_optimizer", default=False)
        self._fresh()

    def _fresh(self) -> None:
        self.optimizer = optimizer_from_config(self.cfg.optimizer, self.model.parameters(), self.model)
        self.schedule = StepSchedule(self.optimizer, self.cfg.trainer.lr_milestones, self.cfg.trainer.lr_gamma)

    def start_task(self, task: int) -> None:
        # At the start of a task, never at the end of the previous one: a run resumed from a
        # checkpoint taken at a task boundary resets exactly where an uninterrupted run does.
        if task > 0 and self.reset_per_task:
            self._fresh()


@dataclass
class _StreamRun:
    """The pieces of a stream run that its epochs use.

    ``runner`` does the forward passes; ``model`` (the same network) is checkpointed.
    """

    cfg: DictConfig
    run_dir: Path
    stream: TaskStream
    model: TaskHeads
    runner: TaskHeads
    learner: _Learner
    settings: StepSettings
    records: RunRecords
    logger: NullLogger | WandbLogger
    state: StreamState
    stop: StopRequest
    step: ClassificationTask = field(default_factory=ClassificationTask)  # every stream is classification
    checkpoints: CheckpointSchedule = field(init=False)

    def __post_init__(self) -> None:
        setting = self.cfg.trainer.get("checkpoint_every", AUTO)
        self.checkpoints = CheckpointSchedule.started(setting, self._checkpoint)  # one process: nothing to agree

    def train_remaining_epochs(self) -> str:
        """Train the epochs of the stream after the checkpoint's; ``"done"`` or ``"diverged"``."""
        total, start = self.stream.num_tasks * self.cfg.trainer.epochs, self.state.epoch
        show = show_progress(self.cfg.trainer.progress)
        for epoch in tqdm(range(start, total), desc="epochs", initial=start, total=total, disable=not show):
            if self.stop.requested:  # it came during the last epoch's evaluation
                self.checkpoints.write_if_unsaved()
                raise Interrupted(self.stop.signum, f"after epoch {epoch}")
            if not self._epoch(epoch, show):
                return DIVERGED
        return DONE

    def _epoch(self, epoch: int, show: bool) -> bool:
        """Train epoch ``epoch`` (of the whole stream); after a task's last, evaluate and record it.
        False if it diverged."""
        epochs, state, learner = self.cfg.trainer.epochs, self.state, self.learner
        index, task_epoch = divmod(epoch, epochs)
        task = self.stream.tasks[index]
        if task_epoch == 0 and state.step == 0:  # not when resuming inside the task's first epoch
            learner.start_task(index)
            state.start_task()
        started = time.perf_counter()
        self.runner.set_task(index)
        lr = learner.schedule.set_epoch(task_epoch)
        # The epoch index is global, so each task's shuffles (and the kill hook's step count) differ.
        max_steps = self.cfg.trainer.max_steps_per_epoch
        outcome = train_epoch(
            *(task.train, epoch, self.step, self.runner, learner.optimizer, self.settings),
            max_steps=max_steps,
            show=show,
            progress=state,
            stop=self.stop,
        )
        if outcome.stopped:
            seconds = time.perf_counter() - started
            state.task_time += seconds
            save = self._checkpoint if self.cfg.trainer.checkpoint else None
            raise stop_inside_epoch(task.train, epoch, state, seconds, self.stop, save)
        train_loss = outcome.mean_loss
        if train_loss is None:
            say(f"non-finite training loss on task {task.name}; run marked diverged")
            return False
        state.task_losses.append(train_loss)
        last = task_epoch == epochs - 1
        row = _evaluate_after_task(self.stream, index, self.step, self.runner, self.settings) if last else None
        elapsed = time.perf_counter() - started
        state.end_epoch(elapsed)
        state.task_time += elapsed
        if row is not None:
            if not math.isfinite(row["val_loss"]):
                say(f"non-finite validation loss on task {task.name}; run marked diverged")
                return False
            row.update(epoch=epoch + 1, lr=lr, train_loss=train_loss, train_losses=list(state.task_losses))
            row["task_time_s"] = state.task_time
            self.records.append_metrics(row)
            numbers = {key: value for key, value in row.items() if isinstance(value, int | float)}
            self.logger.log(numbers, step=index + 1)
            log_epoch(row, len(self.stream.tasks) * epochs, MONITOR_PER_TASK, tasks=len(self.stream.tasks))
        self.checkpoints.epoch_ended(last=epoch + 1 == len(self.stream.tasks) * epochs)
        return True

    def _checkpoint(self) -> None:
        if self.cfg.trainer.checkpoint:
            config = OmegaConf.to_container(self.cfg)
            save_checkpoint(self.run_dir, self.model, self.learner.optimizer, config, self.state)


def _evaluate_after_task(
    stream: TaskStream, index: int, step: ClassificationTask, model: TaskHeads, settings: StepSettings
) -> dict:
    """One row of the accuracy matrix (and of the test matrix when the stream has test sets)."""
    model.eval()
    row: dict = {"task": index + 1, "task_name": stream.tasks[index].name}
    for split in ("val", "test"):
        accuracies, losses = [], []
        for other, task in enumerate(stream.tasks):
            loader = getattr(task, split)
            if loader is None:
                break
            model.set_task(other)
            measured = step.evaluate(model, loader, settings, prefix=split)
            accuracies.append(measured[f"{split}_accuracy"])
            losses.append(measured[f"{split}_loss"])
        if accuracies:
            row.update({f"{split}_accuracies": accuracies, f"{split}_losses": losses})
            row.update({f"{split}_accuracy": accuracies[index], f"{split}_loss": losses[index]})
    model.set_task(index)
    return row


def stream_summary(rows: list[dict]) -> dict:
    """result.json's summary of the per-task rows: the accuracy matrix, its metrics (on the
    validation sets, and on the test sets under ``test`` when measured), and the monitor."""
    matrix = [row["val_accuracies"] for row in rows]
    metrics = stream_metrics(matrix)
    summary = {
        "tasks_completed": len(rows),
        "epochs_completed": rows[-1]["epoch"] if rows else 0,
        "monitor": MONITOR,
        "best": {MONITOR: metrics[MONITOR]} if rows else None,
        "final": rows[-1] if rows else None,
        "accuracy_matrix": matrix,
        **metrics,
    }
    if rows and "test_accuracies" in rows[0]:
        test_matrix = [row["test_accuracies"] for row in rows]
        summary["test"] = {"accuracy_matrix": test_matrix, **stream_metrics(test_matrix)}
    return summary
