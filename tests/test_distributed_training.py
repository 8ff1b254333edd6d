"""``torchrun -m cmrepro.train``: two CPU processes (gloo) train what one process trains at the
same global batch, and resume after one of them is killed.

The building blocks (the environment, the split batches, sync BatchNorm, the optimizer state on
every rank, a failing rank, batches that do not split) are tested in test_distributed.py; here
the whole entry point runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch
from train_helpers import ROOT, compose_run, metric_rows

from cmrepro.training import train

# A CIFAR-shaped ResNet18 (BatchNorm) at 1/8 width on synthetic images: 48 training images in
# global batches of 16 (8 per process), 3 steps an epoch; 16 validation images.
RUN = ["dataset=synthetic_image", "model.width=0.125", "dataset.num_train=48", "dataset.num_val=16",
       "dataset.image_size=16", "dataset.batch_size=16", "dataset.eval_batch_size=8", "dataset.num_workers=0",
       "trainer.epochs=2", "trainer.lr_milestones=[]", "trainer.progress=false", "trainer.device=cpu",
       "trainer.keep_checkpoint=true"]  # fmt: skip


def torchrun(args: list[str], processes: int, env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [*command, "-m", "cmrepro.train", *args], cwd=ROOT, capture_output=True, text=True, env=environment, timeout=300
    )


def _assert_close_rows(a: list[dict], b: list[dict], tolerance: float) -> None:
    assert [set(row) for row in a] == [set(row) for row in b]
    for row_a, row_b in zip(a, b, strict=True):
        for key, value in row_a.items():
            assert value == pytest.approx(row_b[key], rel=tolerance, abs=tolerance), key


@contextmanager
def torch_threads(count: int) -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _model(run_dir) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def test_two_processes_train_as_one_and_resume_after_one_of_them_is_killed(tmp_path):
    """Adam+SAM+CM: the buffer decisions and SAM's two all-reduced gradients (Adam and Adam+CM alone
    are compared the same way, in process, by test_distributed.py)."""
    one, two, killed = tmp_path / "one", tmp_path / "two", tmp_path / "killed"
    args = [*RUN, "optimizer=adam_sam_cm"]
    with torch_threads(1):  # as each torchrun process (OMP_NUM_THREADS=1)
        assert train(compose_run(args, one), one)["status"] == "done"
    double = torchrun([*args, f"run_dir={two}"], processes=2)
    assert double.returncode == 0, double.stderr[-3000:]
    _assert_close_rows(metric_rows(two), metric_rows(one), tolerance=1e-5)
    for key, value in _model(one).items():
        if value.is_floating_point():
            # Two ranks add the gradient in another order than one process; SAM's two passes and
            # Adam's normalisation carry that rounding through 6 steps: 8.1e-6 at most with SAM's
            # perturbation as a multiply then add, 1.02e-5 with it as one addcmul (fc.weight).
            torch.testing.assert_close(_model(two)[key], value, rtol=0, atol=2e-5, msg=key)
        else:
            assert torch.equal(_model(two)[key], value), key  # BatchNorm's step counts
    result = json.loads((two / "result.json").read_text())
    assert result["status"] == "done" and result["epochs_completed"] == 2
    assert (two / "train.log").read_text().count("epoch 2/2") == 1  # rank 0 alone logs

    # Rank 1 dies in epoch 2 (step 4 of 6): rank 0 fails in its next collective, and torchrun ends.
    kill = {"CMREPRO_KILL_AT_STEP": "4", "CMREPRO_KILL_RANK": "1"}
    assert torchrun([*args, f"run_dir={killed}"], processes=2, env=kill).returncode != 0
    assert json.loads((killed / "result.json").read_text())["epochs_completed"] == 1
    resumed = torchrun([*args, f"run_dir={killed}"], processes=2)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming" in resumed.stderr
    _assert_close_rows(metric_rows(killed), metric_rows(two), tolerance=0)
