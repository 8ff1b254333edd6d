"""Momentum extragradient (MEG) around Adam and AdamCM, against a reference written from its equations."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from oracle import Oracle
from train_helpers import QUICK, compose_run

from cmrepro.optim import MEG, SAM, AdamCM, create_optimizer, needs_closure
from cmrepro.toy.batched_runs import run
from cmrepro.toy.surfaces import surface
from cmrepro.training import train

STEPS = 100

# Two groups: weight decay, its own extrapolation and heavy ball in the first; none of
# them (gamma = the group's lr, no heavy ball) in the second.
ADAM_GROUPS = [
    dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, gamma=0.05, heavy_ball=0.3),
    dict(lr=0.03, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, gamma=None, heavy_ball=0.0),
]
CM_GROUPS = [
    dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, decay=0.9, topC=3, gamma=0.05, heavy_ball=0.3),
    dict(lr=0.03, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, decay=0.7, topC=2, gamma=None, heavy_ball=0.0),
]


def _problem() -> tuple[list[torch.Tensor], callable]:
    """A small tanh network's parameters (float64) and its squared-error loss as a function of them."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=g, dtype=torch.float64), torch.randn(16, 1, generator=g, dtype=torch.float64)
    shapes = [(4, 5), (5,), (5, 1), (1,)]
    params = [torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_() for s in shapes]

    def loss_fn(w: list[torch.Tensor]) -> torch.Tensor:
        return ((torch.tanh(x @ w[0] + w[1]) @ w[2] + w[3] - y) ** 2).mean()

    return params, loss_fn


def _gradients(loss_fn, values: list[torch.Tensor]) -> list[torch.Tensor]:
    leaves = [v.detach().clone().requires_grad_() for v in values]
    return list(torch.autograd.grad(loss_fn(leaves), leaves))


class ReferenceMEG:
    """MEG written straight from its equations, parameter by parameter:

    w_half = w_t - gamma g(w_t);  w_{t+1} = w_t + base_step(w_t; g(w_half)) + m (w_t - w_{t-1}),
    where base_step is Adam with decoupled weight decay (``"adam"``) or the AdamCM oracle (``"adam_cm"``).
    """

    def __init__(self, base: str, values: list[torch.Tensor], groups: list[dict], loss_fn) -> None:
        self.w = [v.detach().clone() for v in values]
        self.split = [self.w[:2], self.w[2:]]
        self.groups, self.loss_fn, self.base = groups, loss_fn, base
        self.previous: dict[int, torch.Tensor] = {}
        self.adam: dict[int, dict] = {}
        if base == "adam_cm":
            oracle_groups = [{k: v for k, v in h.items() if k not in ("gamma", "heavy_ball")} for h in groups]
            self.oracle = Oracle("adam_cm", [dict(params=ps, **h) for ps, h in zip(self.split, oracle_groups)])

    def step(self) -> None:
        g = _gradients(self.loss_fn, self.w)
        half = []
        for i, w in enumerate(self.w):
            group = self.groups[0 if i < 2 else 1]
            gamma = group["lr"] if group["gamma"] is None else group["gamma"]
            half.append(w - gamma * g[i])
        g_half = _gradients(self.loss_fn, half)
        before = [w.clone() for w in self.w]
        if self.base == "adam_cm":
            for w, gh in zip(self.w, g_half):
                w.grad = gh
            self.oracle.step()
        else:
            for i, w in enumerate(self.w):
                self._adam(i, w, g_half[i], self.groups[0 if i < 2 else 1])
        for i, w in enumerate(self.w):
            m = self.groups[0 if i < 2 else 1]["heavy_ball"]
            if m and i in self.previous:
                w.add_(m * (before[i] - self.previous[i]))
            if m:
                self.previous[i] = before[i]

    def _adam(self, i: int, w: torch.Tensor, grad: torch.Tensor, group: dict) -> None:
        s = self.adam.setdefault(i, dict(t=0, m=torch.zeros_like(w), v=torch.zeros_like(w)))
        beta1, beta2 = group["betas"]
        s["t"] += 1
        s["m"] = beta1 * s["m"] + (1 - beta1) * grad
        s["v"] = beta2 * s["v"] + (1 - beta2) * grad * grad
        m_hat = s["m"] / (1 - beta1 ** s["t"])
        v_hat = s["v"] / (1 - beta2 ** s["t"])
        w.mul_(1 - group["lr"] * group["weight_decay"])
        w.sub_(group["lr"] * m_hat / (v_hat.sqrt() + group["eps"]))


