"""Compose run configs with Hydra's API, and run the CLI in a process of its own."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import warm_python
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from cmrepro.train import CONF_DIR

ROOT = Path(__file__).resolve().parents[1]

# Small and quick on a CPU: a few steps of a few images through a 1/8-width
# network (a full-width ResNet34 checkpoint with Adam+CM state is 732 MiB on disk).
QUICK = [
    "model.width=0.125",
    "dataset.num_train=96",
    "dataset.image_size=16",
    "dataset.num_val=64",
    "dataset.batch_size=32",
    "dataset.eval_batch_size=64",
    "trainer.epochs=3",
    "trainer.lr_milestones=[2]",
    "trainer.progress=false",
    "trainer.keep_checkpoint=true",  # the synthetic_image demo preset drops it at the end; tests read it
]

# A few small tasks, a small CNN: a stream run in about a second.
QUICK_STREAM = [
    "dataset=synthetic_stream",
    "dataset.num_tasks=3",
    "dataset.image_size=16",
    "dataset.num_train=40",
    "dataset.num_val=20",
    "model.channels=16",
    "model.hidden=32",
    "trainer.epochs=2",
    "trainer.progress=false",
]


def metric_rows(run_dir: Path) -> list[dict]:
    """A run's metrics.jsonl rows without their timings: what two runs that compute alike share."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{key: value for key, value in row.items() if not key.endswith("_time_s")} for row in rows]


def compose_run(overrides: list[str], run_dir: Path) -> dict:
    """The resolved config ``python -m cmrepro.train <overrides>`` would run, with ``run_dir``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[*overrides, f"run_dir={run_dir}"])
    return OmegaConf.to_container(cfg, resolve=True)


def run_cli(args: list[str], env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python -m cmrepro.train args``, in a process of its own (tests/warm_python.py: one that
    starts with its imports done), its output captured."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return warm_python.run_module("cmrepro.train", args, cwd=ROOT, env=environment, timeout=timeout)
