"""How often an optimizer reaches a surface's global minimum, from a grid of starts and from uniform ones.

Figures 1, 13, 14 and 15 draw a few trajectories and say that Adam+CM "is able
to find the flat region that contains the global minimum". A picture from four
starts cannot carry that; the share of starts from which each optimizer ends
near the global minimum can. Two populations, both stated: a regular grid over
the surface's box (every region counted once) and seeded uniform starts (the
same draw the pictures take their first starts from). A run reached the
minimum when its final point lies within the radius its experiment declares.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .surfaces import Surface


def grid_starts(f: Surface, per_side: int, box: tuple[float, float] | None = None) -> Tensor:
    """The centres of a ``per_side`` x ``per_side`` grid of cells over ``box`` (default: the surface's),
    ``[per_side**2, 2]``. Centres, not corners: with an even ``per_side`` no start sits on the minimum
    of a surface centred at 0 (Ackley's gradient is undefined there)."""
    if per_side < 1:
        raise ValueError(f"invalid reach grid {per_side!r}: must be >= 1 starts per side; set reach.grid to e.g. 7")
    low, high = box if box is not None else (f.low, f.high)
    cell = (high - low) / per_side
    axis = low + cell * (torch.arange(per_side, dtype=torch.float64) + 0.5)
    x, y = torch.meshgrid(axis, axis, indexing="xy")
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=1)


def check_radius(radius: float) -> float:
    """``radius`` if it is a usable reach radius; called before the runs, so a bad config costs nothing."""
    if not radius > 0:
        raise ValueError(f"invalid reach radius {radius!r}: must be > 0; set the experiment's reach.radius")
    return radius


def reached(final: Tensor, minimum: tuple[float, ...], radius: float) -> Tensor:
    """Whether each final point ``[runs, D]`` lies within ``radius`` (Euclidean) of ``minimum``, as 0/1."""
    check_radius(radius)
    target = torch.tensor(minimum, dtype=final.dtype)
    return ((final - target).norm(dim=-1) < radius).to(torch.int64)