def _meg(base: str, params: list[torch.Tensor], groups: list[dict]) -> MEG:
    dicts = [dict(params=params[:2], **groups[0]), dict(params=params[2:], **groups[1])]
    extra = {"decoupled_weight_decay": True} if base == "adam" else {}
    return create_optimizer({"adam": "adam_meg", "adam_cm": "adam_meg_cm"}[base], dicts, **extra)


def _step(opt: MEG, params: list[torch.Tensor], loss_fn) -> None:
    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = loss_fn(params)
        loss.backward()
        return loss

    closure()
    opt.step(closure)


@pytest.mark.parametrize("base, groups", [("adam", ADAM_GROUPS), ("adam_cm", CM_GROUPS)])
def test_meg_matches_the_reference_written_from_its_equations(base, groups):
    params, loss_fn = _problem()
    reference = ReferenceMEG(base, params, groups, loss_fn)
    opt = _meg(base, params, groups)
    assert isinstance(opt, MEG) and type(opt.base_optimizer) is (AdamCM if base == "adam_cm" else torch.optim.Adam)
    start = [p.detach().clone() for p in params]
    for _ in range(STEPS):
        _step(opt, params, loss_fn)
        reference.step()
    for p, w, p0 in zip(params, reference.w, start):
        assert float((p.detach() - w).abs().max()) < 1e-10
        assert float((p.detach() - p0).abs().max()) > 1e-3  # the parameters did move
    if base == "adam_cm":
        assert reference.oracle.replacements() > 0  # the buffers filled and replaced


def test_the_extrapolated_gradient_drives_the_step_on_a_quadratic():
    """f(w) = a w^2 / 2 with gamma a = 2: g(w_half) = a w0 (1 - gamma a) = -a w0, so Adam's first
    step (lr g / (|g| + eps) for any g) goes uphill by lr, where plain Adam goes downhill."""
    a, w0, lr, gamma, eps = 4.0, 1.5, 0.1, 0.5, 1e-8
    w = torch.tensor([w0], dtype=torch.float64, requires_grad=True)
    opt = create_optimizer("adam_meg", [w], lr=lr, gamma=gamma, eps=eps)
    _step(opt, [w], lambda v: 0.5 * a * (v[0] ** 2).sum())
    g_half = a * w0 * (1 - gamma * a)
    assert float(w.detach()) == pytest.approx(w0 - lr * g_half / (abs(g_half) + eps), abs=1e-15)
    assert float(w.detach()) == pytest.approx(w0 + lr, abs=1e-9)

    plain = torch.tensor([w0], dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([plain], lr=lr, eps=eps)
    (0.5 * a * plain**2).sum().backward()
    adam.step()
    assert float(plain.detach()) == pytest.approx(w0 - lr, abs=1e-9)


def test_heavy_ball_adds_m_times_the_last_displacement():
    w = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = create_optimizer("sgd_meg", [w], lr=0.1, gamma=0.1, heavy_ball=0.5)
    points = [float(w.detach())]
    for _ in range(3):
        _step(opt, [w], lambda v: 0.5 * (v[0] ** 2).sum())
        points.append(float(w.detach()))
    # SGD step from w_t with g(w_half) = 0.9 w_t, plus 0.5 (w_t - w_{t-1}) from the second step on.
    expected = [1.0]
    for t in range(3):
        previous = expected[t - 1] if t else expected[0]
        expected.append(expected[t] - 0.1 * 0.9 * expected[t] + 0.5 * (expected[t] - previous))
    assert points == pytest.approx(expected, abs=1e-15)


def test_state_dict_round_trip_resumes_bitwise():
    params, loss_fn = _problem()
    opt = _meg("adam_cm", params, CM_GROUPS)
    for _ in range(10):
        _step(opt, params, loss_fn)
    saved = copy.deepcopy(opt.state_dict())
    assert set(saved["meg_previous"]) == {0, 1}  # w_{t-1} of the heavy-ball group only
    assert saved["param_groups"][0]["gamma"] == 0.05 and saved["param_groups"][1]["heavy_ball"] == 0.0

    twins = [p.detach().clone().requires_grad_() for p in params]
    other = [dict(CM_GROUPS[0], lr=0.5, gamma=1.0, heavy_ball=0.0), CM_GROUPS[1]]
    fresh = _meg("adam_cm", twins, other)
    fresh.load_state_dict(saved)
    assert fresh.param_groups is fresh.base_optimizer.param_groups and fresh.param_groups[0]["gamma"] == 0.05
    for _ in range(10):
        _step(opt, params, loss_fn)
        _step(fresh, twins, loss_fn)
    for a, b in zip(params, twins):
        assert torch.equal(a.detach(), b.detach())


def test_a_scheduler_reaches_the_base_optimizer_and_gamma_none_follows_the_lr():
    params, loss_fn = _problem()
    opt = create_optimizer("adam_meg", params, lr=0.01)
    scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.1)
    _step(opt, params, loss_fn)
    scheduler.step()
    assert opt.base_optimizer.param_groups[0]["lr"] == pytest.approx(0.001)
    before = [p.detach().clone() for p in params]
    seen = []

    def closure() -> torch.Tensor:
        seen.append([p.detach().clone() for p in params])
        opt.zero_grad()
        loss = loss_fn(params)
        loss.backward()
        return loss

    closure()
    grads = [p.grad.clone() for p in params]
    opt.step(closure)
    for half, w, g in zip(seen[1], before, grads):  # extrapolated by the scheduled lr
        assert torch.allclose(half, w - 0.001 * g, rtol=0, atol=1e-15)


