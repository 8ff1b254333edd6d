"""The training entry point: configs, errors, the run directory, resuming, divergence, loggers."""

from __future__ import annotations

import json
import math

import data_fixtures
import pytest
import torch
from train_helpers import QUICK, compose_run, run_cli

from cmrepro.models import ModelSpec, build_model
from cmrepro.optim import create_optimizer
from cmrepro.optim.from_config import optimizer_arguments
from cmrepro.run_files import RunFileError
from cmrepro.training import CheckpointError, ConfigError, check_config, train

DATASETS = ["cifar10", "cifar100", "imagenet", "ptb", "synthetic_image", "synthetic_text"]
OPTIMIZERS = ["adam", "adam_cg", "adam_sam", "adam_cm", "adam_sam_cm", "sgd", "sgd_cg", "sgd_cm"]
# What the real data would tell the model builder.
SPECS = {
    "cifar10": ModelSpec("classification", num_classes=10),
    "cifar100": ModelSpec("classification", num_classes=100),
    "imagenet": ModelSpec("classification", num_classes=1000),
    "ptb": ModelSpec("language_model", vocab_size=10_000),
    "synthetic_image": ModelSpec("classification", num_classes=10),
    "synthetic_text": ModelSpec("language_model", vocab_size=50),
}


@pytest.mark.parametrize("dataset", DATASETS)
def test_every_dataset_and_optimizer_composes_and_instantiates(dataset, tmp_path):
    model = None
    for optimizer in OPTIMIZERS:
        cfg = compose_run([f"dataset={dataset}", f"optimizer={optimizer}"], tmp_path)
        check_config(cfg)
        model = model or build_model(cfg["model"], SPECS[dataset])
        opt = create_optimizer(
            cfg["optimizer"]["name"], model.parameters(), model=model, **optimizer_arguments(cfg["optimizer"])
        )
        assert opt.param_groups[0]["lr"] == cfg["optimizer"]["lr"]


def test_dataset_configs_select_the_papers_model_and_schedule(tmp_path):
    cifar = compose_run(["dataset=cifar100"], tmp_path)
    assert cifar["model"]["name"] == "resnet34" and cifar["dataset"]["batch_size"] == 64
    assert cifar["trainer"]["epochs"] == 100 and cifar["trainer"]["lr_milestones"] == [50]
    assert cifar["optimizer"]["betas"] == [0.9, 0.999]
    assert cifar["optimizer"]["topC"] == 5 and cifar["optimizer"]["decay"] == 0.7
    ptb = compose_run(["dataset=ptb", "optimizer=adam_sam_cm"], tmp_path)
    assert ptb["model"]["name"] == "lstm" and ptb["trainer"]["epochs"] == 50 and ptb["trainer"]["lr_milestones"] == [25]
    assert ptb["optimizer"]["betas"] == [0.9, 0.99] and ptb["optimizer"]["rho"] == 0.05
    assert ptb["trainer"]["grad_clip"] == 0.25 and ptb["dataset"]["batch_size"] == 420
    imagenet = compose_run(["dataset=imagenet"], tmp_path)
    assert imagenet["model"]["name"] == "efficientnet_b0" and imagenet["optimizer"]["weight_decay"] == 1e-4
    assert imagenet["trainer"]["lr_milestones"] == [30, 60]
    chosen = compose_run(
        ["dataset=cifar10", "model=resnet18", "trainer.epochs=3", "trainer.lr_milestones=[1]"], tmp_path
    )
    assert chosen["model"]["name"] == "resnet18" and chosen["trainer"]["epochs"] == 3


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["trainer.epochs=0"], "invalid trainer.epochs: 0"),
        (["trainer.lr_milestones=[500]"], "invalid trainer.lr_milestones"),
        (["optimizer.lr=-0.1"], "invalid optimizer.lr: -0.1"),
        (["optimizer.topC=0"], "invalid optimizer.topC: 0"),
        (["optimizer=adam_sam", "optimizer.rho=0"], "invalid optimizer.rho: 0"),
        (["trainer.precision=fp8"], "invalid trainer.precision: 'fp8'"),
        (["trainer.keep_checkpoint=1"], "invalid trainer.keep_checkpoint: 1 .must be true or false"),
        (["dataset=ptb", "model=resnet34"], "invalid model.name: 'resnet34' is a classification model"),
        (["+optimizer.foo=1"], "invalid optimizer config for 'adam_cm'"),
    ],
)
def test_bad_values_name_the_key(overrides, message, tmp_path):
    with pytest.raises(ConfigError, match=message.replace("[", "\\[")):
        check_config(compose_run(overrides, tmp_path))


