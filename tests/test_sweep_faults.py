"""A sweep (``-m``) on joblib's worker pool whose worker is killed by SIGKILL, as the out-of-memory
killer does: joblib ends the whole pool (the other running job with it) and starts no more jobs;
the sweep then ends in one line and its summary, naming every job left without an outcome, exits
1, and re-running the same command finishes them.
"""

from __future__ import annotations

import json
import re

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from train_helpers import run_cli

from cmrepro.command_checks import sweep_jobs
from cmrepro.train import CONF_DIR

# Three tiny runs (3 steps an epoch) on two workers: the third job waits for a free worker.
SWEEP = ["-m", "dataset=synthetic_image", "model.width=0.125", "dataset.num_train=48", "dataset.num_val=16",
         "dataset.image_size=16", "dataset.batch_size=16", "dataset.eval_batch_size=8", "dataset.num_workers=0",
         "trainer.epochs=1", "trainer.lr_milestones=[]", "trainer.progress=false", "trainer.device=cpu",
         "optimizer=adam", "seed=0,1,2", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]  # fmt: skip


def _statuses(output_dir) -> dict[str, str]:
    results = output_dir.rglob("result.json")
    return {path.parent.name.split("seed=")[1][0]: json.loads(path.read_text())["status"] for path in results}


def test_a_worker_killed_by_sigkill_ends_the_sweep_with_its_jobs_named_and_a_rerun_finishes_them(tmp_path):
    command = [*SWEEP, f"paths.output_dir={tmp_path}"]
    # Every job's process kills itself with SIGKILL after its second step: the first to get
    # there breaks the pool, the job in the other worker goes with it, the third never starts.
    killed = run_cli(command, env={"CMREPRO_KILL_AT_STEP": "2", "OMP_NUM_THREADS": "1"})
    assert killed.returncode == 1
    assert "Traceback" not in killed.stderr, killed.stderr[-3000:]
    assert "cmrepro.train: the sweep stopped: its worker pool broke (" in killed.stderr
    # loky names the dead workers' exit codes when it saw them die (one worker, or both when both
    # reached step 2 first); on a loaded machine it may report the breakage before it has them.
    broke = re.search(r"its worker pool broke \((.*)\); joblib ended the jobs of its other workers", killed.stderr)
    assert broke, killed.stderr[-3000:]
    codes = re.search(r"exit codes of the workers are \{(.*)\}", broke.group(1))
    assert codes is None or set(codes.group(1).split(", ")) == {"SIGKILL(-9)"}, broke.group(1)
    assert "sweep: 0 jobs recorded: none" in killed.stderr
    for job in range(3):
        assert f"  job {job} no outcome (killed, or never started): seed={job}\n" in killed.stderr
    assert "re-run the same command to finish them" in killed.stderr
    assert set(_statuses(tmp_path).values()) <= {"running"}  # killed mid-epoch, no outcome written

    rerun = run_cli(command, env={"OMP_NUM_THREADS": "1"})
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "sweep: 3 jobs recorded: 3 done" in rerun.stderr
    assert _statuses(tmp_path) == {"0": "done", "1": "done", "2": "done"}


def test_the_jobs_are_numbered_as_hydras_basic_sweeper_numbers_them():
    argv = ["-m", "experiment=table2/best/cifar100_adam", "optimizer.lr=0.1,0.01", "seed=5,6", "trainer.epochs=1"]
    # The experiment's hydra.sweeper.params (seed: 0,1,2,3,4) come first; the command line's seed takes their place.
    lines = ["seed=0,1,2,3,4", *argv[1:]]
    hydra_jobs = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(lines), None)[0]
    swept = [" ".join(line for line in job if line.split("=")[0] in ("seed", "optimizer.lr")) for job in hydra_jobs]
    assert sweep_jobs(argv, CONF_DIR) == swept == [
        "seed=5 optimizer.lr=0.1", "seed=5 optimizer.lr=0.01", "seed=6 optimizer.lr=0.1", "seed=6 optimizer.lr=0.01"
    ]  # fmt: skip
    assert sweep_jobs(["-m", "experiment=table2/best/cifar100_adam"], CONF_DIR) == [f"seed={s}" for s in range(5)]
    assert sweep_jobs(["-m", "seed=0,1", "--cfg", "job"], CONF_DIR) is None  # prints the config, runs no job
