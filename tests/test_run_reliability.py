"""Runs on a real cluster (issue 12): data staged elsewhere, two launches of one run, signals,
sweeps that report what did not finish, bad command lines, and logs without a terminal."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
import yaml
from data_fixtures import write_cifar10
from hydra import compose, initialize_config_dir
from train_helpers import ROOT, compose_run, metric_rows, run_cli

import cmrepro.training.epoch as epoch_module
from cmrepro.command_checks import CommandLineError, check_command_line
from cmrepro.config_keys import known_keys
from cmrepro.run_identity import INCIDENTAL_KEYS, dirname_exclude_keys, without_incidental
from cmrepro.run_lock import RunLock, RunLocked
from cmrepro.train import CONF_DIR
from cmrepro.training import ConfigError, Interrupted, train

# CIFAR10 in its real format, 80 training images in batches of 16: 5 steps an epoch.
CIFAR = [
    "dataset=cifar10",
    "dataset.val_size=20",
    "dataset.batch_size=16",
    "dataset.eval_batch_size=20",
    "dataset.augment=false",  # so that the resume with a worker process replays the same batches
    "dataset.num_workers=0",
    "model.width=0.125",
    "trainer.epochs=2",
    "trainer.lr_milestones=[]",
    "trainer.progress=false",
    "trainer.device=cpu",
]
# One quick synthetic run for the CLI: 2 steps an epoch, 3 epochs.
QUICK = ["dataset=synthetic_image", "model.width=0.125", "dataset.num_train=32", "dataset.num_val=16",
         "dataset.image_size=16", "dataset.batch_size=16", "trainer.epochs=3", "trainer.lr_milestones=[]",
         "trainer.progress=false", "dataset.num_workers=0"]  # fmt: skip


def _crash_at(step: int):
    def crash(global_step: int) -> None:
        if global_step == step:
            raise RuntimeError("crash")

    return crash


# ---------------------------------------------------------------- 1. resume after the data moves


def test_a_run_resumes_on_a_copy_of_its_data_elsewhere_and_refuses_other_data(tmp_path, monkeypatch):
    first, scratch = tmp_path / "data", tmp_path / "scratch"
    write_cifar10(first / "cifar10")
    straight, moved = tmp_path / "straight", tmp_path / "moved"
    train(compose_run([*CIFAR, f"paths.data_dir={first}"], straight), straight)

    monkeypatch.setattr(epoch_module, "_fault_injection", _crash_at(7))  # in epoch 2
    with pytest.raises(RuntimeError):
        train(compose_run([*CIFAR, f"paths.data_dir={first}"], moved), moved)
    monkeypatch.undo()
    shutil.copytree(first, scratch)  # staged to a job's scratch disk
    resumed = train(compose_run([*CIFAR, f"paths.data_dir={scratch}", "dataset.num_workers=1"], moved), moved)
    assert resumed["status"] == "done" and metric_rows(moved) == metric_rows(straight)

    other = tmp_path / "other"
    monkeypatch.setattr(epoch_module, "_fault_injection", _crash_at(7))
    with pytest.raises(RuntimeError):
        train(compose_run([*CIFAR, f"paths.data_dir={first}"], other), other)
    monkeypatch.undo()
    with open(scratch / "cifar10" / "cifar-10-batches-py" / "data_batch_1", "ab") as batch:
        batch.write(b"x")  # still a readable pickle, but not the file the run started with
    with pytest.raises(ConfigError, match="trained on other data.*point dataset.data_dir"):
        train(compose_run([*CIFAR, f"paths.data_dir={scratch}"], other), other)


def test_one_list_of_incidental_keys_names_the_run_directory_and_checks_a_resume():
    hydra_config = yaml.safe_load((ROOT / "conf" / "config.yaml").read_text())["hydra"]
    excluded = hydra_config["job"]["config"]["override_dirname"]["exclude_keys"]
    assert sorted(excluded) == dirname_exclude_keys(known_keys(ROOT / "conf"))
    assert {"logger.project", "dataset.num_workers", "paths.data_dir"} <= set(excluded)
    config = {"seed": 0, "dataset": {"name": "x", "data_dir": "/a", "num_workers": 8}, "paths": {"data_dir": "/a"}}
    assert without_incidental(config) == {"seed": 0, "dataset": {"name": "x"}}
    assert config["dataset"]["data_dir"] == "/a"  # a copy
    # The keys named exist in some config or the code (a misspelt entry would exclude nothing).
    assert all(key in known_keys(ROOT / "conf") for key in INCIDENTAL_KEYS)


def test_the_run_directory_name_leaves_out_the_incidental_overrides():
    overrides = [*QUICK, "dataset.num_workers=0", "trainer.device=cpu", "seed=4", "paths.data_dir=/scratch"]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        name = compose(config_name="config", overrides=overrides, return_hydra_config=True).hydra.job.override_dirname
    assert "seed=4" in name and "model.width=0.125" in name
    assert not any(key in name for key in ("num_workers", "device", "data_dir", "dataset=", "progress"))


# ---------------------------------------------------------------- 2. one process per run directory


def test_a_second_process_on_a_run_directory_exits_at_once_naming_the_holder(tmp_path):
    run_dir = tmp_path / "run"
    with RunLock(run_dir):
        with pytest.raises(RunLocked, match=f"{run_dir} is being trained by pid {os.getpid()}"):
            RunLock(run_dir).acquire()
        second = run_cli([*QUICK, f"run_dir={run_dir}"])
    assert second.returncode == 3, second.stderr
    assert second.stderr.strip().splitlines() == [
        f"cmrepro.train: {run_dir} is being trained by pid {os.getpid()} on {os.uname().nodename}; "
        "not starting a second copy (wait for it, or stop it, then re-run)"
    ]
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "result.json").exists()


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from cmrepro.run_lock import RunLock; RunLock({str(tmp_path)!r}).acquire(); "
         "print('held', flush=True); import time; time.sleep(60)"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RunLocked):
        RunLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    with RunLock(tmp_path):
        pass


def test_a_sweep_counts_a_locked_job_as_skipped_and_reports_failures(tmp_path):
    args = [*QUICK, "trainer.epochs=1", f"paths.output_dir={tmp_path}"]
    sweep = run_cli(["-m", *args, "seed=1,2"])
    assert sweep.returncode == 0, sweep.stderr
    assert "sweep: 2 jobs recorded: 2 done" in sweep.stderr
    (held,) = [path.parent for path in tmp_path.rglob("result.json") if "seed=1" in str(path)]
    shutil.rmtree(held)  # so that the job trains again, and finds its directory locked
    with RunLock(held):
        again = run_cli(["-m", *args, "seed=1,2"])
    assert again.returncode == 0, again.stderr
    assert "2 jobs recorded: 1 already ended, 1 skipped" in again.stderr.replace(
        "1 skipped, 1 already ended", "1 already ended, 1 skipped"
    )
    assert f"skipped: {held}: {held} is being trained by pid" in again.stderr


# ---------------------------------------------------------------- 3. signals


def test_sigterm_checkpoints_inside_the_epoch_marks_the_run_interrupted_and_the_rerun_resumes(tmp_path):
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    train(compose_run(QUICK, straight), straight)
    # Step 3 of 6: inside epoch 2, after epoch 1's checkpoint.
    interrupted = run_cli([*QUICK, f"run_dir={stopped}"], env={"CMREPRO_SIGNAL_AT_STEP": "3:TERM"})
    assert interrupted.returncode == 143, interrupted.stderr
    assert "Traceback" not in interrupted.stderr
    assert interrupted.stderr.strip().splitlines()[-1] == (
        f"cmrepro.train: {stopped}: stopped by SIGTERM at step 1 of epoch 2; re-run the same command to resume"
    )
    result = json.loads((stopped / "result.json").read_text())
    assert result["status"] == "interrupted" and result["epochs_completed"] == 1 and result["seed"] == 0
    checkpoint = torch.load(stopped / "checkpoint.pt", weights_only=True)
    assert (checkpoint["epoch"], checkpoint["step"]) == (1, 1)  # saved inside the epoch
    assert train(compose_run(QUICK, stopped), stopped)["status"] == "done"  # the same command, in process
    assert metric_rows(stopped) == metric_rows(straight)


@pytest.mark.parametrize("name, code", [("INT", 130), ("USR1", 138)])
def test_ctrl_c_and_sigusr1_stop_the_run_the_same_way_with_their_exit_codes(name, code, tmp_path, monkeypatch):
    monkeypatch.setenv("CMREPRO_SIGNAL_AT_STEP", f"3:{name}")
    with pytest.raises(Interrupted) as stopped:
        train(compose_run(QUICK, tmp_path), tmp_path)
    assert stopped.value.exit_code == code
    assert str(stopped.value) == f"stopped by SIG{name} at step 1 of epoch 2; re-run the same command to resume"
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "interrupted"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handlers are put back


def test_a_chained_launcher_handler_runs_after_the_checkpoint(tmp_path):
    """Submitit's SIGUSR2 handler requeues the job: it must see the interrupted run's checkpoint."""
    script = f"""
