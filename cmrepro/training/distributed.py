"""Distributed data-parallel training: which process this is (torchrun or Slurm), its process
group, the model wrapper, exact sums over the ranks, and how a failed rank ends the job.

One process per device, each holding the whole model; ``dataset.batch_size`` stays the global
batch, of which every rank takes its contiguous part (:class:`~cmrepro.data.base.Shard`), so a
run on N processes computes what one process computes at the same batch size:

    env = DistEnv.from_environ()
    with exit_on_failure(env):
        device = init_distributed(env, settings.device)      # one process: the device, unchanged
        model = model.to(device)
        if env.enabled:
            data = shard_bundle(data, env.shard)             # cmrepro.data.base
            model = convert_sync_batchnorm(model, device)
        model = wrap_model(model, env, device)               # DistributedDataParallel when enabled
        ...  # loss = mean loss of the local batch * data.train.loss_weight(step), inside the closure
        ...  # evaluate unwrap(model); reduce_sums(torch.stack([loss_sum, correct, count]))
        shutdown_distributed()

Without torchrun's or Slurm's variables nothing changes: one process, no process group, the
model unwrapped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from ..cli import print_traceback_if_asked
from ..data.base import Shard
from .sync_batchnorm import convert_to_cpu_sync

# How long a collective waits for the other ranks before it fails: the bound on how long the
# others survive a rank that died (NCCL's watchdog then ends them; gloo raises, usually at once
# because the dead rank's connections close). Long enough for rank 0's own work between
# collectives (evaluation, analysis metrics, checkpoints) on big models.
DEFAULT_TIMEOUT = timedelta(minutes=10)

# Slurm sets no rendezvous port. The default port is offset by the job id so that two jobs
# sharing a node do not both try to listen on one port (submitit derives its port from the job
# id for the same reason); below Linux's ephemeral range (32768+).
BASE_MASTER_PORT = 20000
MASTER_PORT_SPAN = 10000
TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class DistEnv:
    """This process's place among the processes of a run.

    ``launcher``: "torchrun" (torchrun's variables, also any launcher that sets them), "slurm"
    (``srun`` with several tasks, submitit included) or None (one process).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: str | None = None
    master_addr: str | None = None
    master_port: int | None = None

    @property
    def enabled(self) -> bool:
        """Whether this process runs in a process group (also a torchrun group of one)."""
        return self.world_size > 1 or self.launcher == "torchrun"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one that writes the run's files and logs."""
        return self.rank == 0

    @property
    def shard(self) -> Shard:
        """This rank's part of the data."""
        return Shard(self.rank, self.world_size)

    @classmethod
    def from_environ(
        cls,
        environ: Mapping[str, str] | None = None,
        hostnames: Callable[[str], list[str]] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> DistEnv:
        """Read torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
        ``MASTER_PORT``; else, in a Slurm job step of several tasks (``srun``; ``SLURM_NTASKS`` > 1
        and ``SLURM_STEP_NUM_TASKS`` > 1), ``SLURM_PROCID``, ``SLURM_STEP_NUM_TASKS`` and
        ``SLURM_LOCALID``, the master host being ``MASTER_ADDR`` or the first host of
        ``SLURM_JOB_NODELIST`` (``hostnames``, by default ``scontrol show hostnames``) and the port
        ``MASTER_PORT`` or one derived from ``SLURM_JOB_ID``; else one process (with a line to
        ``warn``, stderr by default, when a job of several tasks runs this outside such a step).
        ValueError (one line) for a variable that is missing or not a number."""
        warn = warn or _print_to_stderr
        environ = os.environ if environ is None else environ
        if "RANK" in environ or "WORLD_SIZE" in environ:
            missing = [name for name in TORCHRUN_VARIABLES if name not in environ]
            if missing:
                raise ValueError(
                    f"RANK/WORLD_SIZE are set but {', '.join(missing)} not: launch with torchrun, "
                    f"or set all of {', '.join(TORCHRUN_VARIABLES)}"
                )
            return cls(
                rank=_integer(environ, "RANK"),
                world_size=_integer(environ, "WORLD_SIZE"),
                local_rank=_integer(environ, "LOCAL_RANK"),
                launcher="torchrun",
                master_addr=environ["MASTER_ADDR"],
                master_port=_integer(environ, "MASTER_PORT"),
            )
        if _integer(environ, "SLURM_NTASKS", 1) > 1:
            step_tasks = _integer(environ, "SLURM_STEP_NUM_TASKS", 1)
            if step_tasks == 1:
                # The batch script itself (python without srun) or a one-task step: the job's
                # other tasks never start, so a process group would wait for them until its timeout.
                warn(
                    f"cmrepro.train: SLURM_NTASKS={environ['SLURM_NTASKS']} but this job step runs one task "
                    f"(SLURM_STEP_NUM_TASKS={environ.get('SLURM_STEP_NUM_TASKS', 'unset')}): training in one "
                    "process; start it with srun (or the submitit launcher) to use every task"
                )
                return cls()
            return cls(
                rank=_integer(environ, "SLURM_PROCID"),
                world_size=step_tasks,
                local_rank=_integer(environ, "SLURM_LOCALID"),
                launcher="slurm",
                master_addr=environ.get("MASTER_ADDR") or _first_host(environ, hostnames or slurm_hostnames),
                master_port=_integer(environ, "MASTER_PORT", _slurm_port(environ)),
            )
        return cls()


ONE_PROCESS = DistEnv()  # a run without a process group


def _print_to_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def cuda_device(env: DistEnv, visible: int) -> torch.device:
    """This process's GPU among the ``visible`` ones: ``cuda:LOCAL_RANK`` when each process sees
    every GPU of its node (torchrun, srun), ``cuda:0`` when it sees exactly one (Slurm's
    ``--gpus-per-task=1`` or ``--gpu-bind`` hand each task its own GPU while ``SLURM_LOCALID``
    still counts the node's tasks). ValueError (one line) when neither holds."""
    if visible == 1:
        return torch.device("cuda", 0)
    if 0 <= env.local_rank < visible:
        return torch.device("cuda", env.local_rank)
    shown = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
    raise ValueError(
        f"rank {env.rank} is local rank {env.local_rank} on its node but sees {visible} GPUs "
        f"(CUDA_VISIBLE_DEVICES={shown}): start at most {visible} processes per node, or give each "
        "process one GPU (srun --gpus-per-task=1)"
    )


def _integer(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = environ.get(name)
    if value is None:
        if default is None:
            raise ValueError(f"environment variable {name} is not set; the launcher (torchrun, srun) sets it")
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} must be an integer") from None


def _slurm_port(environ: Mapping[str, str]) -> int:
    job = environ.get("SLURM_JOB_ID", "")
    return BASE_MASTER_PORT + (int(job) % MASTER_PORT_SPAN if job.isdigit() else 0)


def _first_host(environ: Mapping[str, str], hostnames: Callable[[str], list[str]]) -> str:
    nodelist = environ.get("SLURM_JOB_NODELIST")
    if not nodelist:
        raise ValueError("SLURM_JOB_NODELIST is not set, so the master host is unknown; set MASTER_ADDR")
    hosts = hostnames(nodelist)
    if not hosts:
        raise ValueError(f"SLURM_JOB_NODELIST={nodelist!r} names no host; set MASTER_ADDR")
    return hosts[0]


def slurm_hostnames(nodelist: str) -> list[str]:
    """The hosts of a Slurm node list (``node[01-03]``), by ``scontrol show hostnames``."""
    try:
        done = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=30, check=True
        )
    except (OSError, subprocess.SubprocessError) as error:
        raise ValueError(
            f"cannot list the hosts of SLURM_JOB_NODELIST={nodelist!r} with scontrol ({error}); set MASTER_ADDR"
        ) from None
    return done.stdout.split()


def init_distributed(env: DistEnv, device: torch.device | str, timeout: timedelta = DEFAULT_TIMEOUT) -> torch.device:
    """Join the run's process group (NCCL on CUDA, gloo otherwise) and return this rank's
    device: its GPU (:func:`cuda_device`), made current, on CUDA; ``device`` itself otherwise, and
    unchanged, with no group, when ``env`` is not :attr:`~DistEnv.enabled`.

    ``timeout``: how long any collective, the rendezvous included, waits for the other ranks
    before it fails, so that one failed rank ends the others in bounded time.
    """
    device = torch.device(device)
    if not env.enabled:
        return device
    if device.type == "cuda":
        device = cuda_device(env, torch.cuda.device_count())
        torch.cuda.set_device(device)
    # init_process_group's env:// rendezvous reads these; torchrun has set them already, and
    # its own store (TORCHELASTIC_USE_AGENT_STORE) is only found that way.
    for name, value in (
        ("MASTER_ADDR", env.master_addr),
        ("MASTER_PORT", env.master_port),
        ("RANK", env.rank),
        ("WORLD_SIZE", env.world_size),
        ("LOCAL_RANK", env.local_rank),
    ):
        os.environ.setdefault(name, str(value))
    dist.init_process_group(
        backend="nccl" if device.type == "cuda" else "gloo",
        rank=env.rank,
        world_size=env.world_size,
        timeout=timeout,
        device_id=device if device.type == "cuda" else None,
    )
    return device


def shutdown_distributed() -> None:
    """Leave the process group, if this process is in one."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def convert_sync_batchnorm(model: nn.Module, device: torch.device | str) -> nn.Module:
    """``model`` with its BatchNorm layers normalising over the global batch while training in a
    process group: torch's ``nn.SyncBatchNorm`` on CUDA, :class:`~.sync_batchnorm.CPUSyncBatchNorm`
    elsewhere (torch's has no CPU kernels). Parameters and running statistics are the same
    tensors, so call it before building the optimizer or after, but before :func:`wrap_model`.
    Outside a process group both behave as plain BatchNorm."""
    if torch.device(device).type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return convert_to_cpu_sync(model)


def wrap_model(model: nn.Module, env: DistEnv, device: torch.device) -> nn.Module:
    """``model`` (already on ``device``) in DistributedDataParallel when ``env`` is enabled,
    else ``model`` itself. DDP makes every rank start from rank 0's parameters and buffers and
    averages the gradients over the ranks in ``backward()``, SAM's second backward included."""
    if not env.enabled:
        return model
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper; any other model itself."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def reduce_sums(sums: Tensor) -> Tensor:
    """``sums`` added over the ranks, in place (and returned); unchanged in one process.

    For exact metrics reduce sums, never means: e.g. ``torch.stack([loss_sum, correct, count])``
    in float64, then divide. Every rank must call it, with the same shape, on its device.
    """
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(sums)
    return sums


def agree_any(flag: bool, device: torch.device | str) -> bool:
    """Whether ``flag`` holds on any process (one all-reduce in a process group; ``flag`` alone
    without one), so that every process takes the same decision. Every rank must call it."""
    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    return bool(reduce_sums(torch.tensor([float(flag)], device=device)).item() > 0)


@contextmanager
def exit_on_failure(
    env: DistEnv, program: str = "cmrepro.train", expected: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """In a process group, an exception inside the block becomes one line on stderr,
    ``<program>: rank R of N failed: <Type>: <message>``, and the process exits with code 1
    at once. One process: exceptions pass through unchanged.

    The exit skips the interpreter's shutdown (``os._exit``): that would wait for the process
    group's threads and collectives, which the other ranks may never join. The other ranks then
    fail in their next collective, at once under gloo (this rank's connections close) and within
    the group's timeout under NCCL (:func:`init_distributed`). ``SystemExit`` passes through.
    """
    if not env.enabled:
        yield
        return
    try:
        yield
    except (SystemExit, *expected):  # handled by the caller, which ends the process itself
        raise
    except BaseException as error:  # noqa: BLE001 - every failure must end this rank, KeyboardInterrupt too
        print_traceback_if_asked(error)
        message = " ".join(str(error).split())
        print(
            f"{program}: rank {env.rank} of {env.world_size} failed: {type(error).__name__}: {message}", file=sys.stderr
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)
