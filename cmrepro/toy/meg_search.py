"""Figure 15's Adam+MEG setting, chosen by a grid search like the paper's other toy settings.

The paper gives no Adam+MEG hyperparameters; for every other optimizer it
says "we perform a grid search over the hyper-parameters for each optimizer"
and keeps the best-performing setup. Here the grid is the learning rate, the
extrapolation step ``gamma`` (``null``: the current learning rate) and MEG's
momentum ``heavy_ball``, the score the mean final loss over seeded uniform
starts drawn apart from the figure's (``start_seed`` of the search), the
protocol the figure's (steps, learning-rate drop). The lowest mean loss per
surface is chosen; ties go to the earlier setting of the grid.

``<name>.csv`` holds every setting with its score and a ``chosen`` column;
``conf/toy/experiment/figure15_*.yaml`` carry the chosen setting (a test checks
that they agree with the committed CSV).
"""

from __future__ import annotations

from itertools import product
from pathlib import Path

import pandas as pd

from .batched_runs import RunSpec, run_many, uniform_starts
from .surfaces import surface


def grid_settings(grid: dict) -> list[dict]:
    """Every combination of ``grid``'s ``lr``, ``gamma`` and ``heavy_ball`` lists, in that nesting order."""
    missing = [key for key in ("lr", "gamma", "heavy_ball") if not grid.get(key)]
    if missing:
        raise ValueError(f"invalid MEG grid: {', '.join(missing)} missing or empty; list at least one value each")
    return [
        dict(lr=lr, gamma=gamma, heavy_ball=m)
        for lr, gamma, m in product(grid["lr"], grid["gamma"], grid["heavy_ball"])
    ]


def meg_grid(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Run every grid setting of Adam+MEG on every surface; write ``<name>.csv`` with the chosen rows marked."""
    settings = grid_settings(cfg["grid"])
    betas = tuple(cfg["betas"])
    cases, specs = [], []
    for surface_name in cfg["surfaces"]:
        starts = uniform_starts(surface(surface_name), cfg["seeds"], seed=cfg["start_seed"])
        for setting in settings:
            cases.append((surface_name, setting))
            specs.append(
                RunSpec(
                    surface_name, "adam_meg", dict(setting, betas=betas), starts, cfg["steps"], cfg.get("lr_drop_step")
                )
            )
    rows = [
        dict(surface=surface_name, **setting, loss=float(runs.losses[-1].mean()), loss_std=float(runs.losses[-1].std()))
        for (surface_name, setting), runs in zip(cases, run_many(specs, cfg.get("workers", 1)))
    ]
    frame = pd.DataFrame(rows)
    best = frame.groupby("surface", sort=False).loss.idxmin()  # first of equal minima: the earlier setting
    frame["chosen"] = frame.index.isin(best.to_numpy()).astype(int)
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    return frame


def chosen_setting(frame: pd.DataFrame, surface_name: str) -> dict:
    """The chosen ``{lr, gamma, heavy_ball}`` of ``surface_name`` in a grid CSV (``gamma`` None when the grid's is)."""
    row = frame[(frame.surface == surface_name) & (frame.chosen == 1)]
    if len(row) != 1:
        raise ValueError(
            f"invalid MEG grid: {len(row)} chosen rows for {surface_name!r}, must be 1; "
            "rerun python -m cmrepro.toy experiment=figure15_meg_grid"
        )
    row = row.iloc[0]
    gamma = None if pd.isna(row.gamma) else float(row.gamma)
    return dict(lr=float(row.lr), gamma=gamma, heavy_ball=float(row.heavy_ball))