import json, os, signal, sys
from pathlib import Path
sys.path.insert(0, {str(ROOT / "tests")!r})
from train_helpers import compose_run
from cmrepro.training import Interrupted, train
seen = []
def requeue(signum, frame):
    seen.append(json.load(open({str(tmp_path / "result.json")!r}))["status"])
signal.signal(signal.SIGUSR2, requeue)
os.environ["CMREPRO_SIGNAL_AT_STEP"] = "3:USR2"
try:
    train(compose_run({QUICK!r}, Path({str(tmp_path)!r})), Path({str(tmp_path)!r}))
except Interrupted as error:
    print(error.exit_code, seen)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert done.stdout.strip() == f"{128 + signal.SIGUSR2} ['interrupted']", done.stderr


# ---------------------------------------------------------------- 4. sweeps that fail


def test_a_sweep_with_a_failed_job_exits_non_zero_with_a_summary(tmp_path):
    args = [*QUICK, "trainer.epochs=1", "optimizer=sgd", f"paths.output_dir={tmp_path}"]
    sweep = run_cli(["-m", *args, "optimizer.lr=0.1,-1"])
    assert sweep.returncode == 1
    assert "sweep: 2 jobs recorded: 1 done, 1 refused" in sweep.stderr
    assert "job 1 refused: " in sweep.stderr and "Invalid learning rate: -1" in sweep.stderr
    results = list(tmp_path.rglob("result.json"))
    assert len(results) == 1  # the refused job left no run directory
    assert not (tmp_path / ".sweeps").exists()


