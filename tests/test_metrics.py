"""The training-time analysis metrics against direct computations of their definitions."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from cmrepro.metrics import (
    BatchLoss,
    TrainingMetrics,
    buffer_metrics,
    distance_from,
    loss_for,
    m_sharpness,
    metrics_settings,
    sharpness,
    snapshot,
)
from cmrepro.metrics.batches import fixed_batches
from cmrepro.models.lstm import LSTMLanguageModel
from cmrepro.optim import SAM, AdamCM

CLASSIFICATION = loss_for("classification")


class Bound:
    """``model`` called with the parameters of a flat vector (its other attributes pass through)."""

    def __init__(self, model: nn.Module, theta: torch.Tensor) -> None:
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        pieces = theta.split([p.numel() for _, p in named])
        self.values = {**dict(model.named_buffers()), **{n: v.view_as(p) for (n, p), v in zip(named, pieces)}}
        self.model = model

    def __call__(self, *args):
        return functional_call(self.model, self.values, args)

    def __getattr__(self, name):
        return getattr(self.model, name)


def flat_parameters(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in model.parameters() if p.requires_grad])


def mean_loss(model, theta, batches, loss: BatchLoss) -> torch.Tensor:
    total = sum(loss.size(b) for b in batches)
    return sum(loss.loss(Bound(model, theta), b) * loss.size(b) / total for b in batches)


def exact_top_eigenvalue(model, batches, loss: BatchLoss) -> float:
    """From the full Hessian (torch.autograd.functional.hessian), in eval mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    hessian = torch.autograd.functional.hessian(
        lambda theta: mean_loss(model, theta, batches, loss), flat_parameters(model)
    )
    for m, training in modes:
        m.training = training
    return float(torch.linalg.eigvalsh(hessian.double())[-1])


def trained_batchnorm(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """Move the running statistics away from (0, 1), so eval mode differs from a fresh model."""
    model.train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(16, *shape) * 2 + 1)
    return model


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(6, 10), nn.Tanh(), nn.Linear(10, 3))


def mlp_batchnorm() -> nn.Module:
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.Tanh(), nn.Dropout(0.5), nn.Linear(8, 3))
    return trained_batchnorm(model, (6,))


def conv_batchnorm() -> nn.Module:
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Tanh(), nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 3)
    )
    return trained_batchnorm(model, (2, 5, 5))


def image_batches(shape: tuple[int, ...], count: int = 3, size: int = 12, seed: int = 0) -> list:
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, *shape, generator=g), torch.randint(0, 3, (size,), generator=g)) for _ in range(count)]


