"""Nothing is launched without its data: ``cmrepro.train`` (one run or a sweep, with the joblib or
a Slurm launcher) and ``cmrepro.reproduce`` check every dataset their runs need once, before
launching any, and stop with one line per missing dataset, exit code 2, and nothing on disk."""

from __future__ import annotations

import os
import subprocess
import textwrap
from pathlib import Path

import pytest
from data_fixtures import write_cifar10, write_ptb
from train_helpers import run_cli

import cmrepro.data.vision as vision
from cmrepro import reproduce
from cmrepro.data.presence import data_needs, missing_data

# A few steps of a 1/8-width ResNet on 100 CIFAR10 images (data_fixtures.write_cifar10).
TINY_CIFAR10 = [
    "dataset=cifar10",
    "model.width=0.125",
    "dataset.val_size=20",
    "dataset.batch_size=16",
    "dataset.eval_batch_size=20",
    "dataset.num_workers=0",
    "dataset.on_device=false",
    "trainer.epochs=1",
    "trainer.lr_milestones=[]",
    "trainer.max_steps_per_epoch=2",
    "trainer.progress=false",
]

# A stand-in for submitit (hydra/launcher=slurm): each job array it is given is written to
# FAKE_SUBMITIT_LOG, then its jobs run here, one after another, as Slurm would run them.
FAKE_SUBMITIT = """
import json, os

def _log(entry):
    with open(os.environ["FAKE_SUBMITIT_LOG"], "a") as log:
        log.write(json.dumps(entry) + "\\n")

class JobEnvironment:
    job_id = "fake"

class _Job:
    def __init__(self, function, args):
        self.function, self.args = function, args
    def results(self):
        return [self.function(*self.args)]

class AutoExecutor:
    def __init__(self, cluster, folder, **kwargs):
        self.cluster = cluster
    def update_parameters(self, **kwargs):
        pass
    def map_array(self, function, *arrays):
        jobs = [_Job(function, args) for args in zip(*arrays)]
        _log({"cluster": self.cluster, "array": len(jobs)})
        return jobs
"""


def fake_submitit(tmp_path: Path) -> tuple[dict, Path]:
    """The environment that makes hydra/launcher=slurm use :data:`FAKE_SUBMITIT`, and its log."""
    package = tmp_path / "fake_submitit" / "submitit"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(FAKE_SUBMITIT))
    log = tmp_path / "submitted.jsonl"
    path = os.pathsep.join([str(package.parent), os.environ.get("PYTHONPATH", "")])
    return {"PYTHONPATH": path, "FAKE_SUBMITIT_LOG": str(log)}, log


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# ---------------------------------------------------------------- the check itself


def test_many_runs_of_one_dataset_read_the_disk_once_and_say_one_line(tmp_path, monkeypatch):
    calls = []
    real = vision.check_cifar_files
    monkeypatch.setattr(vision, "check_cifar_files", lambda fmt, root: calls.append(root) or real(fmt, root))
    configs = [{"name": "cifar100", "data_dir": str(tmp_path / "cifar100"), "seed": seed} for seed in range(100)]
    configs.append({"name": "ptb", "data_dir": str(tmp_path / "ptb")})
    lines = missing_data(configs)
    assert calls == [tmp_path / "cifar100"]
    assert len(lines) == 2
    assert lines[0].startswith("cifar100: expected") and f"prepare cifar100 --data-dir {tmp_path}" in lines[0]
    assert lines[1].startswith("ptb: expected") and f"prepare ptb --data-dir {tmp_path}" in lines[1]

    write_ptb(tmp_path / "ptb")
    assert [line.split(":")[0] for line in missing_data(configs)] == ["cifar100"]


def test_what_needs_no_files_on_disk(tmp_path):
    folder = str(tmp_path / "cifar10")
    assert data_needs({"name": "cifar10", "data_dir": folder, "stand_in": {"train": 64}}) == []
    assert data_needs({"name": "cifar10", "data_dir": folder, "download": True}) == []  # the run fetches them
    assert data_needs({"name": "synthetic_image"}) == []
    assert [need.name for need in data_needs({"name": "cifar10", "data_dir": folder})] == ["cifar10"]


def test_imagenet_names_the_archives_to_prepare_it_from(tmp_path):
    (line,) = missing_data([{"name": "imagenet", "data_dir": str(tmp_path / "imagenet")}])
    assert f"python -m cmrepro.data prepare imagenet --data-dir {tmp_path} --from ILSVRC2012_img_train.tar" in line


