# ruff: noqa: E501  (the paper's sentences, one per line, as quoted)
"""The full-scale claims (conf/claims/section5.yaml, cmrepro/report/claims.py): the exact tests against
hand-computed cases, Holm, pairing by seed, the cells' equivalence rule, and smoke verdicts marked."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from run_fixtures import write_run

from cmrepro.claims.registry_file import RegistryError
from cmrepro.claims.stats import holm, paired_test
from cmrepro.report import claims
from cmrepro.report.claim_registry import load
from cmrepro.report.claim_stats import (
    DIFFERS,
    MATCHES,
    SMOKE_NOTE,
    TOO_FEW,
    cell_interval,
    cell_verdict,
    smallest_p,
    unpaired_equivalence,
    unpaired_test,
)

# Every comparison sentence of Section 5 and Appendix A.3 (and the captions of Tables 2-4, 14 and
# Figures 8-10, 19, 20), as the paper words it, with the artefact whose claims test it.
PAPER_SENTENCES = [
    (
        "Table 2",
        "Table 2 shows that Adam+CM outperforms other optimizers in terms of best validation perplexity achieved during training.",
    ),
    (
        "Table 2",
        "We also note that Adam+SAM is the second-best optimizer and achieves better performance than its CM variant.",
    ),
    ("Table 2", "We again observe that Adam+CM achieves better performance than the other optimizer baselines."),
    (
        "Table 2",
        "Moreover, Adam+SAM+CM yielded the best validation accuracy for CIFAR10, while Adam+CM performed the best on the other two datasets.",
    ),
    ("Table 2", "Overall, CM outperforms the baselines in all four datasets."),
    (
        "Figure 8",
        "Figure 8 corroborates the claim that Adam+CM finds a flatter surface containing the global minimum, with the top-left plot showing lower sharpness compared to Adam or Adam+SAM.",
    ),
    (
        "Figure 8",
        "The top-right plot further reveals the greater distance travelled by parameters during training, indicating that using CM promotes more exploration than the other optimizers.",
    ),
    ("Figure 8", "We also note that the distance travelled by parameters in SAM is similar to that of Adam."),
    ("Figure 8", "This similarity is also observed with Adam+CM and Adam+SAM+CM as their distance curves overlap."),
    (
        "Figure 8",
        "Figure 8 (bottom-left) shows that buffer elements stored by Adam+CM have lower variance during training compared to Adam+CG.",
    ),
    (
        "Figure 8",
        "Figure 8 (bottom-right) shows the agreement in Adam+CM remains higher than in Adam+CG, indicating the aggregation of buffer elements in Adam+CM will more often result in a non-zero quantity in the desired direction.",
    ),
    (
        "Figure 8",
        "These results indicate that buffer elements in Adam+CM agree more with each other and have lower sharpness than Adam+CG.",
    ),
    (
        "Figure 9",
        "It is clear that using a large buffer size can further reduce the sharpness of the solution in such complex settings.",
    ),
    ("Figure 9", "Using larger buffers results in lower sharpness even for high-dimensional models."),
    (
        "Figure 10",
        "In both datasets, we found that the default batch size of 64 performs best in terms of validation accuracy.",
    ),
    ("Figure 10", "We found that the default buffer size of 5 performs best in terms of validation accuracy."),
    (
        None,
        "We provide the best-performing setups in Figure 10 (right) and also observe that smaller buffer size results have a slightly higher standard deviation.",
    ),
    ("Figure 10", "The default batch size of 64 and buffer size of 5 works best for these benchmarks."),
    (
        "Table 3",
        "Apart from validation accuracy, we also report the speed-up in the first 50 epochs of the training process and observe that although generalization performance remains the same, there is a speed-up in both SGD+CG and SGD+CM.",
    ),
    ("Table 3", "Although the performance remains the same, there is a speed-up by both memory-augmented optimizers."),
    ("Table 4", "In Table 4, we observe that Adam+CM achieves better performance than Adam."),
    (
        "Table 4",
        "Moreover, while Adam+SAM performs similarly to Adam, Adam+SAM+CM results in the best accuracy on both benchmarks.",
    ),
    (
        "Table 4",
        "Moreover, it complements existing baselines and can be seamlessly integrated for performance improvements.",
    ),
    (
        "Figure 19",
        "We compare the baseline optimizers with Adam+CM and observe that Adam+CM exhibits lower m-sharpness on both datasets, which is consistent with our observations in Figure 8.",
    ),
    ("Figure 19", "In both cases, Adam+CM has lower m-sharpness than other baselines."),
    (
        {"Figure 20", "Table 14"},
        "We show that even when increasing the learning rate decreases the overall sharpness (Figure 20), the resulting minima is sub-optimal (Figure 14).",
    ),
    ("Figure 20", "These results indicate that a higher learning rate results in lower sharpness."),
    ("Table 14", "The best result was obtained using a learning rate of 0.001."),
]


# ---- the statistics against hand-computed cases -------------------------------------------------
def test_five_of_five_positive_paired_differences_give_one_in_32():
    test = paired_test(np.array([0.5, 0.3, 0.9, 0.4, 0.6]), min_effect=0.2, exact=True)
    assert test.p_support == pytest.approx(1 / 32)
    assert smallest_p(True, 5, 5) == 1 / 32 and 1 / 32 > claims.LEVEL  # five paired seeds cannot decide
    # 4 of 5 positive, the negative one the smallest: patterns with sum >= observed are 2 of 32
    assert paired_test(np.array([0.5, 0.3, 0.9, 0.4, -0.1]), 0.2, True).p_support == pytest.approx(2 / 32)


def test_holm_against_a_hand_computed_case():
    # sorted 0.01, 0.03, 0.04: 3 x 0.01 = 0.03, 2 x 0.03 = 0.06, max(0.06, 1 x 0.04) = 0.06
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])


def test_unpaired_relabeling_test_counts_every_relabeling():
    a, b = np.array([5.0, 6, 7, 8, 9]), np.array([0.0, 1, 2, 3, 4])
    test = unpaired_test(a, b, min_effect=1.0)
    assert test.p_support == pytest.approx(1 / 252)  # the observed split is the most extreme of C(10, 5)
    assert test.method == "exact relabeling" and test.estimate == 5.0 and test.wins == 25
    assert smallest_p(False, 5, 5) == pytest.approx(1 / 252)
    # H0 "difference >= 10": a shifted by -10 is [-5..-1] against [0..4], the most extreme split from below
    assert unpaired_test(a, b, min_effect=10.0).p_small == pytest.approx(1 / 252)
    assert unpaired_test(a, b, min_effect=1.0).p_small == 1.0
    assert unpaired_test(np.ones(3), np.ones(3), 1.0).all_tied


def test_unpaired_equivalence_inside_and_outside_the_margin():
    a, b = np.array([1.0, 1.1, 0.9, 1.0, 1.05]), np.array([1.0, 0.95, 1.1, 1.0, 0.9])
    assert unpaired_equivalence(a, b, margin=5.0).p_support == pytest.approx(1 / 252)
    assert unpaired_equivalence(a + 10, b, margin=1.0).p_small <= 2 / 252


# ---- each cell against the paper ----------------------------------------------------------------
def test_the_cell_verdict_rule():
    low, high = cell_interval(94.0, 0.3, 5)
    half = 2.776445 * 0.3 / math.sqrt(5)  # t(0.975, 4)
    assert (low, high) == pytest.approx((94.0 - half, 94.0 + half), abs=1e-5)
    assert cell_verdict(5, low, high, 94.3, 0.0) == MATCHES  # inside the interval itself (94.0 +- 0.37)
    assert cell_verdict(5, low, high, 94.5, 0.0) == DIFFERS
    assert cell_verdict(5, low, high, 94.6, 0.3) == MATCHES  # inside once widened by the paper's std
    assert cell_verdict(5, low, high, 93.4, 0.3) == MATCHES
    assert cell_verdict(5, low, high, 94.7, 0.3) == DIFFERS
    assert cell_verdict(2, *cell_interval(94.0, 0.3, 2), 94.0, 0.3) == TOO_FEW
    assert cell_verdict(5, low, high, float("nan"), 0.3) == ""  # no published value


# ---- the registry ------------------------------------------------------------------------------
def test_every_comparison_sentence_has_an_entry_and_is_tested_or_says_why_not():
    registry = load()
    by_quote = {s.quote: s for s in registry.sentences}
    for artefact, quote in PAPER_SENTENCES:
        sentence = by_quote.get(quote)
        assert sentence is not None, f"no registry entry quotes: {quote}"
        if artefact is None:
            assert sentence.not_testable and not sentence.claims
            continue
        tested = [registry.claim(i) for i in (*sentence.claims, *sentence.same_as)]
        assert tested and {c.family for c in tested} == (artefact if isinstance(artefact, set) else {artefact}), quote
    assert {s.quote for s in registry.sentences} == {q for _, q in PAPER_SENTENCES}
    ids = [c.id for c in registry.claims]
    assert len(ids) == len(set(ids)) == 79


def test_every_measure_of_the_registry_is_computed_per_run():
    assert {c.measure for c in load().claims} <= set(claims.RUN_MEASURES)


def test_a_malformed_registry_is_one_line(tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(
        "measures: {}\nsentences: [{id: s, place: p, quote: q, claims: [{id: c, artefact: Table 2, claim: w, table: table2, dataset: ptb, measure: nope, a: adam, b: adam_cm}]}]\n"
    )
    with pytest.raises(RegistryError, match="measure 'nope' is not declared"):
        load(path)


# ---- claims over hand-made run directories --------------------------------------------------------
def cifar10_runs(root: Path, cm: list[float], adam: list[float], cm_seeds=None, adam_seeds=None, smoke=False):
    """Table 2 CIFAR10 runs of Adam+CM and Adam with the given best accuracies (one per seed)."""
    for name, values, seeds in (("adam_cm", cm, cm_seeds), ("adam", adam, adam_seeds)):
        for seed, value in zip(seeds or range(len(values)), values):
            run = write_run(root, f"{name}{seed}", optimizer=name, seed=seed, curve=[value - 10, value])
            if smoke:
                result = json.loads((run / "result.json").read_text())
                result["config"]["dataset"]["stand_in"] = {"train": 64}
                (run / "result.json").write_text(json.dumps(result))


def verdict_of(root: Path, claim_id: str) -> claims.Verdict:
    return next(v for v in claims.evaluate(root) if v.id == claim_id)


def test_same_seed_runs_are_paired_and_eight_seeds_can_support_a_claim(tmp_path):
    cifar10_runs(tmp_path, cm=[94.5 + 0.01 * i for i in range(8)], adam=[94.0] * 8)
    verdict = verdict_of(tmp_path, "t2.cifar10.cm.adam")
    assert verdict.verdict == "supported" and "paired" in verdict.method and verdict.p == pytest.approx(1 / 256)
    assert verdict.estimate == pytest.approx(0.535)  # the mean paired gap
    # the only claim of Table 2 with both sides run: Holm over one
    assert verdict.p_holm == pytest.approx(1 / 256) and verdict.scale == "full"
    assert verdict_of(tmp_path, "t2.cifar10.cm.adam_cg").verdict == claims.NOT_RUN


def test_five_paired_seeds_are_inconclusive_and_say_they_cannot_decide(tmp_path):
    cifar10_runs(tmp_path, cm=[95.0] * 5, adam=[94.0 - 0.1 * i for i in range(5)])
    verdict = verdict_of(tmp_path, "t2.cifar10.cm.adam")
    assert verdict.p == pytest.approx(1 / 32) and verdict.verdict == "inconclusive"
    assert verdict.min_p_holm > claims.LEVEL and "undecidable with these runs" in verdict.line()


def test_a_small_certain_gain_is_negligible_and_a_loss_not_supported(tmp_path):
    cifar10_runs(tmp_path, cm=[94.1 + 0.001 * i for i in range(8)], adam=[94.0] * 8)
    assert verdict_of(tmp_path, "t2.cifar10.cm.adam").verdict == "negligible"  # +0.1 < 0.2 points
    other = tmp_path / "other"
    cifar10_runs(other, cm=[93.0 + 0.001 * i for i in range(8)], adam=[94.0] * 8)
    assert verdict_of(other, "t2.cifar10.cm.adam").verdict == "not supported"


def test_runs_without_a_common_seed_get_the_unpaired_test(tmp_path):
    cifar10_runs(tmp_path, cm=[95, 95.2, 95.1, 95.3, 95.4], adam=[94, 94.1, 94.2, 93.9, 94.3],
                 cm_seeds=range(5), adam_seeds=range(5, 10))  # fmt: skip
    verdict = verdict_of(tmp_path, "t2.cifar10.cm.adam")
    assert "unpaired" in verdict.method and verdict.p == pytest.approx(1 / 252)
    assert verdict.verdict == "supported" and "no seed in common" in verdict.detail


def test_smoke_verdicts_are_computed_and_marked_as_no_evidence(tmp_path, capsys):
    cifar10_runs(tmp_path / "runs", cm=[60.0, 61.0], adam=[50.0, 52.0], smoke=True)
    assert claims.main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "smoke")]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if "t2.cifar10.cm.adam:" in line)
    assert line.startswith(f"[{SMOKE_NOTE}] t2.cifar10.cm.adam: inconclusive")
    assert "claims tested (smoke: stand-in data, not evidence)" in out
    rows = pd.read_csv(tmp_path / "smoke" / "claims" / "section5.csv").set_index("id")
    assert rows.loc["t2.cifar10.cm.adam", "scale"] == "smoke" and rows.loc["t2.cifar10.cm.adam", "note"] == SMOKE_NOTE
    assert len(rows) == 79


def test_a_claim_over_smoke_and_full_runs_is_not_run(tmp_path):
    cifar10_runs(tmp_path, cm=[60.0, 61.0], adam=[50.0, 52.0], smoke=True)
    cifar10_runs(tmp_path / "full", cm=[94.0], adam=[93.0], cm_seeds=[7], adam_seeds=[7])
    verdict = verdict_of(tmp_path, "t2.cifar10.cm.adam")
    assert verdict.verdict == claims.NOT_RUN and "mix smoke and full" in verdict.reason


def test_epochs_to_sgds_best_per_run(tmp_path):
    for seed in range(2):
        write_run(tmp_path, f"sgd{seed}", table="table3", optimizer="sgd", seed=seed, curve=[50.0, 60.0, 70.0 + seed])
        write_run(tmp_path, f"cm{seed}", table="table3", optimizer="sgd_cm", seed=seed, curve=[55.0, 71.0, 72.0])
    runs = claims.run_measures(tmp_path).set_index("run_dir")["epochs_to_sgd_best"]
    # SGD's seed-averaged best in the window is 70.5 at epoch 3; SGD+CM reaches it at epoch 2
    assert runs[str(tmp_path / "cm0")] == 2 and runs[str(tmp_path / "sgd1")] == 3
    assert runs[str(tmp_path / "sgd0")] == claims.WINDOW + 1  # never within the window


def test_the_table_report_shows_each_cells_verdict_in_md_csv_and_tex(tmp_path):
    from cmrepro.report.table_report import write_table_report

    for seed, value in enumerate([93.8, 94.0, 94.1, 93.9, 94.2]):  # the paper: 94.0 +- 0.3
        write_run(tmp_path / "runs", f"cm{seed}", optimizer="adam_cm", seed=seed, curve=[80.0, value])
    for seed, value in enumerate([90.0, 90.1, 90.2]):  # the paper: 93.9 +- 0.3
        write_run(tmp_path / "runs", f"adam{seed}", optimizer="adam", seed=seed, curve=[80.0, value])
    write_run(tmp_path / "runs", "sam0", optimizer="adam_sam", curve=[80.0, 93.7])
    write_table_report("table2", tmp_path / "runs", tmp_path / "tables", tmp_path / "figures")
    cells = pd.read_csv(tmp_path / "tables" / "table2.csv").set_index(["dataset", "optimizer"])
    assert cells.loc[("cifar10", "adam_cm"), "paper_verdict"] == MATCHES
    assert cells.loc[("cifar10", "adam"), "paper_verdict"] == DIFFERS
    assert cells.loc[("cifar10", "adam_sam"), "paper_verdict"] == TOO_FEW
    assert cells.loc[("cifar10", "adam_cm"), "low"] < 94.0 < cells.loc[("cifar10", "adam_cm"), "high"]
    markdown = (tmp_path / "tables" / "table2.md").read_text()
    assert "94.0 ± 0.2 · paper 94.0 ± 0.3 · Δ +0.0 ✓ · matches the paper (n=5/5)" in markdown
    assert "· differs (n=3/5)" in markdown and "**matches the paper** when the paper's mean lies inside" in markdown
    latex = (tmp_path / "tables" / "table2.tex").read_text()
    assert "94.0 $\\pm$ 0.2$^{=}$ (94.0)" in latex and "90.1 $\\pm$ 0.1$^{\\neq}$ (93.9)" in latex


def test_a_smoke_cell_verdict_says_it_is_no_evidence(tmp_path):
    from cmrepro.report.table_report import write_table_report

    cifar10_runs(tmp_path / "runs", cm=[60.0, 61.0, 62.0], adam=[50.0, 52.0, 51.0], smoke=True)
    write_table_report("table2", tmp_path / "runs", tmp_path / "tables", tmp_path / "figures")
    cells = pd.read_csv(tmp_path / "tables" / "table2.csv").set_index(["dataset", "optimizer"])
    assert "paper_verdict" not in cells  # smoke cells are not judged against the paper (test_smoke_report.py)
    # make claims prints each table's cell verdicts too: smoke ones as not comparable
    assert claims.cell_lines(tmp_path) == [f"[{SMOKE_NOTE}] table2 cells: 2 of smoke runs, not comparable to the paper"]


def test_make_reproduce_all_smoke_judges_the_smoke_runs_into_results_smoke():
    import subprocess

    root = Path(__file__).resolve().parents[1]
    dry = subprocess.run(["make", "--no-print-directory", "-n", "claims", "SCALE=smoke"], cwd=root,
                         capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "-m cmrepro.report.claims" in dry and "--runs results/smoke/runs --out results/smoke" in dry
    every = subprocess.run(["make", "--no-print-directory", "-n", "reproduce-all", "SCALE=smoke"], cwd=root,
                           capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert "claims SCALE=smoke" in every


def test_bad_input_is_one_line(tmp_path, capsys):
    assert claims.main(["--runs", str(tmp_path / "nowhere"), "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"cmrepro.report.claims: no run directory at {tmp_path / 'nowhere'}; run the experiments first"
    )
    (tmp_path / "tables").mkdir()
    (tmp_path / "tables" / "table2.csv").write_bytes(b"\xff\xfe\x00garbage")
    assert claims.cell_lines(tmp_path)[0].endswith(
        "unreadable (UnicodeDecodeError); write it again with python -m cmrepro.report"
    )