def test_cli_bad_option_and_bad_value_exit_2_with_one_line(tmp_path):
    for args, expected in [
        (
            ["dataset=cifar1000"],
            "unknown dataset 'cifar1000'; choose one of: cifar10, cifar100, five_datasets, imagenet, ptb",
        ),
        (["optimizer=adamcm"], "unknown optimizer 'adamcm'; choose one of: adam, adam_cg, adam_cm"),
        (["optimizer.lr=-1", f"run_dir={tmp_path / 'a'}"], "invalid optimizer.lr: -1"),
    ]:
        done = run_cli(args)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and expected in lines[0], done.stderr
        assert "Traceback" not in done.stderr


def test_cli_missing_data_exits_2_naming_the_path(tmp_path):
    done = run_cli(["dataset=cifar10", f"paths.data_dir={tmp_path / 'nowhere'}", f"run_dir={tmp_path / 'run'}"])
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "nowhere") in lines[0] and "Traceback" not in done.stderr


def test_cli_prints_the_composed_config():
    done = run_cli(["dataset=ptb", "optimizer=adam_cm", "--cfg", "job"])
    assert done.returncode == 0, done.stderr
    assert "name: lstm" in done.stdout and "topC: 5" in done.stdout and "bptt: 35" in done.stdout


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_one_short_run_per_optimizer_on_synthetic_images(optimizer, tmp_path):
    cfg = compose_run(
        [
            "dataset=synthetic_image",
            f"optimizer={optimizer}",
            *QUICK,
            "trainer.epochs=1",
            "trainer.lr_milestones=[]",
            "trainer.max_steps_per_epoch=2",
        ],
        tmp_path,
    )
    result = train(cfg, tmp_path)
    assert result["status"] == "done" and result["epochs_completed"] == 1
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and 0 <= rows[0]["val_accuracy"] <= 100
    assert (tmp_path / "checkpoint.pt").exists()


def test_language_model_run_reports_perplexity(tmp_path):
    cfg = compose_run(
        [
            "dataset=synthetic_text",
            "optimizer=adam_sam_cm",
            "trainer.epochs=2",
            "trainer.lr_milestones=[1]",
            "dataset.num_train_tokens=3000",
            "dataset.num_val_tokens=800",
            "trainer.progress=false",
        ],
        tmp_path,
    )
    result = train(cfg, tmp_path)
    assert result["status"] == "done" and result["monitor"] == "val_perplexity"
    final = result["final"]
    assert math.isclose(final["val_perplexity"], math.exp(final["val_loss"]), rel_tol=1e-9)
    assert final["best_val_perplexity"] <= final["val_perplexity"]
    assert final["val_perplexity"] < 50  # learned something: the vocabulary has 50 words


