"""At smoke scale (stand-in data) the report sets nothing beside the paper: no paper values,
differences or verdicts in the tables (Tables 2-4, the appendix's MEG table, Table 14), the claims'
cell lines say the cells are not comparable, and every figure's title says smoke. Full scale keeps
the comparison. Figures' titles are read from the PNGs' Title metadata, which the report writes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image
from run_fixtures import write_run

from cmrepro.report import analysis, claims
from cmrepro.report.__main__ import main as report_main
from cmrepro.report.claim_stats import SMOKE_NOTE

SMOKE_FIGURE_NOTE = "(smoke: stand-in data, not comparable)"


def smoke(run_dir: Path) -> Path:
    """A written run made a smoke-scale one, as scale=smoke configures it (dataset.stand_in)."""
    result = json.loads((run_dir / "result.json").read_text())
    result["config"]["dataset"]["stand_in"] = {"train": 64, "val": 32}
    (run_dir / "result.json").write_text(json.dumps(result))
    return run_dir


def cifar10_runs(root: Path, table: str = "table2", optimizers=("adam_cm", "adam"), scale: str = "full") -> None:
    """Two seeds per optimizer of ``table``'s CIFAR10 cells."""
    for optimizer in optimizers:
        for seed in (0, 1):
            run = write_run(root, f"{table}-{optimizer}-{seed}", table=table, optimizer=optimizer, seed=seed,
                            curve=[10.0, 12.0 + seed])  # fmt: skip
            if scale == "smoke":
                smoke(run)


def report(table: str, runs: Path, out: Path) -> dict[str, str]:
    assert report_main([table, "--runs", str(runs), "--out", str(out)]) == 0
    return {suffix: (out / "tables" / f"{table}.{suffix}").read_text() for suffix in ("md", "csv", "tex")}


def table_rows(markdown: str) -> list[str]:
    return [line for line in markdown.splitlines() if line.startswith("|")]


def png_title(path: Path) -> str:
    with Image.open(path) as image:
        return image.text["Title"]


# ---- tables ------------------------------------------------------------------------------------
@pytest.mark.parametrize("table", ["table2", "appendix"])
def test_a_smoke_table_has_no_paper_values_differences_or_verdicts(table, tmp_path):
    runs = tmp_path / "runs"
    cifar10_runs(runs, scale="smoke")  # Table 2's, which the appendix quotes
    if table == "appendix":
        cifar10_runs(runs, table="appendix", optimizers=("adam_meg",), scale="smoke")
    written = report(table, runs, tmp_path)
    rows = table_rows(written["md"])
    assert rows and "12.5 ± 0.7 (n=2/5)" in written["md"]
    assert not [row for row in rows if "paper" in row or "Δ" in row or "matches" in row or "differs" in row]
    assert "Δ" not in written["md"] and "✓" not in written["md"]
    assert written["md"].startswith(f"# {table}: ours (smoke scale: ")
    columns = pd.read_csv(tmp_path / "tables" / f"{table}.csv").columns
    assert not [c for c in columns if "paper" in c or c in ("difference", "within_paper_std")]
    assert "12.5 $\\pm$ 0.7 &" in written["tex"] or "12.5 $\\pm$ 0.7 \\\\" in written["tex"]
    assert "(94.0)" not in written["tex"] and "(93.9)" not in written["tex"]
    assert "Superscripts" not in written["tex"] and "Paper's value" not in written["tex"]


@pytest.mark.parametrize("table", ["table2", "appendix"])
def test_a_full_scale_table_keeps_the_paper_and_the_difference(table, tmp_path):
    runs = tmp_path / "runs"
    cifar10_runs(runs)
    if table == "appendix":
        cifar10_runs(runs, table="appendix", optimizers=("adam_meg",))
    written = report(table, runs, tmp_path)
    assert "12.5 ± 0.7 · paper " in written["md"] and " · Δ " in written["md"]
    assert written["md"].startswith(f"# {table}: ours beside the paper's\n")
    cells = pd.read_csv(tmp_path / "tables" / f"{table}.csv").set_index(["dataset", "optimizer"])
    assert {"paper_mean", "paper_std", "difference", "paper_verdict"} <= set(cells.columns)
    cm = cells.loc[("cifar10", "adam_cm")]
    assert cm["difference"] == pytest.approx(12.5 - cm["paper_mean"]) and cm["paper_verdict"] == "too few runs"
    assert "12.5 $\\pm$ 0.7$^{?}$ (94.0)" in written["tex"]


def test_a_table_mixing_scales_compares_only_its_full_cells(tmp_path):
    runs = tmp_path / "runs"
    cifar10_runs(runs, optimizers=("adam_cm",))
    cifar10_runs(runs, optimizers=("adam",), scale="smoke")
    written = report("table2", runs, tmp_path)
    assert "| 12.5 ± 0.7 † (n=2/5) |" in written["md"]  # Adam: smoke, ours alone
    assert "12.5 ± 0.7 · paper 94.0 ± 0.3 · Δ -81.5" in written["md"]  # Adam+CM: full, beside the paper
    cells = pd.read_csv(tmp_path / "tables" / "table2.csv", keep_default_na=False)
    adam = cells[(cells["dataset"] == "cifar10") & (cells["optimizer"] == "adam")].iloc[0]
    assert (adam["difference"], adam["within_paper_std"], adam["paper_verdict"]) == ("", "", "")
    assert "12.5 $\\pm$ 0.7$^\\dagger$ &" in written["tex"] and "(94.0)" in written["tex"]


