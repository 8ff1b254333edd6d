"""Train one configured run to completion, resuming from its directory if it was started before.

A run directory holds ``checkpoint.pt`` (written atomically after every
epoch), ``metrics.jsonl`` (one row per finished epoch) and, at the end,
``result.json`` with status ``done`` or ``diverged`` (``failed`` is written
by the entry point when an error escapes). Re-running a finished run does
nothing; re-running a killed one continues from its last checkpoint and ends
with the metrics an uninterrupted run would have had.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import torch
from omegaconf import OmegaConf
from tqdm import tqdm

from .. import __version__
from ..data import build_data, is_task_stream
from ..metrics import TrainingMetrics
from ..models import ModelSpec, build_model
from ..optim import create_optimizer
from ..run_files import RunFileError
from .checkpoint import load_checkpoint, restore_rng, rng_state, save_atomic, seed_everything
from .checks import ConfigError, optimizer_arguments
from .compiled import forward_module
from .records import RunRecords, git_commit, make_logger
from .steps import StepSettings, task_for

CHECKPOINT = "checkpoint.pt"
# Finite-loss checks read the loss on the host: every this many steps, not every step.
CHECK_EVERY = 50
# Keys that may differ when a run is resumed: where it runs, not what it computes.
RESUMABLE_DIFFERENCES = (
    "run_dir",
    "paths",
    "logger",
    "trainer.device",
    "trainer.progress",
    "trainer.keep_checkpoint",
    "trainer.compile",
    "dataset.num_workers",
)


def train(cfg: Mapping, run_dir: Path) -> dict:
    """Run (or resume, or skip) the training described by the resolved config ``cfg``; return result.json's content."""
    cfg = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(cfg), resolve=True))
    records = RunRecords(run_dir)
    if records.finished():
        previous = records.read_result()
        # Skipped only if it is this very run; an edited experiment must not hide behind it.
        _check_same_run(previous.get("config") or {}, OmegaConf.to_container(cfg), run_dir)
        print(f"cmrepro: {run_dir} is already {previous['status']}; nothing to do", file=sys.stderr)
        _drop_checkpoint_if_asked(cfg, run_dir)  # so a finished sweep re-run with it off frees its disk
        return previous
    run, summary = _run, _summary
    if is_task_stream(cfg.dataset.name):  # online learning (Table 4): tasks one after another
        from . import online  # imported here: it builds on this module

        run, summary = online.run_stream, online.stream_result
    try:
        result = run(cfg, run_dir, records)
    except Exception as error:
        # Recorded so that a sweep can see what happened; the checkpoint and
        # metrics of finished epochs stay, and re-running resumes from them.
        failed = _base_result(cfg, OmegaConf.to_container(cfg))
        failed.update(status="failed", error=f"{type(error).__name__}: {error}")
        if not isinstance(error, RunFileError):  # else the metrics are what cannot be read
            failed.update(summary(records.read_metrics()))
        records.write_result(failed)
        raise
    _drop_checkpoint_if_asked(cfg, run_dir)
    return result


def _drop_checkpoint_if_asked(cfg, run_dir: Path) -> None:
    """Delete an ended run's checkpoint under ``trainer.keep_checkpoint=false``.

    An ended run is never resumed, so its checkpoint only costs disk: up to
    0.7 GB a run, times the hundreds of runs of a grid cell.
    """
    if not cfg.trainer.keep_checkpoint:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)


def setup_torch(cfg) -> StepSettings:
    """Seed every generator and apply ``trainer.deterministic``; the device and step settings."""
    seed_everything(cfg.seed)
    if cfg.trainer.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    return StepSettings(_device(cfg.trainer.device), cfg.trainer.precision, cfg.trainer.grad_clip)


def load_data(cfg):
    """The run's data (``build_data``); a dataset value the data module refuses is a ConfigError."""
    try:
        return build_data(cfg.dataset, seed=cfg.seed)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _run(cfg, run_dir: Path, records: RunRecords) -> dict:
    settings = setup_torch(cfg)
    device = settings.device
    data = load_data(cfg)
    spec = ModelSpec(
        data.task,
        data.num_classes,
        data.vocab_size,
        data.input_shape[0] if data.input_shape else 3,
        image_size=data.input_shape[-1] if data.input_shape else None,
    )
    model = build_model(cfg.model, spec).to(device)
    optimizer = create_optimizer(
        cfg.optimizer.name, model.parameters(), model=model, **optimizer_arguments(cfg.optimizer)
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=list(cfg.trainer.lr_milestones), gamma=cfg.trainer.lr_gamma
    )
    task = task_for(data.task)
    config = OmegaConf.to_container(cfg)
    # Before the checkpoint is loaded: distance is measured from the initial parameters.
    analysis = TrainingMetrics.from_config(cfg, model, data.train, data.task, optimizer)
    runner = forward_module(model, cfg.trainer.compile)  # the model itself unless trainer.compile

    progress = {"epoch": 0, "best": None, "wall_time": 0.0}
    checkpoint = resume(run_dir, config, model, optimizer, progress)
    if checkpoint is not None:
        scheduler.load_state_dict(checkpoint["scheduler"])
        analysis.load_state_dict(checkpoint.get("metrics"))
    records.keep_epochs(progress["epoch"])

    logger = make_logger(cfg.logger, run_dir, config)
    result = _base_result(cfg, config)
    # "running" until the end: a run killed now is still found, with its config, by the report.
    records.write_result({**result, **_summary(records.read_metrics(), task.monitor, task.mode)})
    try:
        status = _epochs(
            cfg, run_dir, data, task, model, runner, optimizer, scheduler, settings, records, logger, progress, analysis
        )
        result.update(status=status, **_summary(records.read_metrics(), task.monitor, task.mode))
        if status == "done" and data.test is not None:
            result["test"] = task.evaluate(runner, data.test, settings, prefix="test")
    finally:
        logger.finish()
    result["wall_time_s"] = progress["wall_time"]
    records.write_result(result)
    return result


