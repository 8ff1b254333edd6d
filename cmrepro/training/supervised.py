"""The supervised loop: one model trained on one dataset for ``trainer.epochs`` epochs (Tables 2
and 3, the analysis figures), validated after every epoch and checkpointed after every epoch.

``metrics.jsonl`` gets one row per epoch (losses, the monitored metric and its best so far, the
learning rate, the analysis metrics that are due); ``result.json`` the best epoch by the task's
monitor, the last row and, when the run ends ``done`` with a test set, the test metrics.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from torch import nn
from torch.optim import Optimizer
from tqdm import tqdm

from ..data import DataBundle
from ..metrics import TrainingMetrics
from ..models import ModelSpec, build_model
from ..optim import optimizer_from_config
from ..run_files import DIVERGED, DONE, RunRecords
from .checkpoint import save_checkpoint
from .checkpoint_policy import AUTO, CheckpointSchedule
from .checks import ConfigError, check_buffer_memory
from .compiled import check_compile_in_process_group, training_modules
from .console import compile_notice, say, say_ended, say_stopped
from .distributed import DistEnv, agree_any, convert_sync_batchnorm, reduce_sums
from .epoch import stop_agreed, stop_inside_epoch, train_epoch
from .interrupts import Interrupted, StopRequest
from .loggers import NullLogger, WandbLogger, log_epoch
from .run_setup import (
    announce_setup,
    announce_start,
    load_data,
    open_records,
    resume,
    seed_rank,
    setup_torch,
    shard_data,
    show_progress,
    steps_per_epoch,
)
from .run_state import RunState
from .schedule import StepSchedule
from .steps import ClassificationTask, LanguageModelTask, StepSettings, task_for


def run_supervised(cfg: DictConfig, run_dir: Path, records: RunRecords, stop: StopRequest, env: DistEnv) -> dict:
    """Train (or resume) the supervised run ``cfg``; write and return result.json's content.

    Raises :class:`~.interrupts.Interrupted` after checkpointing when ``stop`` is requested. In a
    distributed run (``env``: this process's rank) the model is data parallel (DDP, BatchNorm
    over the global batch under ``trainer.sync_batchnorm``), each process trains and evaluates
    its part of every batch, and rank 0 alone writes the run's files.
    """
    try:
        check_compile_in_process_group(cfg.trainer.compile, cfg.trainer.sync_batchnorm, env)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    settings = setup_torch(cfg, env)
    announce_start(run_dir, settings.device, env)
    data, fingerprint = load_data(cfg, settings.device, run_dir)
    spec = ModelSpec(
        data.task,
        data.num_classes,
        data.vocab_size,
        data.input_shape[0] if data.input_shape else 3,
        image_size=data.input_shape[-1] if data.input_shape else None,
    )
    model = build_model(cfg.model, spec)
    if env.enabled and cfg.trainer.sync_batchnorm:
        model = convert_sync_batchnorm(model, settings.device)
    model = model.to(settings.device)
    optimizer = optimizer_from_config(cfg.optimizer, model.parameters(), model)
    check_buffer_memory(optimizer, settings.device)  # before the first step would allocate it
    schedule = StepSchedule(optimizer, cfg.trainer.lr_milestones, cfg.trainer.lr_gamma)
    task = task_for(data.task)
    # Before the checkpoint is loaded: distance is measured from the initial parameters. On the
    # whole data, before it is split: every process measures the same batches, as one process would.
    analysis = TrainingMetrics.from_config(cfg, model, data.train, data.task, optimizer)
    seed_rank(cfg.seed, env)
    state, checkpoint = resume(run_dir, OmegaConf.to_container(cfg), model, optimizer, RunState, fingerprint, env)
    if checkpoint is not None:
        analysis.load_state_dict(checkpoint.get("metrics"))
    data = shard_data(data, env)
    announce_setup(cfg, model, state, steps_per_epoch(data.train, cfg.trainer.max_steps_per_epoch), env)

    summarize = partial(summarize_epochs, monitor=task.monitor, mode=task.mode)
    result, logger = open_records(cfg, run_dir, records, state, summarize, env)
    runner, evaluator = training_modules(model, cfg.trainer.compile, env, settings.device)
    run = _SupervisedRun(
        cfg=cfg,
        run_dir=run_dir,
        data=data,
        task=task,
        model=model,
        runner=runner,  # evaluator itself in one process
        evaluator=evaluator,
        env=env,
        optimizer=optimizer,
        schedule=schedule,
        settings=settings,
        records=records,
        logger=logger,
        analysis=analysis,
        state=state,
        stop=stop,
    )
    try:
        with compile_notice(env.is_main):
            status = run.train_remaining_epochs()
        result.update(status=status, **summarize(records.read_metrics()))
        if status == DONE and data.test is not None:
            result["test"] = task.evaluate(run.evaluator, data.test, settings, prefix="test", reduce=reduce_sums)
    except Interrupted:
        if env.is_main:
            say_stopped(run_dir)
        raise
    finally:
        logger.finish()
    result["wall_time_s"] = state.wall_time
    records.write_result(result)
    if env.is_main:
        say_ended(result, run_dir, cfg.trainer)
    return result


@dataclass
class _SupervisedRun:
    """The pieces of a supervised run that its epochs use.

    ``runner`` does the training forward passes (``model``, in DistributedDataParallel in a
    distributed run, compiled under ``trainer.compile``: :func:`~.compiled.training_modules`);
    ``evaluator`` the evaluation passes (the same without DDP, which would synchronise buffers at
    every pass of unevenly split sets);
    ``model`` is checkpointed and measured.
    """

    cfg: DictConfig
    run_dir: Path
    data: DataBundle
    task: ClassificationTask | LanguageModelTask
    model: nn.Module
    runner: nn.Module
    evaluator: nn.Module
    env: DistEnv
    optimizer: Optimizer
    schedule: StepSchedule
    settings: StepSettings
    records: RunRecords
    logger: NullLogger | WandbLogger
    analysis: TrainingMetrics
    state: RunState
    stop: StopRequest
    checkpoints: CheckpointSchedule = field(init=False)

    def __post_init__(self) -> None:
        setting = self.cfg.trainer.get("checkpoint_every", AUTO)
        agree = partial(agree_any, device=self.settings.device)
        self.checkpoints = CheckpointSchedule.started(setting, self._checkpoint, agree)

    def train_remaining_epochs(self) -> str:
        """Train the epochs after the checkpoint's; ``"done"`` or ``"diverged"``."""
        epochs, start = self.cfg.trainer.epochs, self.state.epoch
        show = show_progress(self.cfg.trainer.progress)
        bar = tqdm(range(start, epochs), desc="epochs", initial=start, total=epochs, disable=not show, position=0)
        for epoch in bar:
            # It came during the last epoch's evaluation (to any of the processes: they agree).
            if stop_agreed(self.stop, self.env, self.settings.device):
                self.checkpoints.write_if_unsaved()
                raise Interrupted(self.stop.signum, f"after epoch {epoch}")
            row = self._epoch(epoch, show)
            if row is None:
                return DIVERGED
            monitor = self.task.monitor
            bar.set_postfix({"train_loss": f"{row['train_loss']:.4f}", monitor: f"{row[monitor]:.4g}"}, refresh=False)
        return DONE

    def _epoch(self, epoch: int, show: bool) -> dict | None:
        """Train, validate, measure, record and checkpoint epoch ``epoch``; its metrics row, or
        None if it diverged."""
        started = time.perf_counter()
        lr = self.schedule.set_epoch(epoch)
        outcome = train_epoch(
            self.data.train,
            epoch,
            self.task,
            self.runner,
            self.optimizer,
            self.settings,
            max_steps=self.cfg.trainer.max_steps_per_epoch,
            show=show,
            progress=self.state,
            stop=self.stop,
            env=self.env,
        )
        if outcome.stopped:
            save = self._checkpoint if self.cfg.trainer.checkpoint else None
            raise stop_inside_epoch(self.data.train, epoch, self.state, time.perf_counter() - started, self.stop, save)
        if outcome.mean_loss is None:
            if self.env.is_main:
                say(f"non-finite training loss in epoch {epoch + 1}; run marked diverged")
            return None
        self.model.eval()
        validation = self.task.evaluate(self.evaluator, self.data.val, self.settings, reduce=reduce_sums)
        row = {"epoch": epoch + 1, "train_loss": outcome.mean_loss, **validation, "lr": lr}
        if not math.isfinite(row["val_loss"]):
            if self.env.is_main:
                say(f"non-finite validation loss in epoch {epoch + 1}; run marked diverged")
            return None
        monitor = self.task.monitor
        row[f"best_{monitor}"] = self.state.improve(row[monitor], self.task.mode)
        row.update(self.analysis.compute(epoch + 1, self.model, self.optimizer))
        row["epoch_time_s"] = time.perf_counter() - started
        self.state.end_epoch(row["epoch_time_s"])
        self.records.append_metrics(row)
        self.logger.log(row, step=epoch + 1)
        if self.env.is_main:
            log_epoch(row, self.cfg.trainer.epochs, self.task.monitor)
        self.checkpoints.epoch_ended(last=epoch + 1 == self.cfg.trainer.epochs)
        return row

    def _checkpoint(self) -> None:
        if self.cfg.trainer.checkpoint:
            config = OmegaConf.to_container(self.cfg)
            analysis = self.analysis.state_dict()
            save_checkpoint(self.run_dir, self.model, self.optimizer, config, self.state, analysis, self.env)


def summarize_epochs(rows: list[dict], monitor: str | None = None, mode: str = "max") -> dict:
    """result.json's summary of the per-epoch rows: epochs completed, the best epoch by ``monitor``
    (read from the rows' ``best_`` column when not given) and the last row."""
    if not rows:  # the monitor all the same, so a run that diverged in its first epoch reports as one
        return {"epochs_completed": 0, "best": None, "final": None, **({"monitor": monitor} if monitor else {})}
    monitor = monitor or next(key[len("best_") :] for key in rows[-1] if key.startswith("best_"))
    best_row = (max if mode == "max" else min)(rows, key=lambda row: row[monitor])
    return {
        "epochs_completed": rows[-1]["epoch"],
        "monitor": monitor,
        "best": {monitor: best_row[monitor], "epoch": best_row["epoch"]},
        "final": rows[-1],
    }
