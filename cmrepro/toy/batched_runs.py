"""Run the real ``cmrepro.optim`` optimizers on a toy surface from many initial points.

Each run is a param group of one optimizer, so it keeps its own buffer and
priority key, as a single training run would; groups with equal
hyperparameters are stepped together (``CriticalOptimizer`` fuses them), and
one backward pass computes the gradients of all runs. SAM variants normalise
each run's perturbation by that run's gradient (``group_norm=True``).
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.optim import Optimizer

from ..optim import create_optimizer, needs_closure
from .surfaces import Surface, surface

# Optimizers whose step is elementwise, with no reduction over a param group (no priority key,
# no SAM norm): the runs can share one [runs, dim] parameter in one group, which gives each run
# the arithmetic of a group of its own (tests/test_toy_runs.py) for one step instead of one per run.
ELEMENTWISE = frozenset({"adam", "adamw", "sgd", "adam_meg"})


@dataclass
class Trajectories:
    points: Tensor  # [steps + 1, runs, dim]
    losses: Tensor  # [steps + 1, runs]

    @property
    def final(self) -> Tensor:
        return self.points[-1]


def run(
    surface: Surface,
    optimizer: str,
    hyper: dict,
    starts: Tensor,
    steps: int,
    lr_drop_step: int | None = None,
    lr_drop_factor: float = 0.1,
) -> Trajectories:
    """``steps`` optimizer steps from each row of ``starts`` ``[runs, dim]``; the learning rate is
    multiplied by ``lr_drop_factor`` after ``lr_drop_step`` steps (the paper's step 250 of 500)."""
    start = starts.detach().clone().to(torch.float64)
    if optimizer in ELEMENTWISE:
        params = [start.requires_grad_()]  # one [runs, dim] parameter: one step for all runs

        def current() -> Tensor:
            return params[0]
    else:
        params = [row.clone().requires_grad_() for row in start]  # one group per run

        def current() -> Tensor:
            return torch.stack(params)

    extra = {"group_norm": True} if "_sam" in optimizer else {}
    opt = create_optimizer(optimizer, [{"params": [p]} for p in params], **hyper, **extra)
    points, losses = [current().detach().clone()], []
    for step in range(steps):
        drop_lr_at(opt, step, lr_drop_step, lr_drop_factor)
        losses.append(_backward_all(surface, params, current))
        if needs_closure(opt):
            opt.step(lambda: _backward_all(surface, params, current))
        else:
            opt.step()
        points.append(current().detach().clone())
    with torch.no_grad():
        losses.append(surface(points[-1]))
    return Trajectories(torch.stack(points), torch.stack(losses))


def drop_lr_at(opt: Optimizer, step: int, lr_drop_step: int | None, lr_drop_factor: float) -> None:
    """The toy runs' one schedule: before step ``lr_drop_step`` (0-based; ``None``: never), multiply
    every group's learning rate by ``lr_drop_factor``. Called before each step, it drops the rate once."""
    if step == lr_drop_step:
        for group in opt.param_groups:
            group["lr"] *= lr_drop_factor


def _backward_all(surface: Surface, params: list[Tensor], current) -> Tensor:
    """Gradients of every run from one backward pass (the runs do not interact)."""
    for p in params:
        p.grad = None
    values = surface(current())
    values.sum().backward()
    return values.detach()


def uniform_starts(
    surface: Surface, runs: int, seed: int, box: tuple[float, float] | None = None, jitter: float = 0.0
) -> Tensor:
    """``runs`` points uniform in ``box`` (default: the surface's ``[low, high]``) to the power ``dim``,
    from ``seed``; ``jitter`` moves each coordinate by that much noise (see :func:`jittered`)."""
    low, high = box if box is not None else (surface.low, surface.high)
    generator = torch.Generator().manual_seed(seed)
    unit = torch.rand(runs, surface.dim, generator=generator, dtype=torch.float64)
    return jittered(low + (high - low) * unit, jitter)


def jittered(starts: Tensor, jitter: float) -> Tensor:
    """``starts`` plus ``jitter`` times seeded standard-normal noise: a verdict must not change when the
    initial points move by ~1e-12 (the size of the last-bit differences between machines)."""
    if not jitter:
        return starts
    noise = torch.randn(starts.shape, generator=torch.Generator().manual_seed(12345), dtype=torch.float64)
    return starts + jitter * noise


@dataclass(frozen=True)
class RunSpec:
    """One batch of runs, described by names and numbers so that it can travel to a worker process."""

    surface: str
    optimizer: str
    hyper: dict
    starts: Tensor
    steps: int
    lr_drop_step: int | None = None
    s: float | tuple[float, ...] | None = None  # two_minima only: one s, or one per run
    dim: int | None = None  # two_minima only

    def execute(self) -> Trajectories:
        f = surface(self.surface, s=self.s, dim=self.dim) if self.surface == "two_minima" else surface(self.surface)
        return run(f, self.optimizer, self.hyper, self.starts, self.steps, self.lr_drop_step)


def run_many(specs: list[RunSpec], workers: int | None = 1) -> list[Trajectories]:
    """Execute ``specs`` in order, spread over ``workers`` processes (``None``: one per CPU core).

    Every run is deterministic on its own, so the results do not depend on ``workers``.
    """
    workers = min(len(specs), workers or os.cpu_count() or 1)
    if workers <= 1:
        return [spec.execute() for spec in specs]
    return list(_pool(workers).map(RunSpec.execute, specs))


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """One pool of ``workers`` processes for the life of this process: every experiment of a
    ``-m`` sweep reuses it instead of paying a worker start (a torch import) per experiment."""
    if workers not in _POOLS:
        # spawn, not fork: a forked child of a process that already ran OpenMP threads can hang.
        # The work is tiny tensors: processes, not threads, use the cores. Spawned workers
        # inherit the environment, so ATEN_CPU_CAPABILITY (see toy.__main__) reaches them.
        context = multiprocessing.get_context("spawn")
        _POOLS[workers] = ProcessPoolExecutor(
            workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)
        )
    return _POOLS[workers]


@atexit.register
def _close_pools() -> None:
    for pool in _POOLS.values():
        pool.shutdown()
    _POOLS.clear()