def resume(run_dir: Path, config: dict, model, optimizer, progress: dict) -> dict | None:
    """Load ``run_dir``'s checkpoint, if there is one, into the model, the optimizer, the random
    generators and ``progress`` (its keys); the checkpoint, for the caller's other state, or None."""
    checkpoint = load_checkpoint(run_dir / CHECKPOINT)
    if checkpoint is None:
        return None
    _check_same_run(checkpoint["config"], config, run_dir)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    restore_rng(checkpoint["rng"])
    progress.update({key: checkpoint[key] for key in progress})
    print(f"cmrepro: resuming {run_dir} after epoch {progress['epoch']}", file=sys.stderr)
    return checkpoint


def _epochs(
    cfg, run_dir, data, task, model, runner, optimizer, scheduler, settings, records, logger, progress, analysis
) -> str:
    """Train the remaining epochs; ``"done"`` or ``"diverged"``.

    ``runner`` does the forward passes (``model`` or its compiled wrapper); ``model`` is checkpointed and measured.
    """
    epochs = cfg.trainer.epochs
    show = _show_progress(cfg.trainer.progress)
    for epoch in tqdm(
        range(progress["epoch"], epochs),
        desc="epochs",
        initial=progress["epoch"],
        total=epochs,
        disable=not show,
        position=0,
    ):
        started = time.perf_counter()
        lr = optimizer.param_groups[0]["lr"]
        train_loss = _train_epoch(cfg, epoch, data, task, runner, optimizer, settings, show)
        if train_loss is None:
            print(f"cmrepro: non-finite training loss in epoch {epoch + 1}; run marked diverged", file=sys.stderr)
            return "diverged"
        model.eval()
        row = {"epoch": epoch + 1, "train_loss": train_loss, **task.evaluate(runner, data.val, settings), "lr": lr}
        if not math.isfinite(row["val_loss"]):
            print(f"cmrepro: non-finite validation loss in epoch {epoch + 1}; run marked diverged", file=sys.stderr)
            return "diverged"
        progress["best"] = _better(progress["best"], row[task.monitor], task.mode)
        row[f"best_{task.monitor}"] = progress["best"]
        row.update(analysis.compute(epoch + 1, model, optimizer))
        row["epoch_time_s"] = time.perf_counter() - started
        progress["epoch"] = epoch + 1
        progress["wall_time"] += row["epoch_time_s"]
        records.append_metrics(row)
        logger.log(row, step=epoch + 1)
        scheduler.step()
        if cfg.trainer.checkpoint:
            save_atomic(
                dict(
                    model=model.state_dict(),
                    optimizer=optimizer.state_dict(),
                    scheduler=scheduler.state_dict(),
                    rng=rng_state(),
                    config=OmegaConf.to_container(cfg),
                    metrics=analysis.state_dict(),
                    **progress,
                ),
                run_dir / CHECKPOINT,
            )
    return "done"


def _train_epoch(cfg, epoch, data, task, model, optimizer, settings, show) -> float | None:
    """Mean training loss of the epoch, or None as soon as it is not finite."""
    model.train()
    task.begin_epoch()
    batches = data.train(epoch)
    limit = cfg.trainer.max_steps_per_epoch
    steps = min(len(batches), limit) if limit else len(batches)
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


def _better(best: float | None, value: float, mode: str) -> float:
    if best is None:
        return value
    return max(best, value) if mode == "max" else min(best, value)


def _summary(rows: list[dict], monitor: str | None = None, mode: str = "max") -> dict:
    """Epochs completed, the best epoch by ``monitor`` and the last row."""
    if not rows:
        return {"epochs_completed": 0, "best": None, "final": None}
    monitor = monitor or next(key[len("best_") :] for key in rows[-1] if key.startswith("best_"))
    best_row = (max if mode == "max" else min)(rows, key=lambda row: row[monitor])
    return {
        "epochs_completed": rows[-1]["epoch"],
        "monitor": monitor,
        "best": {monitor: best_row[monitor], "epoch": best_row["epoch"]},
        "final": rows[-1],
    }


def _base_result(cfg, config: dict) -> dict:
    return {
        "status": "running",
        "seed": cfg.seed,
        "cmrepro_version": __version__,
        "git_commit": git_commit(),
        "config": config,
    }


def _check_same_run(saved: dict, current: dict, run_dir: Path) -> None:
    def strip(config: dict) -> dict:
        config = OmegaConf.create(config)
        for key in RESUMABLE_DIFFERENCES:
            parent, _, leaf = key.rpartition(".")
            node = OmegaConf.select(config, parent) if parent else config
            if node is not None and leaf in node:
                node.pop(leaf)
        return OmegaConf.to_container(config)

    a, b = strip(saved), strip(current)
    if a != b:
        differing = sorted(_differences(a, b))
        raise ConfigError(
            f"{run_dir} holds a run with a different config (differs in: {', '.join(differing[:5])}); "
            "choose another run_dir or delete that one"
        )


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _show_progress(setting) -> bool:
    return sys.stderr.isatty() if setting == "auto" else bool(setting)
