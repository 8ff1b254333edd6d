"""SAM around any base optimizer: the perturbation, BatchNorm, state and schedulers."""

from __future__ import annotations

import pytest
import torch

from cmrepro.optim import SAM, AdamCM, frozen_batchnorm_statistics


def _problem():
    torch.manual_seed(0)
    x = torch.randn(32, 6, dtype=torch.float64)
    y = torch.randn(32, 1, dtype=torch.float64)
    model = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 1)).double()
    return model, x, y


def _grads(model, x, y):
    model.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()


def test_sam_cm_steps_the_base_optimizer_with_the_gradient_at_the_perturbed_point():
    rho = 0.1
    model, x, y = _problem()
    twin, _, _ = _problem()
    sam = SAM(model.parameters(), AdamCM, rho=rho, lr=0.01, topC=3)
    base = AdamCM(twin.parameters(), lr=0.01, topC=3)
    for _ in range(25):
        _grads(model, x, y)
        sam.step(lambda: _grads(model, x, y))

        _grads(twin, x, y)  # by hand: theta + rho g / ||g||, gradient there, back to theta
        params = list(twin.parameters())
        norm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params]))
        steps = [rho * p.grad / (norm + 1e-12) for p in params]
        with torch.no_grad():
            for p, e in zip(params, steps):
                p.add_(e)
        _grads(twin, x, y)
        with torch.no_grad():
            for p, e in zip(params, steps):
                p.sub_(e)
        base.step()
    for a, b in zip(model.parameters(), twin.parameters()):
        assert float((a - b).detach().abs().max()) < 1e-12
    assert float(sam.state[next(model.parameters())]["count"]) == 3  # the buffer filled


def _bn_model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 1))


@pytest.mark.parametrize("pass_model, forwards_per_step", [(True, 1), (False, 2)])
def test_batchnorm_statistics_are_updated_once_per_step_when_sam_knows_the_model(pass_model, forwards_per_step):
    model = _bn_model()
    bn = model[1]
    sam = SAM(model.parameters(), torch.optim.Adam, rho=0.05, lr=0.01, model=model if pass_model else None)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def closure():
        sam.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for step in range(3):
        closure()
        after_first_pass = bn.running_mean.clone()
        sam.step(closure)
        assert int(bn.num_batches_tracked) == forwards_per_step * (step + 1)
        assert torch.equal(bn.running_mean, after_first_pass) == pass_model


def test_frozen_batchnorm_statistics_restores_cumulative_averages():
    model = torch.nn.BatchNorm1d(3, momentum=None)
    model(torch.randn(8, 3))
    before = [t.clone() for t in (model.running_mean, model.running_var, model.num_batches_tracked)]
    with frozen_batchnorm_statistics(model):
        model(torch.randn(8, 3) * 5)
    for a, b in zip(before, (model.running_mean, model.running_var, model.num_batches_tracked)):
        assert torch.equal(a, b)


def test_state_dict_is_the_base_optimizers_and_resumes():
    model, x, y = _problem()
    sam = SAM(model.parameters(), AdamCM, rho=0.05, lr=0.01, topC=3)
    for _ in range(4):
        _grads(model, x, y)
        sam.step(lambda: _grads(model, x, y))
    state = sam.state_dict()
    assert state["param_groups"][0]["rho"] == 0.05 and state["param_groups"][0]["topC"] == 3
    assert {"buffer", "keys", "exp_avg"} <= set(state["state"][0])

    fresh = SAM(model.parameters(), AdamCM, rho=0.5, lr=0.5, topC=3)
    fresh.load_state_dict(state)
    assert fresh.param_groups is fresh.base_optimizer.param_groups
    assert fresh.param_groups[0]["rho"] == 0.05 and fresh.base_optimizer.param_groups[0]["lr"] == 0.01
    scheduler = torch.optim.lr_scheduler.StepLR(fresh, step_size=1, gamma=0.5)
    _grads(model, x, y)
    fresh.step(lambda: _grads(model, x, y))
    scheduler.step()
    assert fresh.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.005)


def test_param_groups_added_later_reach_the_base_optimizer():
    model, x, y = _problem()
    first, second = list(model[0].parameters()), list(model[2].parameters())
    sam = SAM(first, AdamCM, rho=0.05, lr=0.01)
    sam.add_param_group(dict(params=second, lr=0.02))
    assert len(sam.base_optimizer.param_groups) == 2
    assert sam.base_optimizer.param_groups[1]["rho"] == 0.05
    assert sam.base_optimizer.param_groups[1]["topC"] == 5
    _grads(model, x, y)
    sam.step(lambda: _grads(model, x, y))
    assert second[0] in sam.base_optimizer.state
