"""``python -m cmrepro.toy.verdicts``: the toy verdicts just written, against the committed ones, in one line.

``make reproduce-toy`` ends with it, so that a user who finds ``git status`` dirty after the run
knows whether conclusions moved or only digits: chaotic runs differ in their last digits across
CPUs (results/toy/README.md, "Across machines"). Prints e.g.
"102 of 102 verdicts as committed; 18 estimates differ beyond 1e-06", then one line per changed
verdict. Always exits 0: a changed verdict is a finding to read, not a failure of the run.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
CLAIMS = "results/toy/claims.csv"
TOLERANCE = 1e-6


def committed_claims(root: Path = ROOT, path: str = CLAIMS) -> pd.DataFrame | None:
    """``path`` as of git's HEAD, or None outside a git checkout or when HEAD has no such file."""
    try:
        shown = subprocess.run(
            ["git", "show", f"HEAD:{path}"], cwd=root, capture_output=True, text=True, check=False, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if shown.returncode != 0:
        return None
    return pd.read_csv(io.StringIO(shown.stdout), keep_default_na=False)


def compare(current: pd.DataFrame, committed: pd.DataFrame | None) -> list[str]:
    """The summary line, then one line per changed verdict."""
    if committed is None or "id" not in committed:
        return [f"{len(current)} verdicts written; no committed verdicts (with claim ids) to compare them with"]
    both = current.merge(committed, on="id", how="left", suffixes=("", "_committed"), indicator=True)
    known = both[both["_merge"] == "both"]
    same = known["verdict"] == known["verdict_committed"]
    estimates = pd.to_numeric(known["estimate"], errors="coerce").to_numpy(dtype=float)
    before = pd.to_numeric(known["estimate_committed"], errors="coerce").to_numpy(dtype=float)
    moved = ~((np.abs(estimates - before) <= TOLERANCE) | (np.isnan(estimates) & np.isnan(before)))
    line = f"{int(same.sum())} of {len(known)} verdicts as committed; "
    line += f"{int(moved.sum())} estimates differ beyond {TOLERANCE:g}"
    new = len(both) - len(known)
    if new:
        line += f"; {new} claims new since the commit"
    dropped = len(set(committed["id"]) - set(current["id"]))
    if dropped:
        line += f"; {dropped} committed claims no longer declared"
    changes = [f"  changed: {row.id}: {row.verdict_committed} -> {row.verdict}" for row in known[~same].itertuples()]
    return [line, *changes]


def main() -> int:
    path = ROOT / CLAIMS
    if not path.is_file():
        print(f"cmrepro.toy.verdicts: {CLAIMS} not written: run make reproduce-toy first", file=sys.stderr)
        return 0
    current = pd.read_csv(path, keep_default_na=False)
    print("\n".join(compare(current, committed_claims())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
