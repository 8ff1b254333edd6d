"""Write one paper table's report: cells beside the paper's (md, csv, tex), run counts, the
runs that did not finish, and the validation curves; or, for a grid, the chosen settings."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..paper_data import PAPER_DATA
from ..paper_names import PAPER_NAME_OF_DATASET, PAPER_NAME_OF_OPTIMIZER
from .curves import plot_validation_curves
from .notes import caption_note, table_notes
from .render import latex_table, markdown_table
from .run_table import load_metrics, load_runs, setting_label
from .speedup import WINDOW, speedup_cells
from .tables import (
    QUOTED_FROM,
    SEEDS_PER_CELL,
    best_cells,
    compare,
    grid_choice,
    paper_cells,
    paper_layout,
    quoted_cells,
)

PAPER_BEST_SETTINGS = PAPER_DATA / "best_hyperparameters.csv"
TABLES = ("table2", "table3", "table4", "appendix")
CAPTIONS = {
    "table2": "Best validation perplexity (PTB) and accuracy (%) over five seeds; paper's value in parentheses.",
    "table3": "Best validation accuracy (%) and speed-up of the SGD variants; paper's value in parentheses.",
    "table4": "Learning accuracy (%) on the online-learning streams; paper's value in parentheses.",
    "appendix": "Appendix A.2.1: best validation accuracy (%) on CIFAR10 over five seeds, Adam+MEG (Adam's "
    "best CIFAR10 setting, Table 10) beside Adam+CM and Adam+SAM+CM, whose cells are Table 2's runs "
    "(make reproduce-table2).",
}


def write_table_report(table: str, runs_root: Path, tables_dir: Path, figures_dir: Path) -> list[Path]:
    """``<tables_dir>/<table>.{md,csv,tex}`` and the curves; returns the files written."""
    runs = load_runs(runs_root)
    metrics = load_metrics(runs_root, runs)
    ours, paper = best_cells(runs, table), paper_cells(table)
    if table == "table3":
        ours = pd.concat([ours, speedup_cells(metrics, table)], ignore_index=True)
    if table in QUOTED_FROM:
        ours = pd.concat([ours, quoted_cells(runs, table, ours, paper)], ignore_index=True)
    cells = compare(ours, paper)
    tables_dir.mkdir(parents=True, exist_ok=True)
    paths = [tables_dir / f"{table}.{suffix}" for suffix in ("md", "csv", "tex")]
    best_runs = runs[(runs["table"] == table) & (runs["kind"] == "best")]
    paths[0].write_text(_table_markdown(table, cells, best_runs, table_notes(table, runs)))
    cells.to_csv(paths[1], index=False)
    named = cells.assign(paper_name=cells["optimizer"].map(PAPER_NAME_OF_OPTIMIZER).fillna(cells["optimizer"]))
    paths[2].write_text(latex_table(named, f"{CAPTIONS.get(table, table)} {caption_note(table, runs)}".strip()))
    return paths + plot_validation_curves(metrics, table, figures_dir)


def _table_markdown(table: str, cells: pd.DataFrame, runs: pd.DataFrame, notes: tuple[str, str] = ("", "")) -> str:
    """The report's markdown; ``notes``: what goes above and below the cells (:mod:`.notes`)."""
    missing = cells[cells["mean"].isna()]
    above, below = notes
    parts = [
        f"# {table}: ours beside the paper's\n",
        f"{CAPTIONS.get(table, '')} Each cell: ours (mean ± sample std over finished seeds) · the paper's · "
        f"Δ = ours − paper, ✓ where |Δ| ≤ the paper's std · n = finished runs of {SEEDS_PER_CELL}.\n",
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
    unfinished = runs[runs["status"] != "done"]
    if not unfinished.empty:
        parts += ["## Runs that did not finish\n", markdown_table(unfinished[["run_dir", "status", "error"]], False)]
    return "\n".join(parts)


def _status_line(runs: pd.DataFrame) -> str:
    if runs.empty:
        return "No runs found.\n"
    counts = runs["status"].value_counts()
    return f"Runs: {len(runs)} ({', '.join(f'{count} {status}' for status, count in counts.items())}).\n"


def write_grid_report(table: str, runs_root: Path, tables_dir: Path) -> list[Path]:
    """``<tables_dir>/<table>_grid.{md,csv}``: per (dataset, optimizer) the grid setting with the
    best mean validation metric, how many settings were tried, and the paper's best setting."""
    runs = load_runs(runs_root)
    chosen = grid_choice(runs, table)
    paper = pd.read_csv(PAPER_BEST_SETTINGS)
    chosen["paper_setting"] = [_paper_setting(paper, row.dataset, row.optimizer) for row in chosen.itertuples()]
    tables_dir.mkdir(parents=True, exist_ok=True)
    paths = [tables_dir / f"{table}_grid.md", tables_dir / f"{table}_grid.csv"]
    columns = ["dataset", "optimizer", "setting", "metric", "mean", "runs", "not_done", "settings_tried"]
    header = (
        f"# {table}: best grid settings\n\nPer (dataset, optimizer), the setting with the best mean validation "
        "metric over its finished runs, beside the paper's best setting (Tables 9, 10, 13).\n\n"
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
