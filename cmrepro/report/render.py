"""Markdown and LaTeX for the report's tables (pandas writes the CSVs itself)."""

from __future__ import annotations

import pandas as pd

from .claim_stats import DIFFERS, MATCHES, MIN_CELL_RUNS, TOO_FEW
from .tables import SMOKE, diverged_count, mixed_scales, shows_diverged

# Each cell's verdict against the paper (``claim_stats.cell_verdict``) as a superscript in LaTeX.
LATEX_VERDICT_MARKS = {MATCHES: "=", DIFFERS: "\\neq", TOO_FEW: "?"}
LATEX_VERDICT_NOTE = (
    "Superscripts: = the paper's mean lies inside our 95% interval over seeds widened by the paper's std, "
    f"$\\neq$ it does not, ? fewer than {MIN_CELL_RUNS} finished seeds."
)


def markdown_table(frame: pd.DataFrame, index: bool = True) -> str:
    """A GitHub-flavoured markdown table; cells are written with ``str`` and ``|`` escaped."""
    frame = frame.reset_index() if index else frame
    header = [str(column) for column in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(_markdown_cell(value) for value in row) + " |")
    return "\n".join(lines) + "\n"


def _markdown_cell(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|")


def latex_table(cells: pd.DataFrame, caption: str) -> str:
    """The paper's layout as a booktabs tabular: optimizers as rows, datasets (x metric) as
    columns, each entry ``ours +- std (paper)`` (a smoke cell: ``ours +- std`` alone); ``--`` where we
    have no finished run, ``diverged k/5`` where every run that ended diverged; smoke cells of a table
    that mixes scales get a dagger."""
    mark = mixed_scales(cells)
    cells = cells.assign(column=cells["dataset"] + (" " + cells["metric"] if cells["metric"].nunique() > 1 else ""))
    columns = list(dict.fromkeys(cells["column"]))
    lines = [
        "\\begin{table}[t]",
        "\\centering",
        "\\begin{tabular}{l" + "c" * len(columns) + "}",
        "\\toprule",
        "Optimizer & " + " & ".join(_latex_escape(column) for column in columns) + " \\\\",
        "\\midrule",
    ]
    for optimizer, rows in cells.groupby("optimizer", sort=False):
        entries = {row["column"]: _latex_entry(row, mark) for _, row in rows.iterrows()}
        name = rows["paper_name"].iloc[0] if "paper_name" in rows else optimizer
        lines.append(_latex_escape(name) + " & " + " & ".join(entries.get(c, "") for c in columns) + " \\\\")
    lines += [
        "\\bottomrule",
        "\\end{tabular}",
        f"\\caption{{{_latex_escape(caption)}}}",
        "\\end{table}",
    ]
    return "\n".join(lines) + "\n"


def _latex_entry(cell: pd.Series, mark_smoke: bool = False) -> str:
    if shows_diverged(cell):
        ours = diverged_count(cell)
    else:
        ours = "--" if pd.isna(cell["mean"]) else _latex_mean_std(cell["mean"], cell["std"])
        ours += f" [{diverged_count(cell)}]" if cell["diverged"] else ""
    ours += "$^\\dagger$" if mark_smoke and cell["scale"] == SMOKE else ""
    verdict = LATEX_VERDICT_MARKS.get(str(cell.get("paper_verdict", "")).partition(" (")[0])
    ours += f"$^{{{verdict}}}$" if verdict and not pd.isna(cell["mean"]) else ""
    if pd.isna(cell.get("paper_mean")) or cell["scale"] == SMOKE:  # a smoke cell is not set beside the paper's
        return ours
    return f"{ours} ({cell['paper_mean']:.1f})"


def _latex_mean_std(mean: float, std: float) -> str:
    return f"{mean:.1f}" if pd.isna(std) else f"{mean:.1f} $\\pm$ {std:.1f}"


def _latex_escape(text: str) -> str:
    return str(text).replace("_", "\\_").replace("%", "\\%").replace("&", "\\&")
