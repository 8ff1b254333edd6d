"""The run's checkpoint: what it holds, written atomically, loaded without running code, and the
random-number states it carries.

One payload for both loops (:func:`save_checkpoint`): the model, the optimizer, every random
generator, the resolved config, the analysis metrics' state and the :class:`~.run_state.RunState`
fields as top-level keys. Its file name is :data:`cmrepro.run_files.CHECKPOINT`.

A checkpoint lies in a run directory that others may write (a shared project directory), so it is
loaded with ``weights_only=True``: tensors, numbers, strings and containers, never an object
whose unpickling runs code. Every random state is stored in those terms (numpy's and Python's as
tensors and numbers), so a checkpoint needs nothing else; one written before that (numpy's state as
an ndarray) loads with numpy's array types allowed and nothing more (:data:`LEGACY_GLOBALS`).
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.optim import Optimizer

from ..run_files import CHECKPOINT, atomic_file, write_failure
from .distributed import ONE_PROCESS, DistEnv
from .run_state import RunState

# What a checkpoint written before the random states were tensors names besides torch's own types:
# numpy's RNG state array (its reconstructor, array and dtype types; the name the reconstructor had
# under numpy 1 too). Building an array runs no code of the file's choosing.
_RECONSTRUCT = np.array(0).__reduce__()[0]
LEGACY_GLOBALS = [
    _RECONSTRUCT,
    (_RECONSTRUCT, "numpy.core.multiarray._reconstruct"),
    np.ndarray,
    np.dtype,
    type(np.dtype(np.uint32)),
]


class CheckpointError(Exception):
    """A checkpoint exists but cannot be used; one line saying which and what to do."""


def save_atomic(payload: dict, path: Path) -> None:
    """Write ``payload`` next to ``path`` and rename it into place (:func:`~cmrepro.run_files.atomic_file`).

    A run killed while saving leaves the previous checkpoint intact. A write that
    fails (a full disk shows up from torch.save as "unexpected pos ...") is a
    CheckpointError naming the file and the space left, not torch's message alone.
    """
    try:
        with atomic_file(path) as file:
            torch.save(payload, file)
    except (OSError, RuntimeError) as error:
        raise CheckpointError(
            write_failure(path, error, "the previous checkpoint, if any, is intact", what="checkpoint")
        ) from error


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

    In a distributed run every process calls it (to hand its generators to rank 0) and rank 0
    writes the one checkpoint; the model and optimizer state are the same on every process."""
    device = model_device(model)
    rank_rng = gather_rank_rng(env, device)
    if not env.is_main:
        return
    payload = dict(
        rank_rng=rank_rng,
        model=model.state_dict(),
        optimizer=optimizer.state_dict(),
        # Kept for a layout every cmrepro checkpoint shares; the learning rate is a function of the
        # epoch (.schedule), so there is no scheduler state to save.
        scheduler=None,
        rng=rng_state(device),
        config=config,
        metrics=metrics,
        **state.checkpoint_entries(),
    )
    save_atomic(payload, run_dir / CHECKPOINT)


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0][:120]


def load_checkpoint(path: Path) -> dict | None:
    """The checkpoint at ``path``, ``None`` if there is none; CheckpointError (one line) if it is
    unreadable, is not a cmrepro checkpoint, or names anything ``weights_only`` refuses (then
    nothing of it has run)."""
    if not path.exists():
        return None
    try:
        with torch.serialization.safe_globals(LEGACY_GLOBALS):
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # any unpickling failure or refusal means the same thing here
        raise CheckpointError(
            f"checkpoint {path} is unreadable or holds more than a checkpoint does, and was not loaded "
            f"({type(error).__name__}: {_first_line(error)}); delete it to restart the run from scratch"
        ) from None
    required = {"epoch", "model", "optimizer", "scheduler", "rng", "config"}
    missing = required - set(payload) if isinstance(payload, dict) else None
    if missing is None or missing:
        raise CheckpointError(
            f"checkpoint {path} is not a cmrepro checkpoint (lacks {sorted(missing or [])}); delete it"
        )
    return payload


