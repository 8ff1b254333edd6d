"""Where a run's rows go besides metrics.jsonl: nowhere (``logger=local``) or Weights & Biases."""

from __future__ import annotations

import os
import sys
import uuid
import warnings
from pathlib import Path


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
        warnings.warn(f"wandb logging is off for this run: {type(error).__name__}: {error}", stacklevel=2)
        print(f"cmrepro: wandb unavailable ({type(error).__name__}); logging to {run_dir} only", file=sys.stderr)
        return NullLogger()
