"""Toy claims as statistical statements: exact small-n tests, Holm within a family, minimum effects,
the five verdict words, joint and trend claims, the escape-rule sensitivity, "not run" for what is missing."""

from __future__ import annotations

import re
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cmrepro.claims import stats
from cmrepro.toy.claims import NOT_RUN, _trend, claims_frame, evaluate, write_claims
from cmrepro.toy.experiments import KINDS
from cmrepro.toy.registry import Claim, Measure, Part, Registry, Sentence, load
from cmrepro.toy.summary import write_summary
from cmrepro.toy.verdicts import compare

RESULTS = Path(__file__).resolve().parents[1] / "results" / "toy"


def _verdict(differences, min_effect=0.05, exact=False) -> str:
    """One claim alone in its family (Holm changes nothing)."""
    test = stats.paired_test(np.asarray(differences, dtype=float), min_effect, exact)
    return stats.decide(test.all_tied, test.p_support, test.p_small, test.estimate >= min_effect)


# ---- the statistics --------------------------------------------------------------------------
def test_a_constant_tiny_difference_is_negligible_not_supported():
    # The old rule: the bootstrap interval of a constant is [c, c], above 0, so "supported" however small c.
    assert stats.bootstrap_interval(np.full(30, 0.001)) == pytest.approx((0.001, 0.001))
    assert _verdict(np.full(30, 0.001), min_effect=0.01) == "negligible"
    assert _verdict(np.full(9, 0.001), min_effect=0.01, exact=True) == "negligible"
    assert _verdict(np.full(30, 0.5), min_effect=0.01) == "supported"


def test_all_ties_are_no_difference_not_a_failed_claim():
    for exact in (False, True):
        test = stats.paired_test(np.zeros(9), 0.05, exact)
        assert test.all_tied and test.ties == 9
        assert _verdict(np.zeros(9), exact=exact) == "no difference"


def test_four_wins_of_nine_cells_is_inconclusive_under_the_exact_sign_test():
    cells = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0], dtype=float)
    low, _ = stats.bootstrap_interval(cells)
    assert low > 0  # the percentile bootstrap would have said "supported"
    test = stats.paired_test(cells, 0.05, exact=True)
    assert test.p_support == pytest.approx(1 / 16)  # 0.5^4: four nonzero cells, all wins
    assert (test.wins, test.losses, test.ties) == (4, 0, 5)
    assert np.isnan(test.low) and test.method == "exact sign-flip"
    assert _verdict(cells, exact=True) == "inconclusive"
    assert _verdict(np.r_[np.ones(6), np.zeros(3)], exact=True) == "supported"  # 0.5^6 = 0.0156 <= 0.025


def test_exact_sign_flip_p_values_match_hand_counts():
    # +-2 +-1 +-3: sums 6, 0, 4, -2, 2, -4, 0, -6; observed 2 - 1 + 3 = 4; two of eight are >= 4
    assert stats.sign_flip_p(np.array([2.0, -1.0, 3.0])) == pytest.approx(2 / 8)
    assert stats.sign_flip_p(np.array([2.0, -1.0, 3.0]), upper=False) == pytest.approx(7 / 8)
    # shifted: d - 1 = [1, -2, 2, 0]; the zero drops; sums of +-1 +-2 +-2 >= 1: 5, 1, 1, 3 of 8
    assert stats.sign_flip_p(np.array([2.0, -1.0, 3.0, 1.0]), shift=1.0) == pytest.approx(4 / 8)
    # beyond 20 nonzero differences of one magnitude: the exact binomial tail (23 wins of 25)
    d = np.r_[np.ones(23), -np.ones(2)]
    assert stats.sign_flip_p(d) == pytest.approx((comb(25, 23) + comb(25, 24) + 1) / 2**25)


def test_a_grid_of_outcomes_is_still_tested_exactly_beyond_twenty_cells():
    # 22 nonzero 0/1 differences, shifted by a minimum effect: three sizes, counted exactly, equal to
    # the enumeration of all 2^22 sign patterns (the Monte Carlo fallback would differ in the digits)
    d = np.r_[np.ones(13), -np.ones(9), np.zeros(5)]
    for shift, upper in ((0.0, True), (0.05, False), (0.05, True)):
        centred = (d - shift)[d - shift != 0] * (1 if upper else -1)
        enumerated = np.mean(stats._sign_flip_sums(np.abs(centred)) >= centred.sum() - 1e-9)
        assert stats.sign_flip_p(d, shift, upper) == pytest.approx(enumerated, abs=1e-12)
    assert stats.paired_test(d, 0.05, exact=True).method == "exact sign-flip"
    assert stats.paired_test(np.linspace(-1, 2, 49), 0.05, exact=True).method == "sign-flip, Monte Carlo"


