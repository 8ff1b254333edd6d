"""The transcribed paper numbers match the paper's text, where the paper is at hand (../shared/paper.txt)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT.parent / "shared" / "paper.txt"


@pytest.mark.skipif(not PAPER.exists(), reason="the paper's text is not beside this checkout")
def test_toy_tables_match_the_papers_text():
    text = PAPER.read_text()
    frame = pd.read_csv(ROOT / "results" / "paper" / "toy_tables.csv")
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
