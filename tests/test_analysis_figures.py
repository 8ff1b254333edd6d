"""Figures 8, 9, 10, 19, 20 and Table 14 from run directories, and their experiment configs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd
import pytest
from train_helpers import ROOT, compose_run

from cmrepro.paper_data import PAPER_DATA
from cmrepro.report import analysis
from cmrepro.training import check_config, train

EXPERIMENTS = sorted(
    p.relative_to(ROOT / "conf" / "experiment").with_suffix("")
    for p in (ROOT / "conf" / "experiment").glob("figure*/*.yaml")
)


def fake_run(root: Path, config: dict, rows: list[dict], **changes) -> None:
    """A finished run directory as the training leaves it: result.json (with the config) and metrics.jsonl."""
    config = json.loads(json.dumps(config))
    for key, value in changes.items():
        section, _, leaf = key.rpartition(".")
        (config[section] if section else config)[leaf] = value
    run_dir = root / f"run{len(list(root.glob('run*')))}"
    run_dir.mkdir(parents=True)
    best = max(rows, key=lambda row: row["val_accuracy"])
    result = {
        "status": "done",
        "config": config,
        "seed": config["seed"],
        "monitor": "val_accuracy",
        "best": {"val_accuracy": best["val_accuracy"], "epoch": best["epoch"]},
        "epochs_completed": len(rows),
    }
    (run_dir / "result.json").write_text(json.dumps(result))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


def config_of(experiment: str, tmp_path: Path) -> dict:
    return compose_run([f"experiment={experiment}"], tmp_path / "unused")


@pytest.fixture
def captured(monkeypatch):
    """The matplotlib figures the report saves, still open for inspection."""
    figures = {}
    save = analysis._save

    def keep(figure, path):
        figures[path.name] = [
            (ax.get_ylabel(), ax.get_yscale(), ax.get_legend_handles_labels()[1], len(ax.collections))
            for ax in figure.axes
        ]
        return save(figure, path)

    monkeypatch.setattr(analysis, "_save", keep)
    return figures


def test_figure8_draws_four_panels_with_seed_bands_and_no_buffer_curves_for_adam(tmp_path, captured):
    for optimizer in ("adam", "adam_cg", "adam_cm"):
        config = config_of(f"figure8/cifar100_{optimizer}", tmp_path)
        for seed in (0, 1):
            rows = []
            for epoch in (1, 2, 3):
                row = {
                    "epoch": epoch,
                    "val_accuracy": 10.0 * epoch,
                    "sharpness": 2.0 / epoch + seed,
                    "distance": 5.0 * epoch + seed,
                    "m_sharpness": 0.01,
                }
                if optimizer != "adam":
                    row.update(buffer_variance=1e-5 * epoch, buffer_cosine=0.1 * epoch)
                rows.append(row)
            fake_run(tmp_path / "runs", config, rows, seed=seed)
    written = analysis.FIGURES["figure8"](tmp_path / "runs", tmp_path / "figures")
    assert written == [tmp_path / "figures" / "figure8_cifar100.png"] and written[0].stat().st_size > 10_000
    panels = captured["figure8_cifar100.png"]
    assert [(label, scale) for label, scale, _, _ in panels] == [
        ("Sharpness", "log"),
        ("Distance", "log"),
        ("Buffer variance", "log"),
        ("Cosine similarity", "linear"),
    ]
    assert panels[0][2] == ["Adam (2 runs)", "Adam+CG (2 runs)", "Adam+CM (2 runs)"]
    assert panels[2][2] == ["Adam+CG (2 runs)", "Adam+CM (2 runs)"]  # absent for Adam, not a line at zero
    assert panels[0][3] == 3  # one band per optimizer


def test_figure9_uses_the_last_logged_sharpness_of_each_run(tmp_path, captured):
    for dataset in ("cifar10", "cifar100"):
        config = config_of(f"figure9/{dataset}_adam_cm", tmp_path)
        for top_c, seed in ((5, 0), (5, 1), (20, 0), (20, 1)):
            rows = [
                {"epoch": 1, "val_accuracy": 50.0},
                {"epoch": 10, "val_accuracy": 60.0, "sharpness": 99.0},
                {"epoch": 12, "val_accuracy": 61.0, "sharpness": top_c / 100 + seed},
            ]
            fake_run(tmp_path / "runs", config, rows, seed=seed, **{"optimizer.topC": top_c})
    png, table = analysis.FIGURES["figure9"](tmp_path / "runs", tmp_path / "figures")
    assert png.name == "figure9.png" and captured["figure9.png"][0][1] == "log"
    cells = pd.read_csv(table)
    assert list(cells["dataset"]) == ["cifar10", "cifar10", "cifar100", "cifar100"]
    assert list(cells["topC"]) == [5, 20, 5, 20]
    assert list(cells["mean"]) == pytest.approx([0.55, 0.7, 0.55, 0.7])
    assert list(cells["runs"]) == [2, 2, 2, 2]


def test_figure10_takes_the_best_grid_setting_for_each_batch_and_buffer_size(tmp_path, captured):
    for study, key, values in (
        ("batch_size", "dataset.batch_size", (64, 128)),
        ("buffer_size", "optimizer.topC", (1, 5)),
    ):
        config = config_of(f"figure10/cifar10_{study}", tmp_path)
        for value in values:
            for lr, accuracy in ((0.01, 80.0), (0.001, 90.0 - value / 100)):
                fake_run(
                    tmp_path / "runs",
                    config,
                    [{"epoch": 1, "val_accuracy": accuracy}],
                    **{key: value, "optimizer.lr": lr},
                )
    png, table = analysis.FIGURES["figure10"](tmp_path / "runs", tmp_path / "figures")
    assert png.stat().st_size > 10_000
    cells = pd.read_csv(table)
    assert list(cells["study"]) == ["batch_size", "batch_size", "topC", "topC"]
    assert list(cells["value"]) == [64, 128, 1, 5]
    assert list(cells["mean"]) == pytest.approx([89.36, 88.72, 89.99, 89.95])
    assert cells["setting"].str.contains("lr=0.001 ").all()
    assert captured["figure10.png"][0][2] == ["64", "128"] and captured["figure10.png"][1][2] == ["1", "5"]


def test_figure19_and_figure20_with_table14_beside_the_paper(tmp_path, captured):
    for optimizer in ("adam", "adam_cm"):
        config = config_of("figure19/cifar10", tmp_path)
        rows = [{"epoch": e, "val_accuracy": 1.0, "m_sharpness": 0.01 * e} for e in (1, 2)]
        fake_run(tmp_path / "runs", config, rows, **{"optimizer.name": optimizer})
    config = config_of("figure20/cifar10_adam", tmp_path)
    for lr, accuracies in ((0.01, (93.0, 94.0)), (0.001, (93.5, 93.5))):
        for seed, accuracy in enumerate(accuracies):
            rows = [  # each row's lr is the epoch's: decayed after epoch 1
                {"epoch": 1, "val_accuracy": accuracy - 1, "sharpness": lr * 100, "lr": lr},
                {"epoch": 2, "val_accuracy": accuracy, "sharpness": lr * 50, "lr": lr / 10},
            ]
            fake_run(tmp_path / "runs", config, rows, seed=seed, **{"optimizer.lr": lr})
    (png19,) = analysis.FIGURES["figure19"](tmp_path / "runs", tmp_path / "figures")
    assert captured["figure19.png"][0][:3] == ("m-sharpness", "log", ["Adam", "Adam+CM"])
    png20, table_csv, table_md = analysis.FIGURES["figure20"](tmp_path / "runs", tmp_path / "figures")
    assert captured["figure20.png"][0][2] == ["lr=0.01 (2 runs)", "lr=0.001 (2 runs)"]
    with table_csv.open() as file:
        cells = {float(row["lr"]): row for row in csv.DictReader(file)}
    assert float(cells[0.01]["mean"]) == pytest.approx(93.5) and float(cells[0.01]["paper_mean"]) == 93.5
    assert float(cells[0.001]["mean"]) == pytest.approx(93.5) and float(cells[0.001]["std"]) == 0.0
    assert cells[0.0001]["mean"] == "" and float(cells[0.0001]["paper_mean"]) == 93.4  # not run: paper only
    assert "Table 14" in table_md.read_text()


def test_a_figure_without_runs_writes_nothing(tmp_path):
    (tmp_path / "runs").mkdir()
    assert all(figure(tmp_path / "runs", tmp_path / "figures") == [] for figure in analysis.FIGURES.values())


@pytest.mark.parametrize("experiment", [str(e) for e in EXPERIMENTS])
def test_figure_experiments_compose_and_pass_the_checks(experiment, tmp_path):
    cfg = compose_run([f"experiment={experiment}"], tmp_path)
    check_config(cfg)
    assert cfg["benchmark"]["table"].startswith(experiment.split("/")[0])


def test_figure8_runs_use_the_papers_best_cifar100_settings(tmp_path):
    with (PAPER_DATA / "best_hyperparameters.csv").open() as file:
        best = {
            row["optimizer"]: row
            for row in csv.DictReader(file)
            if row["table"] == "table10" and row["dataset"] == "cifar100"
        }
    names = {
        "Adam": "adam",
        "Adam+CG": "adam_cg",
        "Adam+SAM": "adam_sam",
        "Adam+CM": "adam_cm",
        "Adam+SAM+CM": "adam_sam_cm",
    }
    for paper, ours in names.items():
        optimizer = compose_run([f"experiment=figure8/cifar100_{ours}"], tmp_path)["optimizer"]
        row = best[paper]
        assert optimizer["name"] == ours and optimizer["lr"] == float(row["lr"])
        assert optimizer["betas"] == [float(row["beta1"]), float(row["beta2"])]
        for key in ("topC", "decay", "rho"):
            assert optimizer.get(key) == (type(optimizer[key])(row[key]) if row[key] else None)


@pytest.mark.parametrize(
    "figure, experiment",
    [
        ("figure8", "figure8/cifar100_adam_cm"),
        ("figure9", "figure9/cifar10_adam_cm"),
        ("figure10", "figure10/cifar10_buffer_size"),
        ("figure19", "figure19/cifar10"),
        ("figure20", "figure20/cifar10_adam"),
    ],
)
def test_the_smoke_pipeline_trains_and_draws_each_figure(figure, experiment, tmp_path):
    """What `make <figure>-smoke` does, cut to one run of one step: train on stand-in data, then draw."""
    smoke = [
        "scale=smoke",
        "trainer.epochs=1",
        "trainer.lr_milestones=[]",
        "trainer.max_steps_per_epoch=1",
        "metrics.sharpness.batches=1",
        "metrics.sharpness.max_iterations=1",
        "metrics.m_sharpness.batches=1",
    ]
    run_dir = tmp_path / "runs" / experiment
    cfg = compose_run([f"experiment={experiment}", *smoke], run_dir)
    check_config(cfg)
    assert train(cfg, run_dir)["status"] == "done"
    written = analysis.FIGURES[figure](tmp_path / "runs", tmp_path / "figures")
    pngs = [path for path in written if path.suffix == ".png"]
    assert pngs and all(path.name.startswith(figure) and path.stat().st_size > 10_000 for path in pngs), written
