"""Validation curves per optimizer with a band over seeds, one PNG per (table, dataset); the title
(also the PNG's Title metadata) says when smoke runs are drawn."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the report runs on clusters without a display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from ..paper_names import PAPER_NAME_OF_OPTIMIZER  # noqa: E402
from .tables import LOWER_IS_BETTER, smoke_figure_note  # noqa: E402


def plot_validation_curves(metrics: pd.DataFrame, table: str, out_dir: Path) -> list[Path]:
    """For each dataset of ``table``'s best-settings runs: the monitored validation metric per
    epoch, the mean over seeds as a line and mean +- one standard deviation as a band."""
    rows = metrics[(metrics["table"] == table) & (metrics["kind"] == "best") & (metrics["status"] == "done")]
    if rows.empty or "epoch" not in rows:
        return []
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dataset, runs in rows.groupby("dataset", sort=False):
        monitor = runs["monitor"].dropna().iloc[0] if runs["monitor"].notna().any() else None
        # Task streams log one row per task, and their monitor (learning accuracy) is a summary
        # of the whole stream: plot what it averages, each task's accuracy right after learning it.
        x = "task" if "task" in runs and monitor not in runs else "epoch"
        monitor = "val_accuracy" if x == "task" else monitor
        if monitor is None or monitor not in runs:
            continue
        figure, axes = plt.subplots(figsize=(5, 3.5))
        for optimizer, group in runs.groupby("optimizer", sort=False):
            per_epoch = group.groupby(x)[monitor]
            mean, std = per_epoch.mean(), per_epoch.std().fillna(0.0)
            label = f"{PAPER_NAME_OF_OPTIMIZER.get(optimizer, optimizer)} ({group['run_dir'].nunique()} seeds)"
            (line,) = axes.plot(mean.index, mean.to_numpy(), label=label)
            axes.fill_between(mean.index, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        values = runs[monitor].dropna()
        if monitor in LOWER_IS_BETTER and values.min() > 0 and values.max() > 10 * values.min():
            axes.set_yscale("log")  # perplexities fall by orders of magnitude early on
        label = "validation accuracy on the task just learned" if x == "task" else monitor.replace("_", " ")
        title = f"{table}: {dataset}{smoke_figure_note(runs)}"
        axes.set(xlabel=x, ylabel=label, title=title)
        axes.legend(fontsize=7)
        figure.tight_layout()
        path = out_dir / f"{table}_{dataset}_curves.png"
        figure.savefig(path, dpi=120, metadata={"Title": title})
        plt.close(figure)
        written.append(path)
    return written