def test_each_missing_dataset_of_the_five_dataset_stream_is_a_line_of_its_own(tmp_path):
    write_cifar10(tmp_path / "cifar10")
    roots = {"cifar10": str(tmp_path / "cifar10")}
    cfg = {"name": "five_datasets", "data_dir": str(tmp_path / "five_datasets"), "roots": roots, "batch_size": 64}
    lines = missing_data([cfg, cfg])
    assert [line.split(":")[0] for line in lines] == ["mnist", "fashion_mnist", "svhn", "notmnist"]
    assert all("python -m cmrepro.data prepare" in line for line in lines)


# ---------------------------------------------------------------- cmrepro.train


def test_a_single_run_without_its_data_leaves_no_directory(tmp_path):
    out = tmp_path / "out"
    done = run_cli(["dataset=cifar100", f"paths.data_dir={tmp_path / 'empty'}", f"paths.output_dir={out}"])
    assert done.returncode == 2, done.stderr[-3000:]
    (line,) = _lines(done.stderr)
    assert line.startswith("cmrepro.train: cifar100: expected") and "python -m cmrepro.data prepare cifar100" in line
    assert not out.exists()


SWEEP = ["-m", "experiment=table2/best/cifar100_adam,table2/best/ptb_adam,table2/best/cifar10_adam"]


def test_a_joblib_sweep_without_its_data_launches_nothing(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    write_cifar10(data / "cifar10")  # one of the three datasets is there
    args = [*SWEEP, "hydra/launcher=joblib", f"paths.data_dir={data}", f"paths.output_dir={out}"]
    done = run_cli(args)
    assert done.returncode == 2, done.stderr[-3000:]
    lines = _lines(done.stderr)
    assert [line.split(":")[1].strip() for line in lines] == ["cifar100", "ptb"]  # one line each, for 10 jobs
    assert all(
        f"python -m cmrepro.data prepare {name} --data-dir {data}" in line
        for name, line in zip(["cifar100", "ptb"], lines)
    )
    assert not out.exists()  # no run directory, no ledger, no multirun.yaml


def test_a_slurm_sweep_without_its_data_submits_nothing(tmp_path):
    env, submitted = fake_submitit(tmp_path)
    out = tmp_path / "out"
    args = [*SWEEP, "hydra/launcher=slurm", f"paths.data_dir={tmp_path / 'empty'}", f"paths.output_dir={out}"]
    done = run_cli(args, env=env)
    assert done.returncode == 2, done.stderr[-3000:]
    assert [line.split(":")[1].strip() for line in _lines(done.stderr)] == ["cifar100", "ptb", "cifar10"]
    assert not submitted.exists()
    assert not out.exists()


def test_a_slurm_sweep_with_its_data_is_submitted_as_one_array(tmp_path):
    env, submitted = fake_submitit(tmp_path)
    data, out = tmp_path / "data", tmp_path / "out"
    write_cifar10(data / "cifar10")
    args = [
        "-m",
        *TINY_CIFAR10,
        "seed=0,1",
        "hydra/launcher=slurm",
        f"paths.data_dir={data}",
        f"paths.output_dir={out}",
    ]
    done = run_cli(args, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert submitted.read_text().splitlines() == ['{"cluster": "slurm", "array": 2}']
    assert "sweep: 2 jobs recorded: 2 done" in done.stderr
    assert len(list(out.rglob("result.json"))) == 2


# ---------------------------------------------------------------- cmrepro.reproduce


def test_a_table_with_one_missing_dataset_launches_none_of_its_commands(tmp_path, monkeypatch, capsys):
    data, out = tmp_path / "data", tmp_path / "runs"
    write_cifar10(data / "cifar10")  # table3 reads cifar10 and cifar100

    def launched(*args, **kwargs):
        raise AssertionError(f"a command was launched: {args}")

    monkeypatch.setattr(subprocess, "run", launched)
    argv = ["table3", "--launcher", "joblib", f"paths.data_dir={data}", f"paths.output_dir={out}"]
    assert reproduce.main(argv) == 2
    err = _lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].startswith("cmrepro.reproduce: cifar100: expected"), err
    assert f"python -m cmrepro.data prepare cifar100 --data-dir {data}" in err[0]
    assert not out.exists() and not (tmp_path / "tables").exists()  # no run, no report


def test_reproduce_names_each_missing_dataset_once_across_its_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("launched"))
    argv = ["table4", f"paths.data_dir={tmp_path}", f"paths.output_dir={tmp_path / 'runs'}"]
    assert reproduce.main(argv) == 2
    names = [line.split(":")[1].strip() for line in _lines(capsys.readouterr().err)]
    assert sorted(names) == sorted(["tinyimagenet", "cifar10", "mnist", "fashion_mnist", "svhn", "notmnist"])
