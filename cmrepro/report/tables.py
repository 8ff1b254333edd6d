"""The paper's tables from run directories, each cell beside the published one.

A cell is one (dataset, optimizer) of a table: the mean and standard deviation over
seeds of each run's best validation metric (the paper reports "best validation
accuracy / perplexity achieved during training", averaged over five seeds). Only runs
that finished (``done``) enter a cell; runs ended by a non-finite loss are counted in the
cell's ``diverged`` column and every other run (running, failed) in ``not_done``. A cell with
no finished run is written as diverged when every run of it ended so, else as missing; never
dropped.

A cell's ``scale`` is its runs' (``smoke``: stand-in data and a few steps, ``full``); a table of
smoke runs says so in its title, and one that mixes scales marks its smoke cells. A smoke cell is
never compared with the paper (no difference, no verdict: stand-in data measures nothing the paper
did), and a table of smoke cells alone drops the paper's columns (:func:`without_paper`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..paper_data import PAPER_DATA
from ..paper_names import CONFIG_NAME_OF_PAPER_DATASET, FACTORY_NAME_OF_PAPER_OPTIMIZER, PAPER_NAME_OF_OPTIMIZER
from ..run_files import DIVERGED, DONE
from .claim_stats import cell_interval, cell_verdict

PAPER_TABLES = PAPER_DATA / "tables.csv"
# Tables whose published cells live in a file of their own: "appendix" holds the numbers the
# appendix gives in its text (A.2.1: Adam+MEG on CIFAR10, beside Adam+CM and Adam+SAM+CM).
PAPER_FILES = {"appendix": PAPER_DATA / "appendix_meg.csv"}
# Cells a table quotes from another: the appendix's Adam+CM and Adam+SAM+CM are Table 2's
# CIFAR10 cells, so its report reads them from Table 2's runs rather than running them again.
QUOTED_FROM = {"appendix": "table2"}
SEEDS_PER_CELL = 5

# Metrics where lower is better; for the others higher is.
LOWER_IS_BETTER = ("val_perplexity", "val_loss")

# The columns of our cells (before the paper's are joined); a cell's run counts and scale, which
# every metric of one (dataset, optimizer) shares, are STATUS_COLUMNS.
STATUS_COLUMNS = ["diverged", "not_done", "scale"]
VALUE_COLUMNS = ["metric", "mean", "std", "runs", "diverged", "not_done", "settings", "scale"]
OUR_COLUMNS = ["table", "dataset", "optimizer", *VALUE_COLUMNS]
# low, high: the 95% interval of our mean over seeds; paper_verdict: the cell against the paper.
VERDICT_COLUMNS = ["low", "high", "paper_verdict"]
CELL_COLUMNS = [*OUR_COLUMNS, "paper_mean", "paper_std", "difference", "within_paper_std", *VERDICT_COLUMNS]
# What a table of smoke cells alone leaves out: every column about the paper.
PAPER_COLUMNS = ["paper_mean", "paper_std", "difference", "within_paper_std", "paper_verdict"]
# Metrics computed once from seed-averaged curves (Table 3's speed-up): no interval over seeds, no
# cell verdict; the claims test their per-seed counterpart (cmrepro/report/claims.py).
SEED_AVERAGED = ("speedup",)
SMOKE, FULL, MIXED = "smoke", "full", "mixed"
SMOKE_MARK = "†"
SMOKE_WORDS = "stand-in data, a few steps; not comparable to the paper"
# What a figure drawn from smoke runs says in its title.
SMOKE_FIGURE_NOTE = "smoke: stand-in data, not comparable"


def paper_cells(table: str, path: Path | None = None) -> pd.DataFrame:
    """The published cells of ``table`` with cmrepro's dataset and optimizer names."""
    paper = pd.read_csv(path or PAPER_FILES.get(table, PAPER_TABLES))
    paper = paper[paper["table"] == table].copy()
    paper["dataset"] = paper["dataset"].replace(CONFIG_NAME_OF_PAPER_DATASET)
    paper["optimizer"] = paper["optimizer"].map(FACTORY_NAME_OF_PAPER_OPTIMIZER)
    return paper.rename(columns={"mean": "paper_mean", "std": "paper_std"})