@pytest.mark.parametrize("pass_model, forwards_per_step", [(True, 1), (False, 2)])
def test_batchnorm_statistics_are_updated_once_per_step_when_meg_knows_the_model(pass_model, forwards_per_step):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    opt = create_optimizer("adam_meg", model.parameters(), lr=0.01, model=model if pass_model else None)
    x, y = torch.randn(16, 4), torch.randn(16, 1)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    for step in range(3):
        closure()
        opt.step(closure)
        assert int(model[1].num_batches_tracked) == forwards_per_step * (step + 1)


def test_a_missing_closure_and_bad_hyperparameters_are_one_line_errors():
    w = torch.zeros(2, requires_grad=True)
    opt = create_optimizer("adam_meg", [w])
    w.grad = torch.ones(2)
    with pytest.raises(ValueError, match=r"MEG.step\(\) needs a closure"):
        opt.step()
    with pytest.raises(ValueError, match=r"invalid gamma: 0 \(must be a finite number > 0\)"):
        create_optimizer("adam_meg", [w], gamma=0)
    with pytest.raises(ValueError, match=r"invalid heavy_ball: 1.0 \(must be in \[0, 1\)\)"):
        create_optimizer("adam_meg_cm", [w], heavy_ball=1.0)
    with pytest.raises(ValueError, match=r"invalid heavy_ball: -0.1"):
        opt.add_param_group(dict(params=[torch.zeros(1, requires_grad=True)], heavy_ball=-0.1))
    with pytest.raises(ValueError, match=r"invalid gamma for 'adam_cm': only the MEG variants \(adam_meg_cm\)"):
        create_optimizer("adam_cm", [w], gamma=0.1)
    with pytest.raises(ValueError, match=r"invalid rho for 'adam_meg': only the SAM variants \(adam_sam\)"):
        create_optimizer("adam_meg", [w], rho=0.1)


def test_needs_closure_names_the_wrappers_only():
    w = [torch.zeros(2, requires_grad=True)]
    assert needs_closure(create_optimizer("adam_meg_cm", w)) and needs_closure(create_optimizer("adam_sam", w))
    assert isinstance(create_optimizer("adam_sam_cm", w), SAM)
    assert not needs_closure(create_optimizer("adam_cm", w)) and not needs_closure(torch.optim.Adam(w))


def test_the_toy_runner_drives_meg_through_its_closure():
    f = surface("ackley")
    starts = torch.tensor([[1.3, -0.7], [2.2, 0.4]], dtype=torch.float64)
    hyper = dict(lr=0.1, betas=(0.9, 0.99))
    meg = run(f, "adam_meg", dict(hyper, gamma=0.1), starts, steps=20)
    adam = run(f, "adam", hyper, starts, steps=20)
    assert meg.points.shape == (21, 2, 2) and torch.isfinite(meg.losses).all()
    assert not torch.allclose(meg.final, adam.final)


@pytest.mark.parametrize("optimizer", ["adam_meg", "adam_meg_cm"])
def test_a_short_training_run_with_meg_finishes(optimizer, tmp_path):
    overrides = ["dataset=synthetic_image", f"optimizer={optimizer}", *QUICK]
    cfg = compose_run(
        [*overrides, "trainer.epochs=1", "trainer.lr_milestones=[]", "trainer.max_steps_per_epoch=2"], tmp_path
    )
    assert cfg["optimizer"]["gamma"] is None and cfg["optimizer"]["heavy_ball"] == 0.0
    result = train(cfg, tmp_path)
    assert result["status"] == "done" and result["epochs_completed"] == 1
    assert math.isfinite(result["final"]["train_loss"])
