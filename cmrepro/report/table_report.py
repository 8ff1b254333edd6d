"""Write one paper table's report: cells beside the paper's (md, csv, tex), run counts, the
runs that did not finish, and the validation curves; or, for a grid, the chosen settings.

Nothing is written, and :class:`~.run_table.ReportError` says why in one line, when the table
has no runs under the root, when a run's metrics.jsonl shows that two processes trained it at
once, or when a cell would pool smoke-scale and full-scale runs: a table with a wrong cell is
worse than none. A table of smoke runs says so in its title and shows no paper value, difference or
verdict (stand-in data is not comparable); one that mixes smoke and full cells says which are smoke
and compares only the full ones (a smoke check of one optimizer beside finished runs is legitimate).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..paper_data import PAPER_DATA
from ..paper_names import PAPER_NAME_OF_DATASET, PAPER_NAME_OF_OPTIMIZER
from .claim_stats import DIFFERS, MATCHES, MIN_CELL_RUNS, TOO_FEW
from .curves import plot_validation_curves
from .notes import caption_note, table_notes
from .render import LATEX_VERDICT_NOTE, latex_table, markdown_table
from .run_table import ReportError, load_metrics, load_runs, setting_label
from .speedup import WINDOW, speedup_cells
from .tables import (
    MIXED,
    QUOTED_FROM,
    SEEDS_PER_CELL,
    best_cells,
    compare,
    diverged_count,
    grid_choice,
    inherit_statuses,
    is_diverged,
    is_missing,
    only_smoke,
    paper_cells,
    paper_layout,
    quoted_cells,
    scale_title,
    without_paper,
)

PAPER_BEST_SETTINGS = PAPER_DATA / "best_hyperparameters.csv"
VERDICT_RULE = (
    f"Each cell against the paper: **{MATCHES}** when the paper's mean lies inside our 95% t-interval of the "
    f"mean over seeds widened on each side by the paper's std, **{DIFFERS}** otherwise, **{TOO_FEW}** under "
    f"{MIN_CELL_RUNS} finished seeds (columns low, high, paper_verdict of the CSV)."
)
TABLES = ("table2", "table3", "table4", "appendix")
CAPTIONS = {
    "table2": "Best validation perplexity (PTB) and accuracy (%) over five seeds.",
    "table3": "Best validation accuracy (%) and speed-up of the SGD variants.",
    "table4": "Learning accuracy (%) on the online-learning streams.",
    "appendix": "Appendix A.2.1: best validation accuracy (%) on CIFAR10 over five seeds, Adam+MEG (Adam's "
    "best CIFAR10 setting, Table 10) beside Adam+CM and Adam+SAM+CM, whose cells are Table 2's runs "
    "(make reproduce-table2).",
}
# What a caption adds where the paper's values stand beside ours (not in a table of smoke runs).
PAPER_IN_PARENTHESES = "Paper's value in parentheses."
# The make target that runs each table's best-settings runs (grids: grid-<table>).
MAKE_TARGETS = {"table2": "reproduce-table2", "table3": "reproduce-table3", "table4": "reproduce-table4",
                "appendix": "reproduce-meg"}  # fmt: skip


def write_table_report(table: str, runs_root: Path, tables_dir: Path, figures_dir: Path) -> list[Path]:
    """``<tables_dir>/<table>.{md,csv,tex}`` and the curves; returns the files written."""
    every_run = load_runs(runs_root)
    # The runs whose cells the table shows: its own best-settings runs and those it quotes.
    runs = every_run[every_run["table"].isin([table, QUOTED_FROM.get(table)]) & (every_run["kind"] == "best")]
    metrics = load_metrics(runs_root, runs)  # refuses a run that two processes trained at once
    ours, paper = best_cells(runs, table), paper_cells(table)
    if table in QUOTED_FROM:
        ours = pd.concat([ours, quoted_cells(runs, table, ours, paper)], ignore_index=True)
    if ours.empty:
        raise ReportError(
            f"no runs of {table} under {runs_root} (result.json with benchmark.table {table}, kind best); "
            f"run `make {MAKE_TARGETS.get(table, 'reproduce-' + table)}` first, or pass --runs where they are "
            "(SCALE=smoke writes results/smoke/runs)"
        )
    check_one_scale(ours, table, runs_root)
    if table == "table3":
        speedup = inherit_statuses(speedup_cells(metrics, table), ours, "speedup")
        ours = pd.concat([ours, speedup], ignore_index=True)
    cells = without_paper(compare(ours, paper))  # smoke alone: no paper columns
    tables_dir.mkdir(parents=True, exist_ok=True)
    paths = [tables_dir / f"{table}.{suffix}" for suffix in ("md", "csv", "tex")]
    own_runs = runs[runs["table"] == table]
    paths[0].write_text(_table_markdown(table, cells, own_runs, table_notes(table, every_run)))
    cells.to_csv(paths[1], index=False)
    named = cells.assign(paper_name=cells["optimizer"].map(PAPER_NAME_OF_OPTIMIZER).fillna(cells["optimizer"]))
    paths[2].write_text(latex_table(named, _latex_caption(table, cells, every_run)))
    return paths + plot_validation_curves(metrics, table, figures_dir)


def check_one_scale(cells: pd.DataFrame, table: str, runs_root: Path) -> None:
    """Refuse cells that pool smoke-scale and full-scale runs: their mean is of neither."""
    mixed = cells[cells["scale"] == MIXED]
    if not mixed.empty:
        names = ", ".join(dict.fromkeys(f"{row.dataset}/{row.optimizer}" for row in mixed.itertuples()))
        raise ReportError(
            f"{table} cells {names} pool smoke-scale and full-scale runs under {runs_root}; smoke runs "
            "(dataset.stand_in set) belong under results/smoke/runs: move them there and re-run the report"
        )


def _caption(table: str, cells: pd.DataFrame) -> str:
    """The table's caption; "paper's value in parentheses" only where the paper's values are shown."""
    return CAPTIONS.get(table, table) + ("" if only_smoke(cells) else f" {PAPER_IN_PARENTHESES}")


