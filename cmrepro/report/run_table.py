"""Run directories as pandas tables: one row per run (``load_runs``), one row per logged epoch
(``load_metrics``).

A run directory is any folder below the root holding a ``result.json``: written with status
``running`` when a run starts, then ``done``, ``diverged`` or ``failed``, always with the
resolved config. The report reads nothing else, so it works on a copy of ``results/runs``
without the checkpoints.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..optim.weight_decay import weight_decay_form
from ..run_files import METRICS, RESULT, RunFileError, read_jsonl

# The hyperparameters a setting is made of; a run's setting is these, its seed aside.
HYPERPARAMETERS = ("lr", "beta1", "beta2", "momentum", "topC", "decay", "rho", "gamma", "heavy_ball", "batch_size")
RUN_COLUMNS = (
    "run_dir", "status", "scale", "table", "kind", "dataset", "optimizer", "seed", *HYPERPARAMETERS,
    "weight_decay_form", "setting", "monitor", "best", "best_epoch", "epochs_completed", "epochs", "wall_time_s",
    "error",
)  # fmt: skip


def load_runs(root: Path | str) -> pd.DataFrame:
    """One row per run directory below ``root`` (columns ``RUN_COLUMNS``), sorted by path.

    ``best`` is the run's best value of its monitored metric (``monitor``: validation
    accuracy, perplexity, learning accuracy); a torn ``result.json`` makes a row of status
    ``unreadable`` rather than an error, so one bad file never hides the other runs.
    """
    rows = [_run_row(path.parent, _read_json(path)) for path in sorted(Path(root).rglob(RESULT))]
    return pd.DataFrame(rows, columns=list(RUN_COLUMNS))


def load_metrics(root: Path | str, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per line of every run's ``metrics.jsonl``, joined with its run's columns."""
    runs = load_runs(root) if runs is None else runs
    frames = []
    for run in runs.itertuples(index=False):
        try:
            lines = read_jsonl(Path(run.run_dir) / METRICS)
        except RunFileError as error:  # one bad file never hides the other runs
            print(f"cmrepro.report: skipping the curves of a run: {error}", file=sys.stderr)
            continue
        if lines:
            frame = pd.DataFrame(lines)
            frames.append(frame.assign(**{key: getattr(run, key) for key in RUN_COLUMNS if key not in frame}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RUN_COLUMNS))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _run_row(run_dir: Path, result: dict | None) -> dict:
    if result is None:
        return {"run_dir": str(run_dir), "status": "unreadable"}
    config = result.get("config") or {}
    optimizer, dataset, benchmark = (config.get(key) or {} for key in ("optimizer", "dataset", "benchmark"))
    monitor = result.get("monitor")
    best = result.get("best") or {}
    values = _hyperparameters(optimizer, dataset)
    return {
        "run_dir": str(run_dir),
        "status": result.get("status"),
        "scale": "smoke" if dataset.get("stand_in") else "full",
        "table": benchmark.get("table"),
        "kind": benchmark.get("kind", "single"),
        "dataset": benchmark.get("dataset") or dataset.get("name"),
        "optimizer": optimizer.get("name"),
        "seed": config.get("seed"),
        **values,
        "weight_decay_form": _weight_decay_form(optimizer),
        "setting": setting_label(values),
        "monitor": monitor,
        "best": best.get(monitor) if monitor else None,
        "best_epoch": best.get("epoch"),
        "epochs_completed": result.get("epochs_completed"),
        "epochs": (config.get("trainer") or {}).get("epochs"),
        "wall_time_s": result.get("wall_time_s"),
        "error": result.get("error"),
    }


def _hyperparameters(optimizer: Mapping, dataset: Mapping) -> dict:
    betas = optimizer.get("betas") or (None, None)
    return {
        "lr": optimizer.get("lr"),
        "beta1": betas[0],
        "beta2": betas[1],
        "momentum": optimizer.get("momentum"),
        "topC": optimizer.get("topC"),
        "decay": optimizer.get("decay"),
        "rho": optimizer.get("rho"),
        "gamma": optimizer.get("gamma"),  # MEG's extrapolation (None: the learning rate) and heavy ball
        "heavy_ball": optimizer.get("heavy_ball"),
        "batch_size": dataset.get("batch_size"),
    }


def _weight_decay_form(optimizer: Mapping) -> str | None:
    """``decoupled`` or ``coupled`` as the run applied it; None where unknown (a config from before
    ``optimizer.weight_decay_form``, with a raw ``decoupled_weight_decay`` key)."""
    try:
        return weight_decay_form(optimizer) if optimizer else None
    except ValueError:
        return None


def setting_label(values: Mapping) -> str:
    """``"lr=0.001 beta1=0.9 ..."``: the hyperparameters that are set, in a fixed order."""
    return " ".join(f"{key}={values[key]:g}" for key in HYPERPARAMETERS if not pd.isna(values.get(key)))
