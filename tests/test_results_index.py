"""results/README.md: written by `python -m cmrepro.report index`, one row per table and figure of the paper."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from cmrepro.report.__main__ import main as report_main
from cmrepro.report.index import ARTEFACTS, ROOT, index_frame, render_index

PAPER_ARTEFACTS = [f"Table {n}" for n in range(1, 15)] + [f"Figure {n}" for n in range(1, 21)]


def _rows(markdown: str) -> list[list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("| ")][1:]  # the header row aside
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]


def test_the_committed_index_is_what_the_command_writes():
    committed = (ROOT / "results" / "README.md").read_text()
    assert committed == render_index(ROOT), (
        "results/README.md is stale: run `python -m cmrepro.report index` (make index) and commit it"
    )


def test_every_table_and_figure_of_the_paper_has_exactly_one_row():
    names = [row[0] for row in _rows((ROOT / "results" / "README.md").read_text())]
    assert sorted(names) == sorted(PAPER_ARTEFACTS) and len(names) == len(set(names)) == 34
    assert [a.name for a in ARTEFACTS] == names


def test_every_command_of_the_index_exists():
    experiments = {e for a in ARTEFACTS for e in a.experiments}
    assert all((ROOT / "conf" / "toy" / "experiment" / f"{e}.yaml").is_file() for e in experiments), experiments
    targets = {c.split()[1] for a in ARTEFACTS for c in (*a.full, *a.smoke) if c.startswith("make ")}
    targets |= {"reproduce-all", "index"}
    if shutil.which("make") is None:
        pytest.skip("no make on this machine")
    for target in sorted(targets):  # a dry run: prints the recipe, runs nothing
        dry = subprocess.run(["make", "-n", target, "SCALE=smoke"], cwd=ROOT, capture_output=True, text=True)
        assert dry.returncode == 0, f"make {target}: {dry.stderr}"


def _claim(artefact, claim, verdict, estimate=0.5, low=0.1, high=0.9, n=20, sensitive=False) -> dict:
    return dict(artefact=artefact, claim=claim, verdict=verdict, n=n, estimate=estimate, low=low, high=high,
                p_holm=0.01, rule_sensitive=sensitive)  # fmt: skip


def _fixture_root(tmp_path: Path, claims: list[dict] | None, hours: dict | None = None) -> Path:
    toy, bench, figures = tmp_path / "results" / "toy", tmp_path / "results" / "bench", tmp_path / "results" / "figures"
    for folder in (toy, bench, figures):
        folder.mkdir(parents=True, exist_ok=True)
    if claims is not None:
        pd.DataFrame(claims).to_csv(toy / "claims.csv", index=False)
    (toy / "figure1.csv").write_text("x\n1\n")
    (figures / "figure1.png").write_bytes(b"png")  # Figure 1 drawn; Figure 13 not
    if hours is not None:
        (bench / "device").mkdir()
        (bench / "device" / "hours_cuda.json").write_text(json.dumps(hours))
    return tmp_path


def test_statuses_come_from_the_claims_and_the_gpu_estimate(tmp_path):
    claims = [
        _claim("Figure 5", "Adam+CM escapes more often than Adam+CG", "supported"),
        _claim("Figure 7 (left)", "Adam+CM escapes most for s >= 5", "supported"),
        _claim("Figure 7 (right)", "the escape ratio grows with C", "inconclusive", 0.02, -0.05, 0.08, sensitive=True),
        _claim("Table 1", "Goldstein-Price: Adam+CM ends lower than Adam", "NOT supported", -1.2, -2.0, -0.4),
        _claim("Table 1", "Goldstein-Price: Adam+CM ends lower than Adam+SAM", "not supported", -0.2, -0.3, -0.1),
        _claim("Table 1", "Levy: Adam+CM ends lower than Adam", "supported"),
        _claim("Table 1", "Levy: Adam+CM reaches the minimum", "not run", float("nan"), float("nan"), float("nan")),
        _claim("Figure 3", "critical momenta converge", "supported", 1.0, float("nan"), float("nan"), float("nan")),
        _claim("Figure 17", "cells: Adam+CM escapes more often", "inconclusive", 0.4, float("nan"), float("nan"), 9),
    ]
    source = {"device": "cuda", "gpu": "NVIDIA H200"}
    hours = {
        "meta": {"sources": [source, source]},
        "rows": [
            {"target": "reproduce-table2", "hours": {"cifar10": 10.3, "imagenet": 1200.0}, "total": 1210.3},
            {"target": "reproduce-table3", "hours": {"cifar10": 4.4, "cifar100": float("nan")}, "total": float("nan")},
        ],
    }
    frame = index_frame(_fixture_root(tmp_path, claims, hours)).set_index("artefact")["status"]
    assert frame["Figure 5"] == "reproduced (1 supported)"
    assert frame["Figure 3"] == "reproduced (1 supported)"
    assert frame["Figure 7"] == (
        "1 supported, 1 inconclusive; worst: inconclusive: right, the escape ratio grows with C "
        "(estimate +0.02, 95% interval [-0.05, +0.08], n = 20); 1 rule-sensitive"
    )
    # the worst of two "not supported" claims is the one with the lower estimate; "not run" is counted
    assert frame["Table 1"] == (
        "1 supported, 2 not supported, 1 not run; worst: not supported: Goldstein-Price: Adam+CM ends lower than "
        "Adam (estimate -1.2, 95% interval [-2, -0.4], n = 20)"
    )
    assert frame["Figure 17"] == (
        "1 inconclusive; worst: inconclusive: cells: Adam+CM escapes more often "
        "(estimate +0.4, exact, Holm p = 0.01, n = 9)"
    )
    assert frame["Figure 1"] == "drawn, no claim to test"  # its CSV and PNG exist
    assert frame["Figure 13"] == "not run"
    assert frame["Table 2"] == "needs GPUs (about 1,210 GPU-hours on NVIDIA H200, results/bench/device/hours_cuda.json)"
    assert frame["Table 3"].startswith("needs GPUs (about 4.4 (+ cifar100: not measured) GPU-hours")
    assert frame["Table 4"] == frame["Figure 8"] == "needs GPUs (GPU-hours not estimated)"
    assert frame["Figure 15"] == "not run · needs GPUs (GPU-hours not estimated)"
    assert frame["Table 9"] == "descriptive, encoded in configs"


def test_without_claims_the_toy_artefacts_are_not_run_and_cpu_hours_are_not_gpu_hours(tmp_path):
    hours = {
        "meta": {"sources": [{"device": "cpu", "gpu": None}]},
        "rows": [{"target": "reproduce-table2", "hours": {"ptb": 36.1}, "total": 36.1}],
    }
    frame = index_frame(_fixture_root(tmp_path, None, hours)).set_index("artefact")["status"]
    assert frame["Table 1"] == frame["Figure 1"] == "not run (no results/toy/claims.csv: make reproduce-toy)"
    assert frame["Table 2"] == (
        "needs GPUs (GPU-hours not estimated; from CPU step times 36 CPU-hours, results/bench/device/hours_cuda.json)"
    )


def test_the_tally_line_counts_verdicts_per_artefact_kind(tmp_path):
    claims = [
        _claim("Table 1", "a", "supported"),
        _claim("Table 5", "b", "not supported", sensitive=True),
        _claim("Figure 6", "c", "no difference"),
        _claim("Figure 6", "d", "negligible"),
        _claim("Figure 7 (left)", "e", "inconclusive", sensitive=True),
    ]
    markdown = render_index(_fixture_root(tmp_path, claims))
    assert markdown.splitlines()[2] == (
        "**Toy claims** (5 in `results/toy/claims.csv`, listed with their quotes in `results/toy/README.md`): "
        "tables: 1 supported, 1 not supported; figures: 1 no difference, 1 negligible, 1 inconclusive; "
        "2 rule-sensitive."
    )
    assert render_index(_fixture_root(tmp_path / "none", None)).splitlines()[2] == (
        "Toy claims: not run (no results/toy/claims.csv: make reproduce-toy)."
    )


def test_the_command_writes_the_index(tmp_path):
    assert report_main(["index", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "README.md").read_text() == render_index(ROOT)
