"""The paper's published numbers, transcribed once as CSV, shipped inside the package.

- ``tables.csv``: the cells of Tables 2, 3, 4 and 14 (mean and std over seeds);
- ``appendix_meg.csv``: the numbers Appendix A.2.1 gives in its text (Adam+MEG on CIFAR10);
- ``best_hyperparameters.csv``: the best settings of Tables 9, 10, 11 and 13;
- ``grids.csv``: the grids searched (Tables 8 and 12);
- ``toy_tables.csv``: the toy tables (Tables 1 and 5).

They are inputs of the report and of ``scripts/write_experiments.py``, so they
travel as package data (``[tool.setuptools.package-data]`` in pyproject.toml)
and are found through ``importlib.resources``: an installed, non-editable
cmrepro reads them as well as a checkout does.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def _folder() -> Path:
    folder = files(__name__)
    # pip installs packages as folders; the readers (pandas, csv) want real paths, so a zipped
    # install is refused here, at import, rather than deep inside a report.
    if not isinstance(folder, Path):
        raise ImportError(
            f"invalid location of {__name__}: {folder!r} (must be a folder on disk; install cmrepro with pip)"
        )
    return folder


PAPER_DATA: Path = _folder()
