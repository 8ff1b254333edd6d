"""Worst-case convergence rates of heavy-ball momentum and critical momenta on quadratics (paper Section 3.2, Fig. 3).

On L(θ) = ½ θᵀHθ the momentum m_t = β m_{t−1} + H θ_t and both updates are linear, so they decouple along the
eigen-directions of H. For an eigenvalue h the state follows V_{t+1} = A_h V_t and its asymptotic contraction per step
is the spectral radius ρ(A_h). With the spectrum normalised to [μ, L] = [1, κ]:

    ρ(α, β) = max_{h ∈ [1, κ]} ρ(A_h)        worst case over the spectrum
    ρ*      = min_{α, β} ρ(α, β)              best tuning ("optimal beta", solid curves)
    ρ*_β    = min_α ρ(α, β) at β = 0.9        the usual default β ("beta=0.9", dashed curves)

and the figure plots the rate 1 − ρ* against κ.

Critical momenta (CM) here follows the paper's simplifying assumption that the buffer holds exactly the last C
momenta, so the update θ_{t+1} = θ_t − α (m_t + (1/C) Σ_{k=1..C} m_{t−k}) is linear with C extra state blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

MOMENTUM = "momentum"
CRITICAL_MOMENTA = "critical_momenta"
METHODS = (MOMENTUM, CRITICAL_MOMENTA)

DEFAULT_BUFFER_SIZE = 5  # C used in the paper's Fig. 3
FIXED_BETA = 0.9  # the dashed curves
DEFAULT_KAPPAS = np.logspace(0.5, 4.0, 15)

OPTIMAL_BETA_VARIANT = "optimal beta"
FIXED_BETA_VARIANT = f"beta={FIXED_BETA:g}"


# Sampling of h ∈ [1, κ] (see worst_case_radius for why it suffices): log-spaced, because ρ(A_h) varies on the scale
# of h itself (A_h depends on α h), then the highest few sampled peaks refined by parabolic interpolation.
class Resolution(NamedTuple):
    """How finely worst_case_radius resolves the spectrum."""

    points_per_decade: int
    min_points: int
    peak_refinements: int  # successive parabolic interpolation steps per refined peak


FINE = Resolution(points_per_decade=16, min_points=17, peak_refinements=3)
# Only for choosing the basin and the brackets of the search, where ~1e-4 errors in ρ do not matter.
COARSE = Resolution(points_per_decade=8, min_points=9, peak_refinements=2)
REFINED_PEAKS = 3  # local maxima of the samples that get refined; the optimum equalises a few peaks, rarely more
ENDPOINT_OFFSET = 1e-4  # in grid steps: the extra samples next to h = 1 and h = κ (see _sample_points)

# Search box of the optimiser. α is searched as x = ln(α κ): every stable step size scales like 1/L = 1/κ
# (heavy-ball needs α L < 2 (1 + β)), and small α matter too (β → 1 needs α ~ (1 − β)² / μ), hence five decades.
LOG10_ALPHA_KAPPA_RANGE = (-4.0, 1.0)
ALPHA_GRID_POINTS = 21  # 4 per decade
# β is searched as s = −ln(1 − β) ≥ 0: s resolves β → 1 (heavy-ball's β* = 0.96 at κ = 10⁴) as finely as β ≈ 0.
S_RANGE = (0.0, 9.0)  # β ∈ [0, 0.9999]
S_GRID_POINTS = 13
# Golden-section tolerance on ln α and s. The objective is kinked at the optimum, so the error in ρ* is linear in the
# tolerance: ~1e-4 × |slope|, measured ≤ 3e-5 in ρ* (≤ 1e-4 relative in the rate 1 − ρ*) over the default κ range.
SEARCH_TOL = 1e-4
COARSE_SEARCH_TOL = 1e-2  # only ranks the coarse β grid
ALPHA_MARGIN = 0.1  # in ln α, kept around a coarse optimum in the final α bracket: 10 x COARSE_SEARCH_TOL to spare
NEAR_OPTIMAL = 1e-3  # ρ above a coarse row's minimum that still counts as optimal (see _Problem.coarse_best_alpha)

METHOD_LABELS = {MOMENTUM: "classical momentum", CRITICAL_MOMENTA: "critical momenta C={C}"}
VARIANT_STYLES = {OPTIMAL_BETA_VARIANT: "-", FIXED_BETA_VARIANT: "--"}

_INV_PHI = (math.sqrt(5.0) - 1.0) / 2.0  # golden-section ratio ≈ 0.618


class OptimalRate(NamedTuple):
    """Best worst-case spectral radius ρ* and the (α*, β*) that reach it."""

    rho: float
    alpha: float
    beta: float


# --------------------------------------------------------------------------------------------------------------------
# Iteration matrices
# --------------------------------------------------------------------------------------------------------------------


def _as_arrays(*values: float | np.ndarray) -> tuple[list[np.ndarray], tuple[int, ...]]:
    """Float arrays and their broadcast shape (the matrix builders then let assignment broadcast, which is
    cheaper than materialising np.broadcast_arrays: they run thousands of times per optimisation)."""
    arrays = [np.asarray(v, dtype=float) for v in values]
    return arrays, np.broadcast_shapes(*(a.shape for a in arrays))


def momentum_matrix(alpha: float | np.ndarray, beta: float | np.ndarray, h: float | np.ndarray) -> np.ndarray:
    """Heavy-ball iteration matrix in the coordinates (θ_t, m_{t−1}).

    m_t = β m_{t−1} + h θ_t and θ_{t+1} = θ_t − α m_t give
        θ_{t+1} = (1 − α h) θ_t − α β m_{t−1}
        m_t     = h θ_t + β m_{t−1}.
    alpha, beta and h broadcast together; the result has shape broadcast_shape + (2, 2).
    """
    (alpha, beta, h), shape = _as_arrays(alpha, beta, h)
    matrix = np.empty(shape + (2, 2))
    matrix[..., 0, 0] = 1.0 - alpha * h
    matrix[..., 0, 1] = -alpha * beta
    matrix[..., 1, 0] = h
    matrix[..., 1, 1] = beta
    return matrix


def critical_momenta_matrix(
    alpha: float | np.ndarray, beta: float | np.ndarray, h: float | np.ndarray, C: int
) -> np.ndarray:
    """CM iteration matrix A_h in the coordinates V_t = (θ_t, θ_{t−1}, m_{t−1}, …, m_{t−C}), size C + 2.

    Substituting m_t = β m_{t−1} + h θ_t into θ_{t+1} = θ_t − α (m_t + (1/C) Σ_{k=1..C} m_{t−k}):
        θ_{t+1} = (1 − α h) θ_t − α (β + 1/C) m_{t−1} − (α/C) (m_{t−2} + … + m_{t−C})
    (every buffer block enters with a minus sign; the typeset matrix in the paper dropped it on the last block).
    Row 2 carries θ_t, row 3 is m_t, and the remaining rows shift m_{t−1}, …, m_{t−C+1} down one slot.
    alpha, beta and h broadcast together; the result has shape broadcast_shape + (C + 2, C + 2).
    """
    return _critical_momenta_matrix(alpha, beta, h, C, with_previous_theta=True)


def _critical_momenta_matrix(
    alpha: float | np.ndarray, beta: float | np.ndarray, h: float | np.ndarray, C: int, with_previous_theta: bool
) -> np.ndarray:
    """critical_momenta_matrix, optionally without the θ_{t−1} row and column.

    No update reads θ_{t−1}: its column is zero and only adds an eigenvalue 0, so spectral radii can drop it,
    which makes the batched eigensolve ~25% cheaper.
    """
    if C < 1:
        raise ValueError(f"buffer size C must be >= 1, got {C}")
    (alpha, beta, h), shape = _as_arrays(alpha, beta, h)
    theta, momentum = (0, 2) if with_previous_theta else (0, 1)  # rows/columns of θ_t and m_{t−1}
    size = momentum + C
    matrix = np.zeros(shape + (size, size))
    matrix[..., theta, theta] = 1.0 - alpha * h
    matrix[..., theta, momentum] = -alpha * (beta + 1.0 / C)
    matrix[..., theta, momentum + 1 :] = (-alpha / C)[..., None]
    if with_previous_theta:
        matrix[..., 1, theta] = 1.0
    matrix[..., momentum, theta] = h
    matrix[..., momentum, momentum] = beta
    for row in range(momentum + 1, size):
        matrix[..., row, row - 1] = 1.0
    return matrix


def _check_method(method: str, C: int | None) -> int | None:
    """Validate the method name; return the buffer size to use (None for heavy-ball)."""
    if method == MOMENTUM:
        if C is not None:
            raise ValueError("classical momentum has no buffer; pass C=None")
        return None
    if method == CRITICAL_MOMENTA:
        return DEFAULT_BUFFER_SIZE if C is None else int(C)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def _radius_matrix(method: str, alpha: np.ndarray, beta: np.ndarray, h: np.ndarray, C: int | None) -> np.ndarray:
    """The iteration matrix with the same spectral radius and no dead coordinates."""
    if method == MOMENTUM:
        return momentum_matrix(alpha, beta, h)
    return _critical_momenta_matrix(alpha, beta, h, C, with_previous_theta=False)


def spectral_radius(matrices: np.ndarray) -> np.ndarray:
    """Largest eigenvalue modulus of each matrix in a stack (shape (..., n, n) -> (...)).

    Batched np.linalg.eigvals, except for 2 x 2 matrices, whose closed form is exact too and avoids LAPACK's
    per-call overhead (heavy-ball evaluations are otherwise dominated by it).
    """
    if matrices.shape[-2:] == (2, 2):
        return _spectral_radius_2x2(matrices)
    return np.abs(np.linalg.eigvals(matrices)).max(axis=-1)


def _spectral_radius_2x2(matrices: np.ndarray) -> np.ndarray:
    """Roots of z² − tr z + det: real ones are tr/2 ± √disc (the larger modulus is |tr|/2 + √disc, free of
    cancellation); a complex pair has modulus √det."""
    half_trace = 0.5 * (matrices[..., 0, 0] + matrices[..., 1, 1])
    det = matrices[..., 0, 0] * matrices[..., 1, 1] - matrices[..., 0, 1] * matrices[..., 1, 0]
    disc = half_trace**2 - det
    real_roots = np.abs(half_trace) + np.sqrt(np.maximum(disc, 0.0))
    return np.where(disc >= 0.0, real_roots, np.sqrt(np.maximum(det, 0.0)))


# --------------------------------------------------------------------------------------------------------------------
# Worst case over the spectrum
# --------------------------------------------------------------------------------------------------------------------


def default_grid_size(kappa: float, resolution: Resolution = FINE) -> int:
    """Number of log-spaced h samples over [1, κ] (both endpoints included)."""
    return max(resolution.min_points, math.ceil(resolution.points_per_decade * math.log10(kappa)) + 1)


def _sample_points(log_kappa: float, points: int) -> np.ndarray:
    """ln h of the samples: `points` evenly spaced over [0, ln κ], plus one a hair inside each endpoint.

    The extra samples give the slope at the endpoints. Where ρ falls towards an endpoint, the sample just inside
    beats the endpoint, so a peak hiding in the first or last grid interval becomes a bracketed local maximum
    like any interior one; where ρ rises to the endpoint, the endpoint sample is already the maximum there.
    """
    grid = np.linspace(0.0, log_kappa, points)
    hair = ENDPOINT_OFFSET * (grid[1] - grid[0])
    return np.concatenate([grid[:1], grid[:1] + hair, grid[1:-1], grid[-1:] - hair, grid[-1:]])


def _top_local_maxima(radii: np.ndarray, count: int) -> np.ndarray:
    """Indices (P, count) of the highest interior local maxima of each row; rows with fewer repeat their best.

    Endpoints are left out: their exact value is already a sample, and a peak next to one shows up as an interior
    local maximum thanks to the extra samples of _sample_points.
    """
    interior = radii[:, 1:-1]
    is_peak = (interior >= radii[:, :-2]) & (interior >= radii[:, 2:])
    score = np.where(is_peak, interior, -np.inf)
    count = min(count, score.shape[1])
    top = np.argpartition(-score, count - 1, axis=1)[:, :count]
    # Rows with fewer peaks than `count` picked some non-peaks; point those at their best peak instead (or at the
    # best interior sample if there is no peak at all, where refining is merely redundant).
    best = np.argmax(score, axis=1)[:, None]
    top = np.where(np.isfinite(np.take_along_axis(score, top, axis=1)), top, best)
    return top + 1


def _parabola_vertex(
    x: tuple[np.ndarray, np.ndarray, np.ndarray], f: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> np.ndarray:
    """Abscissa of the vertex of the parabola through three points a < b < c with f(b) >= f(a), f(c).

    Falls back to b where the three points are collinear; the vertex of a bracketed maximum lies in [a, c].
    """
    (a, b, c), (fa, fb, fc) = x, f
    numerator = (b - a) ** 2 * (fb - fc) - (b - c) ** 2 * (fb - fa)
    denominator = (b - a) * (fb - fc) - (b - c) * (fb - fa)
    with np.errstate(divide="ignore", invalid="ignore"):
        vertex = b - 0.5 * numerator / denominator
    vertex = np.where(np.isfinite(vertex), vertex, b)
    return np.clip(vertex, a, c)


def _refine_peaks(
    radius_at: Callable[[np.ndarray], np.ndarray],
    x: tuple[np.ndarray, np.ndarray, np.ndarray],
    f: tuple[np.ndarray, np.ndarray, np.ndarray],
    iterations: int,
) -> np.ndarray:
    """Successive parabolic interpolation on bracketed maxima (a < b < c, f(b) >= f(a), f(c)), all in lock step.

    Each step samples the vertex of the parabola through the bracket and keeps the three points that still bracket
    the maximum; on a smooth peak the error shrinks super-linearly. Returns the highest value sampled per bracket.
    """
    (a, b, c), (fa, fb, fc) = x, f
    for _ in range(iterations):
        v = _parabola_vertex((a, b, c), (fa, fb, fc))
        fv = radius_at(v)
        right, higher = v > b, fv >= fb
        # The vertex becomes the new middle point if it is higher, else the bracket end on its side.
        new_a, new_c = (higher & right) | (~higher & ~right), (higher & ~right) | (~higher & right)
        a, fa = np.where(new_a, np.where(higher, b, v), a), np.where(new_a, np.where(higher, fb, fv), fa)
        c, fc = np.where(new_c, np.where(higher, b, v), c), np.where(new_c, np.where(higher, fb, fv), fc)
        b, fb = np.where(higher, v, b), np.where(higher, fv, fb)
    return fb


def _worst_case(
    method: str, alpha: np.ndarray, beta: np.ndarray, kappa: float, C: int | None, points: int, refinements: int
) -> np.ndarray:
    """worst_case_radius on flat arrays alpha, beta of equal length, without argument checks."""
    alpha, beta = alpha[:, None], beta[:, None]
    log_h = _sample_points(math.log(kappa), points)

    def radius_at(log_h_points: np.ndarray) -> np.ndarray:
        return spectral_radius(_radius_matrix(method, alpha, beta, np.exp(log_h_points), C))

    radii = radius_at(log_h[None, :])
    peaks = _top_local_maxima(radii, REFINED_PEAKS)
    brackets = tuple(log_h[peaks + shift] for shift in (-1, 0, 1))
    values = tuple(np.take_along_axis(radii, peaks + shift, axis=1) for shift in (-1, 0, 1))
    refined = _refine_peaks(radius_at, brackets, values, refinements)
    return np.maximum(radii.max(axis=1), refined.max(axis=1))


def worst_case_radius(
    method: str,
    alpha: float | np.ndarray,
    beta: float | np.ndarray,
    kappa: float,
    C: int | None = None,
    grid: int | None = None,
) -> float | np.ndarray:
    """max over h ∈ [1, κ] of ρ(A_h), for one (α, β) or for broadcast arrays of them (vectorised over both).

    method is "momentum" or "critical_momenta" (C defaults to 5 for the latter). The spectrum is sampled at `grid`
    log-spaced points including both endpoints (default: 16 per decade, at least 17), then refined. Why that is
    enough: A_h is affine in h, so ρ(A_h) is continuous and, away from the finitely many h where eigenvalues
    collide, analytic; it varies on the scale of h (hence the log grid). Its maxima are the endpoints, which are
    samples, and interior resonance peaks a few tens of percent wide in h (measured on both methods), wider than
    the 15% grid step, so every peak shows up as a local maximum of the samples. The samples alone would still
    miss the top of a peak by up to ~1e-2, which an optimiser of (α, β) exploits by parking peaks between samples;
    so the highest three sampled peaks are refined by successive parabolic interpolation (4 steps), which on smooth
    peaks is accurate to ~1e-9 (the tests compare against 2·10⁴-point grids). Every refinement step is a true
    sample, so the result never over-estimates the supremum.
    """
    C = _check_method(method, C)
    if not kappa > 1.0:
        raise ValueError(f"kappa must exceed 1, got {kappa}")
    alpha, beta = np.broadcast_arrays(np.asarray(alpha, dtype=float), np.asarray(beta, dtype=float))
    points = default_grid_size(kappa) if grid is None else int(grid)
    if points < 3:
        raise ValueError(f"grid needs at least 3 points, got {points}")
    worst = _worst_case(method, alpha.ravel(), beta.ravel(), kappa, C, points, FINE.peak_refinements)
    worst = worst.reshape(alpha.shape)
    return float(worst) if worst.ndim == 0 else worst


# --------------------------------------------------------------------------------------------------------------------
# Minimising over (α, β)
# --------------------------------------------------------------------------------------------------------------------


def _golden_section(
    objective: Callable[[np.ndarray], np.ndarray], low: np.ndarray, high: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray]:
    """Minimise a batch of independent 1-D functions, each on its own bracket [low_i, high_i], in lock step.

    objective maps an array of abscissae (one per problem) to their values. Golden section needs no smoothness,
    only a single minimum inside the bracket, which suits the kinked max-over-h objective (the coarse grids that
    build the brackets pick the basin). Returns (argmin, min) per problem.
    """
    low = np.asarray(low, dtype=float).copy()
    high = np.asarray(high, dtype=float).copy()
    x_low = high - _INV_PHI * (high - low)
    x_high = low + _INV_PHI * (high - low)
    f_low = objective(x_low)
    f_high = objective(x_high)
    while np.max(high - low) > tol:
        left = f_low <= f_high  # the minimum lies in [low, x_high]; otherwise in [x_low, high]
        low = np.where(left, low, x_low)
        high = np.where(left, x_high, high)
        kept_x = np.where(left, x_low, x_high)  # the interior point that stays interior
        kept_f = np.where(left, f_low, f_high)
        new_x = np.where(left, high - _INV_PHI * (high - low), low + _INV_PHI * (high - low))
        new_f = objective(new_x)
        x_low, f_low = np.where(left, new_x, kept_x), np.where(left, new_f, kept_f)
        x_high, f_high = np.where(left, kept_x, new_x), np.where(left, kept_f, new_f)
    take_low = f_low <= f_high
    return np.where(take_low, x_low, x_high), np.where(take_low, f_low, f_high)


def _alpha(log_alpha_kappa: np.ndarray | float, kappa: float) -> np.ndarray:
    return np.exp(log_alpha_kappa) / kappa


def _beta(s: np.ndarray | float) -> np.ndarray:
    return -np.expm1(-np.asarray(s, dtype=float))  # 1 − e^{−s}, exact near β = 0


def _neighbour_bracket(grid: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[grid[i − 1], grid[i + 1]], clipped at the grid ends: where a golden section starts after a grid search."""
    return grid[np.maximum(index - 1, 0)], grid[np.minimum(index + 1, len(grid) - 1)]


