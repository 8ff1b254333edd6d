"""Appendix A.2.1's Adam+MEG on CIFAR10: the experiment, the paper's value and the report row."""

from __future__ import annotations

import argparse
import subprocess

import pandas as pd
import pytest
import torch
from run_fixtures import write_run
from train_helpers import ROOT, compose_run, run_cli

from cmrepro.optim import MEG, create_optimizer
from cmrepro.optim.from_config import optimizer_arguments
from cmrepro.paper_data import PAPER_DATA
from cmrepro.report.__main__ import main as report_main
from cmrepro.reproduce import commands
from cmrepro.training import check_config

PAPER = ROOT.parent / "shared" / "paper.txt"
EXPERIMENT = "appendix/best/cifar10_adam_meg"


def test_the_experiment_is_adams_best_cifar10_setting_with_meg(tmp_path):
    cfg = compose_run([f"experiment={EXPERIMENT}"], tmp_path)
    check_config(cfg)
    assert cfg["benchmark"] == {"table": "appendix", "kind": "best", "dataset": "cifar10"}
    best = pd.read_csv(PAPER_DATA / "best_hyperparameters.csv")
    adam = best[(best["table"] == "table10") & (best["dataset"] == "cifar10") & (best["optimizer"] == "Adam")].iloc[0]
    optimizer = cfg["optimizer"]
    assert optimizer["name"] == "adam_meg" and optimizer["lr"] == adam["lr"]
    assert optimizer["betas"] == [adam["beta1"], adam["beta2"]]
    assert optimizer["gamma"] is None and optimizer["heavy_ball"] == 0.0
    arguments = optimizer_arguments(optimizer)  # what the training passes to create_optimizer
    assert arguments["gamma"] is None and arguments["heavy_ball"] == 0.0
    assert arguments["decoupled_weight_decay"] is True  # Adam's official form, through the wrapper
    opt = create_optimizer("adam_meg", [torch.zeros(1, requires_grad=True)], **arguments)
    assert isinstance(opt, MEG) and opt.base_optimizer.param_groups[0]["decoupled_weight_decay"] is True


def test_make_reproduce_meg_runs_the_appendix_table_over_five_seeds():
    dry = subprocess.run(
        ["make", "--no-print-directory", "-n", "reproduce-meg", "SCALE=smoke"], cwd=ROOT, capture_output=True, text=True
    )
    assert dry.returncode == 0 and "-m cmrepro.reproduce --scale smoke" in dry.stdout
    assert dry.stdout.split()[-1] == "appendix"
    args = argparse.Namespace(table="appendix", grid=False, scale="smoke", launcher="local", jobs=2, overrides=[])
    (command,) = commands(args)
    assert command[4:] == [f"experiment={EXPERIMENT}", "seed=0,1,2,3,4", "scale=smoke"]


@pytest.mark.skipif(not PAPER.exists(), reason="the paper's text is not beside this checkout")
def test_the_appendix_values_are_the_papers_text():
    text = "".join(PAPER.read_text().split())
    paper = pd.read_csv(PAPER_DATA / "appendix_meg.csv")
    assert list(paper["table"].unique()) == ["appendix"] and set(paper["dataset"]) == {"cifar10"}
    meg, cm, sam_cm = (f"{row.optimizer}|{row.mean:.1f}±{row.std:.1f}%" for row in paper.itertuples())
    meg_name, meg_value = meg.split("|")
    sentence = "{}achievestheaccuracyof{}whichislowerthanboth{}({})and{}({})".format(
        meg_name, meg_value, *cm.split("|"), *sam_cm.split("|")
    )
    assert sentence in text


def test_smoke_runs_end_to_end_give_the_report_row_beside_the_papers(tmp_path):
    runs = tmp_path / "runs"
    done = run_cli(
        ["-m", f"experiment={EXPERIMENT}", "scale=smoke", "seed=0,1", f"paths.output_dir={runs}",
         "trainer.keep_checkpoint=false"]
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    for seed, best in enumerate([94.1, 93.9, 94.3]):  # Table 2's Adam+CM runs, quoted by the appendix
        write_run(runs, f"table2-adam_cm-{seed}", table="table2", optimizer="adam_cm", seed=seed, curve=[best])
    write_run(runs, "table2-adam", table="table2", optimizer="adam", curve=[99.0])  # not quoted

    assert report_main(["appendix", "--runs", str(runs), "--out", str(tmp_path)]) == 0
    cells = pd.read_csv(tmp_path / "tables" / "appendix.csv").set_index("optimizer")
    assert list(cells.index) == ["adam_meg", "adam_cm", "adam_sam_cm"]
    meg = cells.loc["adam_meg"]
    assert (meg["runs"], meg["paper_mean"], meg["paper_std"]) == (2, 93.8, 0.3) and 0 <= meg["mean"] <= 100
    assert cells.loc["adam_cm", "mean"] == pytest.approx(94.1) and cells.loc["adam_cm", "runs"] == 3
    assert cells.loc["adam_sam_cm", "runs"] == 0 and pd.isna(cells.loc["adam_sam_cm", "mean"])
    markdown = (tmp_path / "tables" / "appendix.md").read_text()
    # The smoke MEG cell is not set beside the paper; the quoted full-scale Adam+CM cell is.
    assert "| Adam+MEG | " in markdown and "· paper 93.8 ± 0.3" not in markdown and "(n=2/5)" in markdown
    assert "94.1 ± 0.2 · paper 94.0 ± 0.3 · Δ" in markdown
    assert "Table 2's runs" in markdown
