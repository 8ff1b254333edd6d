"""Whether a run of eq. 9 escaped the sharp minimum, under three rules, one column each.

The paper counts "the number of times an optimizer finds the flat minimum at
the origin by escaping the sharper minimum" and gives no tolerance. The rules:

- ``escaped_basin`` (primary): every coordinate of the final point lies in the
  flat basin of f_s, ``|x_d| < sqrt(s) / (1 + sqrt(s))``, where the two
  quadratics of eq. 9 meet; ``basin_share`` is the share of coordinates that do.
- ``escaped_snapshot``: every final coordinate within ``SNAPSHOT_TOLERANCE`` of 0
  (the suite's rule before issue 20).
- ``escaped_mean50``: the mean of the last ``TAIL`` iterates within
  ``SNAPSHOT_TOLERANCE`` of 0 in every coordinate; a run still swinging around
  0 after 500 steps (Adam+CM at D = 1) is judged by where it swings, not by
  where the last step happened to land.
"""

from __future__ import annotations

import torch
from torch import Tensor

SNAPSHOT_TOLERANCE = 0.25
TAIL = 50
ESCAPE_COLUMNS = ("escaped_basin", "basin_share", "escaped_snapshot", "escaped_mean50")


def basin_bound(s: Tensor) -> Tensor:
    """Where ``x^2 = s (x - 1)^2`` between the minima: the edge of the flat basin at 0, per ``s``."""
    root = s.sqrt()
    return root / (1 + root)


def escape_measures(points: Tensor, s: Tensor) -> dict[str, Tensor]:
    """The escape columns for runs with trajectories ``points`` ``[steps + 1, runs, D]`` on f_s with
    one ``s`` per run ``[runs]``: each column one value per run (``ESCAPE_COLUMNS``)."""
    final = points[-1]
    inside = final.abs() < basin_bound(s.to(final.dtype))[:, None]
    tail_mean = points[-TAIL:].mean(dim=0)
    return {
        "escaped_basin": inside.all(dim=-1).to(torch.int64),
        "basin_share": inside.to(torch.float64).mean(dim=-1),
        "escaped_snapshot": (final.abs() < SNAPSHOT_TOLERANCE).all(dim=-1).to(torch.int64),
        "escaped_mean50": (tail_mean.abs() < SNAPSHOT_TOLERANCE).all(dim=-1).to(torch.int64),
    }


def escape_rows(points: Tensor, s: Tensor) -> list[dict]:
    """:func:`escape_measures` as one dict per run, for the ``*_runs.csv`` rows."""
    measures = escape_measures(points, s)
    return [{column: measures[column][i].item() for column in ESCAPE_COLUMNS} for i in range(points.shape[1])]
