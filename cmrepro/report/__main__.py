"""``python -m cmrepro.report <name>``: tables and figures from run directories; never trains.

python -m cmrepro.report table2                 # results/tables/table2.{md,csv,tex} + curves
python -m cmrepro.report table3 --grid          # the best grid setting per cell
python -m cmrepro.report table2 --runs results/smoke/runs --out results/smoke
python -m cmrepro.report appendix               # Appendix A.2.1: Adam+MEG on CIFAR10 beside the paper's
python -m cmrepro.report figure8               # training-time analysis figures
python -m cmrepro.report index                 # results/README.md: every table and figure, command, status

Exit status 2, with one line saying why and writing nothing, when there is nothing to report
(no runs of the table or figure under --runs) or the runs cannot be trusted (a metrics.jsonl
that two processes wrote at once; a cell of smoke and full-scale runs together).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from types import ModuleType

from ..cli import unwritable_directory
from .index import write_index
from .run_table import ReportError
from .table_report import TABLES, write_grid_report, write_table_report


def _analysis() -> ModuleType:
    # Imported on use: the analysis figures need matplotlib's full import, tables do not.
    from . import analysis

    return analysis


def main(argv: list[str] | None = None) -> int:
    analysis = _analysis()
    parser = argparse.ArgumentParser(
        prog="python -m cmrepro.report", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "name", choices=[*TABLES, *analysis.FIGURES, "index"], help="a paper table or figure, or the index"
    )
    parser.add_argument("--runs", type=Path, default=Path("results/runs"), help="root of the run directories")
    parser.add_argument("--out", type=Path, default=Path("results"), help="writes <out>/tables and <out>/figures")
    parser.add_argument("--grid", action="store_true", help="tables: choose the best setting of the grid runs")
    args = parser.parse_args(argv)
    blocked = unwritable_directory(args.out)
    if blocked is not None:
        print(f"cmrepro.report: cannot write under {args.out}: {blocked} is not writable; choose another --out",
              file=sys.stderr)  # fmt: skip
        return 2
    if args.name == "index":  # from committed files only, never from run directories
        print(write_index(out=args.out / "README.md"))
        return 0
    if not args.runs.is_dir():
        print(f"cmrepro.report: no run directory at {args.runs}; run the experiments first", file=sys.stderr)
        return 2
    try:
        written = _write(args, analysis)
    except ReportError as error:
        print(f"cmrepro.report: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a disk that became read-only or full while writing
        print(f"cmrepro.report: cannot write under {args.out}: {error.strerror}: {error.filename}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


def _write(args: argparse.Namespace, analysis: ModuleType) -> list[Path]:
    """The files of the table or figure ``args.name``; :class:`ReportError` when there are none to write."""
    tables_dir, figures_dir = args.out / "tables", args.out / "figures"
    if args.name in TABLES:
        if args.grid:
            return write_grid_report(args.name, args.runs, tables_dir)
        return write_table_report(args.name, args.runs, tables_dir, figures_dir)
    written = analysis.FIGURES[args.name](args.runs, figures_dir)
    if not written:  # a figure without runs returns no files (it is also called outside the CLI)
        raise ReportError(analysis.nothing_to_draw(args.name, args.runs))
    return written


if __name__ == "__main__":
    sys.exit(main())
