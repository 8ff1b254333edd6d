"""The claims of Section 4 (and Appendices A.2-A.3) as statistical statements over seeds.

Each claim compares two optimizer settings run from the same initial points,
so a claim is a vector of paired differences, one per run (start point),
oriented so that a positive difference supports the paper. The verdict rests
on a percentile bootstrap of the mean difference over runs (95%, resampling
runs with replacement):

- "supported": the whole interval lies above 0;
- "not supported": the whole interval lies at or below 0 (the other outcome);
- "inconclusive": the interval contains 0 strictly inside; more seeds could
  decide it either way.

The differences are sorted before resampling, so the interval depends on the
multiset of run outcomes, not on the order in which the runs were made. A
claim whose runs flip basin with a last-bit change of the initial points
(the toy dynamics amplify such changes, see results/toy/README.md) moves its
estimate by one run's share at most, and the verdict stays put unless the
interval already touches 0.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

RESAMPLES = 10_000
LEVEL = 0.95
SEED = 0  # the bootstrap's own generator: the same CSVs always give the same intervals

LOWER_IS_BETTER = ("loss", "sharpness")


@dataclass(frozen=True)
class Verdict:
    artefact: str
    claim: str
    verdict: str
    seeds: int  # runs (start points) behind the interval
    estimate: float  # mean paired difference; > 0 supports the claim
    low: float
    high: float
    measure: str  # what the difference measures, with its units

    def line(self) -> str:
        if self.seeds == 0:  # an exact computation has no interval
            return f"- {self.artefact}: {self.claim}: **{self.verdict}** ({self.measure} {self.estimate:.3g})."
        tied = " (tied: every run ended the same for both)" if self.low == self.high == 0 else ""
        return (
            f"- {self.artefact}: {self.claim}: **{self.verdict}**{tied} ({self.measure} {self.estimate:+.3g}, "
            f"95% CI [{self.low:+.3g}, {self.high:+.3g}], {self.seeds} runs)."
        )


def bootstrap_interval(differences: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``differences`` at level ``LEVEL``."""
    values = np.sort(np.asarray(differences, dtype=np.float64))
    index = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    means = values[index].mean(axis=1)
    tail = 100 * (1 - LEVEL) / 2
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(low), float(high)


def decide(low: float, high: float) -> str:
    if low > 0:
        return "supported"
    if high <= 0:
        return "not supported"
    return "inconclusive"


# ---- paired differences from the per-run CSVs -------------------------------------------------
def _per_run(frame: pd.DataFrame, setting: str, value: str, **where) -> pd.Series:
    """``value`` of one setting per run, averaged over the rows each run has (e.g. several s)."""
    rows = frame
    for column, wanted in where.items():
        rows = rows[wanted(rows[column])] if callable(wanted) else rows[rows[column] == wanted]
    rows = rows[rows.setting == setting]
    if rows.empty:
        raise KeyError(f"no runs of {setting!r} with {where}")
    return rows.groupby("run")[value].mean().astype(float)


def paired(a: str, b: str, value: str, **where) -> Callable[[pd.DataFrame], np.ndarray]:
    """Per run, how much better setting ``a`` does than ``b`` on ``value`` (lower is better for
    losses and sharpness, higher for escapes): positive differences support "a beats b"."""

    def differences(frame: pd.DataFrame) -> np.ndarray:
        first, second = _per_run(frame, a, value, **where), _per_run(frame, b, value, **where)
        first, second = first.align(second, join="inner")
        gap = second - first if value in LOWER_IS_BETTER else first - second
        return gap.to_numpy()

    return differences


@dataclass(frozen=True)
class Claim:
    artefact: str
    claim: str
    source: str  # the CSV (``results/toy/<source>.csv``) with one row per run
    differences: Callable[[pd.DataFrame], np.ndarray]
    measure: str


