"""Online learning: the stream metrics on a hand-made matrix, the multi-head model, a short
stream per optimizer, exact resume across task boundaries, optimizer resets, both benchmarks
from the CLI on real-format data, and the Table 4 experiment configs."""

from __future__ import annotations

import csv
import json

import online_fixtures
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from train_helpers import QUICK_STREAM, compose_run, run_cli

from cmrepro.models import ModelSpec, build_model
from cmrepro.models.task_heads import TaskHeads
from cmrepro.paper_data import PAPER_DATA
from cmrepro.train import CONF_DIR
from cmrepro.training import ConfigError, check_config, train
from cmrepro.training.stream_metrics import stream_metrics

OPTIMIZERS = ["adam", "adam_cg", "adam_sam", "adam_cm", "adam_sam_cm", "sgd", "sgd_cg", "sgd_cm"]


# ---------------------------------------------------------------- metrics and model


def test_stream_metrics_on_a_hand_made_matrix():
    matrix = [
        [80.0, 10.0, 30.0],
        [60.0, 90.0, 20.0],
        [70.0, 50.0, 40.0],
    ]
    metrics = stream_metrics(matrix)
    assert metrics["learning_accuracy"] == pytest.approx((80 + 90 + 40) / 3)
    assert metrics["average_accuracy"] == pytest.approx((70 + 50 + 40) / 3)
    # max over i >= j minus final: task 0: 80 - 70, task 1: 90 - 50, task 2: 0.
    assert metrics["forgetting"] == pytest.approx((10 + 40 + 0) / 3)
    assert metrics["backward_transfer"] == pytest.approx(((70 - 80) + (50 - 90) + 0) / 3)
    # After two tasks only the first two columns count.
    partial = stream_metrics(matrix[:2])
    assert partial["average_accuracy"] == pytest.approx(75.0) and partial["forgetting"] == pytest.approx(10.0)
    assert stream_metrics([])["learning_accuracy"] is None


def test_task_heads_select_the_active_block_of_outputs():
    network = build_model({"name": "lamaml_cnn"}, ModelSpec("classification", num_classes=200, image_size=64))
    # La-MAML's TinyImageNet CNN: 160 x 4 x 4 features into 640, 640, then 200 outputs.
    linears = [m for m in network.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(2560, 640), (640, 640), (640, 200)]
    heads = TaskHeads(network, classes_per_task=5)
    x = torch.randn(2, 3, 64, 64)
    full = network(x)
    heads.set_task(3)
    assert torch.equal(heads(x), full[:, 15:20])
    assert set(heads.state_dict()) == {f"network.{key}" for key in network.state_dict()}


# ---------------------------------------------------------------- training


def _rows(path):
    """metrics.jsonl's rows without their timings."""
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for row in rows:
        row.pop("task_time_s")
    return rows


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_short_stream_per_optimizer(optimizer, tmp_path):
    cfg = compose_run([*QUICK_STREAM, f"optimizer={optimizer}", "trainer.max_steps_per_epoch=2"], tmp_path)
    check_config(cfg)
    result = train(cfg, tmp_path)
    assert result["status"] == "done" and result["monitor"] == "learning_accuracy"
    matrix = result["accuracy_matrix"]
    assert len(matrix) == 3 and all(len(row) == 3 for row in matrix)
    assert result["best"]["learning_accuracy"] == pytest.approx(sum(matrix[k][k] for k in range(3)) / 3)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [row["task"] for row in rows] == [1, 2, 3] and [row["epoch"] for row in rows] == [2, 4, 6]
    assert [row["val_accuracies"] for row in rows] == matrix
    assert [task["name"] for task in result["tasks"]] == ["task01", "task02", "task03"]


def test_stream_learns_each_task(tmp_path):
    cfg = compose_run([*QUICK_STREAM, "optimizer=adam_cm", "dataset.num_tasks=2", "trainer.epochs=4"], tmp_path)
    result = train(cfg, tmp_path)
    assert result["learning_accuracy"] > 45  # 5 classes: chance is 20%
    assert result["accuracy_matrix"][0][1] < 40  # task 2 before it was learned
    assert train(cfg, tmp_path)["wall_time_s"] == result["wall_time_s"]  # done: not run again


