"""Section 3.2 / Fig. 3: iteration matrices, worst-case radii and optimal rates of heavy-ball and critical momenta."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cmrepro.toy import convergence as cv


def heavy_ball_closed_form(kappa: float) -> tuple[float, float, float]:
    """Polyak's optimum on [μ, L] = [1, κ]: (ρ*, α*, β*)."""
    root = np.sqrt(kappa)
    rho = (root - 1.0) / (root + 1.0)
    return rho, 4.0 / (root + 1.0) ** 2, rho**2


def run_momentum(alpha: float, beta: float, h: np.ndarray, theta: np.ndarray, m_prev: np.ndarray, steps: int):
    """The update equations themselves, on independent scalar quadratics ½ h θ²."""
    trajectory = []
    for _ in range(steps):
        m = beta * m_prev + h * theta
        theta, m_prev = theta - alpha * m, m
        trajectory.append((theta, m_prev))
    return trajectory


def run_critical_momenta(
    alpha: float, beta: float, h: np.ndarray, theta: np.ndarray, history: list[np.ndarray], steps: int
):
    """CM with a buffer holding exactly the last C momenta; history = [m_{t−1}, …, m_{t−C}]."""
    C = len(history)
    thetas = []
    for _ in range(steps):
        m = beta * history[0] + h * theta
        theta = theta - alpha * (m + sum(history) / C)
        history = [m] + history[:-1]
        thetas.append(theta)
    return thetas, history


def apply(matrices: np.ndarray, state: np.ndarray) -> np.ndarray:
    return np.einsum("...ij,...j->...i", matrices, state)


