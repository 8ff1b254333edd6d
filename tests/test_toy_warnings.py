"""A toy run prints no deprecation warning: they were printed at every run (torch.func.hessian's
forward-mode autograd loads torch's JVP decompositions, which call the deprecated
torch.jit.script), and a warning that always shows teaches people to ignore warnings.

A fresh process: torch warns once per process, so one that has already computed a Hessian
(this test session) would show nothing either way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_toy_run_prints_no_deprecation_or_future_warning(tmp_path):
    # Table 1's kind computes the sharpness (the Hessian) of every final point; 2 seeds x 4 steps.
    command = [
        sys.executable, "-m", "cmrepro.toy", "experiment=table1", "experiment.seeds=2", "experiment.steps=4",
        "experiment.lr_drop_step=2", f"output_dir={tmp_path / 'toy'}", f"figures_dir={tmp_path / 'figures'}",
        "workers=1",
    ]  # fmt: skip
    # "default": every warning shown once per place, DeprecationWarning included (hidden otherwise
    # outside __main__); the environment variable reaches any worker process too.
    env = {**os.environ, "PYTHONWARNINGS": "default"}
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "table1 done in" in run.stderr
    for category in ("DeprecationWarning", "FutureWarning", "PendingDeprecationWarning"):
        assert category not in run.stderr, run.stderr
