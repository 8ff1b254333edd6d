"""scripts/device_checks.py, dry-run (stub commands, seconds on a CPU): the deadline, the caps,
the kill of a hung step, and the three files that come back; scripts/compare_runs.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import compare_runs  # noqa: E402
import device_checks  # noqa: E402
import torch  # noqa: E402


def dry_run(out: Path, **settings: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OUT": str(out), "DEVICE_CHECKS_DRY": "1", **settings}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "device_checks.py")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def table(out: Path) -> dict[str, list[str]]:
    lines = (out / "steps.tsv").read_text().splitlines()
    assert lines[0] == "step\tseconds\texit\tresult"
    return {row.split("\t")[0]: row.split("\t")[1:] for row in lines[1:]}


def test_a_hung_step_is_killed_at_its_cap_and_the_next_steps_run(tmp_path) -> None:
    done = dry_run(tmp_path, DEVICE_CHECKS_HANG="cuda_tests", DEVICE_CHECKS_CAP="1.5", DEVICE_CHECKS_DEADLINE="60")
    assert done.returncode == 1, done.stdout + done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["log.txt", "results.tgz", "steps.tsv"]
    rows = table(tmp_path)
    assert list(rows) == [step.name for step in device_checks.steps("python3", tmp_path)]
    seconds, code, result = rows["cuda_tests"]
    assert result.startswith("killed after") and 1.4 <= float(seconds) < 10 and code != "0"
    assert rows["cuda_run"][1:] == ["0", "dry run: cuda_run"]
    assert rows["sigterm_mid_epoch"][1] == "143"  # the interrupted run's exit code, which passes
    assert done.stdout.splitlines()[-1].endswith(": cuda_tests")  # the one failed step; 143 passed
    with tarfile.open(tmp_path / "results.tgz") as tar:
        names = set(tar.getnames())
    assert {"cuda_tests.json", "bench_optim.json", "steps.tsv"} <= names
    log = (tmp_path / "log.txt").read_text()
    assert "dry run: bench_optim" in log and "multi-GPU training" in log


def test_the_deadline_skips_the_steps_it_leaves_no_time_for(tmp_path) -> None:
    done = dry_run(tmp_path, DEVICE_CHECKS_HANG="cuda_tests", DEVICE_CHECKS_CAP="2", DEVICE_CHECKS_DEADLINE="3")
    rows = table(tmp_path)
    assert rows["import"][1] == "0" and rows["cuda_tests"][2].startswith("killed")
    assert rows["bench_optim"] == ["0.0", "-", rows["bench_optim"][2]] and "deadline" in rows["bench_optim"][2]
    assert done.returncode == 1


def test_a_failed_import_stops_the_check_at_once_with_exit_3(tmp_path) -> None:
    done = dry_run(tmp_path, DEVICE_CHECKS_HANG="import", DEVICE_CHECKS_CAP="1", DEVICE_CHECKS_DEADLINE="60")
    assert done.returncode == 3
    rows = table(tmp_path)
    assert rows["import"][2].startswith("killed") and rows["cuda_tests"][2] == "skipped (step 0 failed)"


def test_every_cuda_marked_test_file_is_in_the_check() -> None:
    files = device_checks.cuda_test_files()
    assert "tests/test_on_device_data.py" in files and "tests/test_optim_fused.py" in files


def write_rows(run_dir: Path, rows: list[dict]) -> Path:
    run_dir.mkdir()
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run_dir


def test_compare_runs_finds_the_largest_difference_and_ignores_timings(tmp_path) -> None:
    a = [{"epoch": 1, "train_loss": 2.0, "epoch_time_s": 1.0}, {"epoch": 2, "train_loss": 1.0, "epoch_time_s": 1.0}]
    b = [{"epoch": 1, "train_loss": 2.0, "epoch_time_s": 9.0}, {"epoch": 2, "train_loss": 1.001, "epoch_time_s": 3.0}]
    same = compare_runs.compare(a, a, rtol=0, atol=0)
    assert same["agree"] and same["max_rel"] == 0.0 and same["values_compared"] == 4
    close = compare_runs.compare(a, b, rtol=1e-2, atol=0)
    assert close["agree"] and abs(close["max_rel"] - 0.001 / 1.001) < 1e-12
    exact = compare_runs.compare(a, b, rtol=0, atol=0)
    assert not exact["agree"] and exact["outside_tolerance"] == 1 and exact["largest"][0]["key"] == "train_loss"
    assert not compare_runs.compare(a, a[:1], rtol=1, atol=1)["agree"]  # a missing epoch never agrees
    assert not compare_runs.compare([], [], rtol=1, atol=1)["agree"]  # nor two runs killed before an epoch
    first, second = write_rows(tmp_path / "a", a), write_rows(tmp_path / "b", b)
    cli = [sys.executable, str(ROOT / "scripts" / "compare_runs.py"), str(first), str(second)]
    assert subprocess.run([*cli, "--rtol", "1e-2"], capture_output=True).returncode == 0
    assert subprocess.run(cli, capture_output=True).returncode == 1


def test_the_step_benchmark_waits_once_per_group_of_steps() -> None:
    """bench_train times steps back to back, as training runs them, not each one waited for."""
    import bench_train

    waits: list[int] = []
    steps: list[int] = []

    class Loss:
        def __float__(self) -> float:
            waits.append(len(steps))
            return 0.0

    class Task:
        def train_step(self, runner, opt, batch, settings):
            steps.append(1)
            return Loss()

    seconds = bench_train.pipelined_step_seconds(Task(), None, None, None, None, 12, torch.device("cpu"))
    assert len(seconds) == bench_train.TIMED_GROUPS == 3 and len(steps) == 12
    assert waits == [4, 8, 12]  # once after each group of four steps


def test_device_results_unpack_into_their_folder_without_links(tmp_path) -> None:
    import unpack_device_results

    (tmp_path / "made").mkdir()
    (tmp_path / "made" / "hours_cuda.json").write_text("{}")
    os.symlink("/etc/passwd", tmp_path / "made" / "planted")
    archive = tmp_path / "results.tgz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "made" / "hours_cuda.json", arcname="hours_cuda.json")
        tar.add(tmp_path / "made" / "planted", arcname="planted")
    into = tmp_path / "results" / "bench" / "device"
    into.mkdir(parents=True)
    (into / "stale.json").write_text("{}")
    assert unpack_device_results.unpack(archive, into) == ["hours_cuda.json"]
    assert sorted(p.name for p in into.iterdir()) == ["hours_cuda.json"]


def test_a_follow_up_runs_the_steps_it_names_after_the_installs(tmp_path) -> None:
    done = dry_run(tmp_path, DEVICE_CHECKS_ONLY="bench_compiled,bench_fused")
    assert done.returncode == 0, done.stdout
    assert list(table(tmp_path)) == ["wheels", "import", "bench_compiled", "bench_fused"]