def test_table14_of_smoke_runs_leaves_the_paper_out(tmp_path):
    for scale, root in (("smoke", tmp_path / "smoke"), ("full", tmp_path / "full")):
        for lr in (0.001, 0.0001):
            run = write_run(root, f"lr{lr}", table="figure20", optimizer="adam", lr=lr, curve=[50.0, 60.0])
            if scale == "smoke":
                smoke(run)
        analysis.table14(root, root / "figures")
    smoke_md = (tmp_path / "smoke" / "figures" / "table14.md").read_text()
    assert smoke_md.startswith(
        f"# Table 14: validation accuracy (%) of Adam on CIFAR10 per learning rate {SMOKE_FIGURE_NOTE}"
    )
    assert "paper_mean" not in smoke_md and "difference" not in smoke_md
    assert not [c for c in pd.read_csv(tmp_path / "smoke" / "figures" / "table14.csv").columns if "paper" in c]
    full = pd.read_csv(tmp_path / "full" / "figures" / "table14.csv")
    assert {"paper_mean", "difference"} <= set(full.columns) and "smoke" not in (
        tmp_path / "full" / "figures" / "table14.md"
    ).read_text()


# ---- the claims' cell lines ---------------------------------------------------------------------
def test_claims_say_smoke_cells_are_not_comparable_rather_than_judge_them(tmp_path):
    cifar10_runs(tmp_path / "smoke_runs", scale="smoke")
    report("table2", tmp_path / "smoke_runs", tmp_path / "smoke")
    assert claims.cell_lines(tmp_path / "smoke") == [
        f"[{SMOKE_NOTE}] table2 cells: 2 of smoke runs, not comparable to the paper"
    ]
    cifar10_runs(tmp_path / "mixed_runs", optimizers=("adam_cm",))
    cifar10_runs(tmp_path / "mixed_runs", optimizers=("adam",), scale="smoke")
    report("table2", tmp_path / "mixed_runs", tmp_path / "mixed")
    assert claims.cell_lines(tmp_path / "mixed") == [
        f"[{SMOKE_NOTE}] table2 cells against the paper: 19 too few runs, 1 of smoke runs not comparable"
    ]
    cifar10_runs(tmp_path / "full_runs")
    report("table2", tmp_path / "full_runs", tmp_path / "full")
    assert claims.cell_lines(tmp_path / "full") == ["table2 cells against the paper: 20 too few runs"]


# ---- figures -----------------------------------------------------------------------------------
def test_validation_curves_of_smoke_runs_say_smoke_in_their_title(tmp_path):
    cifar10_runs(tmp_path / "smoke_runs", scale="smoke")
    report("table2", tmp_path / "smoke_runs", tmp_path / "smoke")
    curves = tmp_path / "smoke" / "figures" / "table2_cifar10_curves.png"
    assert png_title(curves) == f"table2: cifar10 {SMOKE_FIGURE_NOTE}"
    cifar10_runs(tmp_path / "full_runs")
    report("table2", tmp_path / "full_runs", tmp_path / "full")
    assert png_title(tmp_path / "full" / "figures" / "table2_cifar10_curves.png") == "table2: cifar10"


def analysis_run(root: Path, table: str, seed: int, scale: str, **config_changes) -> None:
    """A finished run of an analysis figure's table with every column the figures draw."""
    run = write_run(root, f"{table}-{len(list(root.glob(f'{table}-*')))}", table=table, seed=seed, curve=[50.0, 60.0])
    result = json.loads((run / "result.json").read_text())
    for key, value in config_changes.items():
        section, leaf = key.split(".")
        result["config"][section][leaf] = value
    (run / "result.json").write_text(json.dumps(result))
    rows = [
        {"epoch": epoch, "val_accuracy": 50.0 + 10 * epoch, "sharpness": 2.0 / epoch, "distance": 1.0 * epoch,
         "m_sharpness": 0.1 * epoch, "buffer_variance": 1e-4 * epoch, "buffer_cosine": 0.1 * epoch}
        for epoch in (1, 2)
    ]  # fmt: skip
    (run / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    if scale == "smoke":
        smoke(run)


def analysis_runs(root: Path, scale: str) -> None:
    for seed in (0, 1):
        for table in ("figure8", "figure19"):
            analysis_run(root, table, seed, scale)
        for top_c in (5, 20):
            analysis_run(root, "figure9", seed, scale, **{"optimizer.topC": top_c})
            analysis_run(root, "figure10_buffer_size", seed, scale, **{"optimizer.topC": top_c})
        for batch in (64, 128):
            analysis_run(root, "figure10_batch_size", seed, scale, **{"dataset.batch_size": batch})
        for lr in (0.001, 0.0001):
            analysis_run(root, "figure20", seed, scale, **{"optimizer.lr": lr})


@pytest.mark.parametrize("name", sorted(analysis.FIGURES))
def test_every_analysis_figure_of_smoke_runs_says_smoke_in_its_title(name, tmp_path):
    for scale in ("smoke", "full"):
        analysis_runs(tmp_path / scale / "runs", scale)
        pngs = [p for p in analysis.FIGURES[name](tmp_path / scale / "runs", tmp_path / scale / "figures")
                if p.suffix == ".png"]  # fmt: skip
        assert pngs
        for png in pngs:
            title = png_title(png)
            assert title.startswith(f"Figure {name.removeprefix('figure')}")
            assert title.endswith(SMOKE_FIGURE_NOTE) if scale == "smoke" else "smoke" not in title
