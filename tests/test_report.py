"""The report: run directories -> cells beside the paper's, grid choice, speed-up, files."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml
from run_fixtures import write_run

from cmrepro.report import load_metrics, load_runs
from cmrepro.report.__main__ import main as report_main
from cmrepro.report.notes import CONF_OPTIMIZERS, table3_note
from cmrepro.report.speedup import first_epoch_reaching, speedup_cells
from cmrepro.report.tables import best_cells, compare, grid_choice, paper_cells


def test_runs_are_read_with_their_setting_and_best_value(tmp_path):
    write_run(tmp_path, "a", seed=3, curve=[40.0, 70.0, 65.0])
    (tmp_path / "torn").mkdir()
    (tmp_path / "torn" / "result.json").write_text("{not json")
    runs = load_runs(tmp_path).set_index("status")
    assert runs.loc["done", "best"] == 70.0 and runs.loc["done", "best_epoch"] == 2
    assert runs.loc["done", "seed"] == 3 and runs.loc["done", "beta2"] == 0.999
    assert runs.loc["done", "setting"] == "lr=0.001 beta1=0.9 beta2=0.999 topC=5 decay=0.7 batch_size=64"
    assert "unreadable" in runs.index  # counted, not an error
    metrics = load_metrics(tmp_path)
    assert list(metrics["val_accuracy"]) == [40.0, 70.0, 65.0] and set(metrics["optimizer"]) == {"adam_cm"}


def test_cells_are_mean_and_sample_std_of_finished_seeds(tmp_path):
    bests = [93.0, 94.0, 95.5]
    for seed, value in enumerate(bests):
        write_run(tmp_path, f"s{seed}", seed=seed, curve=[10.0, value])
    write_run(tmp_path, "failed", seed=3, status="failed", curve=[99.0])  # never averaged in
    write_run(tmp_path, "grid", kind="grid", curve=[99.0])  # another kind of run
    cell = best_cells(load_runs(tmp_path), "table2").iloc[0]
    assert cell["mean"] == pytest.approx(np.mean(bests))
    assert cell["std"] == pytest.approx(np.std(bests, ddof=1))
    assert (cell["runs"], cell["not_done"], cell["settings"]) == (3, 1, 1)
    write_run(tmp_path, "other-lr", seed=4, lr=0.01, curve=[90.0])  # e.g. a best run with an override
    assert best_cells(load_runs(tmp_path), "table2").iloc[0]["settings"] == 2


def test_comparison_with_the_paper_keeps_missing_cells_and_marks_agreement(tmp_path):
    write_run(tmp_path, "close", dataset="cifar10", optimizer="adam_cm", curve=[94.2])  # paper 94.0 +- 0.3
    write_run(tmp_path, "far", dataset="cifar10", optimizer="adam", curve=[90.0])  # paper 93.9 +- 0.3
    write_run(tmp_path, "extra", dataset="synthetic_image", optimizer="adam", curve=[50.0])  # not in the paper
    cells = compare(best_cells(load_runs(tmp_path), "table2"), paper_cells("table2"))
    cells = cells.set_index(["dataset", "optimizer"])
    assert len(cells) == 20 + 1  # the paper's 4 x 5 cells, and ours that the paper lacks
    assert cells.loc[("cifar10", "adam_cm"), "difference"] == pytest.approx(0.2)
    assert cells.loc[("cifar10", "adam_cm"), "within_paper_std"] is True
    assert cells.loc[("cifar10", "adam"), "within_paper_std"] is False
    assert math.isnan(cells.loc[("ptb", "adam"), "mean"]) and cells.loc[("ptb", "adam"), "runs"] == 0
    assert math.isnan(cells.loc[("synthetic_image", "adam"), "paper_mean"])
    assert list(cells.index.get_level_values("dataset").unique()[:4]) == ["ptb", "cifar10", "cifar100", "imagenet"]


def test_grid_choice_maximises_accuracy_and_minimises_perplexity(tmp_path):
    for lr, values in {0.1: [60.0, 62.0], 0.01: [70.0, 68.0], 0.001: [75.0]}.items():
        for seed, value in enumerate(values):
            write_run(tmp_path, f"acc-{lr}-{seed}", kind="grid", lr=lr, seed=seed, curve=[value])
    for lr, value in {0.1: 300.0, 0.01: 150.0}.items():
        write_run(
            tmp_path, f"ppl-{lr}", kind="grid", dataset="ptb", lr=lr, monitor="val_perplexity", curve=[900.0, value]
        )
    chosen = grid_choice(load_runs(tmp_path), "table2").set_index("dataset")
    assert chosen.loc["cifar10", "setting"].startswith("lr=0.001 ") and chosen.loc["cifar10", "mean"] == 75.0
    assert chosen.loc["cifar10", "settings_tried"] == 3
    assert chosen.loc["ptb", "setting"].startswith("lr=0.01 ") and chosen.loc["ptb", "mean"] == 150.0


def test_speedup_compares_epochs_to_sgds_best_accuracy_in_the_window(tmp_path):
    # SGD peaks at 60 in epoch 4; SGD+CM (mean of two seeds) first reaches 60 in epoch 2;
    # SGD+CG never does within the first 50 epochs (its 61 comes at epoch 51).
    write_run(tmp_path, "sgd", table="table3", optimizer="sgd", curve=[10, 30, 50, 60, 55])
    write_run(tmp_path, "cm0", table="table3", optimizer="sgd_cm", curve=[20, 58, 70, 70, 70])
    write_run(tmp_path, "cm1", table="table3", optimizer="sgd_cm", seed=1, curve=[20, 62, 70, 70, 70])
    write_run(tmp_path, "cg", table="table3", optimizer="sgd_cg", curve=[5] * 50 + [61])
    cells = speedup_cells(load_metrics(tmp_path), "table3").set_index("optimizer")
    assert cells.loc["sgd", "mean"] == 1.0
    assert cells.loc["sgd_cm", "mean"] == pytest.approx(4 / 2) and cells.loc["sgd_cm", "runs"] == 2
    assert math.isnan(cells.loc["sgd_cg", "mean"])
    assert math.isnan(first_epoch_reaching(pd.Series([1.0, 2.0], index=[1, 2]), 3.0))


def test_cli_writes_the_table_files_and_names_missing_cells(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "a", table="table3", optimizer="sgd", curve=[80.0, 93.0])
    write_run(runs, "b", table="table3", optimizer="sgd_cm", curve=[93.5, 93.2])
    write_run(runs, "c", table="table3", optimizer="sgd_cg", status="failed", curve=[1.0])
    write_run(runs, "d", table="table3", optimizer="sgd", dataset="cifar100", curve=[60.0])
    write_run(runs, "e", table="table3", optimizer="sgd", dataset="cifar100", seed=1, lr=0.5, curve=[70.0])
    assert report_main(["table3", "--runs", str(runs), "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "tables" / "table3.md").read_text()
    assert "| SGD+CM | 93.5 · paper 93.1 ± 0.1 · Δ +0.4 · too few runs (n=1/5)" in markdown
    assert "cifar10/sgd_cg (val_accuracy)" in markdown and "cifar100/sgd_cm (val_accuracy)" in markdown
    assert "65.0 ± 7.1 · paper 69.6 ± 0.7 · Δ -4.6 · too few runs (n=2/5, ⚠ 2 settings pooled)" in markdown
    assert "Runs: 5 (4 done, 1 failed)" in markdown
    cells = pd.read_csv(tmp_path / "tables" / "table3.csv")
    assert len(cells) == 12  # 2 datasets x 3 optimizers x (accuracy, speed-up)
    speedup = cells[(cells["metric"] == "speedup") & (cells["optimizer"] == "sgd_cm")].iloc[0]
    assert speedup["mean"] == 2.0  # reaches SGD's 93.0 in epoch 1 instead of 2
    latex = (tmp_path / "tables" / "table3.tex").read_text()
    assert "SGD+CM & 93.5$^{?}$ (93.1) & 2.0 (1.3)" in latex and "\\bottomrule" in latex
    assert (tmp_path / "figures" / "table3_cifar10_curves.png").stat().st_size > 0


def test_cli_without_runs_exits_2_with_one_line(tmp_path, capsys):
    assert report_main(["table2", "--runs", str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_table3_says_above_the_table_that_its_cells_run_defaults_and_each_momentum_form(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, "a", table="table3", optimizer="sgd_cm", curve=[80.0])
    assert report_main(["table3", "--runs", str(runs), "--out", str(tmp_path)]) == 0
    markdown = (tmp_path / "tables" / "table3.md").read_text()
    assert markdown.index("**Settings.**") < markdown.index("**Momentum.**") < markdown.index("| optimizer |")
    assert "publishes no best settings for SGD, SGD+CG and SGD+CM" in markdown
    assert "until `make grid-table3` has run" in markdown
    # The forms and values stated are those of the configs the runs use.
    sgd, cg, cm = (yaml.safe_load((CONF_OPTIMIZERS / f"{n}.yaml").read_text()) for n in ("sgd", "sgd_cg", "sgd_cm"))
    assert sgd.get("dampening", 0) == 0 and "nesterov" not in sgd
    assert f"- SGD: `torch.optim.SGD`, heavy-ball momentum {sgd['momentum']:g} without dampening" in markdown
    assert f"- SGD+CG: the official `SGD_C` (eq. 10) with momentum {cg['momentum']:g}:" in markdown
    assert f"- SGD+CM: eq. 4's moving average m ← βm + (1 − β)g with β = {cm['momentum']:g}" in markdown
    assert f"C = {cg['topC']}, decay {cg['decay']:g}" in markdown and cm["topC"] == cg["topC"]
    assert "No best settings are published" in (tmp_path / "tables" / "table3.tex").read_text()
    # Once the grid has runs, the note points to its choice instead.
    write_run(runs, "g", table="table3", kind="grid", optimizer="sgd", curve=[70.0])
    assert "`make grid-table3` has 1 grid runs here" in table3_note(load_runs(runs))
