"""Run directories as pandas tables: one row per run (``load_runs``), one row per logged epoch
(``load_metrics``).

A run directory is any folder below the root holding a ``result.json``: written with status
``running`` when a run starts (with its progress after every epoch), then ``done``, ``diverged``,
``failed`` or ``interrupted``, always with the resolved config; one that says ``running`` while
no process holds its lock is reported ``stopped`` (killed; re-running resumes it). The report
reads nothing else, so it works on a copy of ``results/runs`` without the checkpoints.

Run data the report must not turn into a table or figure (a ``metrics.jsonl`` that two processes
wrote at once, no runs at all) raises :class:`ReportError`: one line, which
``python -m cmrepro.report`` prints before exiting with status 2.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from ..data import DATASET_TASKS, is_task_stream
from ..optim.weight_decay import weight_decay_form
from ..run_files import METRICS, RESULT, RunFileError, read_jsonl, run_status

# The hyperparameters a setting is made of; a run's setting is these, its seed aside.
HYPERPARAMETERS = ("lr", "beta1", "beta2", "momentum", "topC", "decay", "rho", "gamma", "heavy_ball", "batch_size")
RUN_COLUMNS = (
    "run_dir", "status", "scale", "table", "kind", "dataset", "optimizer", "seed", *HYPERPARAMETERS,
    "weight_decay_form", "setting", "monitor", "best", "best_epoch", "epochs_completed", "epochs", "wall_time_s",
    "error",
)  # fmt: skip
# The metric each kind of run monitors, as the training loops set it (cmrepro.training.steps'
# tasks, streams.MONITOR): for a run whose result.json has none because it diverged before
# logging an epoch. tests/test_report_reliability.py checks it against the training's.
MONITOR_OF_TASK = {"classification": "val_accuracy", "language_model": "val_perplexity"}
STREAM_MONITOR = "learning_accuracy"
# The per-row indices of metrics.jsonl: every epoch (supervised and task-stream runs) and task
# (task streams) is written once; a repeat means two processes trained the run at once.
ROW_INDICES = ("epoch", "task")


class ReportError(ValueError):
    """Run data the report refuses, or nothing to report; the message is one line naming the
    file or directory, what is wrong and the fix."""


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
        path = Path(run.run_dir) / METRICS
        try:
            lines = read_jsonl(path)
        except RunFileError as error:  # one bad file never hides the other runs
            print(f"cmrepro.report: skipping the curves of a run: {error}", file=sys.stderr)
            continue
        check_rows_once(path, lines)
        if lines:
            frame = pd.DataFrame(lines)
            frames.append(frame.assign(**{key: getattr(run, key) for key in RUN_COLUMNS if key not in frame}))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(RUN_COLUMNS))


def check_rows_once(path: Path, rows: list[dict]) -> None:
    """Raise :class:`ReportError` if the rows of ``path`` repeat an epoch (or task).

    A run's loop writes each epoch once and, on resume, first drops the rows after its
    checkpoint; a repeat is two processes training one directory at once, whose result.json and
    curves are each one process's, or a mix: no cell or curve can be made of them.
    """
    for index in ROW_INDICES:
        counts = Counter(row[index] for row in rows if index in row)
        repeated = sorted(value for value, count in counts.items() if count > 1)
        if repeated:
            shown = ", ".join(str(value) for value in repeated[:5]) + (", ..." if len(repeated) > 5 else "")
            raise ReportError(
                f"{path} repeats {index}s {shown}; two processes trained this run at once: "
                "delete the run directory and re-run it"
            )


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
    monitor = result.get("monitor") or monitor_of(dataset.get("name"))
    best = result.get("best") or {}
    values = _hyperparameters(optimizer, dataset)
    return {
        "run_dir": str(run_dir),
        "status": run_status(run_dir, result),  # "stopped": says running, but no process holds it
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


def monitor_of(dataset: str | None) -> str | None:
    """The metric a run on ``dataset`` monitors (None for a dataset cmrepro does not know)."""
    if dataset is not None and is_task_stream(dataset):
        return STREAM_MONITOR
    return MONITOR_OF_TASK.get(DATASET_TASKS.get(dataset))


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
