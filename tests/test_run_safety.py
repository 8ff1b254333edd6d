"""A run directory on a shared cluster (issue 21, the checkpoint and run-directory items; issue 22
item 2): a checkpoint runs no code, every run file has the umask's mode, a refused command changes
nothing, a dead run is told from a live one, a killed writer's temporaries and a dead sweep's
ledger go, a full disk is one line and a clean record, a run that never started leaves no
directory, and each process restores its own GPU's generator."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import re
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from train_helpers import ROOT, compose_run, metric_rows, run_cli

import cmrepro.run_files as run_files
import cmrepro.training.epoch as epoch_module
from cmrepro.report.run_table import load_runs
from cmrepro.run_files import RunFileError, remove_temporaries, run_status
from cmrepro.run_lock import RunLock, is_held
from cmrepro.sweep_ledger import DEAD_AFTER_S, LEDGER_ENV, sweep_ledger
from cmrepro.training import CheckpointError, ConfigError, train
from cmrepro.training.checkpoint import load_checkpoint, restore_rng, rng_state
from cmrepro.training.distributed import DistEnv

# 2 steps an epoch of a tiny synthetic run, 2 epochs: a second or two in process.
TINY = ["dataset=synthetic_image", "model.width=0.125", "dataset.num_train=32", "dataset.num_val=16",
        "dataset.image_size=16", "dataset.batch_size=16", "trainer.epochs=2", "trainer.lr_milestones=[]",
        "trainer.progress=false", "dataset.num_workers=0", "trainer.keep_checkpoint=true"]  # fmt: skip


def _files(run_dir: Path) -> dict[str, bytes]:
    """Every file below ``run_dir`` (but the lock, which only says who held it last) and its bytes."""
    return {
        str(path.relative_to(run_dir)): path.read_bytes()
        for path in sorted(run_dir.rglob("*"))
        if path.is_file() and path.name != ".lock"
    }


def _result(run_dir: Path) -> dict:
    return json.loads((run_dir / "result.json").read_text())


# ---------------------------------------------------------------- 1. a checkpoint runs no code


class _Payload:
    """What a hostile neighbour pickles as checkpoint.pt: unpickling it would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_planted_pickle_as_checkpoint_runs_no_code_and_is_one_line(tmp_path):
    run_dir, marker = tmp_path / "run", tmp_path / "code-ran"
    run_dir.mkdir()
    torch.save({"config": _Payload(marker)}, run_dir / "checkpoint.pt")
    with open(run_dir / "other.pt", "wb") as file:  # the plain pickle form of the same attack
        pickle.dump(_Payload(marker), file, protocol=2)
    for name in ("checkpoint.pt", "other.pt"):
        with pytest.raises(CheckpointError) as refused:
            load_checkpoint(run_dir / name)
        assert "\n" not in str(refused.value) and str(run_dir / name) in str(refused.value)
    (run_dir / "other.pt").unlink()
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint.pt is unreadable or holds more"):
        train(compose_run(TINY, run_dir), run_dir)
    assert not marker.exists()