def _latex_caption(table: str, cells: pd.DataFrame, runs: pd.DataFrame) -> str:
    scale = scale_title(cells, mark="$\\dagger$")
    scale = f"{scale[:1].upper()}{scale[1:]}. " if scale else ""
    judged = "paper_verdict" in cells and cells["paper_verdict"].astype(bool).any()
    marks = f"{LATEX_VERDICT_NOTE} " if judged else ""
    return f"{scale}{_caption(table, cells)} {marks}{caption_note(table, runs)}".strip()


def _table_markdown(table: str, cells: pd.DataFrame, runs: pd.DataFrame, notes: tuple[str, str] = ("", "")) -> str:
    """The report's markdown; ``notes``: what goes above and below the cells (:mod:`.notes`)."""
    missing, diverged = cells[is_missing(cells)], cells[is_diverged(cells)]
    above, below = notes
    parts = [
        *_title_and_key(table, cells),
        *([above] if above else []),
        markdown_table(paper_layout(cells)),
        *([below] if below else []),
        _status_line(runs),
    ]
    if table == "table3":
        parts.append(
            f"Speed-up: SGD's best seed-averaged validation accuracy in the first {WINDOW} epochs, "
            "and the first epoch each optimizer's seed-averaged curve reaches it; speed-up = "
            "SGD's epoch / the optimizer's (see cmrepro/report/speedup.py).\n"
        )
    if not missing.empty:
        names = ", ".join(f"{row.dataset}/{row.optimizer} ({row.metric})" for row in missing.itertuples())
        parts.append(f"**Missing cells** ({len(missing)}): {names}.\n")
    if not diverged.empty:
        names = ", ".join(
            f"{c['dataset']}/{c['optimizer']} ({c['metric']}, {diverged_count(c)})" for _, c in diverged.iterrows()
        )
        parts.append(f"**Diverged cells** ({len(diverged)}), every run a non-finite loss: {names}.\n")
    unfinished = runs[runs["status"] != "done"]
    if not unfinished.empty:
        parts += ["## Runs that did not finish\n", markdown_table(unfinished[["run_dir", "status", "error"]], False)]
    return "\n".join(parts)


