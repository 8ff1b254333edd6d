"""The statistics behind every claim verdict (toy and full-scale): paired tests, Holm within a family, minimum effects.

A claim is a vector ``d`` of paired differences, one per run (start point, or fixed cell),
oriented so that a positive value supports the paper. Two one-sided questions are asked of it:

- does the mean exceed 0? (``p_support``: H0 "mean <= 0");
- is the mean below the declared minimum effect ``delta``? (``p_small``: H0 "mean >= delta"),
  which is how a claim is found "not supported": the data rule out an effect of the size that
  would matter, whether the difference is small or contradicts the paper.

Random starts with ``n >= EXACT_BELOW`` runs: a percentile bootstrap of the mean (its interval
shown at 95%, its p-values the bootstrap tail shares). Fixed cells (Figures 5, 17, 18: nine
(s, x0) cells, not a sample) and any ``n < EXACT_BELOW``: an exact sign-flip permutation test,
every one of the 2^n sign patterns counted (for differences in {-1, 0, 1} this is the exact sign
test with ties dropped; :func:`sign_flip_p` says what happens beyond 20, e.g. on a 7 x 7 grid);
its interval is not computed (NaN), the counts of wins, losses and ties are reported instead.
Every p-value of an artefact's family is Holm-adjusted before it is compared with ``LEVEL``
(one-sided 2.5%).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

LEVEL = 0.025  # one-sided, after Holm
RESAMPLES = 10_000
SEED = 0  # the bootstrap's own generator: the same CSVs always give the same intervals and p-values
EXACT_BELOW = 20  # fewer runs than this: the exact test, not the bootstrap
ENUMERATE_UP_TO = 20  # nonzero differences the exact test enumerates (2^20 sign patterns)
FEW_SIZES = 3  # beyond ENUMERATE_UP_TO, exact while the differences take at most this many values
MONTE_CARLO = 20_000  # else sign patterns drawn (a grid of 49 starts with real values): p to about 1e-4

VERDICTS = ("supported", "negligible", "no difference", "not supported", "inconclusive")


@dataclass(frozen=True)
class Test:
    """One paired comparison: the estimate, its interval (NaN for exact tests) and raw p-values."""

    method: str  # "bootstrap", "exact sign-flip" or "sign-flip (large n)" (see sign_flip_p)
    n: int
    estimate: float
    low: float
    high: float
    p_support: float  # H0: mean <= 0
    p_small: float  # H0: mean >= min_effect
    wins: int
    losses: int
    ties: int

    @property
    def all_tied(self) -> bool:
        return self.wins == self.losses == 0


def bootstrap_means(differences: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> np.ndarray:
    """Means of ``resamples`` resamples with replacement; sorted input, so run order never matters."""
    values = np.sort(np.asarray(differences, dtype=np.float64))
    index = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    return values[index].mean(axis=1)


def bootstrap_interval(differences: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Two-sided 95% percentile interval of the mean (2.5% in each tail, as the one-sided tests)."""
    return _percentiles(bootstrap_means(differences, resamples, seed))


