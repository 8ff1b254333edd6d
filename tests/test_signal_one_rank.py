"""A signal that reaches one rank of a distributed run alone (``kill`` of one process, a node's
own SIGTERM): every rank stops at the same point, the run is recorded ``interrupted``, and
re-running the command resumes it, as when torchrun passes the signal to all of them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from train_helpers import ROOT, metric_rows

from cmrepro.training.interrupts import StopRequest

# A 1/8-width ResNet18 on synthetic images: 48 training images in global batches of 16 (8 a
# process), 3 steps an epoch, so the signal after global step 3 lands at the end of epoch 1.
RUN = ["dataset=synthetic_image", "model.width=0.125", "dataset.num_train=48", "dataset.num_val=16",
       "dataset.image_size=16", "dataset.batch_size=16", "dataset.eval_batch_size=8", "dataset.num_workers=0",
       "trainer.epochs=2", "trainer.lr_milestones=[]", "trainer.progress=false", "trainer.device=cpu",
       "optimizer=adam"]  # fmt: skip


def _torchrun(args: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [*command, "-m", "cmrepro.train", *args], cwd=ROOT, capture_output=True, text=True, env=environment, timeout=300
    )


def test_sigterm_to_one_rank_at_an_epoch_boundary_stops_both_and_the_run_resumes(tmp_path):
    run_dir = tmp_path / "run"
    args = [*RUN, f"run_dir={run_dir}"]
    # Rank 1 alone, after the last step of epoch 1.
    signalled = {"CMREPRO_SIGNAL_AT_STEP": "3:TERM", "CMREPRO_SIGNAL_RANK": "1"}
    stopped = _torchrun(args, env=signalled)
    assert stopped.returncode != 0
    assert stopped.stderr.count("SIGTERM received") == 1, stopped.stderr[-3000:]
    # Both ranks stop after epoch 1, neither fails in a collective the other left.
    assert stopped.stderr.count(f"{run_dir}: stopped by SIGTERM after epoch 1; re-run the same command") == 2
    assert "failed:" not in stopped.stderr
    result = json.loads((run_dir / "result.json").read_text())
    assert (result["status"], result["epochs_completed"]) == ("interrupted", 1)

    resumed = _torchrun(args)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming {run_dir} on cpu (2 processes) from its checkpoint" in resumed.stderr
    assert resumed.stderr.count("resuming after epoch 1") == 1  # rank 0 alone says it
    assert [row["epoch"] for row in metric_rows(run_dir)] == [1, 2]
    assert json.loads((run_dir / "result.json").read_text())["status"] == "done"


def test_a_process_that_adopts_another_ranks_signal_stops_without_handing_it_on():
    handed = []
    stop = StopRequest(_chained={signal.SIGUSR2: lambda signum, frame: handed.append(signum)})
    stop.adopt(signal.SIGUSR2)  # submitit's requeue handler acts on its own process's signal only
    stop.hand_over()
    assert (stop.requested, stop.signum, handed) == (True, signal.SIGUSR2, [])
    received = StopRequest(signum=signal.SIGTERM)
    received.adopt(signal.SIGUSR1)  # its own signal stands
    assert (received.signum, received.adopted) == (signal.SIGTERM, False)