def _metrics(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("epoch_time_s")
    return rows


def test_killed_run_resumes_to_the_metrics_of_an_uninterrupted_run(tmp_path):
    args = ["dataset=synthetic_image", "optimizer=adam_cm", *QUICK]
    straight = tmp_path / "straight"  # uninterrupted, in this process: the kill and resume are the CLI's
    assert train(compose_run(args, straight), straight)["status"] == "done"
    killed = run_cli([*args, f"run_dir={tmp_path / 'killed'}"], env={"CMREPRO_KILL_AT_STEP": "5"})
    assert killed.returncode == -9  # SIGKILL in the middle of epoch 2 (3 steps per epoch)
    assert len(_metrics(tmp_path / "killed" / "metrics.jsonl")) == 1
    resumed = run_cli([*args, f"run_dir={tmp_path / 'killed'}"])
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert _metrics(tmp_path / "killed" / "metrics.jsonl") == _metrics(tmp_path / "straight" / "metrics.jsonl")
    result = json.loads((tmp_path / "killed" / "result.json").read_text())
    assert result["status"] == "done" and result["epochs_completed"] == 3
    again = run_cli([*args, f"run_dir={tmp_path / 'killed'}"])
    assert again.returncode == 0 and "already done" in again.stderr


def test_non_finite_loss_marks_the_run_diverged(tmp_path):
    cfg = compose_run(["dataset=synthetic_image", "optimizer=sgd", "optimizer.lr=1e30", *QUICK], tmp_path)
    result = train(cfg, tmp_path)
    assert result["status"] == "diverged"
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "diverged"
    assert train(cfg, tmp_path)["status"] == "diverged"  # recorded, not retried


def test_corrupt_checkpoint_is_reported(tmp_path):
    (tmp_path / "checkpoint.pt").write_bytes(b"not a checkpoint")
    cfg = compose_run(["dataset=synthetic_image", *QUICK], tmp_path)
    with pytest.raises(CheckpointError, match="checkpoint .*checkpoint.pt is unreadable"):
        train(cfg, tmp_path)
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "failed"


def test_a_failed_checkpoint_write_is_a_checkpoint_error_that_keeps_the_last_one(tmp_path, monkeypatch):
    import cmrepro.training.checkpoint as checkpoint

    real_save, calls = torch.save, []

    def disk_full_on_second_save(payload, file):
        calls.append(payload["epoch"])
        if len(calls) == 2:  # what torch.save raises when the disk fills mid-write
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 8950 vs 8900")
        real_save(payload, file)

    cfg = compose_run(
        ["dataset=synthetic_image", *QUICK, "trainer.epochs=2", "trainer.max_steps_per_epoch=1"], tmp_path
    )
    monkeypatch.setattr(checkpoint.torch, "save", disk_full_on_second_save)
    with pytest.raises(
        CheckpointError, match=r"could not write checkpoint .*checkpoint.pt .*unexpected pos.* MiB free"
    ):
        train(cfg, tmp_path)
    monkeypatch.setattr(checkpoint.torch, "save", real_save)
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "failed"
    assert torch.load(tmp_path / "checkpoint.pt", weights_only=True)["epoch"] == 1
    assert not list(tmp_path.glob("*.tmp"))
    metrics = tmp_path / "metrics.jsonl"
    metrics.write_text(metrics.read_text()[:-20])  # and epoch 2's row was cut short too
    result = train(cfg, tmp_path)  # space freed: the run resumes from epoch 1
    assert result["status"] == "done" and [row["epoch"] for row in _metrics(metrics)] == [1, 2]


def test_a_corrupt_metrics_file_is_reported_and_recorded(tmp_path):
    cfg = compose_run(
        ["dataset=synthetic_image", *QUICK, "trainer.epochs=2", "trainer.max_steps_per_epoch=1"], tmp_path
    )
    (tmp_path / "metrics.jsonl").write_text('{"epoch": 1}\nnot json\n{"epoch": 2}\n')
    with pytest.raises(RunFileError, match="metrics.jsonl line 2 is not JSON"):
        train(cfg, tmp_path)
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "failed"


def test_an_ended_run_drops_its_checkpoint_when_asked_and_is_still_skipped(tmp_path):
    quick = [
        "dataset=synthetic_image",
        *QUICK,
        "trainer.epochs=1",
        "trainer.lr_milestones=[]",
        "trainer.max_steps_per_epoch=1",
    ]
    drop = compose_run([*quick, "trainer.keep_checkpoint=false"], tmp_path / "a")
    assert train(drop, tmp_path / "a")["status"] == "done"
    assert not (tmp_path / "a" / "checkpoint.pt").exists() and (tmp_path / "a" / "metrics.jsonl").exists()
    keep = compose_run([*quick, "trainer.keep_checkpoint=true"], tmp_path / "a")
    assert train(keep, tmp_path / "a")["status"] == "done"  # recognised as the same, finished run
    # A finished run kept its checkpoint; re-running it with keep_checkpoint=false frees the disk.
    assert train(compose_run(quick, tmp_path / "b"), tmp_path / "b")["status"] == "done"
    assert (tmp_path / "b" / "checkpoint.pt").exists()
    train(compose_run([*quick, "trainer.keep_checkpoint=false"], tmp_path / "b"), tmp_path / "b")
    assert not (tmp_path / "b" / "checkpoint.pt").exists()


def test_resuming_with_another_config_is_refused(tmp_path):
    cfg = compose_run(
        [
            "dataset=synthetic_image",
            *QUICK,
            "trainer.epochs=1",
            "trainer.lr_milestones=[]",
            "trainer.max_steps_per_epoch=1",
        ],
        tmp_path,
    )
    train(cfg, tmp_path)
    (tmp_path / "result.json").unlink()
    changed = compose_run(
        [
            "dataset=synthetic_image",
            *QUICK,
            "trainer.epochs=1",
            "trainer.lr_milestones=[]",
            "trainer.max_steps_per_epoch=1",
            "optimizer.lr=0.5",
        ],
        tmp_path,
    )
    with pytest.raises(ConfigError, match="differs in: optimizer.lr"):
        train(changed, tmp_path)


def test_wandb_offline_run_writes_its_files(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_run(
        [
            "dataset=synthetic_image",
            "logger=wandb",
            *QUICK,
            "trainer.epochs=1",
            "trainer.lr_milestones=[]",
            "trainer.max_steps_per_epoch=1",
        ],
        tmp_path,
    )
    assert train(cfg, tmp_path)["status"] == "done"
    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert runs and any(runs[0].rglob("*.wandb"))


def test_bf16_autocast_run_on_cpu(tmp_path):
    cfg = compose_run(
        [
            "dataset=synthetic_image",
            "optimizer=adam_sam_cm",
            "trainer.precision=bf16",
            *QUICK,
            "trainer.epochs=1",
            "trainer.lr_milestones=[]",
            "trainer.max_steps_per_epoch=2",
        ],
        tmp_path,
    )
    result = train(cfg, tmp_path)
    assert result["status"] == "done" and math.isfinite(result["final"]["train_loss"])


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bf16_run_on_cuda(tmp_path):
    cfg = compose_run(["dataset=synthetic_image", "trainer.precision=bf16", "trainer.device=cuda", *QUICK], tmp_path)
    assert train(cfg, tmp_path)["status"] == "done"


REAL_FORMATS = {
    "cifar10": (
        lambda root: data_fixtures.write_cifar10(root, n_train=80, n_test=10),
        ["dataset.val_size=16", "dataset.batch_size=16", "model=resnet18", "model.width=0.125"],
    ),
    "cifar100": (
        lambda root: data_fixtures.write_cifar100(root, n_train=80, n_test=10),
        [
            "dataset.val_size=16",
            "dataset.batch_size=16",
            "model=resnet18",
            "dataset.use_test=true",
            "model.width=0.125",
        ],
    ),
    "imagenet": (
        lambda root: data_fixtures.write_imagefolder(root, classes=["n01", "n02", "n03"], per_class=4),
        ["dataset.image_size=16", "dataset.resize=18", "dataset.batch_size=4", "model=resnet18", "model.width=0.125"],
    ),
    "ptb": (lambda root: data_fixtures.write_ptb(root), ["dataset.batch_size=4", "dataset.eval_batch_size=2"]),
}


@pytest.mark.parametrize("dataset", sorted(REAL_FORMATS))
def test_one_epoch_through_the_real_on_disk_format(dataset, tmp_path):
    write, overrides = REAL_FORMATS[dataset]
    write(tmp_path / "data" / dataset)
    cfg = compose_run(
        [
            f"dataset={dataset}",
            f"paths.data_dir={tmp_path / 'data'}",
            "dataset.num_workers=0",
            "trainer.epochs=1",
            "trainer.lr_milestones=[]",
            "trainer.progress=false",
            *overrides,
        ],
        tmp_path / "run",
    )
    result = train(cfg, tmp_path / "run")
    assert result["status"] == "done" and result["epochs_completed"] == 1
    if dataset == "cifar100":
        assert set(result["test"]) == {"test_loss", "test_accuracy"}


def test_bad_dataset_value_is_a_config_error_before_reading_data(tmp_path):
    cfg = compose_run(["dataset=cifar10", "dataset.augment=maybe", f"paths.data_dir={tmp_path / 'none'}"], tmp_path)
    with pytest.raises(ConfigError, match="invalid dataset.augment: 'maybe' \\(must be true or false\\)"):
        train(cfg, tmp_path)