def test_holm_matches_a_hand_computed_case():
    # sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> running max 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert stats.holm([]) == []


def test_verdict_words():
    rng = np.random.default_rng(0)
    assert _verdict(rng.normal(-0.5, 0.1, 50)) == "not supported"  # contradicts the paper
    assert _verdict(rng.normal(0.0, 0.001, 50)) == "not supported"  # rules out an effect of 0.05
    assert _verdict(rng.normal(0.05, 1.0, 30)) == "inconclusive"
    assert stats.decide(False, 0.01, 0.9, meets_effect=True) == "supported"
    assert stats.decide(False, 0.03, 0.9, meets_effect=True) == "inconclusive"  # Holm p above 2.5%


def test_bootstrap_ignores_run_order_and_shrinks_with_runs():
    rng = np.random.default_rng(3)
    values = rng.normal(1.0, 2.0, size=60)
    low, high = stats.bootstrap_interval(values)
    assert low < values.mean() < high
    assert stats.bootstrap_interval(rng.permutation(values)) == (low, high)
    low4, high4 = stats.bootstrap_interval(np.tile(values, 4))
    assert 0.4 < (high4 - low4) / (high - low) < 0.6


def test_equivalence_needs_both_one_sided_tests():
    rng = np.random.default_rng(1)
    near = stats.equivalence_test(rng.normal(0.0, 0.001, 40), margin=0.01, exact=False)
    assert stats.decide(near.all_tied, near.p_support, near.p_small, True) == "supported"
    far = stats.equivalence_test(rng.normal(0.5, 0.01, 40), margin=0.01, exact=False)
    assert stats.decide(far.all_tied, far.p_support, far.p_small, True) == "not supported"


# ---- claims over CSVs ------------------------------------------------------------------------
MEASURES = {
    "loss": Measure("loss", "lower", 0.01, "final-loss gap"),
    "sharpness": Measure("sharpness", "lower", 0.1, "sharpness gap"),
    "escaped_basin": Measure("escaped_basin", "higher", 0.05, "escape", ("escaped_snapshot",)),
    "escaped_snapshot": Measure("escaped_snapshot", "higher", 0.05, "escape (snapshot)"),
}


def _claim(claim_id, source, measures, **fields) -> Claim:
    parts = tuple(Part(m, MEASURES[m].better) for m in measures)
    artefact, population = fields.pop("artefact", "Figure 9"), fields.pop("population", "uniform")
    return Claim(claim_id, "s", artefact, claim_id, source, population, parts, **fields)


def _registry(*claims) -> Registry:
    return Registry(MEASURES, (Sentence("s", "here", "a sentence", tuple(c.id for c in claims)),), claims)


def _write(out: Path, name: str, rows: list[dict]) -> None:
    out.mkdir(exist_ok=True)
    pd.DataFrame(rows).to_csv(out / f"{name}.csv", index=False)


def _by_id(out: Path, registry: Registry) -> dict:
    return {v.id: v for v in evaluate(out, registry)}


def test_a_joint_claim_needs_every_part(tmp_path):
    rng = np.random.default_rng(2)
    rows = []
    for run in range(40):
        rows += [
            dict(optimizer="A", run=run, loss=1.0 + rng.normal(0, 0.01), sharpness=5.0 + rng.normal(0, 0.1)),
            dict(optimizer="B", run=run, loss=2.0 + rng.normal(0, 0.01), sharpness=1.0 + rng.normal(0, 0.1)),
            dict(optimizer="C", run=run, loss=3.0 + rng.normal(0, 0.01), sharpness=9.0 + rng.normal(0, 0.1)),
        ]
    _write(tmp_path, "t_runs", rows)
    both = _claim("lower-and-flatter-than-C", "t_runs", ["loss", "sharpness"], a="A", b="C")
    half = _claim("lower-and-flatter-than-B", "t_runs", ["loss", "sharpness"], a="A", b="B")
    alone = _claim("lower-than-B", "t_runs", ["loss"], a="A", b="B")
    verdicts = _by_id(tmp_path, _registry(both, half, alone))
    assert verdicts["lower-and-flatter-than-C"].verdict == "supported"
    assert verdicts["lower-than-B"].verdict == "supported"
    # lower than B but far sharper: the joint claim fails as a whole, its weakest part reported
    assert verdicts["lower-and-flatter-than-B"].verdict == "not supported"
    assert verdicts["lower-and-flatter-than-B"].estimate == pytest.approx(-4.0, abs=0.1)


