"""Tables and figures from run directories, beside the paper's numbers (``python -m cmrepro.report``).

- :mod:`.run_table`: run directories as pandas tables.
- :mod:`.tables`: cells (mean +- std over seeds), the paper's cells, grid choice, the paper's layout.
- :mod:`.speedup`: Table 3's speed-up column.
- :mod:`.curves`: validation curves with seed bands.
- :mod:`.render`: markdown and LaTeX.
- :mod:`.table_report`: one table's report files.
- :mod:`.analysis`: the training-time analysis figures (Figures 8-10, 19, 20).
- :mod:`.notes`: what a table's report says beside its cells (Table 2's weight decay, Table 3's settings).
- :mod:`.index`: ``results/README.md``, every table and figure of the paper with its command and status.
"""

from ..suite_check import require_suite_when_run

# `python -m cmrepro.report` runs this before __main__.py, and run_table imports pandas: the
# command's one-line check belongs here (a library import keeps the usual ImportError).
require_suite_when_run(__name__)

from .run_table import load_metrics, load_runs  # noqa: E402

__all__ = ["load_metrics", "load_runs"]
