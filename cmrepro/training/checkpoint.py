"""The run's checkpoint: what it holds, written atomically, and the random-number states it carries.

One payload for both loops (:func:`save_checkpoint`): the model, the optimizer, every random
generator, the resolved config, the analysis metrics' state and the :class:`~.run_state.RunState`
fields as top-level keys. Its file name is :data:`cmrepro.run_files.CHECKPOINT`.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer

from ..run_files import CHECKPOINT
from .distributed import ONE_PROCESS, DistEnv
from .run_state import RunState


class CheckpointError(Exception):
    """A checkpoint exists but cannot be used; one line saying which and what to do."""


def save_atomic(payload: dict, path: Path) -> None:
    """Write ``payload`` next to ``path`` and rename it into place.

    A run killed while saving leaves the previous checkpoint intact. A write that
    fails (a full disk shows up from torch.save as "unexpected pos ...") is a
    CheckpointError naming the file and the space left, not torch's message alone.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            torch.save(payload, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        if isinstance(error, (OSError, RuntimeError)):
            free_mib = shutil.disk_usage(path.parent).free / 2**20
            raise CheckpointError(
                f"could not write checkpoint {path} ({type(error).__name__}: {_first_line(error)}); "
                f"{free_mib:.0f} MiB free on its disk; the previous checkpoint, if any, is intact"
            ) from error
        raise


def save_checkpoint(
    run_dir: Path,
    model: nn.Module,
    optimizer: Optimizer,
    config: dict,
    state: RunState,
    metrics: dict | None = None,
    env: DistEnv = ONE_PROCESS,
) -> None:
    """Checkpoint the run after its latest epoch (``state.epoch``); ``metrics``: the analysis metrics' state.

    In a distributed run every process calls it (to hand its torch generator to rank 0) and rank 0
    writes the one checkpoint; the model and optimizer state are the same on every process."""
    rank_rng = gather_rank_rng(env)
    if not env.is_main:
        return
    payload = dict(
        rank_rng=rank_rng,
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        # Kept for a layout every cmrepro checkpoint shares; the learning rate is a function of the
        # epoch (.schedule), so there is no scheduler state to save.
        scheduler=None,
        rng=rng_state(),
        config=config,
        metrics=metrics,
        **state.checkpoint_entries(),
    )
    save_atomic(payload, run_dir / CHECKPOINT)


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0][:120]


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``, ``None`` if there is none; CheckpointError if unreadable."""
    if not path.exists():
        return None
    try:
        # Our own file: it holds numpy RNG states, which weights_only refuses.
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # any unpickling failure means the same thing here
        raise CheckpointError(
            f"checkpoint {path} is unreadable ({type(error).__name__}: {_first_line(error)}); "
            "delete it to restart the run from scratch"
        ) from error
    missing = {"epoch", "model", "optimizer", "scheduler", "rng"} - set(payload) if isinstance(payload, dict) else None
    if missing is None or missing:
        raise CheckpointError(
            f"checkpoint {path} is not a cmrepro checkpoint (lacks {sorted(missing or [])}); delete it"
        )
    return payload


def rng_state() -> dict:
    """Every generator a training step may draw from."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, rank_states: list | None = None, env: DistEnv = ONE_PROCESS) -> None:
    """Every generator as ``state`` (rank 0's) has it; in a distributed run, each process's torch
    generator as ``rank_states`` (:func:`gather_rank_rng`) has it, when the checkpoint was written
    by as many processes (else it is seeded afresh for the rank: a resume with another process
    count is not exact where the loaders augment on torch's generator)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if env.enabled and not env.is_main:
        if rank_states is not None and len(rank_states) == env.world_size:
            torch.set_rng_state(rank_states[env.rank])
        else:
            torch.manual_seed(_derived_seed(state["torch"], env.rank))


def _derived_seed(generator_state: torch.Tensor, rank: int) -> int:
    """A seed for ``rank`` drawn from rank 0's generator state, drawing nothing from any generator."""
    digest = hashlib.sha256(generator_state.numpy().tobytes() + rank.to_bytes(4, "little")).digest()
    return int.from_bytes(digest[:8], "little")


def gather_rank_rng(env: DistEnv) -> list | None:
    """Every process's torch generator state, in rank order (every process must call it); None in one process."""
    if not env.enabled:
        return None
    states: list = [None] * env.world_size
    torch.distributed.all_gather_object(states, torch.get_rng_state())
    return states


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # the official CM code draws from numpy's RNG
    torch.manual_seed(seed)
