"""What every run does around its epochs, whichever loop trains it: seed torch, say what starts,
load the data, resume from the checkpoint, open the run's records, and describe the run in result.json.

The supervised loop (:mod:`.supervised`) and the task-stream loop (:mod:`.streams`) both build
on these, so they checkpoint, resume and record alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import TypeVar

import torch
from omegaconf import OmegaConf
from torch import nn
from torch.optim import Optimizer

from .. import __version__
from ..data import DataContext, build_data
from ..data.base import epoch_seed, shard_bundle
from ..data.fingerprint import dataset_fingerprint
from ..run_files import CHECKPOINT, RUNNING, RunRecords
from ..run_identity import without_incidental
from ..seeds import SeedStream
from .checkpoint import load_checkpoint, model_device, restore_rng, seed_everything
from .checks import ConfigError
from .console import resume_line, say, setup_line, start_line
from .distributed import ONE_PROCESS, DistEnv, init_distributed
from .loggers import NullLogger, WandbLogger, make_logger
from .run_state import RunState
from .steps import StepSettings

State = TypeVar("State", bound=RunState)


def setup_torch(cfg, env: DistEnv) -> StepSettings:
    """Seed every generator, apply ``trainer.deterministic`` and, in a distributed run (``env``),
    join the process group; the device (this process's GPU) and step settings."""
    seed_everything(cfg.seed)
    if cfg.trainer.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
    device = _device(cfg.trainer.device)
    if env.enabled:
        device = init_distributed(env, device, timedelta(seconds=cfg.trainer.dist_timeout_s))
    if device.type == "cuda" and not cfg.trainer.deterministic:
        # The image models see one batch shape (the last, smaller batch aside): let cuDNN time its
        # convolution algorithms once and keep the fastest.
        torch.backends.cudnn.benchmark = True
    return StepSettings(device, cfg.trainer.precision, cfg.trainer.grad_clip)


def numerics() -> dict:
    """How float32 arithmetic ran (result.json): TF32 in matrix products and convolutions changes
    results in the fourth digit, so a run records whether it was allowed."""
    return {
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
    }


def seed_rank(seed: int, env: DistEnv) -> None:
    """After the model is built (the same on every process, from the run seed): give the processes
    other than rank 0 torch generators of their own, so that they crop and flip the images they
    load independently. Rank 0 keeps the single-process stream; numpy's (the buffer's
    replacement draws) stays the same on every process."""
    if env.enabled and not env.is_main:
        torch.manual_seed(epoch_seed(seed, env.rank, SeedStream.RANK))


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def load_data(cfg, device: torch.device, run_dir: Path):
    """The run's data (``build_data``) for training on ``device``, recording what it skips in
    ``run_dir``, and the fingerprint of its files (``dataset_fingerprint``, None for data made in
    memory); a dataset value the data module refuses is a ConfigError."""
    try:
        data = build_data(cfg.dataset, seed=cfg.seed, context=DataContext(device, run_dir))
        # After the build: a dataset.download=true run has its files only now.
        return data, dataset_fingerprint(OmegaConf.to_container(cfg.dataset))
    except ValueError as error:
        raise ConfigError(str(error)) from None


def resume(
    run_dir: Path,
    config: dict,
    model: nn.Module,
    optimizer: Optimizer,
    state_type: type[State],
    fingerprint: dict | None,
    env: DistEnv,
) -> tuple[State, dict | None]:
    """Load ``run_dir``'s checkpoint, if there is one, into the model, the optimizer and the random
    generators. ``(its state_type, the checkpoint for the caller's other state)``; a fresh state
    and None without one. ``fingerprint``: the data's, which must be the checkpoint's (the data
    may have moved, not changed). In a distributed run (``env``) every process loads the same
    checkpoint and takes its own torch and GPU generators back from it."""
    checkpoint = load_checkpoint(run_dir / CHECKPOINT)
    if checkpoint is None:
        return state_type(data_fingerprint=fingerprint), None
    check_same_run(checkpoint["config"], config, run_dir)
    check_same_data(checkpoint.get("data_fingerprint"), fingerprint, run_dir, config)
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])
    restore_rng(checkpoint["rng"], checkpoint.get("rank_rng"), env, model_device(model))
    state = state_type.from_checkpoint(checkpoint)
    state.data_fingerprint = fingerprint
    return state, checkpoint


