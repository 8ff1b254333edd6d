"""The training-time analysis figures (Figures 8, 9, 10, 19, 20) and Table 14, from run directories.

``FIGURES[name](runs_root, out_dir)`` writes ``<out_dir>/<name>*.png`` (and, where the paper
gives numbers, a CSV / markdown beside it) and returns the paths written, none when there is
nothing to draw (:func:`nothing_to_draw` says why, for the CLI). Curves are the mean
over seeds per epoch with the seeds' range as a band; bars are the mean over seeds with the
sample standard deviation as error bar. Figures of a smoke run say so in their title (also the
PNG's Title metadata), and Table 14 of smoke runs leaves out the paper's values.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: the report runs on clusters without a display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from ..paper_names import PAPER_NAME_OF_OPTIMIZER  # noqa: E402
from .render import markdown_table  # noqa: E402
from .run_table import load_metrics, load_runs  # noqa: E402
from .tables import only_smoke, paper_cells, smoke_figure_note  # noqa: E402

# The paper's legend order, and one colour per optimizer across every panel.
OPTIMIZER_ORDER = ("adam", "adam_cg", "adam_cm", "adam_sam", "adam_sam_cm")
COLOURS = {name: f"C{i}" for i, name in enumerate(OPTIMIZER_ORDER)}
# Figure 8's panels: (metrics.jsonl column, axis label, log scale), in the paper's layout.
FIGURE8_PANELS = (
    ("sharpness", "Sharpness", True),
    ("distance", "Distance", True),
    ("buffer_variance", "Buffer variance", True),
    ("buffer_cosine", "Cosine similarity", False),
)
# Figure 10's two studies: (benchmark.table, the varied hyperparameter, its label).
FIGURE10_STUDIES = (
    ("figure10_batch_size", "batch_size", "batch size"),
    ("figure10_buffer_size", "topC", "buffer size C"),
)


# ---------------------------------------------------------------- Figure 8


def figure8(runs_root: Path, out_dir: Path) -> list[Path]:
    """Sharpness, distance, buffer variance and cosine similarity per epoch, one PNG per dataset."""
    rows = _metrics_of(runs_root, "figure8")
    written = []
    for dataset, runs in rows.groupby("dataset", sort=False):
        figure, axes = plt.subplots(2, 2, figsize=(9, 6.5))
        for ax, (column, label, log) in zip(axes.flat, FIGURE8_PANELS):
            for optimizer, group in _by_optimizer(runs):
                _curve(ax, group, column, PAPER_NAME_OF_OPTIMIZER.get(optimizer, optimizer), COLOURS.get(optimizer))
            _decorate(ax, label, log)
        figure.suptitle(f"Figure 8: {dataset}{smoke_figure_note(runs)}")
        written.append(_save(figure, out_dir / f"figure8_{dataset}.png"))
    return written


# ---------------------------------------------------------------- Figure 9


def figure9(runs_root: Path, out_dir: Path) -> list[Path]:
    """Final sharpness of Adam+CM for each buffer size C, per dataset (bars, log scale), and its CSV."""
    runs = _finished(runs_root, "figure9")
    rows = _metrics_of(runs_root, "figure9")
    if runs.empty or "sharpness" not in rows:
        return []  # nothing to draw: the CLI says why
    final = rows.dropna(subset=["sharpness"]).sort_values("epoch").groupby("run_dir")["sharpness"].last()
    runs = runs.assign(final_sharpness=runs["run_dir"].map(final)).dropna(subset=["final_sharpness"])
    cells = _mean_std(runs.astype({"topC": int}), ["dataset", "topC"], "final_sharpness")
    figure, ax = plt.subplots(figsize=(5, 3.5))
    _grouped_bars(ax, cells, "topC", lambda c: f"C={int(c)}")
    _decorate(ax, "Final sharpness", log=True, xlabel="")
    ax.set_title(f"Figure 9: Adam+CM, final sharpness{smoke_figure_note(runs)}")
    return [_save(figure, out_dir / "figure9.png"), _csv(cells, out_dir / "figure9.csv")]


# ---------------------------------------------------------------- Figure 10


def figure10(runs_root: Path, out_dir: Path) -> list[Path]:
    """Best validation accuracy of the best grid setting for each batch size (left) and buffer size (right)."""
    runs = _finished(runs_root, *(table for table, _, _ in FIGURE10_STUDIES))
    if runs.empty:
        return []  # nothing to draw: the CLI says why
    figure, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    chosen = []
    for ax, (table, varied, label) in zip(axes, FIGURE10_STUDIES):
        cells = best_setting_per_value(runs[runs["table"] == table], varied)
        if not cells.empty:
            _grouped_bars(ax, cells, varied, lambda v: f"{int(v)}")
        _decorate(ax, "Best validation accuracy (%)", log=False, xlabel="", legend_title=label)
        ax.set_title(label)
        chosen.append(cells.rename(columns={varied: "value"}).assign(study=varied))
    figure.suptitle(f"Figure 10: Adam+CM{smoke_figure_note(runs)}")
    table = pd.concat(chosen)[["study", "dataset", "value", "mean", "std", "runs", "setting"]]
    return [_save(figure, out_dir / "figure10.png"), _csv(table.astype({"value": int}), out_dir / "figure10.csv")]


def best_setting_per_value(runs: pd.DataFrame, varied: str) -> pd.DataFrame:
    """For each (dataset, value of ``varied``): the setting with the highest mean best validation
    accuracy over its seeds (the grid search), with that mean, its std and the setting."""
    if runs.empty:
        return pd.DataFrame(columns=["dataset", varied, "mean", "std", "runs", "setting"])
    settings = _mean_std(runs, ["dataset", varied, "setting"], "best")
    ranked = settings.sort_values("mean", ascending=False, kind="stable")
    return ranked.drop_duplicates(["dataset", varied]).sort_values(["dataset", varied]).reset_index(drop=True)


# ---------------------------------------------------------------- Figures 19, 20 and Table 14


def figure19(runs_root: Path, out_dir: Path) -> list[Path]:
    """m-sharpness per epoch and optimizer, one panel per dataset."""
    rows = _metrics_of(runs_root, "figure19")
    if rows.empty:
        return []  # nothing to draw: the CLI says why
    datasets = list(dict.fromkeys(rows["dataset"]))
    figure, axes = plt.subplots(1, len(datasets), figsize=(5 * len(datasets), 3.8), squeeze=False)
    for ax, dataset in zip(axes.flat, datasets):
        for optimizer, group in _by_optimizer(rows[rows["dataset"] == dataset]):
            _curve(ax, group, "m_sharpness", PAPER_NAME_OF_OPTIMIZER.get(optimizer, optimizer), COLOURS.get(optimizer))
        _decorate(ax, "m-sharpness", log=True)
        ax.set_title(dataset)
    figure.suptitle(f"Figure 19: m-sharpness (eq. 15){smoke_figure_note(rows)}")
    return [_save(figure, out_dir / "figure19.png")]


def figure20(runs_root: Path, out_dir: Path) -> list[Path]:
    """Sharpness per epoch of Adam at each learning rate, and Table 14 (best validation accuracy) beside it."""
    rows = _metrics_of(runs_root, "figure20")
    if rows.empty:
        return []  # nothing to draw: the CLI says why
    figure, ax = plt.subplots(figsize=(5, 3.8))
    for lr, group in sorted(rows.groupby("run_lr"), key=lambda item: -item[0]):
        _curve(ax, group, "sharpness", f"lr={lr:g}", None)
    _decorate(ax, "Sharpness", log=True)
    ax.set_title(f"Figure 20: Adam on {'/'.join(dict.fromkeys(rows['dataset']))}{smoke_figure_note(rows)}")
    return [_save(figure, out_dir / "figure20.png"), *table14(runs_root, out_dir)]


def table14(runs_root: Path, out_dir: Path) -> list[Path]:
    """``table14.{csv,md}``: best validation accuracy of Adam per learning rate, beside the paper's
    (ours alone when every run is a smoke one: stand-in data is not comparable)."""
    runs = _finished(runs_root, "figure20")
    ours = _mean_std(runs, ["lr"], "best")
    paper = paper_cells("table14")
    paper = paper.assign(lr=paper["setting"].str.removeprefix("lr=").astype(float))[["lr", "paper_mean", "paper_std"]]
    smoke = only_smoke(runs)
    cells = (paper[["lr"]] if smoke else paper).merge(ours, on="lr", how="outer").sort_values("lr", ascending=False)
    if not smoke:
        cells["difference"] = cells["mean"] - cells["paper_mean"]
    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "table14.md"
    md.write_text(
        f"# Table 14: validation accuracy (%) of Adam on CIFAR10 per learning rate{smoke_figure_note(runs)}\n\n"
        "Ours: mean and sample std over finished seeds of each run's best validation accuracy"
        f"{'; smoke runs, not set beside the paper' if smoke else ''}.\n\n" + markdown_table(cells, index=False)
    )
    return [_csv(cells, out_dir / "table14.csv"), md]


FIGURES: dict[str, Callable[[Path, Path], list[Path]]] = {
    "figure8": figure8,
    "figure9": figure9,
    "figure10": figure10,
    "figure19": figure19,
    "figure20": figure20,
}
# The benchmark.table of each figure's runs (Table 14 is drawn from Figure 20's).
FIGURE_TABLES: dict[str, tuple[str, ...]] = {
    "figure8": ("figure8",),
    "figure9": ("figure9",),
    "figure10": tuple(table for table, _, _ in FIGURE10_STUDIES),
    "figure19": ("figure19",),
    "figure20": ("figure20",),
}


# ---------------------------------------------------------------- reading


def _metrics_of(runs_root: Path, table: str) -> pd.DataFrame:
    """Every logged epoch of ``table``'s runs, finished or not (a curve so far is still a curve).

    ``run_lr`` is the run's configured learning rate: the rows' own ``lr`` is the epoch's,
    after the schedule's decays.
    """
    runs = load_runs(runs_root)
    runs = runs[runs["table"] == table]
    metrics = load_metrics(runs_root, runs)
    if "epoch" not in metrics:
        return metrics.iloc[0:0]
    return metrics.assign(run_lr=metrics["run_dir"].map(runs.set_index("run_dir")["lr"]))


def _finished(runs_root: Path, *tables: str) -> pd.DataFrame:
    runs = load_runs(runs_root)
    return runs[runs["table"].isin(tables) & (runs["status"] == "done")]


def _by_optimizer(rows: pd.DataFrame):
    """(optimizer, rows) in the paper's legend order, unknown optimizers last."""
    order = {name: i for i, name in enumerate(OPTIMIZER_ORDER)}
    groups = rows.groupby("optimizer", sort=False)
    return sorted(groups, key=lambda item: order.get(item[0], len(order)))