def test_reset_optimizer_changes_only_later_tasks(tmp_path):
    args = [*QUICK_STREAM, "optimizer=adam_cm", "dataset.num_tasks=2", "trainer.max_steps_per_epoch=2"]
    assert train(compose_run(args, tmp_path / "keep"), tmp_path / "keep")["status"] == "done"
    reset = train(compose_run([*args, "online.reset_optimizer=true"], tmp_path / "reset"), tmp_path / "reset")
    assert reset["status"] == "done"
    keep_rows, reset_rows = (_rows(tmp_path / name / "metrics.jsonl") for name in ("keep", "reset"))
    assert reset_rows[0] == keep_rows[0]  # the first task is learned alike
    assert reset_rows[1]["train_losses"] != keep_rows[1]["train_losses"]
    assert reset_rows[1]["val_losses"] != keep_rows[1]["val_losses"]
    with pytest.raises(ConfigError, match="invalid online.reset_optimizer: 'yes'"):
        train(compose_run([*QUICK_STREAM, "online.reset_optimizer=yes"], tmp_path / "bad"), tmp_path / "bad")


def test_killed_stream_resumes_to_the_metrics_of_an_uninterrupted_run(tmp_path):
    # 3 tasks x 2 epochs x 2 steps; reset at task boundaries, so resuming must redo the reset too.
    args = [*QUICK_STREAM, "optimizer=adam_sam_cm", "online.reset_optimizer=true", "trainer.max_steps_per_epoch=2"]
    straight = tmp_path / "straight"  # uninterrupted, in this process: the kill and resume are the CLI's
    assert train(compose_run(args, straight), straight)["status"] == "done"
    # Step 9 of the global count is in the first epoch of task 3, after task 2's checkpoint.
    killed = run_cli([*args, f"run_dir={tmp_path / 'killed'}"], env={"CMREPRO_KILL_AT_STEP": "9"})
    assert killed.returncode == -9
    assert len(_rows(tmp_path / "killed" / "metrics.jsonl")) == 2
    resumed = run_cli([*args, f"run_dir={tmp_path / 'killed'}"])
    assert resumed.returncode == 0 and "resuming" in resumed.stderr, resumed.stderr
    assert _rows(tmp_path / "killed" / "metrics.jsonl") == _rows(tmp_path / "straight" / "metrics.jsonl")
    result = json.loads((tmp_path / "killed" / "result.json").read_text())
    assert result["status"] == "done" and result["tasks_completed"] == 3


def test_non_finite_loss_marks_the_stream_diverged(tmp_path):
    cfg = compose_run([*QUICK_STREAM, "optimizer=sgd", "optimizer.lr=1e30"], tmp_path)
    result = train(cfg, tmp_path)
    assert result["status"] == "diverged" and result["tasks_completed"] == 0


# ---------------------------------------------------------------- real formats from the CLI

TINY_MODEL = ["model.channels=8", "model.hidden=16", "trainer.progress=false", "dataset.num_workers=0"]


def test_tinyimagenet_from_the_cli(tmp_path):
    online_fixtures.write_tiny_imagenet(tmp_path / "data" / "tinyimagenet", num_classes=10, train_per_class=6)
    args = [
        "dataset=tinyimagenet",
        f"paths.data_dir={tmp_path / 'data'}",
        "dataset.num_tasks=2",
        "dataset.image_size=16",
        "dataset.use_test=true",
        "trainer.epochs=1",
        f"run_dir={tmp_path / 'run'}",
        *TINY_MODEL,
    ]
    done = run_cli(args)
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "done" and result["tasks_completed"] == 2
    assert len(result["test"]["accuracy_matrix"]) == 2 and "learning_accuracy" in result["test"]
    assert sorted(c for task in result["tasks"] for c in task["classes"]) == [f"n{i:08d}" for i in range(10)]


