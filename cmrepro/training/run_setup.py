"""What every run does around its epochs, whichever loop trains it: seed torch, load the data,
resume from the checkpoint, open the run's records, and describe the run in result.json.

The supervised loop (:mod:`.supervised`) and the task-stream loop (:mod:`.streams`) both build
on these, so they checkpoint, resume and record alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.optim import Optimizer

from .. import __version__
from ..data import build_data
from ..run_files import CHECKPOINT, RUNNING, RunRecords
from .checkpoint import load_checkpoint, restore_rng, seed_everything
from .checks import ConfigError
from .loggers import NullLogger, WandbLogger, make_logger
from .run_state import RunState
from .steps import StepSettings

State = TypeVar("State", bound=RunState)

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


def setup_torch(cfg) -> StepSettings:
    """Seed every generator and apply ``trainer.deterministic``; the device and step settings."""
    seed_everything(cfg.seed)
    if cfg.trainer.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    return StepSettings(_device(cfg.trainer.device), cfg.trainer.precision, cfg.trainer.grad_clip)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_data(cfg):
    """The run's data (``build_data``); a dataset value the data module refuses is a ConfigError."""
    try:
        return build_data(cfg.dataset, seed=cfg.seed)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def resume(
    run_dir: Path, config: dict, model: nn.Module, optimizer: Optimizer, state_type: type[State]
) -> tuple[State, dict | None]:
    """Load ``run_dir``'s checkpoint, if there is one, into the model, the optimizer and the random
    generators. ``(its state_type, the checkpoint for the caller's other state)``; a fresh state
    and None without one."""
    checkpoint = load_checkpoint(run_dir / CHECKPOINT)
    if checkpoint is None:
        return state_type(), None
    check_same_run(checkpoint["config"], config, run_dir)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    restore_rng(checkpoint["rng"])
    state = state_type.from_checkpoint(checkpoint)
    print(f"cmrepro: resuming {run_dir} after epoch {state.epoch}", file=sys.stderr)
    return state, checkpoint


def check_same_run(saved: dict, current: dict, run_dir: Path) -> None:
    """ConfigError unless ``saved`` (the config of what ``run_dir`` holds) and ``current`` are the
    same run, up to :data:`RESUMABLE_DIFFERENCES`."""

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


def open_records(
    cfg, run_dir: Path, records: RunRecords, state: RunState, summarize: Callable[[list[dict]], dict]
) -> tuple[dict, NullLogger | WandbLogger]:
    """Before the first epoch of this process: drop metric rows the checkpoint does not cover,
    start the logger, and mark the run ``running`` in result.json (a run killed from now on is
    still found, with its config, by the report). ``(result so far, logger)``."""
    records.keep_epochs(state.epoch)
    config = OmegaConf.to_container(cfg)
    logger = make_logger(cfg.logger, run_dir, config)
    result = base_result(cfg, config)
    records.write_result({**result, **summarize(records.read_metrics())})
    return result, logger


def base_result(cfg, config: dict) -> dict:
    """What result.json says of every run, whatever its status: the seed, the code, the config."""
    return {
        "status": RUNNING,
        "seed": cfg.seed,
        "cmrepro_version": __version__,
        "git_commit": git_commit(),
        "config": config,
    }


def git_commit() -> str | None:
    """The commit of the cmrepro checkout, if it is one."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def show_progress(setting) -> bool:
    """``trainer.progress``: progress bars on a terminal ("auto"), always or never."""
    return sys.stderr.isatty() if setting == "auto" else bool(setting)
