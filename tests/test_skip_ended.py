"""A sweep run again launches only the runs that have not ended: the ended ones (done or diverged,
of the same config, nothing left to do) are left out before launching, with one line, and the
sweep's summary still counts them; a run that can resume is launched."""

from __future__ import annotations

import json
import re
from pathlib import Path

from run_fixtures import write_run
from train_helpers import QUICK, run_cli

from cmrepro.prelaunch import PlannedJob, ended_line, ended_status
from cmrepro.run_files import CHECKPOINT, RESULT

SWEEP = ["-m", "dataset=synthetic_image", "optimizer=adam", *QUICK, "trainer.epochs=1", "trainer.lr_milestones=[]"]


def _results(out: Path) -> dict[str, Path]:
    return {path.parent.name: path for path in out.rglob(RESULT)}


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def _set_status(path: Path, status: str) -> None:
    result = json.loads(path.read_text())
    path.write_text(json.dumps({**result, "status": status}))


def test_a_finished_sweep_run_again_launches_nothing(tmp_path):
    out = tmp_path / "out"
    command = [*SWEEP, "seed=0,1", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"paths.output_dir={out}"]
    first = run_cli(command)
    assert first.returncode == 0, first.stderr[-3000:]
    results = _results(out)
    assert len(results) == 2
    # Each job says one line as it ends, whole (two workers share the terminal); Hydra's list of
    # the jobs and each run's start and epoch lines stay off it, in the run's train.log.
    launched, *ends, summary = _lines(first.stderr)
    assert (
        launched == f"cmrepro.train: launching 2 runs (joblib, 2 at a time) under {out}; each says one line as it ends"
    )
    ended = re.compile(r"cmrepro\.train: (\S+): done: best val_accuracy [\d.]+ at epoch 1 of 1; trained in [\d.]+s")
    assert all(ended.fullmatch(line) for line in ends), ends
    assert sorted(ended.fullmatch(line)[1] for line in ends) == sorted(str(path.parent) for path in results.values())
    assert len(ends) == 2 and summary == "cmrepro.train: sweep: 2 jobs recorded: 2 done"
    for path in results.values():
        log = (path.parent / "train.log").read_text()
        assert "starting " in log and "epoch 1/1" in log and "done: best val_accuracy" in log
    before = {
        name: (path.stat().st_mtime_ns, (path.parent / "metrics.jsonl").read_text()) for name, path in results.items()
    }

    again = run_cli(command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _lines(again.stderr) == ["cmrepro.train: 2 of 2 runs already ended (done 2); launching none"]
    after = {
        name: (path.stat().st_mtime_ns, (path.parent / "metrics.jsonl").read_text()) for name, path in results.items()
    }
    assert after == before  # no job ran: not even to say "already done"
    assert not (out / ".sweeps").exists()


def test_a_partly_finished_sweep_launches_only_the_rest(tmp_path):
    out = tmp_path / "out"
    command = [*SWEEP, "seed=0,1,2", f"paths.output_dir={out}"]
    first = run_cli([*command[:-2], "seed=0,1", f"paths.output_dir={out}"])  # seeds 0 and 1 done
    assert first.returncode == 0, first.stderr[-3000:]
    results = _results(out)
    done, diverged = sorted(results.values())
    _set_status(diverged, "diverged")  # an outcome, never trained again
    kept = done.stat().st_mtime_ns, diverged.read_text()

    again = run_cli(command)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "cmrepro.train: 2 of 3 runs already ended (done 1, diverged 1); launching 1" in again.stderr
    assert "sweep: 3 jobs recorded: 2 already ended, 1 done" in again.stderr
    assert f"cmrepro.train: launching 1 run (basic) under {out}; each says one line as it ends" in again.stderr
    assert (done.stat().st_mtime_ns, diverged.read_text()) == kept
    assert len(_results(out)) == 3

    # A run that can resume (failed, interrupted, killed while running) is launched, and finishes.
    _set_status(done, "failed")
    resumed = run_cli(command)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "cmrepro.train: 2 of 3 runs already ended (done 1, diverged 1); launching 1" in resumed.stderr
    assert json.loads(done.read_text())["status"] == "done"


def test_a_job_is_left_out_only_for_this_very_run_ended_with_nothing_to_do(tmp_path):
    run_dir = write_run(tmp_path, "run", status="done")
    config = json.loads((run_dir / RESULT).read_text())["config"]
    job = PlannedJob(("seed=0",), run_dir, config)
    assert ended_status(job) == "done"
    # Another config in that directory: launched, to refuse it with its own line.
    assert ended_status(PlannedJob(("seed=0",), run_dir, {**config, "seed": config.get("seed", 0) + 1})) is None
    # An ended run whose checkpoint the job asks to drop: launched, and the run drops it.
    (run_dir / CHECKPOINT).write_bytes(b"")
    dropping = {**config, "trainer": {**config.get("trainer", {}), "keep_checkpoint": False}}
    assert ended_status(PlannedJob(("seed=0",), run_dir, dropping)) is None
    assert ended_status(job) == "done"
    for status in ("running", "failed", "interrupted"):
        _set_status(run_dir / RESULT, status)
        assert ended_status(job) is None
    assert ended_status(PlannedJob(("seed=0",), tmp_path / "nothing", config)) is None


def test_the_line_counts_each_ending():
    assert (
        ended_line({0: "done", 3: "diverged", 4: "done"}, 5)
        == "3 of 5 runs already ended (done 2, diverged 1); launching 2"
    )
    assert ended_line({0: "done"}, 1) == "1 of 1 runs already ended (done 1); launching none"