def rng_state(device: torch.device | None = None) -> dict:
    """Every generator a training step may draw from, as tensors and numbers; the CUDA generator of
    ``device`` (this process's GPU) when it is one."""
    version, words, gauss = random.getstate()
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": {"version": version, "state": torch.tensor(words, dtype=torch.int64), "gauss": gauss},
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(position),
            "has_gauss": int(has_gauss),
            "gauss": float(cached),
        },
        **_own_generators(device),
    }


def _own_generators(device: torch.device | None) -> dict:
    """This process's torch generator and, on a GPU, that GPU's (``cuda``: None elsewhere)."""
    on_gpu = device is not None and device.type == "cuda"
    return {"torch": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if on_gpu else None}


def restore_rng(
    state: dict, rank_states: list | None = None, env: DistEnv = ONE_PROCESS, device: torch.device | None = None
) -> None:
    """Every generator as ``state`` (rank 0's) has it; in a distributed run, each process's torch
    and GPU generators as ``rank_states`` (:func:`gather_rank_rng`) has them, when the checkpoint was
    written by as many processes (else the torch generator is seeded afresh for the rank and the
    GPU's keeps its seeding: a resume with another process count is not exact where the loaders
    augment on torch's generator). ``device``: this process's, whose CUDA generator is restored."""
    _restore_python(state["python"])
    _restore_numpy(state["numpy"])
    own = state
    if env.enabled and not env.is_main:
        if rank_states is not None and len(rank_states) == env.world_size:
            own = _rank_entry(rank_states[env.rank])
        else:
            own = {"torch": None, "cuda": None}
            torch.manual_seed(_derived_seed(state["torch"], env.rank))
    if own["torch"] is not None:
        torch.set_rng_state(own["torch"])
    _restore_cuda(own.get("cuda"), device)


def _restore_python(saved) -> None:
    if isinstance(saved, dict):
        saved = (saved["version"], tuple(saved["state"].tolist()), saved["gauss"])
    random.setstate(saved)  # else the tuple random.getstate() gave (older checkpoints)


def _restore_numpy(saved) -> None:
    if isinstance(saved, dict):
        keys = saved["keys"].numpy().astype(np.uint32)
        saved = (saved["kind"], keys, saved["pos"], saved["has_gauss"], saved["gauss"])
    np.random.set_state(saved)  # else the tuple np.random.get_state() gave (older checkpoints)


def _rank_entry(saved) -> dict:
    """One process's entry of ``rank_rng``: its generators; older checkpoints hold its torch one alone."""
    return saved if isinstance(saved, dict) else {"torch": saved, "cuda": None}


def _restore_cuda(saved, device: torch.device | None) -> None:
    """Set the GPU generator ``saved`` holds: this process's GPU's (a tensor), or, from a checkpoint
    written before there was one per process, the list of every GPU rank 0 saw, of which only the
    GPUs visible now are restored (a resume on fewer GPUs)."""
    if saved is None or not torch.cuda.is_available():
        return
    if isinstance(saved, torch.Tensor):
        if device is not None and device.type == "cuda":
            torch.cuda.set_rng_state(saved, device)
        return
    for index, generator in enumerate(saved[: torch.cuda.device_count()]):
        torch.cuda.set_rng_state(generator, index)


def _derived_seed(generator_state: torch.Tensor, rank: int) -> int:
    """A seed for ``rank`` drawn from rank 0's generator state, drawing nothing from any generator."""
    digest = hashlib.sha256(generator_state.numpy().tobytes() + rank.to_bytes(4, "little")).digest()
    return int.from_bytes(digest[:8], "little")


def gather_rank_rng(env: DistEnv, device: torch.device | None = None) -> list | None:
    """Every process's torch and GPU generator states (:func:`_own_generators`), in rank order
    (every process must call it); None in one process."""
    if not env.enabled:
        return None
    states: list = [None] * env.world_size
    torch.distributed.all_gather_object(states, _own_generators(device))
    return states


def model_device(model: nn.Module) -> torch.device:
    """Where ``model`` trains: the device of its first parameter (CPU for a model without any)."""
    return next((parameter.device for parameter in model.parameters()), torch.device("cpu"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)  # the official CM code draws from numpy's RNG
    torch.manual_seed(seed)
