"""One training epoch, the same for both loops: its steps, its mean loss, the finite-loss check,
and stopping at a step boundary when a signal asks the run to stop (:mod:`.interrupts`)."""

from __future__ import annotations

import math
import os
import signal
from collections.abc import Callable, Sized
from dataclasses import dataclass

import torch
from torch import nn
from torch.optim import Optimizer
from tqdm import tqdm

from .distributed import ONE_PROCESS, DistEnv, reduce_sums
from .interrupts import Interrupted, StopRequest
from .run_state import RunState
from .steps import StepSettings

# Finite-loss checks read the loss on the host: every this many steps, not every step.
CHECK_EVERY = 50
# In a distributed run the processes agree on stopping every this many steps (one all-reduce of
# two numbers): a signal is answered within a few seconds, and the steps between do not wait.
SYNC_EVERY = 10


@dataclass(frozen=True)
class EpochOutcome:
    """How an epoch ended: its mean training loss (None if not finite), or stopped part-way."""

    mean_loss: float | None
    stopped: bool = False


def resumes_mid_epoch(train: Callable[[int], Sized]) -> bool:
    """Whether a run on the loader ``train`` can checkpoint inside an epoch and resume there
    exactly: its epochs can start at any step without reading the batches before it."""
    return bool(getattr(train, "resumes_mid_epoch", False))


def stop_inside_epoch(
    train: Callable[[int], Sized],
    epoch: int,
    progress: RunState,
    seconds: float,
    stop: StopRequest,
    save: Callable[[], None] | None,
) -> Interrupted:
    """The signal ``stop`` stopped epoch ``epoch`` at step ``progress.step`` after ``seconds``:
    ``save`` a checkpoint there when the loader ``train`` can resume inside an epoch (else the last
    epoch's checkpoint stands, and the epoch is trained again); the Interrupted to raise.
    ``save`` None: checkpoints are off."""
    where = f"at step {progress.step} of epoch {epoch + 1}"
    if save is not None and resumes_mid_epoch(train):
        progress.pause_epoch(seconds)
        save()
    else:
        where += f" (a re-run starts epoch {epoch + 1} again)"
    return Interrupted(stop.signum, where)


def train_epoch(
    train: Callable[[int], Sized],
    epoch: int,
    task,
    model: nn.Module,
    optimizer: Optimizer,
    settings: StepSettings,
    *,
    max_steps: int | None,
    show: bool,
    progress: RunState,
    stop: StopRequest | None = None,
    env: DistEnv = ONE_PROCESS,
) -> EpochOutcome:
    """Train epoch ``epoch`` of the loader ``train`` from step ``progress.step`` (not 0 when a run
    resumes inside the epoch), keeping ``progress.step`` and ``progress.epoch_loss`` (the sum of
    the step losses) up to date whenever the epoch stops early.

    ``task`` does the steps (:mod:`.steps`); ``max_steps`` (``trainer.max_steps_per_epoch``)
    cuts the epoch short; ``show``: a progress bar; ``stop``: checked after every step. In a
    distributed run (``env``) every process takes the same decisions at the same step: the loss
    sums and the stop request are added over the processes every :data:`SYNC_EVERY` steps.
    """
    model.train()
    task.begin_epoch()
    batches = train(epoch)
    steps = min(len(batches), max_steps) if max_steps else len(batches)
    done = progress.step
    if done:
        batches = batches.starting_at(done)
    # epoch_loss is the whole run's sum so far; carried by one process, so the sum over processes holds it once.
    carried = progress.epoch_loss * env.world_size if env.is_main else 0.0
    total = torch.tensor(carried, dtype=torch.float64, device=settings.device)
    loss_weight = getattr(train, "loss_weight", None)  # sharded loaders: each step's share (.steps)
    bar = tqdm(batches, total=steps, initial=done, desc=f"epoch {epoch + 1}", leave=False, disable=not show, position=1)
    for batch in bar:
        if done == steps:
            break
        weight = loss_weight(done) if loss_weight is not None else 1.0
        total += task.train_step(model, optimizer, batch, settings, weight)
        done += 1
        _fault_injection(epoch * steps + done)
        if done == steps or not _due(done, stop, env):
            continue
        loss_sum, stopping = _agree(total, stop, env, settings.device)
        if stopping:
            progress.step, progress.epoch_loss = done, loss_sum
            return EpochOutcome(None, stopped=True)
        if done % CHECK_EVERY == 0:
            if not math.isfinite(loss_sum):
                return EpochOutcome(None)
            if show:
                bar.set_postfix(loss=f"{loss_sum / done:.4f}")
    mean = _agree(total, None, env, settings.device)[0] / max(done, 1)
    return EpochOutcome(mean if math.isfinite(mean) else None)


