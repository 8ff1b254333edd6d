"""Online learning on a task stream (Section 5.4, Table 4): the tasks are learned one after
another by one model and one optimizer, whose state carries over from task to task (escaping
the last task's solution is what the critical-momenta buffer is meant to help with).

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

import bisect
import math
import sys
import time
from pathlib import Path

from omegaconf import OmegaConf
from tqdm import tqdm

from ..models import ModelSpec, build_model
from ..models.task_heads import TaskHeads
from ..optim import create_optimizer
from .checkpoint import rng_state, save_atomic
from .checks import check_bool, optimizer_arguments
from .compiled import forward_module

# The supervised loop's pieces, so both loops checkpoint, resume and record alike.
from .loop import CHECKPOINT, _base_result, _show_progress, _train_epoch, load_data, resume, setup_torch
from .records import RunRecords, make_logger
from .steps import ClassificationTask
from .stream_metrics import stream_metrics

MONITOR = "learning_accuracy"


def check_stream_config(cfg) -> None:
    """The stream-only settings, checked before any data is read."""
    check_bool("online.reset_optimizer", OmegaConf.select(cfg, "online.reset_optimizer", default=False))


def run_stream(cfg, run_dir: Path, records: RunRecords) -> dict:
    """Train (or resume) the stream run ``cfg``; write and return result.json's content."""
    check_stream_config(cfg)
    settings = setup_torch(cfg)
    stream = load_data(cfg)
    for source, count in stream.skipped_files.items():
        print(f"cmrepro: {source}: skipped {count} unreadable image files", file=sys.stderr)

    spec = ModelSpec(
        "classification",
        num_classes=stream.num_tasks * stream.classes_per_task,
        in_channels=stream.input_shape[0],
        image_size=stream.input_shape[-1],
    )
    model = TaskHeads(build_model(cfg.model, spec), stream.classes_per_task).to(settings.device)
    # What the forward passes go through: the same network, compiled under trainer.compile. The
    # head's slicing stays outside the compiled graph, so switching tasks never recompiles.
    runner = TaskHeads(forward_module(model.network, cfg.trainer.compile), stream.classes_per_task)
    learner = _Learner(cfg, model)
    config = OmegaConf.to_container(cfg)
    progress = {"epoch": 0, "wall_time": 0.0, "task_losses": [], "task_time": 0.0}
    resume(run_dir, config, model, learner.optimizer, progress)
    records.keep_epochs(progress["epoch"])

    logger = make_logger(cfg.logger, run_dir, config)
    result = _base_result(cfg, config)
    # "running" until the end: a run killed now is still found, with its config, by the report.
    records.write_result({**result, **stream_result(records.read_metrics())})
    try:
        status = _learn_stream(cfg, run_dir, stream, model, runner, learner, settings, records, logger, progress)
        result.update(status=status, **stream_result(records.read_metrics()))
    finally:
        logger.finish()
    result["tasks"] = [{"name": task.name, "classes": list(task.classes)} for task in stream.tasks]
    result["skipped_files"] = dict(stream.skipped_files)
    result["wall_time_s"] = progress["wall_time"]
    records.write_result(result)
    return result


class _Learner:
    """The optimizer of a stream run and its per-task learning-rate schedule."""

    def __init__(self, cfg, model: TaskHeads) -> None:
        self.cfg = cfg
        self.model = model
        self.reset_per_task = OmegaConf.select(cfg, "online.reset_optimizer", default=False)
        self.optimizer = self._fresh()
        self.base_lrs = [group["lr"] for group in self.optimizer.param_groups]

    def _fresh(self):
        arguments = optimizer_arguments(self.cfg.optimizer)
        return create_optimizer(self.cfg.optimizer.name, self.model.parameters(), model=self.model, **arguments)

    def start_task(self, task: int) -> None:
        # At the start of a task, never at the end of the previous one: a run resumed from a
        # checkpoint taken at a task boundary resets exactly where an uninterrupted run does.
        if task > 0 and self.reset_per_task:
            self.optimizer = self._fresh()

    def set_epoch_lr(self, task_epoch: int) -> float:
        """The MultiStepLR schedule over the epochs of one task; the learning rate of this epoch."""
        trainer = self.cfg.trainer
        factor = trainer.lr_gamma ** bisect.bisect_right(sorted(trainer.lr_milestones), task_epoch)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = base * factor
        return self.optimizer.param_groups[0]["lr"]


def _learn_stream(cfg, run_dir, stream, model, runner, learner, settings, records, logger, progress) -> str:
    """Train the remaining epochs of the stream; ``"done"`` or ``"diverged"``.

    ``runner`` does the forward passes; ``model`` (the same network) is checkpointed.
    """
    epochs = cfg.trainer.epochs
    total = stream.num_tasks * epochs
    show = _show_progress(cfg.trainer.progress)
    step = ClassificationTask()
    bar = tqdm(range(progress["epoch"], total), desc="epochs", initial=progress["epoch"], total=total, disable=not show)
    for epoch in bar:
        index, task_epoch = divmod(epoch, epochs)
        task = stream.tasks[index]
        if task_epoch == 0:
            learner.start_task(index)
            progress.update(task_losses=[], task_time=0.0)
        started = time.perf_counter()
        runner.set_task(index)
        lr = learner.set_epoch_lr(task_epoch)
        # The epoch index is global, so each task's shuffles (and the kill hook's step count) differ.
        train_loss = _train_epoch(cfg, epoch, task, step, runner, learner.optimizer, settings, show)
        if train_loss is None:
            print(f"cmrepro: non-finite training loss on task {task.name}; run marked diverged", file=sys.stderr)
            return "diverged"
        progress["task_losses"].append(train_loss)
        row = _evaluate_after_task(stream, index, step, runner, settings) if task_epoch == epochs - 1 else None
        elapsed = time.perf_counter() - started
        progress.update(epoch=epoch + 1, wall_time=progress["wall_time"] + elapsed)
        progress["task_time"] += elapsed
        if row is not None:
            if not math.isfinite(row["val_loss"]):
                print(f"cmrepro: non-finite validation loss on task {task.name}; run marked diverged", file=sys.stderr)
                return "diverged"
            row.update(epoch=epoch + 1, lr=lr, train_loss=train_loss, train_losses=list(progress["task_losses"]))
            row["task_time_s"] = progress["task_time"]
            records.append_metrics(row)
            logger.log({key: value for key, value in row.items() if isinstance(value, int | float)}, step=index + 1)
        if cfg.trainer.checkpoint:
            payload = dict(
                model=model.state_dict(),
                optimizer=learner.optimizer.state_dict(),
                scheduler=None,  # the learning rate is a function of the epoch (set_epoch_lr)
                rng=rng_state(),
                config=OmegaConf.to_container(cfg),
                **progress,
            )
            save_atomic(payload, run_dir / CHECKPOINT)
    return "done"


def _evaluate_after_task(stream, index: int, step: ClassificationTask, model: TaskHeads, settings) -> dict:
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


def stream_result(rows: list[dict]) -> dict:
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
