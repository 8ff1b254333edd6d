"""``python -m cmrepro.report <name>``: tables and figures from run directories; never trains.

python -m cmrepro.report table2                 # results/tables/table2.{md,csv,tex} + curves
python -m cmrepro.report table3 --grid          # the best grid setting per cell
python -m cmrepro.report table2 --runs results/smoke/runs --out results/smoke
python -m cmrepro.report appendix               # Appendix A.2.1: Adam+MEG on CIFAR10 beside the paper's
python -m cmrepro.report figure8               # training-time analysis figures
python -m cmrepro.report index                 # results/README.md: every table and figure, command, status
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .index import write_index
from .table_report import TABLES, write_grid_report, write_table_report


def _figures() -> dict:
    # Imported on use: the analysis figures need matplotlib's full import, tables do not.
    from .analysis import FIGURES

    return FIGURES


def main(argv: list[str] | None = None) -> int:
    figures = _figures()
    parser = argparse.ArgumentParser(
        prog="python -m cmrepro.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("name", choices=[*TABLES, *figures, "index"], help="a paper table or figure, or the index")
    parser.add_argument("--runs", type=Path, default=Path("results/runs"), help="root of the run directories")
    parser.add_argument("--out", type=Path, default=Path("results"), help="writes <out>/tables and <out>/figures")
    parser.add_argument("--grid", action="store_true", help="tables: choose the best setting of the grid runs")
    args = parser.parse_args(argv)
    if args.name == "index":  # from committed files only, never from run directories
        print(write_index(out=args.out / "README.md"))
        return 0
    if not args.runs.is_dir():
        print(f"cmrepro.report: no run directory at {args.runs}; run the experiments first", file=sys.stderr)
        return 2
    tables_dir, figures_dir = args.out / "tables", args.out / "figures"
    if args.name in TABLES:
        if args.grid:
            written = write_grid_report(args.name, args.runs, tables_dir)
        else:
            written = write_table_report(args.name, args.runs, tables_dir, figures_dir)
    else:
        written = figures[args.name](args.runs, figures_dir)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