def _mean_std(frame: pd.DataFrame, keys: list[str], column: str) -> pd.DataFrame:
    grouped = frame.groupby(keys, sort=True)[column]
    return grouped.agg(mean="mean", std="std", runs="count").reset_index()


def nothing_to_draw(name: str, runs_root: Path) -> str:
    """One line: why figure ``name`` drew nothing from ``runs_root``, what it looked for, and the fix."""
    tables = FIGURE_TABLES[name]
    runs = load_runs(runs_root)
    runs = runs[runs["table"].isin(tables)]
    counts = ", ".join(f"{count} {status}" for status, count in runs["status"].value_counts().items())
    found = f"{len(runs)} runs of it ({counts}), none yet with what it draws" if len(runs) else "no runs of it"
    return (
        f"nothing to draw for {name}: {found} under {runs_root} (result.json with benchmark.table "
        f"{' or '.join(tables)}); run `make {name}` first, or pass --runs where its runs are "
        f"(`make {name}-smoke` writes results/smoke/runs)"
    )


# ---------------------------------------------------------------- drawing


def _curve(ax, rows: pd.DataFrame, column: str, label: str, colour: str | None) -> None:
    """Mean over runs per epoch, and the runs' range as a band when there are several; nothing if
    the column was never logged for these runs (say, buffer statistics of Adam)."""
    if column not in rows:
        return
    logged = rows.dropna(subset=[column])
    if logged.empty:
        return
    per_epoch = logged.groupby("epoch")[column]
    mean = per_epoch.mean()
    seeds = logged["run_dir"].nunique()
    name = f"{label} ({seeds} runs)" if seeds > 1 else label
    # Markers: a metric logged every few epochs (or once, in a short run) still shows.
    (line,) = ax.plot(mean.index, mean.to_numpy(), label=name, color=colour, marker="o", markersize=2.5)
    if seeds > 1:
        ax.fill_between(mean.index, per_epoch.min(), per_epoch.max(), color=line.get_color(), alpha=0.2, linewidth=0)


