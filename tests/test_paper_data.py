"""The paper's numbers ship inside the package: a wheel carries them and an installed cmrepro reads them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cmrepro.paper_data import PAPER_DATA

ROOT = Path(__file__).resolve().parents[1]
CSVS = sorted(path.name for path in PAPER_DATA.glob("*.csv"))


def test_the_paper_data_lie_in_the_package():
    assert PAPER_DATA == ROOT / "cmrepro" / "paper_data"
    assert {"tables.csv", "appendix_meg.csv", "best_hyperparameters.csv", "grids.csv", "toy_tables.csv"} <= set(CSVS)


def test_a_non_editable_install_reads_every_csv(tmp_path):
    """Build a wheel from a copy of the sources, unpack it (what pip does) away from the checkout,
    and read every CSV through ``cmrepro.paper_data`` from there."""
    pytest.importorskip("setuptools")
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "cmrepro", source / "cmrepro", ignore=shutil.ignore_patterns("__pycache__"))
    build = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path)]
    subprocess.run([*build, str(source)], check=True, capture_output=True, cwd=tmp_path)
    (wheel,) = tmp_path.glob("cmrepro-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = sorted(Path(name).name for name in archive.namelist() if name.startswith("cmrepro/paper_data/"))
        assert [name for name in shipped if name.endswith(".csv")] == CSVS
        archive.extractall(tmp_path / "installed")

    # The unpacked copy comes first on the path, so it, not the editable checkout, is imported.
    script = (
        "import csv, cmrepro.paper_data as data; print(data.__file__); "
        f"print(sum(len(list(csv.reader((data.PAPER_DATA / name).open()))) for name in {CSVS!r}))"
    )
    env = {"PYTHONPATH": str(tmp_path / "installed"), "PATH": ""}
    result = subprocess.run(
        [sys.executable, "-c", script], check=True, capture_output=True, text=True, cwd=tmp_path, env=env
    )
    location, rows = result.stdout.split()
    assert Path(location).is_relative_to(tmp_path / "installed")
    assert int(rows) == sum(len((PAPER_DATA / name).read_text().splitlines()) for name in CSVS)
