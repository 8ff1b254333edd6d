"""The toy surfaces: minima of Appendix A.2.1 and the exact-Hessian sharpness."""

from __future__ import annotations

import math

import pytest
import torch

from cmrepro.toy.hessian import hessian_top_eigenvalue
from cmrepro.toy.surfaces import SURFACES, surface, two_minima


def _grid(low, high, n=801):
    axis = torch.linspace(low, high, n, dtype=torch.float64)
    return torch.stack(torch.meshgrid(axis, axis, indexing="ij"), dim=-1)


@pytest.mark.parametrize("name", sorted(SURFACES))
def test_global_minimum_value_and_location(name):
    s = SURFACES[name]
    at_minimum = s(torch.tensor(s.minimum, dtype=torch.float64))
    assert float(at_minimum) == pytest.approx(s.minimum_value, abs=1e-4)
    # Nothing on a grid over the box (and around the minimum) is lower.
    for low, high in [(s.low, s.high), (s.minimum[0] - 0.5, s.minimum[0] + 0.5)]:
        values = s(_grid(low, high))
        assert float(values.min()) >= s.minimum_value - 1e-4


def test_minima_stated_in_the_paper():
    assert float(surface("ackley")(torch.zeros(2))) == pytest.approx(0.0, abs=1e-6)
    assert float(surface("levy")(torch.ones(2))) == pytest.approx(0.0, abs=1e-12)
    value = (math.log(3) - 8.693) / 2.427
    assert float(surface("goldstein_price")(torch.tensor([0.0, -1.0], dtype=torch.float64))) == pytest.approx(value)
    # Eq. 14 as printed has its minimum near, not at, the paper's (2.1, 3.9).
    ar = surface("ackley_rosenbrock")
    assert float(ar(torch.tensor([2.1, 3.9], dtype=torch.float64))) > float(
        ar(torch.tensor(ar.minimum, dtype=torch.float64))
    )


def test_two_minima_has_a_flat_and_a_sharp_minimum():
    f = surface("two_minima", s=10, dim=3)
    assert float(f(torch.zeros(3))) == 0 and float(f(torch.ones(3))) == 0
    x = torch.tensor([0.1, 0.9])
    assert torch.allclose(two_minima(10)(x[:, None]), torch.tensor([0.01, 0.1]))  # 0.1^2 vs 10 * 0.1^2
    with pytest.raises(ValueError, match="invalid two_minima parameters"):
        surface("two_minima", s=0.5, dim=1)


def test_batched_evaluation_matches_pointwise():
    points = torch.randn(7, 2, dtype=torch.float64)
    for s in SURFACES.values():
        assert torch.allclose(s(points), torch.stack([s(p) for p in points]))


def test_sharpness_against_hand_computed_hessians():
    # Quadratic: Hessian diag(2, 6) -> 6.
    quadratic = lambda x: x[..., 0] ** 2 + 3 * x[..., 1] ** 2  # noqa: E731
    assert torch.allclose(
        hessian_top_eigenvalue(quadratic, torch.randn(4, 2)), torch.full((4,), 6.0, dtype=torch.float64)
    )
    # f_s near its sharp minimum: 2s per coordinate; near the flat one: 2.
    f = two_minima(10.0)
    points = torch.tensor([[0.95, 1.02], [0.01, -0.03]], dtype=torch.float64)
    assert torch.allclose(hessian_top_eigenvalue(f, points), torch.tensor([20.0, 2.0], dtype=torch.float64))
    # Levy at its minimum: d^2/dx1^2 of sin^2(pi w1) = 2 pi^2 / 16 plus the (w1 - 1)^2 term's 2 (1 + 10 sin^2(1)) / 16.
    expected = max(2 * math.pi**2 / 16 + 2 * (1 + 10 * math.sin(1) ** 2) / 16, 2 * 1 / 16)
    assert float(hessian_top_eigenvalue(surface("levy"), torch.ones(1, 2))[0]) == pytest.approx(expected)