def test_holm_is_applied_within_the_family_only(tmp_path):
    # Ten claims of one figure, each with p just under 2.5%: alone supported, together not.
    rows = []
    for run in range(9):
        win = run < 6  # 6 wins, 3 ties: exact p = 1/64
        rows += [dict(optimizer="A", run=run, loss=0.0 if win else 1.0), dict(optimizer="B", run=run, loss=1.0)]
    _write(tmp_path, "t_runs", rows)
    one = _claim("one", "t_runs", ["loss"], a="A", b="B", population="cells", artefact="Figure 8")
    crowd = [_claim(f"c{i}", "t_runs", ["loss"], a="A", b="B", population="cells") for i in range(10)]
    verdicts = _by_id(tmp_path, _registry(one, *crowd))
    assert verdicts["one"].verdict == "supported" and verdicts["one"].p_holm == pytest.approx(1 / 64)
    assert {verdicts[f"c{i}"].verdict for i in range(10)} == {"inconclusive"}
    assert verdicts["c0"].p_holm == pytest.approx(10 / 64)


def test_a_trend_is_tested_over_every_C(tmp_path):
    rows = []
    for run in range(30):
        for c, rate in ((5, 0.2), (10, 0.1), (20, 0.6), (40, 0.9)):  # not monotone, but rising overall
            rows.append(dict(optimizer=f"CM C={c}", run=run, escaped_basin=int((run * 7 % 30) / 30 < rate),
                             escaped_snapshot=int((run * 7 % 30) / 30 < 0.3)))  # fmt: skip
    _write(tmp_path, "t_runs", rows)
    settings = tuple((f"CM C={c}", float(c)) for c in (5, 10, 20, 40))
    trend = _claim("trend", "t_runs", ["escaped_basin"], test="trend", settings=settings)
    verdict = _by_id(tmp_path, _registry(trend))["trend"]
    assert verdict.verdict == "supported" and verdict.estimate > 0.5
    # a run that escapes at C = 5 and 20 but not at 10 has no trend: a tie, not a rounding-error loss
    assert _trend(
        pd.DataFrame(
            [dict(optimizer=f"CM C={c}", run=0, escaped_basin=e) for c, e in ((5, 1), (10, 0), (20, 1))]
        ).assign(setting=lambda f: f.optimizer),
        _claim("u", "t_runs", ["escaped_basin"], test="trend", settings=settings[:3]),
        "escaped_basin",
    ) == [0.0]
    # under the snapshot rule every C ties: the claim is rule-sensitive
    assert dict(verdict.sensitivity) == {"escaped_snapshot": "no difference"} and verdict.rule_sensitive
    frame = claims_frame([verdict], _registry(trend))
    assert frame.loc[0, "verdict_escaped_snapshot"] == "no difference" and bool(frame.loc[0, "rule_sensitive"])


def test_missing_csvs_columns_and_settings_are_not_run_with_a_reason(tmp_path):
    _write(tmp_path, "t_runs", [dict(optimizer="A", run=0, loss=1.0), dict(optimizer="B", run=0, loss=float("nan"))])
    claims = [
        _claim("no-csv", "absent_runs", ["loss"], a="A", b="B"),
        _claim("no-column", "t_runs", ["sharpness"], a="A", b="B"),
        _claim("no-setting", "t_runs", ["loss"], a="A", b="Z"),
        _claim("non-finite", "t_runs", ["loss"], a="A", b="B"),
    ]
    verdicts = _by_id(tmp_path, _registry(*claims))
    assert {v.verdict for v in verdicts.values()} == {NOT_RUN}
    assert verdicts["no-csv"].reason == "results/toy/absent_runs.csv not written yet"
    assert verdicts["no-column"].reason == "column sharpness missing from results/toy/t_runs.csv"
    assert verdicts["no-setting"].reason == "no runs of 'Z' in results/toy/t_runs.csv"
    assert verdicts["non-finite"].reason == "1 runs of 'B' have a non-finite loss in results/toy/t_runs.csv"
    (tmp_path / "t_runs.csv").write_bytes(b"\xff\xfe\x00garbage")
    assert _by_id(tmp_path, _registry(claims[1]))["no-column"].verdict == NOT_RUN