def _setting_column(frame: pd.DataFrame) -> pd.Series:
    """One name per optimizer setting: the label, with C and decay where the table varies them."""
    if "C" not in frame or "decay" not in frame:
        return frame.optimizer
    with_buffer = frame.C.notna()
    named = frame.optimizer + " C=" + frame.C.fillna(0).astype(int).astype(str) + " decay=" + frame.decay.astype(str)
    return named.where(with_buffer, frame.optimizer)


def _table1() -> list[Claim]:
    claims = []
    for name, surface in (("Goldstein-Price", "goldstein_price"), ("Levy", "levy")):
        for value in ("loss", "sharpness"):
            for other in ("Adam", "Adam+SAM", "Adam+CG C=20 decay=0.99"):
                claims.append(
                    Claim(
                        "Table 1",
                        f"{name}: Adam+CM ends {'lower' if value == 'loss' else 'flatter'} than {other.split(' ')[0]}",
                        "table1_runs",
                        paired("Adam+CM C=20 decay=0.99", other, value, surface=surface),
                        f"{value} gap",
                    )
                )
    return claims


def _table5() -> list[Claim]:
    claims = [
        Claim(
            "Table 5",
            f"Levy: Adam+CM ends lower than Adam+CG at C = {c}, decay {d}",
            "table5_runs",
            paired(f"Adam+CM C={c} decay={d}", f"Adam+CG C={c} decay={d}", "loss"),
            "loss gap",
        )
        for c, d in ((5, 0.7), (5, 0.99), (20, 0.99))
    ]
    claims.append(
        Claim(
            "Table 5",
            "Levy: Adam+CM with C = 5 (decay 0.7) ends lower than Adam+CG with C = 20",
            "table5_runs",
            paired("Adam+CM C=5 decay=0.7", "Adam+CG C=20 decay=0.99", "loss"),
            "loss gap",
        )
    )
    claims += [
        Claim(
            "Table 5",
            f"Levy: Adam+CM with C = 20 ends {'lower' if value == 'loss' else 'flatter'} than with C = 5 (decay 0.99)",
            "table5_runs",
            paired("Adam+CM C=20 decay=0.99", "Adam+CM C=5 decay=0.99", value),
            f"{value} gap",
        )
        for value in ("loss", "sharpness")
    ]
    return claims


def _ackley_curves(source: str, artefact: str) -> list[Claim]:
    return [
        Claim(
            artefact,
            f"Ackley: {cm} ends at a lower loss than {other}",
            source,
            paired(cm, other, "loss"),
            "final-loss gap",
        )
        for cm in ("Adam+CM", "Adam+SAM+CM")
        for other in ("Adam", "Adam+SAM", "Adam+CG")
    ]


def _one_d(source: str, artefact: str, cs: tuple[int, ...]) -> list[Claim]:
    claims = [
        Claim(
            artefact,
            f"1-D f_s: Adam+CM C={c} ends at the flat minimum more often than Adam+CG C={c}",
            source,
            paired(f"Adam+CM C={c}", f"Adam+CG C={c}", "escaped"),
            "escape-rate gap",
        )
        for c in cs
    ]
    if len(cs) > 1:
        claims.append(
            Claim(
                artefact,
                f"1-D f_s: Adam+CM escapes more often with C = {cs[-1]} than with C = {cs[0]}",
                source,
                paired(f"Adam+CM C={cs[-1]}", f"Adam+CM C={cs[0]}", "escaped"),
                "escape-rate gap",
            )
        )
    return claims