CASES = {
    "mlp": (mlp, (6,)),
    "mlp_batchnorm_dropout": (mlp_batchnorm, (6,)),
    "conv_batchnorm": (conv_batchnorm, (2, 5, 5)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_sharpness_is_the_exact_top_hessian_eigenvalue(case):
    torch.manual_seed(0)
    build, shape = CASES[case]
    model = build()
    batches = image_batches(shape, count=2, size=8)
    exact = exact_top_eigenvalue(model, batches, CLASSIFICATION)
    estimate = sharpness(model, batches, CLASSIFICATION, tol=1e-4, max_iterations=200)
    assert estimate.converged
    assert estimate.value == pytest.approx(exact, rel=1e-2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("case", list(CASES))
def test_sharpness_on_cuda_is_the_exact_top_hessian_eigenvalue(case):
    torch.manual_seed(0)
    build, shape = CASES[case]
    model = build()
    batches = image_batches(shape, count=2, size=8)  # left on the CPU: the metric moves them
    exact = exact_top_eigenvalue(model, batches, CLASSIFICATION)
    on_cpu = m_sharpness(model, batches, CLASSIFICATION, m=4, radius=0.05)
    estimate = sharpness(model.cuda(), batches, CLASSIFICATION, tol=1e-4, max_iterations=200)
    assert estimate.converged
    assert estimate.value == pytest.approx(exact, rel=1e-2)
    assert m_sharpness(model, batches, CLASSIFICATION, m=4, radius=0.05) == pytest.approx(on_cpu, rel=1e-3, abs=1e-6)


def test_language_model_sharpness_is_the_exact_top_hessian_eigenvalue():
    torch.manual_seed(0)
    model = LSTMLanguageModel(7, embedding_dim=3, hidden_dim=3)
    tokens = torch.randint(0, 7, (6, 4))
    batches = [(tokens[:-1], tokens[1:])]
    loss = loss_for("language_model")
    exact = exact_top_eigenvalue(model, batches, loss)
    assert sharpness(model, batches, loss, tol=1e-4, max_iterations=200).value == pytest.approx(exact, rel=1e-2)
    assert len(loss.split(batches[0], 2)) == 2  # language-model batches are cut along their sequences
    assert np.isfinite(m_sharpness(model, batches, loss, m=2, radius=0.05))


class Quadratic(nn.Module):
    """``loss = theta^T A theta / 2``: a Hessian with a chosen spectrum."""

    def __init__(self, eigenvalues: list[float]) -> None:
        super().__init__()
        q, _ = torch.linalg.qr(
            torch.randn(len(eigenvalues), len(eigenvalues), generator=torch.Generator().manual_seed(1))
        )
        self.register_buffer("a", q @ torch.diag(torch.tensor(eigenvalues)) @ q.T)
        self.theta = nn.Parameter(torch.randn(len(eigenvalues)))

    def forward(self, x):
        return 0.5 * self.theta @ self.a @ self.theta


def test_sharpness_is_the_largest_eigenvalue_not_the_largest_in_magnitude():
    # Power iteration would return -10 here; the Figure 8 sharpness is lambda_max = 3.
    quadratic = BatchLoss(lambda model, batch: model(batch[0]), batch_dim=0)
    model = Quadratic([-10.0, 1.0, 2.0, 3.0])
    estimate = sharpness(model, [(torch.zeros(1), torch.zeros(1))], quadratic, tol=1e-6, max_iterations=10)
    assert estimate.value == pytest.approx(3.0, rel=1e-5)


def model_state(model: nn.Module) -> tuple:
    flags = [m.training for m in model.modules()]
    return flags, {k: v.clone() for k, v in model.state_dict().items()}


def assert_same_state(model: nn.Module, before: tuple) -> None:
    flags, tensors = before
    assert [m.training for m in model.modules()] == flags
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in tensors.items())  # bit for bit, BatchNorm statistics too
    assert all(p.grad is None for p in model.parameters())


def rng_states() -> tuple:
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def assert_same_rng(before: tuple) -> None:
    torch_state, numpy_state, python_state = rng_states()
    assert torch.equal(torch_state, before[0]) and np.array_equal(numpy_state, before[1]) and python_state == before[2]


def test_metrics_leave_model_mode_parameters_statistics_and_rng_as_they_were():
    torch.manual_seed(0)
    model = conv_batchnorm()
    model[2].eval()  # a submodule the caller keeps in eval mode stays so; the rest returns to train
    before, rng = model_state(model), rng_states()
    batches = image_batches((2, 5, 5))
    sharpness(model, batches, CLASSIFICATION, max_iterations=5)
    m_sharpness(model, batches, CLASSIFICATION, m=4, radius=0.05)
    assert model.training and not model[2].training
    assert_same_state(model, before)
    assert_same_rng(rng)


def test_distance_from_the_initial_parameters_by_hand():
    model = nn.Linear(3, 2)
    model.frozen = nn.Parameter(torch.zeros(4), requires_grad=False)  # not trained, not counted
    initial = snapshot(model)
    with torch.no_grad():
        model.weight[0, 0] += 3.0
        model.bias[1] -= 4.0
        model.frozen += 100.0
    assert distance_from(initial, model) == pytest.approx(5.0, rel=1e-6)
    with torch.no_grad():
        model.weight[1, 2] += 12.0
    assert distance_from(initial, model) == pytest.approx(13.0, rel=1e-6)


def direct_m_sharpness(model, batches, m: int, radius: float) -> tuple[float, list[float]]:
    """Eq. 15 with the one-step inner maximum, on the flat parameter vector: the value, and the
    mean increase along random directions of the same radius (five draws)."""
    model.eval()
    theta = flat_parameters(model)
    increases, random_increases = [], []
    g = torch.Generator().manual_seed(3)
    for x, y in batches:
        for i in range(len(x) // m):
            xb, yb = x[i * m : (i + 1) * m], y[i * m : (i + 1) * m]

            def loss(t, xb=xb, yb=yb):
                return F.cross_entropy(Bound(model, t)(xb), yb)

            grad = torch.func.grad(loss)(theta)
            increases.append(float(loss(theta + radius * grad / grad.norm()) - loss(theta)))
            for _ in range(5):
                u = torch.randn(theta.shape, generator=g)
                random_increases.append(float(loss(theta + radius * u / u.norm()) - loss(theta)))
    model.train()
    return float(np.mean(increases)), random_increases


def test_m_sharpness_is_eq_15_with_one_normalised_ascent_step():
    torch.manual_seed(0)
    model = mlp_batchnorm()
    batches = image_batches((6,), count=2, size=14)  # 14 = 3 x 4 + 2: the remainder of each batch is left out
    value = m_sharpness(model, batches, CLASSIFICATION, m=4, radius=0.5)
    expected, random_directions = direct_m_sharpness(model, batches, m=4, radius=0.5)
    assert value == pytest.approx(expected, rel=1e-4, abs=1e-6)
    assert value > 0 and value > np.mean(random_directions)  # the ascent step is the near-worst direction


def fitted(optimizer_factory, steps: int = 6) -> torch.optim.Optimizer:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 2))
    optimizer = optimizer_factory(model.parameters())
    for _ in range(steps):
        x, y = torch.randn(8, 4), torch.randint(0, 2, (8,))

        def closure(x=x, y=y):
            optimizer.zero_grad()
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            return loss

        closure()
        optimizer.step(closure) if isinstance(optimizer, SAM) else optimizer.step()
    return optimizer


def test_buffer_metrics_are_absent_for_optimizers_without_a_buffer():
    assert buffer_metrics(fitted(lambda p: torch.optim.Adam(p, lr=1e-2))) == {}
    assert buffer_metrics(fitted(lambda p: SAM(p, torch.optim.Adam, rho=0.05, lr=1e-2))) == {}


def test_buffer_variance_and_cosine_follow_section_5_2():
    """The highest-norm stored element's mean cosine similarity with the others, and the
    per-coordinate variance across the stored elements, from the buffer's contents."""
    optimizer = fitted(lambda p: AdamCM(p, lr=1e-2, topC=4, decay=0.7))
    params = optimizer.param_groups[0]["params"]
    n = int(optimizer.state[params[0]]["count"])
    assert n >= 3
    elements = torch.cat([optimizer.state[p]["buffer"][:n].reshape(n, -1) for p in params], dim=1).double()
    norms = elements.norm(dim=1)
    lead = int(norms.argmax())
    cosines = [float(elements[lead] @ elements[j] / (norms[lead] * norms[j])) for j in range(n) if j != lead]
    variance = float(elements.var(dim=0, unbiased=False).mean())
    row = buffer_metrics(optimizer)
    assert row["buffer_cosine"] == pytest.approx(np.mean(cosines), rel=1e-6)
    assert row["buffer_variance"] == pytest.approx(variance, rel=1e-6)
    assert row["buffer_size"] == n and row["buffer_insertions"] >= n


def test_fixed_batches_are_reproducible_and_leave_the_rng_alone():
    def train(epoch):
        # Stands in for an augmenting loader: draws from the global generator.
        return iter([(torch.rand(2, 3), torch.tensor([0, 1])) for _ in range(5)])

    rng = rng_states()
    first, again = fixed_batches(train, 3, seed=4), fixed_batches(train, 3, seed=4)
    assert_same_rng(rng)
    assert len(first) == 3 and all(torch.equal(a[0], b[0]) for a, b in zip(first, again))
    assert not torch.equal(fixed_batches(train, 1, seed=5)[0][0], first[0][0])
    assert len(fixed_batches(train, 9, seed=4)) == 5  # an epoch shorter than asked: all of it


def test_tracker_computes_the_due_metrics_and_touches_nothing():
    torch.manual_seed(0)
    model = conv_batchnorm()
    batches = image_batches((2, 5, 5), count=4, size=8)
    settings = metrics_settings(
        {
            "every_n_epochs": 2,
            "distance": {"enabled": True},
            "buffer": {"enabled": True},
            "sharpness": {"enabled": True, "every_n_epochs": 3, "batches": 2, "max_iterations": 4},
            "m_sharpness": {"enabled": True, "every_n_epochs": 1, "batches": 1, "m": 4},
        }
    )
    tracker = TrainingMetrics(settings, model, lambda epoch: iter(batches), "classification", seed=0, epochs=5)
    assert len(tracker.batches) == 2
    optimizer = torch.optim.Adam(model.parameters())
    before, rng = model_state(model), rng_states()
    keys = {epoch: set(tracker.compute(epoch, model, optimizer)) for epoch in range(1, 6)}
    assert_same_state(model, before)
    assert_same_rng(rng)
    sharp = {"sharpness", "sharpness_iterations", "sharpness_time_s"}
    m_sharp = {"m_sharpness", "m_sharpness_time_s"}
    assert keys == {
        1: m_sharp,
        2: m_sharp | {"distance"},
        3: m_sharp | sharp,
        4: m_sharp | {"distance"},
        5: m_sharp | sharp | {"distance"},
    }
