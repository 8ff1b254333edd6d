"""What a run leaves in its directory: metrics.jsonl, result.json, and the loggers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import warnings
from pathlib import Path

from ..run_files import METRICS, RESULT, read_jsonl


class RunRecords:
    """Append-only per-epoch metrics and the final result, both safe to re-write on resume."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.metrics_path = run_dir / METRICS
        self.result_path = run_dir / RESULT

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def keep_epochs(self, epochs_done: int) -> None:
        """Drop rows of epochs after the checkpoint: a killed run may have logged an epoch it did not save."""
        rows = [row for row in self.read_metrics() if row["epoch"] <= epochs_done]
        _write_atomic(self.metrics_path, "".join(json.dumps(row) + "\n" for row in rows))

    def append_metrics(self, row: dict) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a") as file:
            file.write(json.dumps(row) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def read_result(self) -> dict | None:
        if not self.result_path.exists():
            return None
        try:
            return json.loads(self.result_path.read_text())
        except json.JSONDecodeError:
            return None  # a torn or hand-edited result: the run is simply redone

    def write_result(self, result: dict) -> None:
        _write_atomic(self.result_path, json.dumps(result, indent=2) + "\n")

    def finished(self) -> bool:
        """Whether the directory holds a run that ended (done or diverged)."""
        previous = self.read_result()
        return previous is not None and previous.get("status") in ("done", "diverged")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def git_commit() -> str | None:
    """The commit of the cmrepro checkout, if it is one."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


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