# ---------------------------------------------------------------- 6. bad command lines


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.lr_milestones=5"], "invalid trainer.lr_milestones: 5 (must be epochs between 1 and"),
        (["+foo=1"], "unknown config key 'foo' (no config file or code reads it)"),
        (["+trainer.epoch=1"], "unknown config key 'trainer.epoch' (did you mean trainer.epochs?)"),
        (["optimizer.lrr=1"], "unknown config key 'optimizer.lrr' (did you mean optimizer.lr?)"),
        (["optimiser=adam"], "unknown config key 'optimiser' (did you mean optimizer?)"),
        (["dataset=cifar10", "trainer.epochs=1"], "for a shorter run set trainer.lr_milestones=[]"),
        (["-m", "optimiser=adam,sgd", "--cfg", "job"], "unknown config key 'optimiser' (did you mean optimizer?)"),
    ],
)
def test_a_bad_command_line_is_one_line_before_hydra_runs(overrides, message):
    with pytest.raises((CommandLineError, ConfigError)) as refused:
        check_command_line(overrides, CONF_DIR)
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_refused_command_line_exits_2_with_one_line_leaving_no_directory(tmp_path):
    done = run_cli(["-m", "+trainer.epoch=1,2", f"paths.output_dir={tmp_path / 'runs'}"])
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cmrepro.train: unknown config key 'trainer.epoch' (did you mean trainer.epochs?); "
        "remove it from the command line"
    ]
    assert not (tmp_path / "runs").exists()


# ---------------------------------------------------------------- 7. read-only output


READ_ONLY = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'


def _with_read_only(directory, command: list[str]) -> subprocess.CompletedProcess:
    """``command`` run where ``directory`` is a read-only mount (a private mount namespace: the
    rest of the machine sees nothing); root, as on the test machines, writes anywhere otherwise."""
    wrapped = ["unshare", "--mount", "sh", "-c", READ_ONLY, str(directory), *command]
    return subprocess.run(wrapped, capture_output=True, text=True, cwd=ROOT, timeout=120)


def _can_mount_read_only() -> bool:
    try:
        probe = _with_read_only("/tmp", ["true"])
    except OSError:
        return False
    return probe.returncode == 0


@pytest.mark.skipif(
    not _can_mount_read_only(), reason="needs unshare --mount and mount (root) for a read-only directory"
)
def test_an_unwritable_output_directory_is_one_line_and_exit_2_for_train_and_report(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    done = _with_read_only(runs, [sys.executable, "-m", "cmrepro.train", *QUICK, f"paths.output_dir={runs}"])
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"cmrepro.train: cannot write run directories under {runs}: {runs} is not writable; "
        "set paths.output_dir to a writable directory"
    ]
    report = [sys.executable, "-m", "cmrepro.report", "table2", "--runs", str(runs), "--out", str(runs)]
    done = _with_read_only(runs, report)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"cmrepro.report: cannot write under {runs}: {runs} is not writable; choose another --out"
    ]


# ---------------------------------------------------------------- 10. logs without a terminal


def test_every_epoch_is_a_line_on_stderr_and_in_train_log_without_a_terminal(tmp_path):
    run_dir = tmp_path / "run"
    done = run_cli([*QUICK, "trainer.epochs=2", f"run_dir={run_dir}", "metrics.distance.enabled=true"])
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "epoch " in line and "train_loss" in line]
    assert len(lines) == 2
    assert "epoch 2/2" in lines[1] and "val_accuracy" in lines[1] and "lr 0.001" in lines[1]
    log = (run_dir / "train.log").read_text()
    assert "epoch 1/2" in log and "epoch 2/2" in log
    assert "distance" in log and "epoch_time_s" in log  # the whole row in the log
