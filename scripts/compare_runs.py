#!/usr/bin/env python
"""Compare the metrics.jsonl of two run directories, number by number, and say whether they agree.

The device check runs the same CUDA run two ways (one process against torchrun on one GPU; a run
stopped by SIGTERM mid-epoch and resumed against the same run uninterrupted) and asks this
script whether the rows agree: the same epochs, and every number within ``--rtol`` (relative, to
the larger magnitude) or ``--atol``. Timings (``*_time_s``) are left out. Prints one line and, with
``--out``, writes JSON with the largest differences; exit 0 when they agree, 1 when not, 2 when a
file is missing.

    python scripts/compare_runs.py RUN_A RUN_B --rtol 1e-5 --out compare.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

TIMING_SUFFIX = "_time_s"


def read_rows(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise FileNotFoundError(f"no {path}")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def numbers(row: dict, prefix: str = "") -> dict[str, float]:
    """The row's numeric values by dotted key, nested dicts included, timings left out."""
    flat: dict[str, float] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(numbers(value, f"{name}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not key.endswith(TIMING_SUFFIX):
            flat[name] = float(value)
    return flat


def relative_difference(a: float, b: float) -> float:
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    return abs(a - b) / max(abs(a), abs(b))


def compare(first: list[dict], second: list[dict], rtol: float, atol: float) -> dict:
    """The verdict and the largest differences of two runs' rows."""
    if not first or not second:
        return {"agree": False, "reason": f"no epochs to compare ({len(first)} and {len(second)} rows)"}
    if [r.get("epoch") for r in first] != [r.get("epoch") for r in second]:
        return {
            "agree": False,
            "reason": f"epochs differ: {[r.get('epoch') for r in first]} against {[r.get('epoch') for r in second]}",
        }
    worst: list[dict] = []
    for a_row, b_row in zip(first, second):
        a, b = numbers(a_row), numbers(b_row)
        if set(a) != set(b):
            return {"agree": False, "reason": f"epoch {a_row.get('epoch')}: columns differ: {sorted(set(a) ^ set(b))}"}
        for key in a:
            worst.append(
                dict(
                    epoch=a_row.get("epoch"),
                    key=key,
                    a=a[key],
                    b=b[key],
                    abs=abs(a[key] - b[key]),
                    rel=relative_difference(a[key], b[key]),
                )
            )
    bad = [d for d in worst if d["abs"] > atol and d["rel"] > rtol]
    worst.sort(key=lambda d: d["rel"], reverse=True)
    largest = worst[0] if worst else None
    return {
        "agree": not bad,
        "values_compared": len(worst),
        "outside_tolerance": len(bad),
        "max_rel": largest["rel"] if largest else 0.0,
        "max_abs": max((d["abs"] for d in worst), default=0.0),
        "largest": worst[:10],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance (0: exact)")
    parser.add_argument("--atol", type=float, default=0.0, help="absolute tolerance (0: exact)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    try:
        first, second = read_rows(args.first), read_rows(args.second)
    except FileNotFoundError as error:
        print(f"compare_runs: {error}", file=sys.stderr)
        sys.exit(2)
    verdict = {"first": str(args.first), "second": str(args.second), "rtol": args.rtol, "atol": args.atol}
    verdict |= compare(first, second, args.rtol, args.atol)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(verdict, indent=2))
    if "reason" in verdict:
        print(f"compare_runs: differ: {verdict['reason']}")
    else:
        word = "agree" if verdict["agree"] else "differ"
        print(
            f"compare_runs: {word}: {verdict['values_compared']} values, {verdict['outside_tolerance']} outside "
            f"rtol={args.rtol:g}/atol={args.atol:g}; largest relative difference {verdict['max_rel']:.3g}, "
            f"absolute {verdict['max_abs']:.3g}"
        )
    sys.exit(0 if verdict["agree"] else 1)


if __name__ == "__main__":
    main()