def _escape_ratios() -> list[Claim]:
    sharp = {"s": lambda s: s >= 5}
    claims = [
        Claim(
            "Figure 6",
            f"D = 10, s >= 5: Adam+CM (C = 20) escapes the sharp minimum more often than {other.split(' C=')[0]}",
            "figure6_runs",
            paired("Adam+CM C=20", other, "escaped", **sharp),
            "escape-rate gap",
        )
        for other in ("Adam", "Adam+SAM", "Adam+CG C=20")
    ]
    not_two = {"s": lambda s: s != 2}
    claims += [
        Claim(
            "Figure 7 (left)",
            f"D = 1, s != 2: Adam+CM (C = 10) escapes more often than {other.split(' C=')[0]}",
            "figure7_left_runs",
            paired("Adam+CM C=10", other, "escaped", **not_two),
            "escape-rate gap",
        )
        for other in ("Adam", "Adam+SAM", "Adam+CG C=10")
    ]
    claims += [
        Claim(
            "Figure 7 (left)",
            f"D = 1, s >= 5: {other} escapes more often than Adam+CG (C = 10)",
            "figure7_left_runs",
            paired(other, "Adam+CG C=10", "escaped", **sharp),
            "escape-rate gap",
        )
        for other in ("Adam", "Adam+SAM")
    ]
    claims.append(
        Claim(
            "Figure 7 (right)",
            "D = 1: Adam+CM escapes more often with C = 40 than with C = 5 (mean over s)",
            "figure7_right_runs",
            paired("Adam+CM C=40", "Adam+CM C=5", "escaped"),
            "escape-rate gap",
        )
    )
    return claims


CLAIMS: list[Claim] = [
    *_table1(),
    *_table5(),
    *_ackley_curves("figure4_runs", "Figure 4"),
    *_ackley_curves("figure16_runs", "Figure 16"),
    *_one_d("figure5", "Figure 5", (5,)),
    *_one_d("figure17", "Figure 17", (5, 10, 20)),
    *_one_d("figure18", "Figure 18", (5, 10, 20)),
    *_escape_ratios(),
]


def _runs(out: Path, source: str) -> pd.DataFrame | None:
    path = out / f"{source}.csv"
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    if "run" not in frame:  # written by an older version, before runs were numbered: as if not run
        return None
    return frame.assign(setting=_setting_column(frame))


def _figure3(out: Path) -> Verdict | None:
    """Figure 3 is a computation, not a sample: no seeds, the verdict is exact."""
    path = out / "figure3.csv"
    if not path.exists():
        return None
    frame = pd.read_csv(path)
    rho = frame[frame.method.str.startswith("critical")].rho
    worst = float(rho.max())
    return Verdict(
        "Figure 3",
        f"critical momenta (C = 5) converge (rho* < 1) for condition numbers {frame.kappa.min():.3g} to "
        f"{frame.kappa.max():.3g}",
        "supported" if worst < 1 else "not supported",
        0,
        1 - worst,
        1 - worst,
        1 - worst,
        "exact computation, 1 - max rho*",
    )


def evaluate(out: Path, claims: list[Claim] = CLAIMS) -> list[Verdict]:
    """Every claim whose experiment has run, in the order of ``claims``; Figure 3 last."""
    verdicts, frames = [], {}
    for claim in claims:
        if claim.source not in frames:
            frames[claim.source] = _runs(out, claim.source)
        frame = frames[claim.source]
        if frame is None:
            continue
        differences = claim.differences(frame)
        low, high = bootstrap_interval(differences)
        verdicts.append(
            Verdict(
                claim.artefact,
                claim.claim,
                decide(low, high),
                len(differences),
                float(np.mean(differences)),
                low,
                high,
                claim.measure,
            )
        )
    figure3 = _figure3(out)
    return verdicts + ([figure3] if figure3 else [])


def write_claims(out: Path) -> list[Verdict]:
    """``claims.csv`` beside the experiments' CSVs: one row per claim, for the results index."""
    verdicts = evaluate(out)
    columns = ["artefact", "claim", "verdict", "seeds", "estimate", "low", "high", "measure"]
    frame = pd.DataFrame([v.__dict__ for v in verdicts], columns=columns)
    frame.to_csv(out / "claims.csv", index=False, float_format="%.6g")
    return verdicts
