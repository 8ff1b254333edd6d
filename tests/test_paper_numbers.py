"""The transcribed paper numbers match the paper's text, where the paper is at hand (../shared/paper.txt)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from cmrepro.paper_data import PAPER_DATA

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "paper.txt"


@pytest.mark.skipif(not PAPER.exists(), reason="the paper's text is not beside this checkout")
def test_toy_tables_match_the_papers_text():
    text = PAPER.read_text()
    frame = pd.read_csv(PAPER_DATA / "toy_tables.csv")
    keys = ["table", "surface", "optimizer", "C", "decay"]
    wide = frame.groupby(keys, dropna=False).apply(lambda g: g.set_index("metric").value, include_groups=False)
    wide = wide.reset_index()
    for row in wide.itertuples():
        if row.table == "table1":
            prefix = {"goldstein_price": "GP", "levy": "Levy"}[row.surface] if row.optimizer == "Adam" else ""
            assert f"{prefix}{row.optimizer} {row.loss:.2f} {row.sharpness:.2f}" in text, row
        else:
            assert f"{row.optimizer} {int(row.C)} {row.decay:g}" in text
            assert f"{row.loss:.2f} {row.sharpness:.2f}" in text, row


def _number(value: float) -> str:
    """A number as the paper prints it: 0.0001, 0.00001, 20, 0.7."""
    return f"{value:f}".rstrip("0").rstrip(".")


@pytest.mark.skipif(not PAPER.exists(), reason="the paper's text is not beside this checkout")
def test_result_tables_match_the_papers_text():
    compact = PAPER.read_text().replace(" ", "")
    frame = pd.read_csv(PAPER_DATA / "tables.csv")
    assert set(frame.table) == {"table2", "table3", "table4", "table14"} and len(frame) == 45
    for row in frame.itertuples():
        cell = f"{_number(row.mean)}x" if row.metric == "speedup" else f"{row.mean:.1f}±{row.std:.1f}"
        assert cell in compact, row


# Column order of each best-hyperparameter table in the paper.
COLUMNS = {
    "table9": ["ptb"],
    "table10": ["cifar10", "cifar100", "imagenet"],
    "table11": ["goldstein_price", "ackley"],
    "table13": ["tinyimagenet", "5-dataset"],
}


def _table_rows(lines: list[str], table: str) -> dict[str, list[str]]:
    """Optimizer -> its brace groups, from the rows printed just above the table's caption."""
    caption = next(i for i, line in enumerate(lines) if line.startswith(f"Table {table[5:]}:"))
    rows = {}
    for line in reversed(lines[max(0, caption - 12) : caption]):
        name, _, rest = line.partition(" {")
        if rest and name not in rows:
            rows[name] = re.findall(r"\{[^}]*\}", "{" + rest)
    return rows


@pytest.mark.skipif(not PAPER.exists(), reason="the paper's text is not beside this checkout")
def test_best_hyperparameters_match_the_papers_text():
    lines = PAPER.read_text().splitlines()
    frame = pd.read_csv(PAPER_DATA / "best_hyperparameters.csv")
    for row in frame.itertuples():
        values = [row.lr, row.beta1, row.beta2, row.topC, row.decay, row.rho]
        braces = "{" + ", ".join(_number(v) for v in values if not pd.isna(v)) + "}"
        printed = _table_rows(lines, row.table)[row.optimizer][COLUMNS[row.table].index(row.dataset)]
        assert printed == braces, (row, printed)


@pytest.mark.skipif(not PAPER.exists(), reason="the paper's text is not beside this checkout")
def test_grids_match_the_papers_text():
    compact = PAPER.read_text().replace(" ", "")
    for row in pd.read_csv(PAPER_DATA / "grids.csv").itertuples():
        assert "{" + row.values.replace(";", ",") + "}" in compact, row