def test_a_checkpoint_loads_with_weights_only_and_no_allow_list_and_restores_every_generator(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    saved = rng_state()
    torch.save({"rng": saved}, tmp_path / "rng.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    restore_rng(torch.load(tmp_path / "rng.pt", weights_only=True)["rng"])  # torch's default loader
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_an_old_checkpoint_with_numpy_states_still_loads_and_restores(tmp_path):
    """A checkpoint of the layout before the states were tensors (numpy's an ndarray): refused by a
    bare weights_only load, read by load_checkpoint with numpy's array types allowed by name."""
    random.seed(4), np.random.seed(5), torch.manual_seed(6)
    old = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    payload = dict(epoch=1, model={}, optimizer={}, scheduler=None, config={}, rng=old)
    torch.save(payload, tmp_path / "old.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    with pytest.raises(pickle.UnpicklingError):
        torch.load(tmp_path / "old.pt", weights_only=True)
    restore_rng(load_checkpoint(tmp_path / "old.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_every_torch_load_in_the_package_and_scripts_is_weights_only():
    calls = []
    for path in [*ROOT.joinpath("cmrepro").rglob("*.py"), *ROOT.joinpath("scripts").rglob("*.py")]:
        text = path.read_text()
        calls += [(path.name, match.group(0)) for match in re.finditer(r"torch\.load\([^)]*\)", text)]
    assert calls, "the checkpoint loader's torch.load was not found"
    assert [call for call in calls if "weights_only=True" not in call[1]] == []


# ---------------------------------------------------------------- 4. file modes follow the umask


def test_every_run_file_has_the_mode_the_umask_gives(tmp_path):
    run_dir = tmp_path / "run"
    previous = os.umask(0o002)  # a shared project directory's group-writable umask
    try:
        train(compose_run([*TINY, "trainer.epochs=1"], run_dir), run_dir)
    finally:
        os.umask(previous)
    modes = {path.name: oct(path.stat().st_mode & 0o777) for path in run_dir.iterdir() if path.is_file()}
    assert set(modes) >= {"checkpoint.pt", "result.json", "metrics.jsonl", ".lock"}
    assert set(modes.values()) == {oct(0o664)}, modes


# ---------------------------------------------------------------- 5. a refused command changes nothing


def test_a_refused_command_leaves_the_run_directory_byte_for_byte(tmp_path):
    run_dir = tmp_path / "run"
    first = run_cli([*TINY, "trainer.epochs=1", "optimizer.lr=0.001", f"run_dir={run_dir}"])
    assert first.returncode == 0, first.stderr
    assert "optimizer.lr=0.001" in (run_dir / ".hydra" / "overrides.yaml").read_text()
    before = _files(run_dir)
    other = run_cli([*TINY, "trainer.epochs=1", "optimizer.lr=0.01", f"run_dir={run_dir}"])
    assert other.returncode == 2 and "holds a run with a different config" in other.stderr
    assert _files(run_dir) == before
    with RunLock(run_dir):  # and a process turned away by the lock
        busy = run_cli([*TINY, "trainer.epochs=1", "optimizer.lr=0.01", f"run_dir={run_dir}"])
    assert busy.returncode == 3, busy.stderr
    assert _files(run_dir) == before


def test_a_refused_config_leaves_an_unfinished_runs_record_as_it_was(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    monkeypatch.setattr(epoch_module, "_fault_injection", _crash_at(3))  # in epoch 2
    with pytest.raises(RuntimeError):
        train(compose_run(TINY, run_dir), run_dir)
    monkeypatch.undo()
    before = _files(run_dir)
    with pytest.raises(ConfigError, match="different config"):
        train(compose_run([*TINY, "optimizer.lr=0.5"], run_dir), run_dir)
    assert _files(run_dir) == before and _result(run_dir)["status"] == "failed"


def _crash_at(step: int):
    def crash(global_step: int) -> None:
        if global_step == step:
            raise RuntimeError("crash")

    return crash


# ---------------------------------------------------------------- 6, 7. a killed run


def test_a_killed_run_says_its_epochs_is_reported_stopped_and_its_temporaries_go_on_resume(tmp_path):
    run_dir = tmp_path / "run"
    killed = run_cli([*TINY, f"run_dir={run_dir}"], env={"CMREPRO_KILL_AT_STEP": "3"})  # in epoch 2
    assert killed.returncode == -9, killed.stderr
    result = _result(run_dir)
    assert (result["status"], result["epochs_completed"], result["final"]["epoch"]) == ("running", 1, 1)
    (runs,) = load_runs(tmp_path).to_dict("records")
    assert (runs["status"], runs["epochs_completed"]) == ("stopped", 1)
    with RunLock(run_dir):  # while a process trains it, it is running
        assert is_held(run_dir) and run_status(run_dir, result) == "running"
    assert not is_held(run_dir) and run_status(run_dir, result) == "stopped"

    # What a kill between writing and renaming leaves (a checkpoint's can be 0.7 GB).
    left = [run_dir / "checkpoint.ptk2x9q1.tmp", run_dir / "result.json.tmp", run_dir / "result.jsonab12.tmp"]
    for path in left:
        path.write_bytes(b"partial")
    resumed = train(compose_run(TINY, run_dir), run_dir)
    assert resumed["status"] == "done" and resumed["epochs_completed"] == 2
    assert not any(path.exists() for path in left) and not list(run_dir.glob("*.tmp"))


def test_remove_temporaries_takes_only_the_run_files_temporaries(tmp_path):
    keep = [tmp_path / "notes.tmp", tmp_path / "checkpoint.pt", tmp_path / "data.tmp"]
    gone = [tmp_path / "checkpoint.pt123.tmp", tmp_path / "metrics.jsonl.tmp"]
    for path in [*keep, *gone]:
        path.write_text("x")
    assert sorted(remove_temporaries(tmp_path)) == sorted(gone)
    assert all(path.exists() for path in keep)


def test_a_sweep_ledger_goes_when_its_sweep_ends_and_dead_ones_are_removed(tmp_path, monkeypatch):
    monkeypatch.delenv(LEDGER_ENV, raising=False)
    sweeps = tmp_path / ".sweeps"
    dead, live, young = sweeps / "20200101-000000-1", sweeps / "20200101-000000-2", sweeps / "20200101-000000-3"
    for folder in (dead, live, young):
        folder.mkdir(parents=True)
        (folder / "job00000.json").write_text("{}")
    old = time.time() - DEAD_AFTER_S - 1
    for folder in (dead, live):
        os.utime(folder, (old, old))
    with RunLock(live):  # a sweep still running elsewhere
        with sweep_ledger(tmp_path) as folder:
            assert os.environ[LEDGER_ENV] == str(folder) and is_held(folder)
            assert not dead.exists() and live.exists() and young.exists()
    assert not folder.exists() and LEDGER_ENV not in os.environ
    assert sorted(path.name for path in sweeps.iterdir()) == [live.name, young.name]


# ---------------------------------------------------------------- 8. a full disk


def _disk_full_when(predicate):
    """``run_files._write_all`` as on a disk that fills: for the writes ``predicate`` picks, half
    the bytes go down, then ENOSPC."""
    real = run_files._write_all

    def write(fd: int, data: bytes) -> None:
        if predicate(data):
            real(fd, data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd, data)

    return write


def test_a_full_disk_while_appending_metrics_is_one_line_a_failed_record_and_no_torn_row(tmp_path, monkeypatch):
    straight, run_dir = tmp_path / "straight", tmp_path / "run"
    train(compose_run(TINY, straight), straight)
    monkeypatch.setattr(run_files, "_write_all", _disk_full_when(lambda data: data.startswith(b'{"epoch": 2')))
    with pytest.raises(RunFileError) as full:
        train(compose_run(TINY, run_dir), run_dir)
    message = str(full.value)
    assert "\n" not in message and "metrics.jsonl" in message and "No space left" in message and "MiB free" in message
    monkeypatch.undo()
    lines = (run_dir / "metrics.jsonl").read_text().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith("\n") and json.loads(lines[0])["epoch"] == 1
    result = _result(run_dir)
    assert result["status"] == "failed" and result["epochs_completed"] == 1 and "RunFileError" in result["error"]
    assert not list(run_dir.glob("*.tmp"))
    assert train(compose_run(TINY, run_dir), run_dir)["status"] == "done"
    assert metric_rows(run_dir) == metric_rows(straight)


def test_a_disk_that_stays_full_keeps_result_json_whole_at_its_last_epoch(tmp_path, monkeypatch):
    """Full from epoch 2 on: neither the row nor the failed record can be written; result.json
    stays the whole file of epoch 1's end, and the report calls the run stopped."""
    run_dir = tmp_path / "run"
    full = {"now": False}

    def fill_after_epoch_one(data: bytes) -> bool:
        full["now"] = full["now"] or data.startswith(b'{"epoch": 2')
        return full["now"]

    monkeypatch.setattr(run_files, "_write_all", _disk_full_when(fill_after_epoch_one))
    with pytest.raises(RunFileError, match="metrics.jsonl"):
        train(compose_run(TINY, run_dir), run_dir)
    result = _result(run_dir)
    assert (result["status"], result["epochs_completed"]) == ("running", 1)
    assert run_status(run_dir, result) == "stopped" and not list(run_dir.glob("*.tmp"))


# ---------------------------------------------------------------- 11. no directory for a run that never started


def test_a_batch_that_does_not_split_across_processes_is_refused_before_any_directory(tmp_path):
    ranks = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29531"}
    done = run_cli([*TINY, "dataset.batch_size=15", f"paths.output_dir={tmp_path}"], env=ranks)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "cmrepro.train: dataset.batch_size=15 does not split across 2 processes: it is the global batch, "
        "so it must be a multiple of 2; set it to e.g. 14 or change the process count"
    ]
    assert list(tmp_path.iterdir()) == []


def test_missing_data_is_one_line_and_leaves_no_run_directory(tmp_path):
    empty = tmp_path / "data"
    empty.mkdir()
    runs = tmp_path / "runs"
    overrides = ["trainer.epochs=1", "trainer.lr_milestones=[]", f"paths.data_dir={empty}", f"paths.output_dir={runs}"]
    done = run_cli(["dataset=cifar10", *overrides])
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "cifar" in done.stderr.lower()
    assert [path for path in runs.rglob("*") if path.is_file() or "adam_cm/" in str(path)] == []  # no run directory


# ---------------------------------------------------------------- issue 22, 2. one GPU generator per process


class _FakeCuda:
    """torch.cuda as a process with ``count`` GPUs sees it: the generator states set, by device."""

    def __init__(self, count: int) -> None:
        self.count, self.set = count, []

    def install(self, monkeypatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: self.count)
        monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device="cuda": self.set.append((device, state)))


def test_an_old_checkpoints_gpu_states_restore_only_on_gpus_that_exist(monkeypatch):
    """A checkpoint written with two GPUs visible (every GPU's state, as before), resumed with one."""
    cuda = _FakeCuda(count=1)
    cuda.install(monkeypatch)
    state = rng_state()
    state["cuda"] = [torch.full((8,), 1, dtype=torch.uint8), torch.full((8,), 2, dtype=torch.uint8)]
    restore_rng(state)  # set_rng_state_all would index past the one GPU
    assert [(device, int(saved[0])) for device, saved in cuda.set] == [(0, 1)]


def test_each_rank_restores_its_own_gpus_generator(monkeypatch):
    """Two ranks' states as gather_rank_rng collects them: rank 1 takes rank 1's GPU state (not rank
    0's copy), on its own device, and its own torch generator."""
    cuda = _FakeCuda(count=1)
    cuda.install(monkeypatch)
    state = rng_state()
    state["cuda"] = torch.full((8,), 10, dtype=torch.uint8)
    ranks = [{"torch": torch.get_rng_state(), "cuda": state["cuda"]}, {"torch": torch.get_rng_state(), "cuda": None}]
    ranks[1]["torch"] = torch.Generator().manual_seed(11).get_state()
    ranks[1]["cuda"] = torch.full((8,), 20, dtype=torch.uint8)
    device = torch.device("cuda", 0)
    restore_rng(state, ranks, DistEnv(rank=1, world_size=2, local_rank=0), device)
    assert [(str(d), int(saved[0])) for d, saved in cuda.set] == [("cuda:0", 20)]
    assert torch.equal(torch.get_rng_state(), ranks[1]["torch"])
    cuda.set.clear()
    restore_rng(state, ranks, DistEnv(rank=0, world_size=2, local_rank=0), device)
    assert [int(saved[0]) for _, saved in cuda.set] == [10]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_a_gpus_generator_survives_a_checkpoint_on_cuda(tmp_path):
    """A real CUDA generator: saved in a checkpoint beside a model on the GPU, loaded weights_only,
    restored, and it draws the same numbers again."""
    from cmrepro.training.checkpoint import save_checkpoint
    from cmrepro.training.run_state import RunState

    device = torch.device("cuda", torch.cuda.current_device())
    model = torch.nn.Linear(2, 2).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    torch.cuda.manual_seed(7)
    torch.rand(3, device=device)
    save_checkpoint(tmp_path, model, optimizer, {}, RunState(epoch=1))
    expected = torch.rand(5, device=device)
    torch.cuda.manual_seed(123)
    checkpoint = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert isinstance(checkpoint["rng"]["cuda"], torch.Tensor)
    restore_rng(checkpoint["rng"], checkpoint["rank_rng"], device=device)
    torch.testing.assert_close(torch.rand(5, device=device), expected, rtol=0, atol=0)
