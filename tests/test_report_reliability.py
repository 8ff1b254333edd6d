"""The report refuses run data it cannot trust, says when there is nothing to report, shows
diverged cells as diverged, and says when its cells are smoke output."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from run_fixtures import write_run
from train_helpers import ROOT

from cmrepro.report.__main__ import main as report_main
from cmrepro.report.analysis import FIGURE_TABLES, FIGURES
from cmrepro.report.run_table import MONITOR_OF_TASK, STREAM_MONITOR, load_runs
from cmrepro.report.table_report import MAKE_TARGETS
from cmrepro.run_lock import RunLock
from cmrepro.training import streams
from cmrepro.training.steps import ClassificationTask, LanguageModelTask

SMOKE_TITLE = "smoke scale: stand-in data, a few steps; not comparable to the paper"


def edit_result(run_dir: Path, **changes) -> None:
    result = json.loads((run_dir / "result.json").read_text())
    result.update(changes)
    (run_dir / "result.json").write_text(json.dumps(result))


def smoke(run_dir: Path) -> Path:
    """Make a written run a smoke-scale one, as scale=smoke configures it (dataset.stand_in)."""
    config = json.loads((run_dir / "result.json").read_text())["config"]
    config["dataset"]["stand_in"] = {"train": 64, "val": 32}
    edit_result(run_dir, config=config)
    return run_dir


def diverged_before_logging(root: Path, name: str, **run) -> Path:
    """A run whose loss was non-finite in its first epoch: no rows, and result.json without a monitor,
    as the supervised loop's summary of no rows leaves it."""
    run_dir = write_run(root, name, status="diverged", **run)
    result = json.loads((run_dir / "result.json").read_text())
    del result["monitor"]
    result.update(best=None, epochs_completed=0)
    (run_dir / "result.json").write_text(json.dumps(result))
    (run_dir / "metrics.jsonl").write_text("")
    return run_dir


def report(capsys, *argv: str) -> tuple[int, str]:
    code = report_main(list(argv))
    return code, capsys.readouterr().err