def test_momentum_matrix_reproduces_the_iteration():
    rng = np.random.default_rng(0)
    h = np.array([1.0, 7.5, 40.0])
    alpha, beta = 0.03, 0.8
    theta, m_prev = rng.normal(size=3), rng.normal(size=3)
    matrices = cv.momentum_matrix(alpha, beta, h)
    assert matrices.shape == (3, 2, 2)
    state = np.stack([theta, m_prev], axis=-1)
    for expected_theta, expected_m in run_momentum(alpha, beta, h, theta, m_prev, steps=6):
        state = apply(matrices, state)
        np.testing.assert_allclose(state[:, 0], expected_theta, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(state[:, 1], expected_m, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("C", [1, 2, 5])
def test_critical_momenta_matrix_reproduces_the_iteration(C):
    rng = np.random.default_rng(C)
    h = np.array([1.0, 3.0, 25.0, 90.0])
    alpha, beta = 0.01, 0.6
    theta, theta_prev = rng.normal(size=4), rng.normal(size=4)
    history = [rng.normal(size=4) for _ in range(C)]
    matrices = cv.critical_momenta_matrix(alpha, beta, h, C)
    assert matrices.shape == (4, C + 2, C + 2)
    state = np.stack([theta, theta_prev, *history], axis=-1)

    thetas, final_history = run_critical_momenta(alpha, beta, h, theta, history, steps=8)
    for expected_theta in thetas:
        state, previous_theta = apply(matrices, state), state[:, 0]
        np.testing.assert_allclose(state[:, 0], expected_theta, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(state[:, 1], previous_theta, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(state[:, 2:], np.stack(final_history, axis=-1), rtol=1e-12, atol=1e-12)


def test_critical_momenta_last_buffer_block_is_negative():
    """The paper's typeset matrix lost this minus sign; the update needs it."""
    alpha, C = 0.2, 5
    matrix = cv.critical_momenta_matrix(alpha, 0.9, 3.0, C)
    np.testing.assert_allclose(matrix[0, 2], -alpha * (0.9 + 1 / C))
    np.testing.assert_allclose(matrix[0, 3:], -alpha / C)


def test_spectral_radius_2x2_closed_form_matches_eigvals():
    rng = np.random.default_rng(1)
    matrices = rng.normal(size=(500, 2, 2))  # real and complex eigenvalue pairs
    expected = np.abs(np.linalg.eigvals(matrices)).max(axis=-1)
    np.testing.assert_allclose(cv.spectral_radius(matrices), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(
    ("method", "alpha", "beta", "kappa"),
    [
        ("critical_momenta", 0.002865, 0.5189, 1000.0),  # near CM's optimum: an interior peak at h ≈ 750 binds
        ("critical_momenta", 0.0513, 0.0, 30.0),  # β = 0: the worst case is an interior peak at α h ≈ 0.74
        ("critical_momenta", 2.64 / 3.1623, 0.936, 3.1623),  # peak just inside the upper endpoint
        ("momentum", 0.01, 0.7, 500.0),
    ],
)
def test_worst_case_radius_matches_a_dense_grid(method, alpha, beta, kappa):
    h = np.geomspace(1.0, kappa, 20001)
    if method == "momentum":
        dense = cv.spectral_radius(cv.momentum_matrix(alpha, beta, h)).max()
    else:
        dense = cv.spectral_radius(cv.critical_momenta_matrix(alpha, beta, h, 5)).max()
    worst = cv.worst_case_radius(method, alpha, beta, kappa)
    # Both are attained values, so neither exceeds the true supremum; the dense grid is within ~1e-8 of it.
    assert worst == pytest.approx(dense, abs=1e-7)


def test_worst_case_radius_is_vectorised():
    alphas = np.array([0.001, 0.01, 0.1])
    batched = cv.worst_case_radius("critical_momenta", alphas[:, None], np.array([0.0, 0.9]), 100.0, C=5)
    assert batched.shape == (3, 2)
    assert batched[1, 1] == cv.worst_case_radius("critical_momenta", 0.01, 0.9, 100.0, C=5)
    assert isinstance(cv.worst_case_radius("momentum", 0.01, 0.9, 100.0), float)


@pytest.mark.parametrize("kappa", [10.0, 100.0, 1000.0])
def test_heavy_ball_closed_form_parameters_reach_the_closed_form_rate(kappa):
    rho, alpha, beta = heavy_ball_closed_form(kappa)
    # At Polyak's parameters every h in [1, κ] has radius √β = ρ* (double roots at both ends, hence 1e-7).
    assert cv.worst_case_radius("momentum", alpha, beta, kappa) == pytest.approx(rho, abs=1e-7)


@pytest.mark.parametrize("kappa", [10.0, 100.0, 1000.0])
def test_heavy_ball_optimal_rate_matches_the_closed_form(kappa):
    rho, alpha, beta = heavy_ball_closed_form(kappa)
    best = cv.optimal_rate("momentum", kappa)
    assert best.rho == pytest.approx(rho, abs=1e-4)
    assert best.rho >= rho - 1e-9  # nothing beats the optimum
    assert best.alpha == pytest.approx(alpha, rel=1e-2)
    assert best.beta == pytest.approx(beta, abs=1e-2)


@pytest.fixture(scope="module")
def curves() -> pd.DataFrame:
    """Both ends of the default κ range (~2 s)."""
    return cv.rate_curves([cv.DEFAULT_KAPPAS[0], cv.DEFAULT_KAPPAS[-1]], C=5)


def test_rate_curves_frame(curves):
    assert list(curves.columns) == ["method", "variant", "kappa", "rho", "rate", "alpha", "beta"]
    assert len(curves) == 2 * 2 * 2
    assert set(curves["method"]) == {"classical momentum", "critical momenta C=5"}
    assert set(curves["variant"]) == {"optimal beta", "beta=0.9"}
    np.testing.assert_allclose(curves["rate"], 1.0 - curves["rho"])
    assert (curves.loc[curves["variant"] == "beta=0.9", "beta"] == 0.9).all()
    assert ((curves["beta"] >= 0.0) & (curves["beta"] < 1.0) & (curves["alpha"] > 0.0)).all()


def test_critical_momenta_converges_over_the_default_range(curves):
    """ρ* can only grow with κ (a max over a larger spectrum), so ρ* < 1 at the largest default κ covers the range."""
    cm = curves[curves["method"] == "critical momenta C=5"].sort_values("kappa")
    for _, variant in cm.groupby("variant"):
        assert (variant["rho"] < 1.0).all()
        assert variant["rho"].is_monotonic_increasing


def test_fixed_beta_is_never_better_than_optimal_beta(curves):
    pivot = curves.pivot_table(index=["method", "kappa"], columns="variant", values="rho")
    assert (pivot["beta=0.9"] >= pivot["optimal beta"] - 1e-9).all()


def test_heavy_ball_curve_in_the_frame_matches_the_closed_form(curves):
    hb = curves[(curves["method"] == "classical momentum") & (curves["variant"] == "optimal beta")]
    for kappa, rho in zip(hb["kappa"], hb["rho"]):
        assert rho == pytest.approx(heavy_ball_closed_form(kappa)[0], abs=1e-4)


def test_plot_rate_curves_writes_a_png(curves, tmp_path):
    path = cv.plot_rate_curves(curves, tmp_path / "fig3" / "rates.png")
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: cv.worst_case_radius("adam", 0.1, 0.9, 10.0), "unknown method"),
        (lambda: cv.worst_case_radius("momentum", 0.1, 0.9, 10.0, C=5), "no buffer"),
        (lambda: cv.worst_case_radius("momentum", 0.1, 0.9, 1.0), "kappa"),
        (lambda: cv.optimal_rate("momentum", 10.0, beta=1.0), "beta"),
        (lambda: cv.critical_momenta_matrix(0.1, 0.9, 1.0, C=0), "buffer size"),
    ],
)
def test_invalid_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call()
