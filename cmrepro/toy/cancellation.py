"""Gradient cancellation (Section 3, Figures 2, 11 and 12), measured over many starts instead of drawn from one.

The paper's mechanism: near a sharp minimum Adam+CG's buffer holds gradients
pointing against the new one, so "buffer mean and new gradients cancel each
other out, yielding a small update"; Adam+CM's buffer of momenta does not.
Per step ``t`` that read a non-empty buffer, with ``g`` the new gradient and
``b`` the mean of the buffer the step read:

- ``cosine_mean_grad = cos(b, g)``: -1 when the buffer points straight back;
- ``cancel_ratio = |g + b| / |g|``: below 1 when adding the buffer shortens the gradient.

A run's value is the mean over its traced steps. The starts are a grid over a
box around the sharp minima the figure looks at (its config says which), and
every start is also run to the end of the figure's protocol, to count how often
each optimizer reaches the global minimum from there.
"""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

from ..paper_names import PAPER_NAME_OF_OPTIMIZER
from .batched_runs import RunSpec, run_many
from .buffer_directions import BufferTrace, trace_buffer
from .reach import check_radius, grid_starts, reached
from .surfaces import Surface


def step_cancellation(trace: BufferTrace) -> tuple[Tensor, Tensor]:
    """``(cosine [n], ratio [n])`` over the steps of ``trace`` that read a non-empty buffer."""
    cosines, ratios = [], []
    for step in range(2, trace.steps + 1):  # step 1 reads an empty buffer
        read = trace.read_by(step)
        if not len(read):
            continue
        grad, mean = trace.grads[step - 1], read.mean(dim=0)
        norm = grad.norm()
        cosines.append(torch.dot(grad, mean) / (norm * mean.norm()).clamp_min(1e-300))
        ratios.append((grad + mean).norm() / norm.clamp_min(1e-300))
    return torch.stack(cosines), torch.stack(ratios)


def cancellation_runs(cfg: dict, f: Surface, settings: list[dict]) -> pd.DataFrame:
    """One row per grid start and setting: the start, the mean cancellation over its first ``steps``
    steps, and where the run is after ``final_steps`` (loss, reached the global minimum or not).

    ``cfg["cancellation"]``: ``box`` ([low, high], the same for x and y), ``grid`` (starts per side),
    ``radius`` (of the global minimum, for ``reached_global``).
    """
    spec = cfg["cancellation"]
    check_radius(spec["radius"])
    starts = grid_starts(f, spec["grid"], box=tuple(spec["box"]))
    steps, final_steps, drop = cfg["steps"], cfg.get("final_steps") or cfg["steps"], cfg.get("lr_drop_step")
    if steps < 2:
        raise ValueError(f"invalid steps={steps}: cancellation needs >= 2 steps (step 1 reads an empty buffer)")
    hypers = [dict(setting["hyper"]) for setting in settings]
    finals = run_many(
        [RunSpec(f.name, s["optimizer"], h, starts, final_steps, drop) for s, h in zip(settings, hypers)],
        cfg.get("workers", 1),
    )
    rows = []
    for setting, hyper, runs in zip(settings, hypers, finals):
        hits = reached(runs.final, f.minimum, spec["radius"])
        for k, start in enumerate(starts):
            cosine, ratio = step_cancellation(trace_buffer(f, setting["optimizer"], hyper, start, steps, drop))
            rows.append(
                dict(
                    population="grid",
                    start=k,
                    optimizer=_label(setting),
                    x0=float(start[0]),
                    y0=float(start[1]),
                    cosine_mean_grad=float(cosine.mean()),
                    cancel_ratio=float(ratio.mean()),
                    x=float(runs.final[k, 0]),
                    y=float(runs.final[k, 1]),
                    loss=float(runs.losses[-1, k]),
                    reached_global=int(hits[k]),
                )
            )
    return pd.DataFrame(rows)


def _label(setting: dict) -> str:
    return f"{PAPER_NAME_OF_OPTIMIZER[setting['optimizer']]} C={setting['hyper']['topC']}"


def caption(frame: pd.DataFrame, cfg: dict) -> str:
    """One line for the figure: the drawn start is one of many, and how the grid behaved."""
    spec = cfg["cancellation"]
    per = frame.groupby("optimizer", sort=False).agg(
        reach=("reached_global", "mean"), ratio=("cancel_ratio", "median"), starts=("start", "size")
    )
    parts = [f"{name}: reaches {row.reach:.0%}, median |g + b| / |g| {row.ratio:.2f}" for name, row in per.iterrows()]
    low, high = spec["box"]
    return (
        f"The drawn start is one chosen start; over a {spec['grid']} x {spec['grid']} grid of starts in "
        f"[{low:g}, {high:g}]^2 (first {cfg['steps']} steps): " + "; ".join(parts)
    )