def compare(ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Outer-join our cells (table, dataset, optimizer, metric, mean, std, runs, not_done) with
    the paper's, in the paper's order; cells only one side has stay, with NaN on the other."""
    keys = ["table", "dataset", "optimizer", "metric"]
    cells = paper[[*keys, "paper_mean", "paper_std"]].merge(ours, on=keys, how="outer", sort=False)
    cells = _in_paper_order(cells, paper)
    cells["runs"] = cells["runs"].fillna(0).astype(int)
    cells["diverged"] = cells["diverged"].fillna(0).astype(int)
    cells["not_done"] = cells["not_done"].fillna(0).astype(int)
    cells["settings"] = cells["settings"].fillna(0).astype(int)
    cells["difference"] = (cells["mean"] - cells["paper_mean"]).where(cells["scale"] != SMOKE)
    within = cells["difference"].abs() <= cells["paper_std"]
    cells["within_paper_std"] = within.where(cells["difference"].notna() & cells["paper_std"].notna())
    return cells.assign(**paper_verdicts(cells))[CELL_COLUMNS]


def paper_verdicts(cells: pd.DataFrame) -> dict[str, list]:
    """Each cell's 95% interval over seeds and its verdict against the paper (``claim_stats.cell_verdict``:
    "matches the paper", "differs", "too few runs"); a smoke cell has none: it is not comparable."""
    low, high, verdicts = [], [], []
    for cell in cells.itertuples(index=False):
        interval = cell_interval(cell.mean, cell.std, cell.runs)
        judged = cell.metric not in SEED_AVERAGED and cell.scale != SMOKE
        low.append(interval[0])
        high.append(interval[1])
        verdicts.append(cell_verdict(cell.runs, *interval, cell.paper_mean, cell.paper_std) if judged else "")
    return {"low": low, "high": high, "paper_verdict": verdicts}


def without_paper(cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` without the paper's columns when every cell with runs is a smoke one (a table of
    stand-in data beside the paper's numbers invites a comparison it cannot bear); else unchanged."""
    return cells.drop(columns=PAPER_COLUMNS, errors="ignore") if only_smoke(cells) else cells