@dataclass(frozen=True)
class _Problem:
    """One optimal_rate problem: the worst-case radius as a function of x = ln(α κ) and s = −ln(1 − β)."""

    method: str
    kappa: float
    C: int | None

    def radius(self, x: np.ndarray, s: np.ndarray, resolution: Resolution) -> np.ndarray:
        x, s = np.broadcast_arrays(x, s)
        points = default_grid_size(self.kappa, resolution)
        flat = _worst_case(
            self.method,
            _alpha(x.ravel(), self.kappa),
            _beta(s.ravel()),
            self.kappa,
            self.C,
            points,
            resolution.peak_refinements,
        )
        return flat.reshape(x.shape)

    def best_alpha(
        self, s: np.ndarray, low: np.ndarray, high: np.ndarray, tol: float, resolution: Resolution
    ) -> tuple[np.ndarray, np.ndarray]:
        """Golden section over x ∈ [low, high] for every s of a batch: (x*, ρ) per s."""
        return _golden_section(lambda x: self.radius(x, s, resolution), low, high, tol)

    def coarse_best_alpha(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Scan of the full x grid for every s, then a loose golden section around each row's best grid point.

        Returns (x*, ρ) per s, and the x interval holding every grid x within NEAR_OPTIMAL of its row's best, one
        grid step to spare on each side: where ρ is flat in α (heavy-ball's ρ = √β over a whole range of α) x* is
        arbitrary, and only that interval reliably contains the α* of nearby β.
        """
        x_grid = np.log(10.0) * np.linspace(*LOG10_ALPHA_KAPPA_RANGE, ALPHA_GRID_POINTS)
        radii = self.radius(x_grid[None, :], s[:, None], COARSE)
        low, high = _neighbour_bracket(x_grid, np.argmin(radii, axis=1))
        x_best, rho_best = self.best_alpha(s, low, high, COARSE_SEARCH_TOL, COARSE)
        near = radii <= radii.min(axis=1, keepdims=True) + NEAR_OPTIMAL
        first = np.argmax(near, axis=1)
        last = len(x_grid) - 1 - np.argmax(near[:, ::-1], axis=1)
        x_low = np.minimum(x_grid[np.maximum(first - 1, 0)], x_best - ALPHA_MARGIN)
        x_high = np.maximum(x_grid[np.minimum(last + 1, len(x_grid) - 1)], x_best + ALPHA_MARGIN)
        return x_best, rho_best, np.stack([x_low, x_high], axis=-1)


def optimal_rate(method: str, kappa: float, C: int | None = None, beta: float | None = None) -> OptimalRate:
    """ρ* = min over α (and over β ∈ [0, 1) unless `beta` fixes it) of the worst-case radius on [1, κ].

    The objective is a max over h, so it is kinked exactly at the optimum (several h tie there), where gradient
    methods and simplex or pattern searches stall (a pattern search missed heavy-ball's known ρ* by 0.07). Instead
    the minimum is nested into 1-D problems, which golden section solves without smoothness: ρ_β = min_α ρ(α, β),
    then min_β ρ_β. Coarse scans of ln(α κ) (5 decades) and of s = −ln(1 − β) pick the basin and the brackets.
    """
    C = _check_method(method, C)
    if not kappa > 1.0:
        raise ValueError(f"kappa must exceed 1, got {kappa}")
    problem = _Problem(method, float(kappa), C)

    if beta is not None:
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"beta must lie in [0, 1), got {beta}")
        s = np.array([-math.log1p(-beta)])
        _, _, x_range = problem.coarse_best_alpha(s)
        x, rho = problem.best_alpha(s, x_range[:, 0], x_range[:, 1], SEARCH_TOL, FINE)
        return OptimalRate(float(rho[0]), float(_alpha(x[0], kappa)), float(beta))

    # Coarse stage: the best α for every s of a grid, to a loose tolerance; the best s brackets the final search.
    s_grid = np.linspace(*S_RANGE, S_GRID_POINTS)
    _, rho_coarse, x_ranges = problem.coarse_best_alpha(s_grid)
    best = int(np.argmin(rho_coarse))
    s_low, s_high = _neighbour_bracket(s_grid, np.array([best]))
    # α* moves with β, so one α bracket covers the near-optimal α of the neighbouring grid β's.
    neighbours = x_ranges[max(best - 1, 0) : best + 2]
    x_low, x_high = neighbours[:, :1].min(axis=0), neighbours[:, 1:].max(axis=0)

    def best_radius(s: np.ndarray) -> np.ndarray:
        return problem.best_alpha(s, x_low, x_high, SEARCH_TOL, FINE)[1]

    s_best, _ = _golden_section(best_radius, s_low, s_high, SEARCH_TOL)
    if s_low[0] == S_RANGE[0] and best_radius(s_low)[0] <= best_radius(s_best)[0]:
        s_best = s_low  # β* = 0 (CM at small κ): golden section only approaches a bracket end
    x, rho = problem.best_alpha(s_best, x_low, x_high, SEARCH_TOL, FINE)
    return OptimalRate(float(rho[0]), float(_alpha(x[0], kappa)), float(_beta(s_best[0])))


# --------------------------------------------------------------------------------------------------------------------
# Figure 3
# --------------------------------------------------------------------------------------------------------------------


def method_label(method: str, C: int | None = None) -> str:
    """Legend / DataFrame name of a method, e.g. "critical momenta C=5"."""
    return METHOD_LABELS[method].format(C=C)


def rate_curves(kappas: Sequence[float] | np.ndarray = DEFAULT_KAPPAS, C: int = DEFAULT_BUFFER_SIZE) -> pd.DataFrame:
    """ρ* and the rate 1 − ρ* for both methods and both β variants at every κ: the data of Fig. 3.

    One row per (method, kappa, variant), columns method, variant, kappa, rho, rate, alpha, beta.
    """
    rows = []
    for method, buffer_size in ((MOMENTUM, None), (CRITICAL_MOMENTA, C)):
        for variant, beta in ((OPTIMAL_BETA_VARIANT, None), (FIXED_BETA_VARIANT, FIXED_BETA)):
            for kappa in kappas:
                best = optimal_rate(method, float(kappa), C=buffer_size, beta=beta)
                rows.append(
                    {
                        "method": method_label(method, buffer_size),
                        "variant": variant,
                        "kappa": float(kappa),
                        "rho": best.rho,
                        "rate": 1.0 - best.rho,
                        "alpha": best.alpha,
                        "beta": best.beta,
                    }
                )
    return pd.DataFrame(rows, columns=["method", "variant", "kappa", "rho", "rate", "alpha", "beta"])


def plot_rate_curves(frame: pd.DataFrame, path: str | Path, log_rate: bool = False) -> Path:
    """Fig. 3: rate 1 − ρ* against κ (log x); one colour per method, solid = optimal β, dashed = β = 0.9.

    log_rate=True puts the rate on a log axis too, which separates the small β = 0.9 rates at large κ.
    Writes a PNG and returns its path.
    """
    path = Path(path)
    colours = dict(zip(frame["method"].unique(), matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]))
    # An Agg canvas of our own rather than pyplot: no display needed, and the caller's backend is left alone.
    fig = Figure(figsize=(6.0, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for (method, variant), curve in frame.groupby(["method", "variant"], sort=False):
        curve = curve.sort_values("kappa")
        ax.plot(
            curve["kappa"],
            curve["rate"],
            linestyle=VARIANT_STYLES.get(variant, ":"),
            color=colours[method],
            marker=".",
            label=f"{method}, {variant}",
        )
    ax.set_xscale("log")
    if log_rate:
        ax.set_yscale("log")
    ax.set_xlabel(r"condition number $\kappa = L / \mu$")
    ax.set_ylabel(r"convergence rate $1 - \rho^*$")
    ax.set_title("Worst-case rate on quadratics")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    return path