def _due(done: int, stop: StopRequest | None, env: DistEnv) -> bool:
    """Whether to look at the loss and the stop request after step ``done``: in one process when
    a stop was asked (free) or a finite-loss check is due (a host sync); distributed, on a fixed
    schedule, the same on every process."""
    if env.enabled:
        return done % SYNC_EVERY == 0
    return (stop is not None and stop.requested) or done % CHECK_EVERY == 0


def _agree(total: torch.Tensor, stop: StopRequest | None, env: DistEnv, device) -> tuple[float, bool]:
    """``(the sum of the step losses so far, over every process, whether any process was asked to
    stop)``: one all-reduce in a distributed run, nothing to exchange in one process.

    Distributed, each process also says which signal it received (a one-hot over signal numbers):
    a process that received none adopts the lowest-numbered one another did, so a signal sent to
    one rank alone stops every rank at the same step, all ``interrupted`` with the same exit code.
    """
    asked = stop is not None and stop.requested
    if not env.enabled:
        return float(total), asked
    sums = torch.zeros(1 + signal.NSIG, dtype=torch.float64, device=device)
    sums[0] = total
    if asked:
        sums[stop.signum] = 1.0  # entry k (k >= 1): signal number k
    received = reduce_sums(sums)[1:].nonzero().flatten().tolist()
    if received and stop is not None:
        stop.adopt(received[0] + 1)
    # The weighted step losses add up to world_size times the global batch's mean (Shard.loss_weight).
    return float(sums[0]) / env.world_size, bool(received)


def stop_agreed(stop: StopRequest, env: DistEnv, device) -> bool:
    """Between epochs: whether the run stops here. Distributed, the same answer on every process
    (one all-reduce, as inside an epoch, :func:`_agree`): a rank signalled during the last epoch's
    evaluation or checkpoint does not stop alone, leaving the others waiting in a collective."""
    return _agree(torch.zeros((), dtype=torch.float64, device=device), stop, env, device)[1]


def _fault_injection(global_step: int) -> None:
    """Testing hooks: after global step N, CMREPRO_KILL_AT_STEP=N kills this process with SIGKILL
    (only rank R of a distributed run with CMREPRO_KILL_RANK=R); CMREPRO_SIGNAL_AT_STEP=N:NAME
    sends it signal NAME (TERM, INT, USR1, ...; only rank R with CMREPRO_SIGNAL_RANK=R)."""
    target = os.environ.get("CMREPRO_KILL_AT_STEP")
    rank = os.environ.get("CMREPRO_KILL_RANK")
    if target is not None and global_step == int(target) and rank in (None, os.environ.get("RANK")):
        os.kill(os.getpid(), signal.SIGKILL)
    target = os.environ.get("CMREPRO_SIGNAL_AT_STEP")
    if target is not None and os.environ.get("CMREPRO_SIGNAL_RANK") in (None, os.environ.get("RANK")):
        step, _, name = target.partition(":")
        if global_step == int(step):
            os.kill(os.getpid(), getattr(signal, f"SIG{name or 'TERM'}"))
