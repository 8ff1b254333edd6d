"""Where a run's rows go besides metrics.jsonl: one line per epoch on the terminal (short) and in
the log (every number), and nowhere else (``logger=local``) or Weights & Biases."""

from __future__ import annotations

import math
import os
import uuid
from pathlib import Path

from .console import epoch_summary, say

# The per-epoch columns every line shows first; the rest (analysis metrics) follow by name.
_LEADING = (
    "train_loss",
    "val_loss",
    "val_accuracy",
    "best_val_accuracy",
    "val_perplexity",
    "best_val_perplexity",
    "lr",
)
_LAST = ("epoch_time_s",)
_NOT_SHOWN = ("epoch", "task", "task_name")


def epoch_line(row: dict, total_epochs: int) -> str:
    """``row`` (a metrics.jsonl row) as one line: the epoch, losses, the monitored metric and its
    best so far, the learning rate, the time, then every other number (the analysis metrics)."""
    parts = [f"epoch {row['epoch']}/{total_epochs}"]
    rest = sorted(k for k in row if k not in (*_LEADING, *_LAST, *_NOT_SHOWN))
    keys = [k for k in _LEADING if k in row] + rest + [k for k in _LAST if k in row]
    for key in keys:
        value = row[key]
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        parts.append(f"{key} {_number(value)}")
    return "  ".join(parts)


def _number(value: float) -> str:
    if isinstance(value, int) or not math.isfinite(value):
        return str(value)
    return f"{value:.4g}" if abs(value) < 1e-3 or abs(value) >= 1e5 else f"{value:.4f}".rstrip("0").rstrip(".")


def log_epoch(row: dict, total_epochs: int, monitor: str, tasks: int | None = None) -> None:
    """``row`` on stderr as a short line (:func:`~.console.epoch_summary`), terminal or not (nohup,
    Slurm, CI), and whole in train.log (:func:`epoch_line`), so a person can follow a run from either."""
    say(epoch_summary(row, total_epochs, monitor, tasks), record=epoch_line(row, total_epochs), detail=True)


class NullLogger:
    """The local logger: metrics.jsonl and result.json already hold everything."""

    def log(self, row: dict, step: int) -> None:
        pass

    def finish(self) -> None:
        pass


class WandbLogger:
    """Weights & Biases, offline unless configured otherwise; never fails the run."""

    def __init__(self, cfg, run_dir: Path, config: dict) -> None:
        import wandb

        id_file = run_dir / "wandb_id"
        # The same id on every resume, so wandb appends to one run.
        run_id = id_file.read_text().strip() if id_file.exists() else uuid.uuid4().hex[:12]
        id_file.write_text(run_id)
        self.run = wandb.init(
            project=cfg.get("project", "cmrepro"),
            entity=cfg.get("entity"),
            mode=os.environ.get("WANDB_MODE", cfg.get("mode", "offline")),
            dir=str(run_dir),
            config=config,
            id=run_id,
            resume="allow",
        )

    def log(self, row: dict, step: int) -> None:
        self.run.log(row, step=step)

    def finish(self) -> None:
        self.run.finish()


def make_logger(cfg, run_dir: Path, config: dict):
    if cfg["name"] == "local":
        return NullLogger()
    try:
        return WandbLogger(cfg, run_dir, config)
    except Exception as error:  # no network, no login, bad settings: keep training, say so
        message = " ".join(str(error).split())[:200]
        say(
            f"wandb unavailable ({type(error).__name__}); logging to the run directory only",
            record=f"wandb logging is off for this run: {type(error).__name__}: {message}",
        )
        return NullLogger()