def announce_start(run_dir: Path, device: torch.device, env: DistEnv) -> None:
    """The first start line (:func:`~.console.start_line`), on rank 0: said before the data is
    loaded and the model built, which take their time."""
    if env.is_main:
        say(start_line(run_dir, str(device), (run_dir / CHECKPOINT).exists(), env.world_size), detail=True)


def announce_setup(cfg, model: nn.Module, state: RunState, steps: int | None, env: DistEnv, tasks=None) -> None:
    """The second start line (:func:`~.console.setup_line`), on rank 0, once the model is built and
    its checkpoint (``state``) loaded, and where it resumes (:func:`~.console.resume_line`);
    ``steps`` per epoch, ``tasks`` of a task stream."""
    if env.is_main:
        parameters = sum(parameter.numel() for parameter in model.parameters())
        say(setup_line(cfg.model, parameters, cfg.optimizer, cfg.trainer.epochs, steps, tasks), detail=True)
        if state.epoch or state.step:
            say(resume_line(state.epoch, state.step), detail=True)


def steps_per_epoch(train, max_steps: int | None) -> int | None:
    """The steps of an epoch of the training loader ``train`` (``trainer.max_steps_per_epoch``
    caps them); None for a loader that cannot tell."""
    try:
        steps = len(train)
    except TypeError:
        return None
    return min(steps, max_steps) if max_steps else steps


def check_same_run(saved: dict, current: dict, run_dir: Path) -> None:
    """ConfigError unless ``saved`` (the config of what ``run_dir`` holds) and ``current`` are the
    same run: equal but for the incidental keys (:mod:`cmrepro.run_identity`)."""
    a, b = without_incidental(saved), without_incidental(current)
    if a != b:
        differing = sorted(_differences(a, b))
        raise ConfigError(
            f"{run_dir} holds a run with a different config (differs in: {', '.join(differing[:5])}); "
            "choose another run_dir or delete that one"
        )


def check_same_data(saved: dict | None, current: dict | None, run_dir: Path, config: dict) -> None:
    """ConfigError unless the data files now are those the run started with (same names and sizes,
    wherever they lie); a checkpoint from before fingerprints were recorded is taken on trust."""
    if saved is None or saved == current:
        return
    now = current or {"files": 0, "bytes": 0}
    raise ConfigError(
        f"{run_dir} was trained on other data than {config['dataset'].get('data_dir', 'the dataset now')} holds "
        f"({saved['files']} files, {saved['bytes']} bytes then; {now['files']} files, {now['bytes']} bytes now); "
        "point dataset.data_dir at the run's data, or delete the run directory to start over"
    )


def _differences(a, b, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [d for k in keys for d in _differences(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [prefix.rstrip(".")]


def shard_data(data, env: DistEnv):
    """``data`` as this process of a distributed run sees it: its part of every batch and set
    (``data.base.shard_bundle``); ``data`` itself in one process. ConfigError where it cannot split."""
    if not env.enabled:
        return data
    try:
        return shard_bundle(data, env.shard)
    except ValueError as error:
        raise ConfigError(str(error)) from None


def open_records(
    cfg,
    run_dir: Path,
    records: RunRecords,
    state: RunState,
    summarize: Callable[[list[dict]], dict],
    env: DistEnv = ONE_PROCESS,
) -> tuple[dict, NullLogger | WandbLogger]:
    """Before the first epoch of this process: drop metric rows the checkpoint does not cover,
    start the logger (rank 0's only, in a distributed run), and start the records
    (:meth:`~cmrepro.run_files.RunRecords.start`): the run's launch record, and result.json
    ``running`` with its progress, brought up to date at every epoch's end (a run killed from
    now on is still found, with its config and epochs, by the report). ``(result so far, logger)``."""
    records.keep_epochs(state.epoch)
    config = OmegaConf.to_container(cfg)
    logger = make_logger(cfg.logger, run_dir, config) if env.is_main else NullLogger()
    result = base_result(cfg, config)
    records.start(result, summarize)
    return result, logger


def base_result(cfg, config: dict) -> dict:
    """What result.json says of every run, whatever its status: the seed, the code, the config."""
    return {
        "status": RUNNING,
        "seed": cfg.seed,
        "cmrepro_version": __version__,
        "git_commit": git_commit(),
        "numerics": numerics(),
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
