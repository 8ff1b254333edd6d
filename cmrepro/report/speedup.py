"""Table 3's speed-up: how much sooner a variant reaches what SGD reaches in the first 50 epochs.

The paper reports "the speed-up in the first 50 epochs" without a formula. cmrepro's
definition: on the seed-averaged validation-accuracy curves, let ``a`` be SGD's best
accuracy within the first ``window`` epochs and ``E(opt)`` the first epoch at which
optimizer ``opt`` reaches ``a``; the speed-up of ``opt`` is ``E(SGD) / E(opt)`` (so SGD's
own is 1). A variant that never reaches ``a`` within the window has no speed-up (NaN,
shown as missing) rather than a made-up one. Curves are averaged over the seeds that
finished, epoch by epoch, before thresholds are taken, so one lucky seed does not decide.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

WINDOW = 50  # epochs, as the paper's "first 50 epochs"


def mean_curve(metrics: pd.DataFrame, monitor: str) -> pd.Series:
    """The monitored metric per epoch, averaged over runs (index: epoch)."""
    return metrics.groupby("epoch")[monitor].mean().sort_index()


def first_epoch_reaching(curve: pd.Series, target: float) -> float:
    """The first epoch whose value is at least ``target``; NaN if none is."""
    reached = curve.index[curve.to_numpy() >= target]
    return float(reached[0]) if len(reached) else np.nan


def speedup_cells(metrics: pd.DataFrame, table: str, baseline: str = "sgd", window: int = WINDOW) -> pd.DataFrame:
    """One cell per (dataset, optimizer) of ``table``'s best-settings runs that finished:
    metric ``speedup``, ``mean`` the speed-up over ``baseline``, ``runs`` the seeds averaged."""
    rows = metrics[(metrics["table"] == table) & (metrics["kind"] == "best") & (metrics["status"] == "done")]
    rows = rows[rows["epoch"] <= window]
    cells = []
    for dataset, runs in rows.groupby("dataset", sort=False):
        monitor = runs["monitor"].iloc[0]
        curves = {name: mean_curve(group, monitor) for name, group in runs.groupby("optimizer", sort=False)}
        if baseline not in curves:
            continue  # no baseline, no speed-up: the cells show as missing
        target = curves[baseline].max()
        baseline_epochs = first_epoch_reaching(curves[baseline], target)
        for optimizer, curve in curves.items():
            cells.append(
                {
                    "table": table,
                    "dataset": dataset,
                    "optimizer": optimizer,
                    "metric": "speedup",
                    "mean": baseline_epochs / first_epoch_reaching(curve, target),
                    "std": np.nan,
                    "runs": runs.loc[runs["optimizer"] == optimizer, "run_dir"].nunique(),
                    "not_done": 0,
                    "settings": runs.loc[runs["optimizer"] == optimizer, "setting"].nunique(),
                }
            )
    columns = ["table", "dataset", "optimizer", "metric", "mean", "std", "runs", "not_done", "settings"]
    return pd.DataFrame(cells, columns=columns)