# ---- 1. a metrics.jsonl that two processes wrote ------------------------------------------------
def test_repeated_epochs_refuse_the_table_in_one_line_with_exit_2_and_write_nothing(tmp_path):
    runs, out = tmp_path / "runs", tmp_path / "out"
    write_run(runs, "fine", optimizer="adam", curve=[90.0, 91.0])
    twice = write_run(runs, "twice", curve=[50.0, 60.0])
    metrics = twice / "metrics.jsonl"
    metrics.write_text(metrics.read_text() * 2)  # both processes appended epochs 1 and 2
    done = subprocess.run(
        [sys.executable, "-m", "cmrepro.report", "table2", "--runs", str(runs), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (
        f"cmrepro.report: {metrics} repeats epochs 1, 2; two processes trained this run at once: "
        "delete the run directory and re-run it\n"
    )
    assert not out.exists()  # no table with a wrong cell


def test_repeated_task_rows_refuse_table4_and_the_figures(tmp_path, capsys):
    runs = tmp_path / "runs"
    stream = write_run(runs, "stream", table="table4", dataset="tinyimagenet", monitor="learning_accuracy")
    rows = [{"task": task, "epoch": 2 * task, "val_accuracy": 50.0} for task in (1, 2)]
    (stream / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in [*rows, rows[1]]))
    code, err = report(capsys, "table4", "--runs", str(runs), "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "metrics.jsonl repeats epochs 4;" in err
    # Another table's corrupt run does not stop this one.
    write_run(runs, "sgd", table="table3", optimizer="sgd", curve=[90.0])
    assert report(capsys, "table3", "--runs", str(runs), "--out", str(tmp_path))[0] == 0
    # A figure refuses it too.
    curve = write_run(runs, "figure8", table="figure8", dataset="cifar100", curve=[1.0, 2.0])
    (curve / "metrics.jsonl").write_text('{"epoch": 1, "sharpness": 1.0}\n' * 2)
    code, err = report(capsys, "figure8", "--runs", str(runs), "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "repeats epochs 1;" in err
    assert not (tmp_path / "figures" / "figure8_cifar100.png").exists()


def test_grid_report_refuses_repeated_epochs(tmp_path, capsys):
    runs = tmp_path / "runs"
    grid = write_run(runs, "g", kind="grid", curve=[60.0])
    (grid / "metrics.jsonl").write_text((grid / "metrics.jsonl").read_text() * 3)
    code, err = report(capsys, "table2", "--grid", "--runs", str(runs), "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "repeats epochs 1;" in err
    assert not (tmp_path / "tables").exists()


# ---- 2. nothing to report ------------------------------------------------------------------------
@pytest.mark.parametrize("figure", sorted(FIGURES))
def test_a_figure_without_runs_exits_2_naming_the_root_and_the_table_tags(figure, tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "other", table="table2")  # runs of something else
    code, err = report(capsys, figure, "--runs", str(runs), "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert f"nothing to draw for {figure}: no runs of it under {runs}" in err
    assert f"benchmark.table {' or '.join(FIGURE_TABLES[figure])})" in err and f"make {figure}" in err


def test_a_figure_whose_runs_have_not_finished_says_so(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "running", table="figure9", status="running", curve=[10.0])
    with RunLock(runs / "running"):  # its process, still training
        code, err = report(capsys, "figure9", "--runs", str(runs), "--out", str(tmp_path))
    assert code == 2 and "nothing to draw for figure9: 1 runs of it (1 running), none yet with what it draws" in err


def test_a_table_without_its_runs_exits_2_and_writes_nothing(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "grid", kind="grid")  # a grid run is not a cell of the table
    write_run(runs, "other", table="table3", optimizer="sgd")
    code, err = report(capsys, "table2", "--runs", str(runs), "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert f"no runs of table2 under {runs} (result.json with benchmark.table table2, kind best)" in err
    assert "make reproduce-table2" in err and not (tmp_path / "tables").exists()
    code, err = report(capsys, "table3", "--grid", "--runs", str(runs), "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1 and "no grid runs of table3" in err and "make grid-table3" in err


def test_the_make_targets_the_messages_name_are_phony_targets_of_the_makefile():
    phony = " ".join(re.findall(r"^\.PHONY:((?:.*\\\n)*.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)).split()
    named = [*MAKE_TARGETS.values(), *(f"grid-{table}" for table in MAKE_TARGETS if table != "appendix")]
    assert set(named + list(FIGURES) + [f"{figure}-smoke" for figure in FIGURES]) <= set(phony)


# ---- 3. diverged cells ---------------------------------------------------------------------------
def test_a_cell_whose_runs_all_diverged_shows_as_diverged_not_missing_nor_nan(tmp_path, capsys):
    runs = tmp_path / "runs"
    for seed in range(5):
        diverged_before_logging(runs, f"adam{seed}", optimizer="adam", seed=seed)
    for seed, best in enumerate([93.0, 93.2, 93.1, 93.1]):
        write_run(runs, f"cm{seed}", optimizer="adam_cm", seed=seed, curve=[best])
    write_run(runs, "cm-late", optimizer="adam_cm", seed=4, status="diverged", curve=[80.0, 85.0])  # logged first
    diverged_before_logging(runs, "cg0", optimizer="adam_cg")
    write_run(runs, "cg1", optimizer="adam_cg", seed=1, status="failed", curve=[70.0])  # may still come
    assert report(capsys, "table2", "--runs", str(runs), "--out", str(tmp_path))[0] == 0
    markdown = (tmp_path / "tables" / "table2.md").read_text()
    latex = (tmp_path / "tables" / "table2.tex").read_text()
    assert "nan" not in markdown.lower() and "nan" not in latex.lower()
    assert "| Adam | missing · paper 179.4 ± 2.8 (n=0/5) | diverged 5/5 · paper 93.9 ± 0.3 (n=0/5) |" in markdown
    assert "93.1 ± 0.1 · paper 94.0 ± 0.3 · Δ -0.9 · differs (n=4/5, diverged 1/5)" in markdown
    assert "diverged 1/5 · paper 93.8 ± 0.4 (n=0/5, 1 not done)" in markdown
    missing = next(line for line in markdown.splitlines() if line.startswith("**Missing cells**"))
    assert "cifar10/adam (" not in missing and "cifar10/adam_cm" not in missing
    assert "cifar10/adam_cg (val_accuracy)" in missing  # its failed run can still give it a value
    assert "**Diverged cells** (1), every run a non-finite loss: cifar10/adam (val_accuracy, diverged 5/5)." in markdown
    assert "Adam & -- (179.4) & diverged 5/5 (93.9) &" in latex
    assert "Adam+CM & -- (163.2) & 93.1 $\\pm$ 0.1 [diverged 1/5]$^{\\neq}$ (94.0) &" in latex
    text = (tmp_path / "tables" / "table2.csv").read_text()
    cells = pd.read_csv(tmp_path / "tables" / "table2.csv").set_index(["dataset", "optimizer"])
    assert "nan" not in text.lower() and len(cells) == 20  # the paper's cells, no stray one
    adam, cm = cells.loc[("cifar10", "adam")], cells.loc[("cifar10", "adam_cm")]
    assert (adam["metric"], adam["runs"], adam["diverged"], adam["not_done"]) == ("val_accuracy", 0, 5, 0)
    assert pd.isna(adam["mean"]) and (cm["runs"], cm["diverged"]) == (4, 1)


def test_table3_speedup_of_a_diverged_pair_is_diverged_not_missing(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "sgd", table="table3", optimizer="sgd", curve=[80.0, 93.0])
    write_run(runs, "cm", table="table3", optimizer="sgd_cm", curve=[93.5])
    write_run(runs, "cg-slow", table="table3", dataset="cifar100", optimizer="sgd_cg", curve=[10.0, 20.0])
    write_run(runs, "sgd-100", table="table3", dataset="cifar100", optimizer="sgd", curve=[30.0])
    diverged_before_logging(runs, "cg-100", table="table3", dataset="cifar100", optimizer="sgd_cg", seed=1)
    for seed in range(2):
        diverged_before_logging(runs, f"cg{seed}", table="table3", optimizer="sgd_cg", seed=seed)
    assert report(capsys, "table3", "--runs", str(runs), "--out", str(tmp_path))[0] == 0
    markdown = (tmp_path / "tables" / "table3.md").read_text()
    missing = next(line for line in markdown.splitlines() if line.startswith("**Missing cells**"))
    assert "cifar10/sgd_cg" not in missing and "cifar100/sgd_cm (speedup)" in missing
    # A speed-up its finished run never reached is missing, whatever its other run did.
    assert "cifar100/sgd_cg (speedup)" in missing and "missing · paper 1.2 (n=1/5, diverged 1/5)" in markdown
    assert "cifar10/sgd_cg (val_accuracy, diverged 2/5), cifar10/sgd_cg (speedup, diverged 2/5)" in markdown
    cells = pd.read_csv(tmp_path / "tables" / "table3.csv").set_index(["dataset", "optimizer", "metric"])
    assert cells.loc[("cifar10", "sgd_cg", "speedup"), "diverged"] == 2
    assert cells.loc[("cifar10", "sgd_cm", "speedup"), "mean"] == 2.0  # reaches SGD's 93.0 one epoch sooner


def test_the_monitor_of_a_run_that_logged_nothing_is_the_training_loops():
    assert MONITOR_OF_TASK == {
        "classification": ClassificationTask.monitor,
        "language_model": LanguageModelTask.monitor,
    }
    assert STREAM_MONITOR == streams.MONITOR


def test_the_monitor_of_a_run_that_logged_nothing_follows_its_dataset(tmp_path):
    for dataset in ("ptb", "cifar100", "five_datasets"):
        diverged_before_logging(tmp_path, dataset, dataset=dataset)
    monitors = load_runs(tmp_path).set_index("dataset")["monitor"]
    assert monitors.to_dict() == {"cifar100": "val_accuracy", "five_datasets": "learning_accuracy",
                                  "ptb": "val_perplexity"}  # fmt: skip


# ---- 4. smoke output says so ---------------------------------------------------------------------
def test_a_table_of_smoke_runs_says_so_in_its_title_and_caption(tmp_path, capsys):
    runs = tmp_path / "runs"
    smoke(write_run(runs, "a", curve=[12.0]))
    assert report(capsys, "table2", "--runs", str(runs), "--out", str(tmp_path))[0] == 0
    markdown = (tmp_path / "tables" / "table2.md").read_text()
    assert markdown.startswith(f"# table2: ours ({SMOKE_TITLE})\n")  # nothing beside the paper's
    latex = (tmp_path / "tables" / "table2.tex").read_text()
    assert "\\caption{Smoke scale: stand-in data, a few steps; not comparable to the paper. Best validation" in latex
    assert set(pd.read_csv(tmp_path / "tables" / "table2.csv")["scale"].dropna()) == {"smoke"}
    # Full-scale runs alone: no note.
    full = tmp_path / "full"
    write_run(full, "a", curve=[93.0])
    assert report(capsys, "table2", "--runs", str(full), "--out", str(full))[0] == 0
    assert (full / "tables" / "table2.md").read_text().startswith("# table2: ours beside the paper's\n")


def test_a_table_mixing_scales_marks_its_smoke_cells(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "full", optimizer="adam_cm", curve=[94.0])
    smoke(write_run(runs, "smoke", optimizer="adam", curve=[12.0]))
    assert report(capsys, "table2", "--runs", str(runs), "--out", str(tmp_path))[0] == 0
    markdown = (tmp_path / "tables" / "table2.md").read_text()
    assert markdown.startswith("# table2: ours beside the paper's (mixed scales: cells marked † are smoke scale (")
    assert "| 12.0 † (n=1/5) |" in markdown and "| 94.0 · paper 94.0 ± 0.3 ·" in markdown  # smoke: not compared
    latex = (tmp_path / "tables" / "table2.tex").read_text()
    # one run per cell: the full cell carries the "too few runs" mark (?) of its verdict against the paper
    assert "12.0$^\\dagger$ &" in latex and "94.0$^{?}$ (94.0)" in latex
    assert "\\caption{Mixed scales: cells marked $\\dagger$ are smoke scale" in latex


def test_a_cell_pooling_smoke_and_full_runs_is_refused(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "full", curve=[94.0])
    smoke(write_run(runs, "smoke", seed=1, curve=[12.0]))
    code, err = report(capsys, "table2", "--runs", str(runs), "--out", str(tmp_path))
    assert code == 2 and err.count("\n") == 1
    assert f"table2 cells cifar10/adam_cm pool smoke-scale and full-scale runs under {runs};" in err
    assert not (tmp_path / "tables").exists()
