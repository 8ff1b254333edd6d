"""Run the real ``cmrepro.optim`` optimizers on a toy surface from many initial points.

Each run is a param group of one optimizer, so it keeps its own buffer and
priority key, as a single training run would; groups with equal
hyperparameters are stepped together (``CriticalOptimizer`` fuses them), and
one backward pass computes the gradients of all runs. SAM variants normalise
each run's perturbation by that run's gradient (``group_norm=True``).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import torch
from torch import Tensor

from ..optim import SAM, create_optimizer
from .surfaces import Surface, surface

# The paper's names (Table 1, Figures) for the factory's optimizer names.
LABELS = {
    "adam": "Adam",
    "adam_sam": "Adam+SAM",
    "adam_cg": "Adam+CG",
    "adam_cm": "Adam+CM",
    "adam_sam_cm": "Adam+SAM+CM",
}


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
    params = [start.detach().clone().to(torch.float64).requires_grad_() for start in starts]
    extra = {"group_norm": True} if "_sam" in optimizer else {}
    opt = create_optimizer(optimizer, [{"params": [p]} for p in params], **hyper, **extra)
    points, losses = [torch.stack([p.detach() for p in params])], []
    for step in range(steps):
        if step == lr_drop_step:
            for group in opt.param_groups:
                group["lr"] *= lr_drop_factor
        losses.append(_backward_all(surface, params))
        if isinstance(opt, SAM):
            opt.step(lambda: _backward_all(surface, params))
        else:
            opt.step()
        points.append(torch.stack([p.detach() for p in params]))
    with torch.no_grad():
        losses.append(surface(points[-1]))
    return Trajectories(torch.stack(points), torch.stack(losses))


def _backward_all(surface: Surface, params: list[Tensor]) -> Tensor:
    """Gradients of every run from one backward pass (the runs do not interact)."""
    for p in params:
        p.grad = None
    values = surface(torch.stack(params))
    values.sum().backward()
    return values.detach()


def uniform_starts(surface: Surface, runs: int, seed: int) -> Tensor:
    """``runs`` points uniform in the surface's box ``[low, high]^dim``, from ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    unit = torch.rand(runs, surface.dim, generator=generator, dtype=torch.float64)
    return surface.low + (surface.high - surface.low) * unit


@dataclass(frozen=True)
class RunSpec:
    """One batch of runs, described by names and numbers so that it can travel to a worker process."""

    surface: str
    optimizer: str
    hyper: dict
    starts: Tensor
    steps: int
    lr_drop_step: int | None = None
    s: float | None = None  # two_minima only
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
    # spawn, not fork: a forked child of a process that already ran OpenMP threads can hang.
    # The work is tiny tensors: processes, not threads, use the cores.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=torch.set_num_threads, initargs=(1,)) as pool:
        return list(pool.map(RunSpec.execute, specs))