def _grouped_bars(ax, cells: pd.DataFrame, by: str, name: Callable[[float], str]) -> None:
    """One group of bars per dataset, one bar per value of ``by``, std as error bar."""
    datasets = list(dict.fromkeys(cells["dataset"]))
    values = sorted(cells[by].unique())
    width = 0.8 / len(values)
    for i, value in enumerate(values):
        part = cells[cells[by] == value].set_index("dataset").reindex(datasets)
        x = np.arange(len(datasets)) + (i - (len(values) - 1) / 2) * width
        ax.bar(x, part["mean"], width, yerr=part["std"].fillna(0.0), label=name(value), capsize=2)
    ax.set_xticks(np.arange(len(datasets)), datasets)


def _decorate(ax, ylabel: str, log: bool, xlabel: str = "Epochs", legend_title: str | None = None) -> None:
    """Labels, a legend if anything is labelled, and a log scale where asked and every value is positive."""
    # Bars: their heights (error bars may reach below zero and are clipped); curves: their means.
    shown = [[bar.get_height()] for bar in ax.patches] or [line.get_ydata() for line in ax.get_lines()]
    values = np.concatenate([np.asarray(v, dtype=float) for v in shown]) if shown else np.array([])
    if log and values.size and np.nanmin(values) > 0:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel)
    if not ax.patches:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, title=legend_title, title_fontsize=7)


def _save(figure, path: Path) -> Path:
    """``figure`` as a PNG whose Title metadata is its title (the suptitle, else its first panel's)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    title = figure.get_suptitle() or (figure.axes[0].get_title() if figure.axes else "")
    figure.savefig(path, dpi=110, metadata={"Title": title})
    plt.close(figure)
    return path


def _csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