SMALL_TABLE1 = {
    "name": "table1",
    "kind": "final_loss_and_sharpness",
    "surfaces": ["goldstein_price", "levy"],
    "seeds": 16,
    "start_seed": 0,
    "steps": 150,
    "lr_drop_step": 100,
    "reach": {"radius": 0.1},
    "settings": [
        {"optimizer": "adam", "hyper": {"lr": 0.1, "betas": (0.9, 0.99)}},
        {"optimizer": "adam_sam", "hyper": {"lr": 0.1, "betas": (0.9, 0.99), "rho": 0.01}},
        {"optimizer": "adam_cg", "hyper": {"lr": 0.1, "betas": (0.9, 0.99), "topC": 20, "decay": 0.99}},
        {"optimizer": "adam_cm", "hyper": {"lr": 0.1, "betas": (0.9, 0.999), "topC": 20, "decay": 0.99}},
    ],
}


def _table1_verdicts(cfg: dict, out: Path) -> list[tuple[str, str]]:
    out.mkdir(parents=True)
    KINDS[cfg["kind"]](cfg, out, out)
    return [(v.id, v.verdict) for v in evaluate(out) if v.family == "Table 1" and v.verdict != NOT_RUN]


def test_no_verdict_changes_when_the_starts_move_by_1e12_or_the_runs_are_reordered(tmp_path):
    plain = _table1_verdicts(SMALL_TABLE1, tmp_path / "plain")
    moved = _table1_verdicts({**SMALL_TABLE1, "start_jitter": 1e-12}, tmp_path / "moved")
    assert len(plain) >= 6 and moved == plain
    assert {verdict for _, verdict in plain} - {"inconclusive"}, "every verdict inconclusive: the test would be empty"
    runs = pd.read_csv(tmp_path / "plain" / "table1_runs.csv")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    runs.sample(frac=1.0, random_state=1).to_csv(shuffled / "table1_runs.csv", index=False)
    before = claims_frame(evaluate(tmp_path / "plain"))
    assert claims_frame(evaluate(shuffled)).equals(before)


@pytest.mark.skipif(not (RESULTS / "claims.csv").exists(), reason="results/toy has not been generated")
def test_committed_claims_follow_from_the_committed_runs(tmp_path):
    committed = pd.read_csv(RESULTS / "claims.csv", keep_default_na=False)
    for csv in RESULTS.glob("*.csv"):
        if csv.name != "claims.csv":
            (tmp_path / csv.name).symlink_to(csv)
    recomputed = pd.read_csv(_written(tmp_path), keep_default_na=False)
    assert list(committed.id) == list(recomputed.id)
    assert list(committed.verdict) == list(recomputed.verdict)
    sensitivity = [c for c in committed if c.startswith("verdict_")]
    assert committed[sensitivity].equals(recomputed[sensitivity])
    numbers = ["estimate", "low", "high", "p_holm"]
    assert np.allclose(
        committed[numbers].apply(pd.to_numeric, errors="coerce"),
        recomputed[numbers].apply(pd.to_numeric, errors="coerce"),
        equal_nan=True,
    )


def _written(out: Path) -> Path:
    write_claims(out)
    return out / "claims.csv"


def test_every_claim_names_a_csv_an_experiment_writes():
    experiments = {path.stem for path in (RESULTS.parents[1] / "conf" / "toy" / "experiment").glob("*.yaml")}
    for claim in load().claims:
        for source in claim.sources:
            assert source.removesuffix("_runs") in experiments, claim.id