def _title_and_key(table: str, cells: pd.DataFrame) -> list[str]:
    """The markdown title and what a cell shows: ours beside the paper's, or ours alone for smoke runs."""
    counts = (
        f"n = finished runs of {SEEDS_PER_CELL} · diverged k/5: runs ended by a non-finite loss, left out of the mean."
    )
    if only_smoke(cells):
        return [
            _heading(f"{table}: ours", cells),
            f"{_caption(table, cells)} Each cell: ours (mean ± sample std over finished seeds) · {counts} "
            f"Smoke runs are not set beside the paper's values: `make {MAKE_TARGETS.get(table, table)}` at full "
            "scale gives the comparison.\n",
        ]
    return [
        _heading(f"{table}: ours beside the paper's", cells),
        f"{_caption(table, cells)} Each cell: ours (mean ± sample std over finished seeds) · the paper's · "
        f"Δ = ours − paper, ✓ where |Δ| ≤ the paper's std · {counts} {VERDICT_RULE}\n",
    ]


def _heading(title: str, cells: pd.DataFrame) -> str:
    """The markdown title, saying when the cells are smoke output (:func:`~.tables.scale_title`)."""
    scale = scale_title(cells)
    return f"# {title}{f' ({scale})' if scale else ''}\n"


def _status_line(runs: pd.DataFrame) -> str:
    if runs.empty:
        return "No runs found.\n"
    counts = runs["status"].value_counts()
    return f"Runs: {len(runs)} ({', '.join(f'{count} {status}' for status, count in counts.items())}).\n"


def write_grid_report(table: str, runs_root: Path, tables_dir: Path) -> list[Path]:
    """``<tables_dir>/<table>_grid.{md,csv}``: per (dataset, optimizer) the grid setting with the
    best mean validation metric, how many settings were tried, and the paper's best setting."""
    runs = load_runs(runs_root)
    grid = runs[(runs["table"] == table) & (runs["kind"] == "grid")]
    load_metrics(runs_root, grid)  # read for its check only: refuses a run that two processes trained at once
    chosen = grid_choice(runs, table)
    if chosen.empty:
        raise ReportError(
            f"no grid runs of {table} under {runs_root} (result.json with benchmark.table {table}, kind grid); "
            f"run `make grid-{table}` first, or pass --runs where they are (SCALE=smoke writes results/smoke/runs)"
        )
    check_one_scale(chosen, table, runs_root)
    paper = pd.read_csv(PAPER_BEST_SETTINGS)
    chosen["paper_setting"] = [_paper_setting(paper, row.dataset, row.optimizer) for row in chosen.itertuples()]
    tables_dir.mkdir(parents=True, exist_ok=True)
    paths = [tables_dir / f"{table}_grid.md", tables_dir / f"{table}_grid.csv"]
    columns = ["dataset", "optimizer", "setting", "metric", "mean", "runs", "diverged", "not_done", "settings_tried"]
    header = (
        f"{_heading(f'{table}: best grid settings', chosen)}\nPer (dataset, optimizer), the setting with the best "
        "mean validation metric over its finished runs, beside the paper's best setting (Tables 9, 10, 13).\n\n"
    )
    paths[0].write_text(header + markdown_table(chosen[[*columns, "paper_setting"]], index=False))
    chosen.to_csv(paths[1], index=False)
    return paths


def _paper_setting(paper: pd.DataFrame, dataset: str, optimizer: str) -> str:
    """The paper's best setting of (dataset, optimizer) from best_hyperparameters.csv, as a label."""
    paper_dataset = PAPER_NAME_OF_DATASET.get(dataset, dataset)
    rows = paper[(paper["dataset"] == paper_dataset) & (paper["optimizer"] == PAPER_NAME_OF_OPTIMIZER.get(optimizer))]
    if rows.empty:
        return "not published"
    row = rows.iloc[0]
    return setting_label({key: row.get(key) for key in ("lr", "beta1", "beta2", "topC", "decay", "rho")})
