"""What the full-scale claims and cells add to the toy statistics (``cmrepro.claims.stats``).

The paired exact sign-flip test, Holm's adjustment, the verdict rule and its level are the toy
claims' own and are imported, never copied. Added here:

- :func:`unpaired_test`: the exact permutation test of two independent samples (every relabeling
  of the pooled runs counted), for comparisons whose runs cannot be paired by seed;
- :func:`smallest_p`: the smallest p-value an exact test can give with ``n`` runs, so that a
  verdict can say when the runs are too few to decide at all (five paired seeds: 1/32 > 2.5%);
- :func:`cell_interval` and :func:`cell_verdict`: each table cell against the paper's.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
from scipy.stats import t as student_t

from ..claims.stats import LEVEL, SEED, Test

RELABELINGS_UP_TO = 2**20  # relabelings enumerated; beyond, MONTE_CARLO seeded draws
MONTE_CARLO = 100_000

MATCHES, DIFFERS, TOO_FEW = "matches the paper", "differs", "too few runs"
MIN_CELL_RUNS = 3  # fewer finished seeds: no interval worth comparing
SMOKE_NOTE = "smoke: stand-in data, not evidence"


def _mean_differences(pooled: np.ndarray, size: int, seed: int = SEED) -> np.ndarray:
    """mean(first group) - mean(second) for every way of choosing ``size`` of ``pooled`` as the first
    group (enumerated when there are at most ``RELABELINGS_UP_TO``, else drawn)."""
    total, n = pooled.sum(), len(pooled)
    if math.comb(n, size) <= RELABELINGS_UP_TO:
        picks = np.array(list(itertools.combinations(range(n), size)), dtype=np.int64)
    else:
        rng = np.random.default_rng(seed)
        picks = np.argsort(rng.random((MONTE_CARLO, n)), axis=1)[:, :size]
    first = pooled[picks].sum(axis=1)
    return first / size - (total - first) / (n - size)


def _relabel_p(a: np.ndarray, b: np.ndarray, shift: float, upper: bool) -> float:
    """One-sided p of "mean(a) - mean(b) <= shift" (``upper``) or ">= shift": ``a`` shifted by
    ``-shift``, the share of relabelings whose difference is at least (at most) the observed one."""
    a = a - shift
    pooled = np.concatenate([a, b])
    differences = _mean_differences(pooled, len(a))
    observed = a.mean() - b.mean()
    tolerance = 1e-9 * max(1.0, float(np.abs(pooled).sum()))
    hits = differences >= observed - tolerance if upper else differences <= observed + tolerance
    return float(np.mean(hits))


def unpaired_test(a: np.ndarray, b: np.ndarray, min_effect: float) -> Test:
    """``a`` better than ``b`` (both oriented so that higher is better), runs not paired: the exact
    permutation test of the difference of means over every relabeling of the pooled runs.
    ``wins``/``losses``/``ties`` count the (a, b) pairs of runs, so "all tied" means every run equal."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size == 0 or b.size == 0:
        raise ValueError("an unpaired test needs runs on both sides")
    gaps = a[:, None] - b[None, :]
    wins, losses = int(np.sum(gaps > 0)), int(np.sum(gaps < 0))
    method = "exact relabeling" if math.comb(a.size + b.size, a.size) <= RELABELINGS_UP_TO else "relabeling (drawn)"
    return Test(
        method,
        n=a.size + b.size,
        estimate=float(a.mean() - b.mean()),
        low=float("nan"),
        high=float("nan"),
        p_support=_relabel_p(a, b, 0.0, upper=True),
        p_small=_relabel_p(a, b, min_effect, upper=False),
        wins=wins,
        losses=losses,
        ties=gaps.size - wins - losses,
    )


def smallest_p(paired: bool, n_a: int, n_b: int) -> float:
    """The smallest one-sided p-value the exact test can reach: 2^-n for n pairs, 1 / C(n_a + n_b, n_a)
    for two independent groups."""
    return 0.5**n_a if paired else 1 / math.comb(n_a + n_b, n_a)


def cell_interval(mean: float, std: float, runs: int) -> tuple[float, float]:
    """The two-sided 95% t-interval of a cell's mean over its ``runs`` seeds (NaN under two seeds)."""
    if runs < 2 or math.isnan(std):
        return float("nan"), float("nan")
    half = student_t.ppf(1 - LEVEL, runs - 1) * std / math.sqrt(runs)
    return float(mean - half), float(mean + half)


def cell_verdict(runs: int, low: float, high: float, paper_mean: float, paper_std: float) -> str:
    """The cell against the paper: "matches the paper" when the paper's mean lies inside our 95%
    interval widened on each side by the paper's std (0 where it gives none), "differs" otherwise,
    "too few runs" under ``MIN_CELL_RUNS`` finished seeds; "" where the paper has no value."""
    if paper_mean is None or math.isnan(paper_mean):
        return ""
    if runs < MIN_CELL_RUNS or math.isnan(low):
        return TOO_FEW
    widen = 0.0 if paper_std is None or math.isnan(paper_std) else paper_std
    return MATCHES if low - widen <= paper_mean <= high + widen else DIFFERS


def unpaired_equivalence(a: np.ndarray, b: np.ndarray, margin: float) -> Test:
    """``a`` and ``b`` within ``margin`` of each other, runs not paired: two one-sided relabeling tests
    that the difference lies inside (``p_support``, the larger) and outside (``p_small``, twice the
    smaller), as ``claims.stats.equivalence_test`` does for paired runs."""
    test = unpaired_test(a, b, margin)
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    inside = max(_relabel_p(a, b, -margin, upper=True), _relabel_p(a, b, margin, upper=False))
    outside = min(1.0, 2 * min(_relabel_p(a, b, margin, upper=True), _relabel_p(a, b, -margin, upper=False)))
    return Test(test.method, test.n, test.estimate, test.low, test.high, inside, outside, test.wins, test.losses,
                test.ties)  # fmt: skip