def test_the_last_line_of_reproduce_toy_compares_verdicts_with_the_committed_ones():
    committed = pd.DataFrame(
        {
            "id": ["a", "b", "c", "gone"],
            "verdict": ["supported", "inconclusive", "not run", "supported"],
            "estimate": ["0.5", "0.1", "", "1"],
        }  # fmt: skip
    )
    current = pd.DataFrame(
        {
            "id": ["a", "b", "c", "new"],
            "verdict": ["supported", "not supported", "not run", "supported"],
            "estimate": ["0.5000001", "0.2", "", "1"],
        }  # fmt: skip
    )
    assert compare(current, committed) == [
        "2 of 3 verdicts as committed; 1 estimates differ beyond 1e-06; 1 claims new since the commit; "
        "1 committed claims no longer declared",
        "  changed: b: inconclusive -> not supported",
    ]
    assert compare(current, None) == ["4 verdicts written; no committed verdicts (with claim ids) to compare them with"]
    makefile = (RESULTS.parents[1] / "Makefile").read_text()
    recipe = re.split(r"^reproduce-toy:.*\n", makefile, maxsplit=1, flags=re.M)[1].split("\n\n", 1)[0]
    assert recipe.splitlines()[-1].strip() == "$(PY) -m cmrepro.toy.verdicts"  # the last line of the target


def test_mostly_nearest_is_a_share_of_cells_derived_from_the_start_and_the_basin(tmp_path):
    # x0 = -2 is nearer the flat minimum (escaped = nearest), 2 and 3 nearer the sharp one (stayed = nearest)
    cells = [(-2, 1), (2, 0), (3, 0)] * 3
    _write(
        tmp_path, "t_runs", [dict(optimizer="Adam", run=k, x0=x0, escaped_basin=e) for k, (x0, e) in enumerate(cells)]
    )
    share = dict(test="share", setting="Adam", threshold=0.5)
    registry = Registry(
        {**MEASURES, "ended_nearest": Measure("ended_nearest", "higher", 0.05, "share nearest")},
        (Sentence("s", "here", "a sentence", ("nearest",)),),
        (Claim("nearest", "s", "Figure 5", "mostly nearest", "t_runs", "cells", (Part("ended_nearest", "higher"),),
               **share),),
    )  # fmt: skip
    verdict = _by_id(tmp_path, registry)["nearest"]
    assert (verdict.verdict, verdict.estimate, verdict.n) == ("supported", 0.5, 9)
    assert verdict.p == pytest.approx(1 / 512)  # nine of nine cells above one half: 0.5^9
    flipped = [(x0, 1 - e) for x0, e in cells]
    _write(
        tmp_path, "t_runs", [dict(optimizer="Adam", run=k, x0=x0, escaped_basin=e) for k, (x0, e) in enumerate(flipped)]
    )
    assert _by_id(tmp_path, registry)["nearest"].verdict == "not supported"


def test_the_toy_readme_quotes_every_sentence_and_shows_the_sensitivity_table(tmp_path):
    # Figure 7 (left) runs where Adam+CM swings around 0: in the basin at the end, outside 0.25 at the snapshot.
    rows = [
        dict(s=s, optimizer=name, run=run, escaped_basin=int(cm), basin_share=float(cm), escaped_snapshot=0,
             escaped_mean50=int(cm))
        for s in (1, 2, 3, 5, 10, 100)
        for run in range(40)
        for name, cm in (("Adam+CM C=10", True), ("Adam", False), ("Adam+SAM", False), ("Adam+CG C=10", False))
    ]  # fmt: skip
    _write(tmp_path, "figure7_left_runs", rows)
    write_summary(tmp_path, tmp_path)
    readme = (tmp_path / "README.md").read_text()
    for sentence in load().sentences:
        assert f"> {sentence.quote}" in readme
    table = readme.split("## Escape-rule sensitivity", 1)[1].split("## Across machines", 1)[0]
    assert "| claim | escaped_basin (primary) | escaped_snapshot | escaped_mean50 | rule-sensitive |" in table
    assert "| `fig7l.s1.adam` D = 1, s = 1: Adam+CM (C = 10) ends in the flat basin more often than Adam | supported " \
           "| no difference | supported | **yes** |" in table  # fmt: skip
    claims = pd.read_csv(tmp_path / "claims.csv", keep_default_na=False).set_index("id")
    assert claims.loc["fig7l.s1.adam", "rule_sensitive"] in (True, "True")
    assert claims.loc["fig1.reach.grid.adam", "verdict"] == NOT_RUN
    assert "not identical bits" in readme
