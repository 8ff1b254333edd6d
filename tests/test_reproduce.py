"""``make reproduce-table*`` / ``python -m cmrepro.reproduce``: the commands it runs, and one
table target end to end at smoke scale (sweep with joblib, skip on re-run, report)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pandas as pd
import pytest
from run_fixtures import write_run
from train_helpers import ROOT, run_cli

from cmrepro.reproduce import commands, main, report_and_count


def _commands(argv: list[str]) -> list[list[str]]:
    parser = argparse.ArgumentParser()
    parser.add_argument("table")
    parser.add_argument("--grid", action="store_true")
    parser.add_argument("--scale", default="full")
    parser.add_argument("--launcher", default="local")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("overrides", nargs="*")
    return commands(parser.parse_intermixed_args(argv))


def test_best_settings_run_as_one_sweep_over_experiments_and_seeds():
    (command,) = _commands(["table2", "--launcher", "slurm", "hydra.launcher.partition=a100"])
    assert command[1:4] == ["-m", "cmrepro.train", "-m"]
    experiments = command[4].removeprefix("experiment=").split(",")
    assert len(experiments) == 20 and "table2/best/imagenet_adam_sam_cm" in experiments
    assert command[5:] == ["seed=0,1,2,3,4", "scale=full", "hydra/launcher=slurm", "hydra.launcher.partition=a100"]


def test_smoke_grids_keep_two_learning_rates_and_one_of_everything_else():
    built = {command[4]: command[5:] for command in _commands(["table2", "--grid", "--scale", "smoke"])}
    assert len(built) == 20
    assert built["experiment=table2/grid/cifar10_adam_sam_cm"] == [
        "scale=smoke",
        "optimizer.lr=0.1,0.01",
        "optimizer.topC=5",
        "optimizer.decay=0.7",
        "optimizer.rho=0.01",
        "optimizer.betas=[0.9,0.99]",
    ]
    full = {command[4]: command[5:] for command in _commands(["table3", "--grid", "--launcher", "joblib"])}
    assert full["experiment=table3/grid/cifar10_sgd"] == [
        "scale=full",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
    ]


def test_a_failing_job_is_recorded_and_the_sweep_goes_on(tmp_path):
    done = run_cli(
        ["-m", "experiment=table3/grid/cifar10_sgd", "scale=smoke", "optimizer.lr=0.1,-1", "trainer.epochs=1",
         "trainer.lr_milestones=[]", f"paths.output_dir={tmp_path}"]
    )  # fmt: skip
    assert done.returncode == 1, done.stderr  # after running every job
    statuses = {path.parent.name: json.loads(path.read_text())["status"] for path in tmp_path.rglob("result.json")}
    assert sorted(statuses.values()) == ["done"], statuses  # the refused job left no directory
    assert "cmrepro.train: Invalid learning rate: -1" in done.stderr  # one line, from torch.optim.SGD
    assert "sweep: 2 jobs recorded: 1 done, 1 refused" in done.stderr


def test_table3_smoke_target_end_to_end_and_idempotent(tmp_path, capfd):
    runs = tmp_path / "runs"
    # Checkpoints dropped as runs end: the sweep's overrides reach every run (and the disk stays small).
    overrides = [f"paths.output_dir={runs}", "trainer.keep_checkpoint=false"]
    arguments = ["table3", "--scale", "smoke", *overrides]
    target = [sys.executable, "-m", "cmrepro.reproduce", *arguments]
    first = subprocess.run([*target, "--launcher", "joblib", "--jobs", "2"], cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-3000:]
    results = [json.loads(path.read_text()) for path in runs.rglob("result.json")]
    assert len(results) == 2 * 3 * 5 and {result["status"] for result in results} == {"done"}
    assert not list(runs.rglob("checkpoint.pt"))

    cells = pd.read_csv(tmp_path / "tables" / "table3.csv")
    assert len(cells) == 12 and cells["mean"].notna().all()
    assert (cells.loc[cells["metric"] == "val_accuracy", "runs"] == 5).all()
    assert "| SGD+CM |" in (tmp_path / "tables" / "table3.md").read_text()
    assert {path.name for path in (tmp_path / "figures").iterdir()} == {
        "table3_cifar10_curves.png",
        "table3_cifar100_curves.png",
    }

    # Started again (with the basic launcher this time), every run is skipped: the command is not even
    # started. In this process (what `python -m cmrepro.reproduce` exits with is main's return value):
    # the process boundary and its exit code were checked by the first run.
    capfd.readouterr()
    assert main(arguments) == 0
    again = capfd.readouterr().err
    assert "cmrepro.reproduce: 30 of 30 runs already ended (done 30); launching none" in again
    assert "nothing to do" not in again


def test_dry_run_prints_the_commands(capsys):
    assert main(["table3", "--dry-run"]) == 0
    assert capsys.readouterr().out.startswith("+ python -m cmrepro.train -m experiment=table3/best/cifar100_sgd,")


def test_runs_that_did_not_end_are_counted_for_the_exit_code(tmp_path, capsys):
    runs = tmp_path / "runs"
    write_run(runs, "done", table="table3", optimizer="sgd")
    write_run(runs, "diverged", table="table3", optimizer="sgd_cm", status="diverged")  # an outcome, not an error
    write_run(runs, "failed", table="table3", optimizer="sgd_cg", status="failed")
    write_run(runs, "other", table="table2", status="failed")  # another table's
    args = argparse.Namespace(table="table3", grid=False, scale="full", overrides=[f"paths.output_dir={runs}"])
    assert report_and_count(args) == 1
    assert "1 of 3 table3 runs did not finish (1 failed)" in capsys.readouterr().err
    assert (tmp_path / "tables" / "table3.md").exists()


def test_estimated_hours_are_runs_times_epochs_times_steps(tmp_path):
    bench = {
        "meta": {"device": "test"},
        "results": [{"dataset": "cifar10", "seconds_per_step": 0.01, "steps_per_epoch": 625}],
    }
    (tmp_path / "bench.json").write_text(json.dumps(bench))
    done = subprocess.run(
        [sys.executable, "scripts/estimate_hours.py", str(tmp_path / "bench.json"), "--out", str(tmp_path / "h.json")],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    rows = {row["target"]: row for row in json.loads((tmp_path / "h.json").read_text())["rows"]}
    # Table 3 on CIFAR10: 3 optimizers x 5 seeds x 100 epochs x 625 steps x 0.01 s, none of them SAM.
    assert rows["reproduce-table3"]["hours"]["cifar10"] == pytest.approx(15 * 100 * 625 * 0.01 / 3600)
    # Table 2 on CIFAR10: 3 plain and 2 SAM optimizers (counted twice) x 5 seeds.
    assert rows["reproduce-table2"]["hours"]["cifar10"] == pytest.approx((3 + 2 * 2) * 5 * 100 * 625 * 0.01 / 3600)