def _in_paper_order(cells: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """Datasets, then metrics, then optimizers in the order the paper lists them; ours after."""
    rank = {}
    for key in ("dataset", "metric", "optimizer"):
        order = {name: index for index, name in enumerate(dict.fromkeys([*paper[key], *cells[key]]))}
        rank[key] = cells[key].map(order)
    return (
        cells.assign(**{f"_{key}": value for key, value in rank.items()})
        .sort_values(["_dataset", "_metric", "_optimizer"], kind="stable")
        .drop(columns=["_dataset", "_metric", "_optimizer"])
        .reset_index(drop=True)
    )


def best_cells(runs: pd.DataFrame, table: str) -> pd.DataFrame:
    """Mean +- std over seeds of the best metric of ``table``'s best-settings runs."""
    runs = runs[(runs["table"] == table) & (runs["kind"] == "best")]
    return _cells(runs, table, ["dataset", "optimizer"])


def quoted_cells(runs: pd.DataFrame, table: str, ours: pd.DataFrame, paper: pd.DataFrame) -> pd.DataFrame:
    """The cells ``table`` quotes from ``QUOTED_FROM[table]``: that table's cells for the paper's
    (dataset, optimizer) pairs that ``ours`` (``table``'s own cells) lacks, relabelled as ``table``'s."""
    keys = ["dataset", "optimizer"]
    wanted = paper[keys].drop_duplicates().merge(ours[keys], on=keys, how="left", indicator=True)
    wanted = wanted.loc[wanted["_merge"] == "left_only", keys]
    return best_cells(runs, QUOTED_FROM[table]).merge(wanted, on=keys).assign(table=table)


def inherit_statuses(derived: pd.DataFrame, base: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``derived``: cells of ``metric`` computed from the finished runs of ``base``'s cells (Table
    3's speed-up); one for every (dataset, optimizer) of ``base``, with its diverged and not-done
    counts and scale, so that a pair whose runs all diverged says so in each of its metrics."""
    keys = ["table", "dataset", "optimizer"]
    cells = base[[*keys, *STATUS_COLUMNS]].merge(
        derived.drop(columns=STATUS_COLUMNS, errors="ignore"), on=keys, how="left"
    )
    counts = {key: cells[key].fillna(0).astype(int) for key in ("runs", "settings")}
    return cells.assign(metric=metric, **counts)[OUR_COLUMNS]


def _cells(runs: pd.DataFrame, table: str, keys: list[str]) -> pd.DataFrame:
    columns = ["table", *keys, *VALUE_COLUMNS]
    if runs.empty:
        return pd.DataFrame(columns=columns)
    done, diverged = runs["status"] == DONE, runs["status"] == DIVERGED
    values = runs.assign(value=runs["best"].where(done), done=done, diverged=diverged)
    cells = (
        values.groupby(keys, sort=False, dropna=False)
        .agg(
            metric=("monitor", "first"),
            mean=("value", "mean"),
            std=("value", "std"),  # the sample standard deviation (ddof=1) over seeds
            runs=("done", "sum"),
            diverged=("diverged", "sum"),
            total=("status", "size"),
            settings=("setting", "nunique"),  # > 1: runs of different settings were pooled; the report says so
            scale=("scale", _scale),
        )
        .reset_index()
    )
    cells["not_done"] = cells.pop("total") - cells["runs"] - cells["diverged"]
    return cells.assign(table=table)[columns]


def _scale(scales: pd.Series) -> str | None:
    """A cell's scale: its runs' one scale, or ``mixed``."""
    found = set(scales.dropna())
    return found.pop() if len(found) == 1 else (MIXED if found else None)


def grid_choice(runs: pd.DataFrame, table: str) -> pd.DataFrame:
    """The best grid setting per (dataset, optimizer) by mean best validation metric, with the
    runs each setting has; ties go to the setting listed first."""
    runs = runs[(runs["table"] == table) & (runs["kind"] == "grid")]
    settings = _cells(runs, table, ["dataset", "optimizer", "setting"])
    if settings.empty:
        return settings.assign(settings_tried=pd.Series(dtype=int))
    lower = settings["metric"].isin(LOWER_IS_BETTER)
    settings["score"] = np.where(lower, -settings["mean"], settings["mean"])
    tried = settings.groupby(["dataset", "optimizer"], sort=False)["setting"].transform("size")
    settings = settings.assign(settings_tried=tried)
    ranked = settings.dropna(subset=["score"]).sort_values("score", ascending=False, kind="stable")
    chosen = ranked.drop_duplicates(["dataset", "optimizer"]).drop(columns="score")
    order = settings[["dataset", "optimizer"]].drop_duplicates()
    return order.merge(chosen, on=["dataset", "optimizer"], how="left")


def paper_layout(cells: pd.DataFrame) -> pd.DataFrame:
    """Optimizers as rows and datasets (x metric, when a table has several) as columns, in
    the paper's order; each entry says ours, the paper's, the difference and the run count."""
    mark = mixed_scales(cells)
    entries = cells.apply(_entry, axis=1, mark_smoke=mark)
    cells = cells.assign(entry=entries, row=cells["optimizer"].map(PAPER_NAME_OF_OPTIMIZER))
    several_metrics = cells["metric"].nunique() > 1
    cells["column"] = cells["dataset"] + (" " + cells["metric"] if several_metrics else "")
    wide = cells.pivot_table(index="row", columns="column", values="entry", aggfunc="first", sort=False)
    wide = wide.reindex(index=list(dict.fromkeys(cells["row"])), columns=list(dict.fromkeys(cells["column"])))
    wide.index.name = "optimizer"
    wide.columns.name = None
    return wide.fillna("")


def _entry(cell: pd.Series, mark_smoke: bool = False) -> str:
    runs = f"n={cell['runs']}/{SEEDS_PER_CELL}"
    if cell["diverged"] and not shows_diverged(cell):
        runs += f", {diverged_count(cell)}"
    if cell["not_done"]:
        runs += f", {cell['not_done']} not done"
    if cell["settings"] > 1:
        runs += f", ⚠ {cell['settings']} settings pooled"
    ours = _ours(cell) + (f" {SMOKE_MARK}" if mark_smoke and cell["scale"] == SMOKE else "")
    if pd.isna(cell.get("paper_mean")) or cell["scale"] == SMOKE:  # a smoke cell: no comparison
        return f"{ours} ({runs})"
    paper = _mean_std(cell["paper_mean"], cell["paper_std"])
    if pd.isna(cell["mean"]):
        return f"{ours} · paper {paper} ({runs})"
    mark = " ✓" if cell["within_paper_std"] is True else ""
    verdict = f" · {cell['paper_verdict']}" if cell.get("paper_verdict") else ""
    return f"{ours} · paper {paper} · Δ {cell['difference']:+.1f}{mark}{verdict} ({runs})"


def _ours(cell: pd.Series) -> str:
    if not pd.isna(cell["mean"]):
        return _mean_std(cell["mean"], cell["std"])
    return diverged_count(cell) if shows_diverged(cell) else "missing"


def shows_diverged(cell: pd.Series) -> bool:
    """Whether the cell is written as ``diverged k/5`` in place of a value: no run of it finished
    and some diverged. (A speed-up that finished runs never reached is missing, not diverged.)"""
    return pd.isna(cell["mean"]) and cell["runs"] == 0 and cell["diverged"] > 0


def diverged_count(cell: pd.Series) -> str:
    """``"diverged 2/5"``: how many of the cell's seeds ended with a non-finite loss."""
    return f"diverged {cell['diverged']}/{SEEDS_PER_CELL}"


def is_diverged(cells: pd.DataFrame) -> pd.Series:
    """Cells without a value because every run of theirs diverged (none is still to come)."""
    return cells["mean"].isna() & (cells["runs"] == 0) & (cells["diverged"] > 0) & (cells["not_done"] == 0)


def is_missing(cells: pd.DataFrame) -> pd.Series:
    """Cells without a value that runs could still give: none, or some that did not finish."""
    return cells["mean"].isna() & ~is_diverged(cells)


def mixed_scales(cells: pd.DataFrame) -> bool:
    """Whether some cells are of smoke runs and others of full-scale runs."""
    return {SMOKE, FULL} <= set(cells["scale"].dropna())


def only_smoke(frame: pd.DataFrame) -> bool:
    """Whether every row with a scale (cells, runs or logged epochs) is a smoke one, and some have one."""
    return "scale" in frame and set(frame["scale"].dropna()) == {SMOKE}


def smoke_figure_note(frame: pd.DataFrame) -> str:
    """What a figure's title adds when any of the runs (or epochs) it draws is a smoke run's."""
    return f" ({SMOKE_FIGURE_NOTE})" if "scale" in frame and (frame["scale"] == SMOKE).any() else ""


def scale_title(cells: pd.DataFrame, mark: str = SMOKE_MARK) -> str:
    """What a table's title says of its scale: "" for full-scale runs; that it is smoke output,
    or, when it mixes scales, that the cells marked ``mark`` are."""
    if only_smoke(cells):
        return f"smoke scale: {SMOKE_WORDS}"
    if mixed_scales(cells):
        return f"mixed scales: cells marked {mark} are smoke scale ({SMOKE_WORDS})"
    return ""


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.1f}" if pd.isna(std) else f"{mean:.1f} ± {std:.1f}"
