"""The paper-table experiment configs, the scales and the launchers, composed as Hydra would."""

from __future__ import annotations

import csv
import math
import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf
from train_helpers import ROOT, compose_run

from cmrepro.data import build_data
from cmrepro.models import ModelSpec, build_model
from cmrepro.paper_data import PAPER_DATA
from cmrepro.train import CONF_DIR
from cmrepro.training import ConfigError, check_config

EXPERIMENTS = CONF_DIR / "experiment"
PAPER_NAMES = {"Adam": "adam", "Adam+CG": "adam_cg", "Adam+SAM": "adam_sam", "Adam+CM": "adam_cm",
               "Adam+SAM+CM": "adam_sam_cm"}  # fmt: skip


def paper_best_settings() -> dict[tuple[str, str], dict[str, str]]:
    with (PAPER_DATA / "best_hyperparameters.csv").open(newline="") as file:
        rows = [row for row in csv.DictReader(file) if row["table"] in ("table9", "table10")]
    return {(row["dataset"], PAPER_NAMES[row["optimizer"]]): row for row in rows}


def sweep_size(params: dict) -> int:
    """Jobs of a basic-sweeper grid, counted with Hydra's own override parser."""
    overrides = OverridesParser.create().parse_overrides([f"{key}={value}" for key, value in params.items()])
    return math.prod(len(list(override.sweep_iterator())) for override in overrides)


def test_committed_experiment_files_match_the_paper_csvs():
    check = subprocess.run(
        [sys.executable, "scripts/write_experiments.py", "--check"], cwd=ROOT, capture_output=True, text=True
    )
    assert check.returncode == 0, check.stdout


@pytest.mark.parametrize("cell", sorted(paper_best_settings()), ids="/".join)
def test_table2_best_experiments_compose_to_the_papers_best_settings(cell, tmp_path):
    dataset, optimizer = cell
    paper = paper_best_settings()[cell]
    cfg = compose_run([f"experiment=table2/best/{dataset}_{optimizer}"], tmp_path)
    check_config(cfg)
    assert (cfg["dataset"]["name"], cfg["optimizer"]["name"]) == cell
    assert cfg["benchmark"] == {"table": "table2", "kind": "best", "dataset": dataset}
    assert cfg["optimizer"]["lr"] == float(paper["lr"])
    assert cfg["optimizer"]["betas"] == [float(paper["beta1"]), float(paper["beta2"])]
    for key in ("topC", "decay", "rho"):
        assert cfg["optimizer"].get(key) == (float(paper[key]) if paper[key] else None), key


def _sweeper_params(experiment: str) -> dict:
    return dict(OmegaConf.load(EXPERIMENTS / f"{experiment}.yaml").hydra.sweeper.params)


@pytest.mark.parametrize(
    "experiment, jobs",
    [
        ("table2/grid/cifar10_adam", 4),  # lr
        ("table2/grid/cifar10_adam_cm", 4 * 3 * 3 * 2 * 2),  # lr, beta1, beta2, C, decay (Table 8)
        ("table2/grid/ptb_adam_sam", 4 * 3 * 3 * 3),  # lr, beta1, beta2, rho
        ("table2/grid/imagenet_adam_sam_cm", 4 * 3 * 3 * 2 * 2 * 3),
        ("table3/grid/cifar100_sgd_cm", 4 * 3 * 2 * 2),  # lr, momentum, C, decay
        ("table2/best/cifar100_adam_cm", 5),  # five seeds
    ],
)
def test_grids_expand_to_the_papers_search(experiment, jobs):
    assert sweep_size(_sweeper_params(experiment)) == jobs


def test_a_grid_value_reaches_the_optimizer(tmp_path):
    cfg = compose_run(["experiment=table2/grid/cifar100_adam_cm", "optimizer.betas=[0.99,0.9999]"], tmp_path)
    assert cfg["optimizer"]["betas"] == [0.99, 0.9999] and cfg["benchmark"]["kind"] == "grid"
    # Hundreds of runs per cell: a grid drops each run's checkpoint once it has ended; best settings keep it.
    assert cfg["trainer"]["keep_checkpoint"] is False
    assert compose_run(["experiment=table2/best/cifar100_adam_cm"], tmp_path)["trainer"]["keep_checkpoint"] is True


@pytest.mark.parametrize("dataset, classes", [("cifar10", 10), ("cifar100", 100), ("imagenet", 1000), ("ptb", None)])
def test_smoke_scale_swaps_in_stand_in_data_of_the_same_shape(dataset, classes, tmp_path):
    cfg = compose_run([f"dataset={dataset}", "scale=smoke"], tmp_path)
    check_config(cfg)
    assert cfg["paths"]["output_dir"] == "results/smoke/runs" and cfg["trainer"]["max_steps_per_epoch"] == 3
    data = build_data(cfg["dataset"], seed=0)  # no files: the stand-in
    assert data.num_classes == classes
    if classes is None:
        assert data.vocab_size == 10_000
        x, y = next(iter(data.train(0)))
    else:
        x, y = next(iter(data.train(0)))
        assert tuple(x.shape[1:]) == (3, 32, 32) and int(y.max()) < classes
    spec = ModelSpec(data.task, data.num_classes, data.vocab_size)
    full = sum(p.numel() for p in build_model({**cfg["model"], "width": 1.0}, spec).parameters())
    small = sum(p.numel() for p in build_model(cfg["model"], spec).parameters())
    assert small < full / 8  # the same architecture, narrower


def test_a_bad_stand_in_or_width_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="invalid model.width: 0"):
        check_config(compose_run(["dataset=cifar10", "model.width=0"], tmp_path))
    cfg = compose_run(["dataset=cifar10", "scale=smoke", "dataset.stand_in=true"], tmp_path)
    with pytest.raises(ValueError, match="invalid dataset.stand_in: True"):
        build_data(cfg["dataset"], seed=0)


def _hydra_config(overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=overrides, return_hydra_config=True)
    return OmegaConf.to_container(cfg.hydra.launcher)


def test_slurm_launcher_config_composes_with_documented_fields():
    launcher = _hydra_config(["hydra/launcher=slurm", "hydra.launcher.partition=a100"])
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["partition"] == "a100" and launcher["gpus_per_node"] == 1
    assert launcher["array_parallelism"] > 0 and launcher["timeout_min"] > 0 and launcher["max_num_timeout"] > 0
    # One run over several nodes, one task per GPU (README, "Several GPUs"): the fields submitit reads.
    spanning = ["hydra/launcher=slurm", "hydra.launcher.nodes=2", "hydra.launcher.tasks_per_node=8",
                "hydra.launcher.gpus_per_node=8"]  # fmt: skip
    launcher = _hydra_config(spanning)
    assert (launcher["nodes"], launcher["tasks_per_node"], launcher["gpus_per_node"]) == (2, 8, 8)


def test_joblib_launcher_config_composes():
    launcher = _hydra_config(["hydra/launcher=joblib", "hydra.launcher.n_jobs=3"])
    assert launcher["_target_"].endswith("joblib_launcher.JoblibLauncher") and launcher["n_jobs"] == 3


def test_every_experiment_file_composes(tmp_path):
    for path in sorted(EXPERIMENTS.rglob("*.yaml")):
        name = path.relative_to(EXPERIMENTS).with_suffix("").as_posix()
        cfg = compose_run([f"experiment={name}"], tmp_path)
        check_config(cfg)
        assert cfg["benchmark"]["table"], f"{name} does not say which table or figure it belongs to"