def test_five_datasets_from_the_cli_reports_skipped_files(tmp_path):
    online_fixtures.write_five_datasets(tmp_path / "data" / "five_datasets", per_split=20)
    args = [
        "dataset=five_datasets",
        f"paths.data_dir={tmp_path / 'data'}",
        f"dataset.roots.cifar10={tmp_path / 'data' / 'five_datasets' / 'cifar10'}",
        "model.width=0.125",
        "trainer.epochs=1",
        "dataset.batch_size=32",
        f"run_dir={tmp_path / 'run'}",
        "trainer.progress=false",
    ]
    done = run_cli(args)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("cmrepro.train: notmnist: skipping unreadable image ") == 2  # each named once
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["status"] == "done" and result["skipped_files"] == {"notmnist": 2}
    assert len(result["accuracy_matrix"]) == 5 and result["best"]["learning_accuracy"] is not None


def test_missing_stream_data_exits_2_with_one_line(tmp_path):
    done = run_cli(["dataset=tinyimagenet", f"paths.data_dir={tmp_path / 'none'}", f"run_dir={tmp_path / 'run'}"])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and str(tmp_path / "none" / "tinyimagenet") in lines[0]


# ---------------------------------------------------------------- Table 4 configs

PAPER_NAMES = {"Adam": "adam", "Adam+CG": "adam_cg", "Adam+SAM": "adam_sam", "Adam+CM": "adam_cm"}
PAPER_NAMES["Adam+SAM+CM"] = "adam_sam_cm"
PAPER_DATASETS = {"tinyimagenet": "tinyimagenet", "5-dataset": "five_datasets"}


def _sweep_jobs(experiment: str) -> tuple[dict, list[list[str]]]:
    """The composed config of ``experiment`` and the jobs ``-m`` would launch (Hydra's own expansion)."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
    params = cfg.hydra.sweeper.params
    overrides = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    return cfg, [job for batch in BasicSweeper.split_arguments(overrides, None) for job in batch]


def test_best_configs_hold_table_13(tmp_path):
    with open(PAPER_DATA / "best_hyperparameters.csv") as handle:
        rows = [row for row in csv.DictReader(handle) if row["table"] == "table13"]
    assert len(rows) == 10
    for row in rows:
        experiment = f"table4/best/{PAPER_DATASETS[row['dataset']]}_{PAPER_NAMES[row['optimizer']]}"
        cfg, jobs = _sweep_jobs(experiment)
        assert jobs == [[f"seed={seed}"] for seed in range(5)]
        resolved = compose_run([f"experiment={experiment}", "seed=2"], tmp_path)
        check_config(resolved)
        optimizer = resolved["optimizer"]
        assert optimizer["name"] == PAPER_NAMES[row["optimizer"]], experiment
        assert optimizer["lr"] == float(row["lr"]), experiment
        assert optimizer["betas"] == [float(row["beta1"]), float(row["beta2"])], experiment
        assert (optimizer.get("topC", 5), optimizer.get("decay", 0.7), optimizer.get("rho", 0.05)) == (5, 0.7, 0.05)
        assert resolved["benchmark"] == {"table": "table4", "dataset": resolved["dataset"]["name"], "kind": "best"}
        assert resolved["dataset"]["task_order_seed"] == 2


@pytest.mark.parametrize("dataset", ["tinyimagenet", "five_datasets"])
def test_grid_configs_expand_to_table_12(dataset, tmp_path):
    for optimizer in PAPER_NAMES.values():
        _, jobs = _sweep_jobs(f"table4/grid/{dataset}_{optimizer}")
        assert len(jobs) == (4 if optimizer == "adam" else 24)
        assert len({tuple(job) for job in jobs}) == len(jobs)
        resolved = compose_run([f"experiment=table4/grid/{dataset}_{optimizer}", *jobs[-1]], tmp_path)
        check_config(resolved)
        assert resolved["optimizer"]["lr"] == 0.00001 and resolved["benchmark"]["kind"] == "grid"
        assert resolved["optimizer"]["betas"] == ([0.9, 0.999] if optimizer == "adam" else [0.99, 0.9999])
