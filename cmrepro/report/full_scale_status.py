"""What the results index says of a training artefact's full-scale results: its claims' verdicts
(``results/claims/section5.csv``, written by ``python -m cmrepro.report.claims``) and its table cells
against the paper (``results/tables/<table>.csv``).

Only full-scale rows count: a smoke verdict (stand-in data) is never shown as a result, even if a
smoke file were copied where the full-scale one belongs. Nothing is said until full-scale rows exist.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from .claim_stats import DIFFERS, MATCHES, TOO_FEW
from .claims import CLAIMS_FILE, NOT_RUN

FULL = "full"
TABLE_FILES = {"Table 2": "table2", "Table 3": "table3", "Table 4": "table4"}
CLAIM_ORDER = ("supported", "not supported", "no difference", "negligible", "inconclusive")
CELL_ORDER = (MATCHES, DIFFERS, TOO_FEW)


def _key(label: str) -> str | None:
    """``"Figure 10 (left)"`` -> ``"Figure 10"``."""
    match = re.match(r"\s*(table|figure)\s*(\d+)", str(label), re.IGNORECASE)
    return f"{match.group(1).capitalize()} {int(match.group(2))}" if match else None


def _read(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        frame = pd.read_csv(path, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
        return None
    return frame if "scale" in frame else None


def _counted(values: pd.Series, order: tuple[str, ...]) -> str:
    return ", ".join(f"{int((values == v).sum())} {v}" for v in order if (values == v).any())


def claims_status(name: str, root: Path) -> str:
    """``"full-scale claims: 3 supported, 9 inconclusive"``, or "" without full-scale verdicts."""
    claims = _read(root / "results" / CLAIMS_FILE)
    if claims is None:
        return ""
    mine = claims[(claims["artefact"].map(_key) == name) & (claims["scale"] == FULL)]
    mine = mine[mine["verdict"] != NOT_RUN]
    return f"full-scale claims: {_counted(mine['verdict'], CLAIM_ORDER)}" if not mine.empty else ""


def cells_status(name: str, root: Path) -> str:
    """``"cells: 12 matches the paper, 3 differs"`` from the table report, or "" without full-scale cells."""
    table = TABLE_FILES.get(name)
    cells = _read(root / "results" / "tables" / f"{table}.csv") if table else None
    if cells is None or "paper_verdict" not in cells:
        return ""
    verdicts = cells.loc[cells["scale"] == FULL, "paper_verdict"]
    verdicts = verdicts[verdicts != ""]
    return f"cells: {_counted(verdicts, CELL_ORDER)}" if not verdicts.empty else ""


def full_scale_status(name: str, root: Path) -> list[str]:
    """The index's parts for artefact ``name`` ("Table 2"): claims, then cells; none without full-scale results."""
    return [part for part in (claims_status(name, root), cells_status(name, root)) if part]