def _percentiles(means: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(means, [100 * LEVEL, 100 * (1 - LEVEL)])
    return float(low), float(high)


def _tail_share(count: int, total: int) -> float:
    """A Monte Carlo p-value that is never 0: (count + 1) / (total + 1)."""
    return (count + 1) / (total + 1)


def _sign_flip_sums(magnitudes: np.ndarray) -> np.ndarray:
    """The sum of +-m_i for every one of the 2^n sign patterns, built one magnitude at a time."""
    sums = np.zeros(1)
    for m in magnitudes:
        sums = np.concatenate([sums + m, sums - m])
    return sums


def few_values(differences: np.ndarray) -> bool:
    """Whether the differences take at most ``FEW_SIZES`` values (0/1 outcomes give -1, 0 and 1): then
    the sign-flip tail is exact at any n and any shift (:func:`_grouped_tail`)."""
    return np.unique(np.asarray(differences, dtype=np.float64)).size <= FEW_SIZES


def _grouped_tail(centred: np.ndarray, observed: float, tolerance: float) -> float:
    """The exact tail when the magnitudes take few sizes: each size's count of plus signs is binomial,
    independent of the other sizes', so the share of sign patterns is a sum over the grid of counts."""
    sizes, group = np.unique(np.abs(centred), return_inverse=True)
    counts = np.bincount(group)
    grids = np.meshgrid(*[np.arange(n + 1) for n in counts], indexing="ij")
    sums = sum(size * (2 * k - n) for size, k, n in zip(sizes, grids, counts))
    weights = np.prod([binom.pmf(k, n, 0.5) for k, n in zip(grids, counts)], axis=0)
    return float(min(1.0, weights[sums >= observed - tolerance].sum()))


def sign_flip_p(differences: np.ndarray, shift: float = 0.0, upper: bool = True, seed: int = SEED) -> float:
    """Exact one-sided p-value of the sign-flip permutation test of "the differences are symmetric
    about ``shift``": the share of sign patterns whose sum is at least (``upper``) or at most the
    observed one. Zeros (after the shift) carry no sign and are dropped. Beyond ``ENUMERATE_UP_TO``
    nonzero differences: still exact when they take few values (:func:`few_values`: a grid's 0/1
    outcomes), else ``MONTE_CARLO`` seeded patterns (a grid's real-valued losses)."""
    centred = np.asarray(differences, dtype=np.float64) - shift
    centred = centred[centred != 0]
    if centred.size == 0:
        return 1.0
    if not upper:
        centred = -centred
    observed, magnitudes = centred.sum(), np.abs(centred)
    tolerance = 1e-9 * max(1.0, float(magnitudes.sum()))
    if centred.size <= ENUMERATE_UP_TO:
        return float(np.mean(_sign_flip_sums(magnitudes) >= observed - tolerance))
    if few_values(differences):
        return _grouped_tail(centred, observed, tolerance)
    flips = np.random.default_rng(seed).random((MONTE_CARLO, centred.size)) < 0.5
    sums = magnitudes.sum() - 2.0 * (flips @ magnitudes)
    return _tail_share(int(np.sum(sums >= observed - tolerance)), MONTE_CARLO)


@dataclass(frozen=True)
class Sampler:
    """One-sided tail p-values of one vector of differences, by the exact test or the bootstrap
    (whose resampled means are drawn once and reused for every shift)."""

    differences: np.ndarray
    exact: bool

    def __post_init__(self):
        if self.differences.size == 0:
            raise ValueError("no paired runs: the settings share no run (check the claim's settings and filters)")
        if not self.exact:
            object.__setattr__(self, "_means", bootstrap_means(self.differences))

    @property
    def method(self) -> str:
        if not self.exact:
            return "bootstrap"
        exact = np.count_nonzero(self.differences) <= ENUMERATE_UP_TO or few_values(self.differences)
        return "exact sign-flip" if exact else "sign-flip, Monte Carlo"

    def interval(self) -> tuple[float, float]:
        return (float("nan"), float("nan")) if self.exact else _percentiles(self._means)

    def p_above(self, shift: float) -> float:
        """p-value of H0 "mean <= shift" (evidence that the mean exceeds ``shift``)."""
        if self.exact:
            return sign_flip_p(self.differences, shift, upper=True)
        return _tail_share(int(np.sum(self._means <= shift)), len(self._means))

    def p_below(self, shift: float) -> float:
        """p-value of H0 "mean >= shift" (evidence that the mean lies below ``shift``)."""
        if self.exact:
            return sign_flip_p(self.differences, shift, upper=False)
        return _tail_share(int(np.sum(self._means >= shift)), len(self._means))


def paired_test(differences: np.ndarray, min_effect: float, exact: bool) -> Test:
    """The two one-sided p-values of ``differences`` (see the module's docstring)."""
    d = np.asarray(differences, dtype=np.float64)
    sampler = Sampler(d, exact)
    wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
    low, high = sampler.interval()
    return Test(
        sampler.method,
        n=d.size,
        estimate=float(d.mean()),
        low=low,
        high=high,
        p_support=sampler.p_above(0.0),
        p_small=sampler.p_below(min_effect),
        wins=wins,
        losses=losses,
        ties=d.size - wins - losses,
    )


def equivalence_test(differences: np.ndarray, margin: float, exact: bool) -> Test:
    """Whether a and b are "almost equal": two one-sided tests that the mean lies inside (-margin, margin)
    (``p_support``, the larger of the two), and that it lies outside (``p_small``: twice the smaller)."""
    d = np.asarray(differences, dtype=np.float64)
    sampler = Sampler(d, exact)
    wins, losses = int(np.sum(d > 0)), int(np.sum(d < 0))
    low, high = sampler.interval()
    inside = max(sampler.p_above(-margin), sampler.p_below(margin))
    outside = min(1.0, 2 * min(sampler.p_above(margin), sampler.p_below(-margin)))
    return Test(
        sampler.method, d.size, float(d.mean()), low, high, inside, outside, wins, losses, d.size - wins - losses
    )


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment: the i-th smallest p times (m - i), running maximum, capped at 1."""
    m = len(pvalues)
    order = np.argsort(pvalues, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def decide(all_tied: bool, p_support: float, p_small: float, meets_effect: bool) -> str:
    """The verdict from Holm-adjusted p-values:

    - "no difference": every run tied (the two settings ended alike in every run);
    - "supported": the mean exceeds 0 (``p_support <= LEVEL``) and its estimate reaches the
      minimum effect (``meets_effect``);
    - "negligible": the mean exceeds 0, but its estimate falls short of the minimum effect;
    - "not supported": the data rule out a mean as large as the minimum effect
      (``p_small <= LEVEL``): the difference is too small to matter, or it contradicts the paper;
    - "inconclusive": neither (more runs could decide it).
    """
    if all_tied:
        return "no difference"
    if p_support <= LEVEL:
        return "supported" if meets_effect else "negligible"
    if p_small <= LEVEL:
        return "not supported"
    return "inconclusive"
