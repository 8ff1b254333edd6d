"""Toy claims are statistical statements: intervals over runs, verdicts that no last bit can flip."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cmrepro.toy.claims import CLAIMS, bootstrap_interval, decide, evaluate, paired
from cmrepro.toy.experiments import KINDS

RESULTS = Path(__file__).resolve().parents[1] / "results" / "toy"


def test_decide_needs_the_whole_interval_on_one_side():
    assert decide(0.01, 0.5) == "supported"
    assert decide(-0.5, -0.01) == "not supported"
    assert decide(0.0, 0.0) == "not supported"  # no difference at all: "more often" is false
    assert decide(-0.1, 0.2) == "inconclusive"


def test_bootstrap_interval_brackets_the_mean_and_ignores_run_order():
    rng = np.random.default_rng(3)
    values = rng.normal(1.0, 2.0, size=60)
    low, high = bootstrap_interval(values)
    assert low < values.mean() < high
    assert bootstrap_interval(rng.permutation(values)) == (low, high)
    # the interval shrinks like 1 / sqrt(n): 4x the runs, about half the width
    wide = high - low
    low4, high4 = bootstrap_interval(np.tile(values, 4))
    assert 0.4 < (high4 - low4) / wide < 0.6
    assert bootstrap_interval(np.full(10, 0.25)) == (0.25, 0.25)


def _runs(rows):
    frame = pd.DataFrame(rows, columns=["setting", "run", "s", "loss", "escaped"])
    return frame


def test_paired_differences_are_oriented_so_that_positive_supports_the_claim():
    frame = _runs(
        [
            ("A", 0, 2, 1.0, True),
            ("B", 0, 2, 3.0, False),
            ("A", 1, 2, 2.0, True),
            ("B", 1, 2, 1.5, True),
            ("A", 0, 10, 0.0, False),
            ("B", 0, 10, 0.0, False),
            ("A", 1, 10, 0.0, True),
            ("B", 1, 10, 0.0, False),
        ]
    )
    # loss: lower is better, so B - A per run
    assert paired("A", "B", "loss", s=2)(frame).tolist() == [2.0, -0.5]
    # escapes: higher is better, averaged over the s of each run
    assert paired("A", "B", "escaped")(frame).tolist() == [0.5, 0.5]
    assert paired("A", "B", "escaped", s=lambda s: s >= 5)(frame).tolist() == [0.0, 1.0]
    with pytest.raises(KeyError, match="'C'"):
        paired("C", "B", "loss")(frame)


SMALL_TABLE1 = {
    "name": "table1",
    "kind": "final_loss_and_sharpness",
    "surfaces": ["goldstein_price", "levy"],
    "seeds": 16,
    "start_seed": 0,
    "steps": 150,
    "lr_drop_step": 100,
    "settings": [
        {"optimizer": "adam", "hyper": {"lr": 0.1, "betas": (0.9, 0.99)}},
        {"optimizer": "adam_sam", "hyper": {"lr": 0.1, "betas": (0.9, 0.99), "rho": 0.01}},
        {"optimizer": "adam_cg", "hyper": {"lr": 0.1, "betas": (0.9, 0.99), "topC": 20, "decay": 0.99}},
        {"optimizer": "adam_cm", "hyper": {"lr": 0.1, "betas": (0.9, 0.999), "topC": 20, "decay": 0.99}},
    ],
}


def _verdicts(cfg: dict, out: Path) -> list[tuple[str, str]]:
    out.mkdir(parents=True)
    KINDS[cfg["kind"]](cfg, out, out)
    return [(v.claim, v.verdict) for v in evaluate(out) if v.artefact == "Table 1"]


def test_no_verdict_changes_when_the_starts_move_by_1e12_or_the_runs_are_reordered(tmp_path):
    plain = _verdicts(SMALL_TABLE1, tmp_path / "plain")
    moved = _verdicts({**SMALL_TABLE1, "start_jitter": 1e-12}, tmp_path / "moved")
    assert len(plain) == 12 and moved == plain
    assert {verdict for _, verdict in plain} - {"inconclusive"}, "every verdict inconclusive: the test would be empty"
    # Reordering the runs (as another worker count or run order would) changes no interval.
    runs = pd.read_csv(tmp_path / "plain" / "table1_runs.csv")
    shuffled = tmp_path / "shuffled"
    shuffled.mkdir()
    runs.sample(frac=1.0, random_state=1).to_csv(shuffled / "table1_runs.csv", index=False)
    before = [(v.claim, v.low, v.high) for v in evaluate(tmp_path / "plain")]
    assert [(v.claim, v.low, v.high) for v in evaluate(shuffled)] == before


@pytest.mark.skipif(not (RESULTS / "claims.csv").exists(), reason="results/toy has not been generated")
def test_committed_claims_follow_from_the_committed_runs():
    committed = pd.read_csv(RESULTS / "claims.csv")
    recomputed = evaluate(RESULTS)
    assert list(committed.claim) == [v.claim for v in recomputed]
    assert list(committed.verdict) == [v.verdict for v in recomputed]
    assert np.allclose(committed[["estimate", "low", "high"]], [[v.estimate, v.low, v.high] for v in recomputed])


def test_every_claim_names_a_csv_an_experiment_writes():
    experiments = {path.stem for path in (RESULTS.parents[1] / "conf" / "toy" / "experiment").glob("*.yaml")}
    for claim in CLAIMS:
        assert claim.source.removesuffix("_runs") in experiments, claim
