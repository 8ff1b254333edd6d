"""Toy runs use the real optimizers, one per run, and runs do not interact."""

from __future__ import annotations

import torch

from cmrepro.optim import AdamCM
from cmrepro.toy.batched_runs import run, uniform_starts
from cmrepro.toy.surfaces import surface


def test_a_run_is_the_optimizer_stepping_alone():
    f = surface("ackley")
    start = torch.tensor([[2.3, -1.7]], dtype=torch.float64)
    batched = run(f, "adam_cm", dict(lr=0.1, topC=5, decay=0.99), start, steps=60, lr_drop_step=30)

    x = start[0].clone().requires_grad_()
    opt = AdamCM([x], lr=0.1, topC=5, decay=0.99)
    for step in range(60):
        if step == 30:
            opt.param_groups[0]["lr"] *= 0.1
        opt.zero_grad()
        f(x).backward()
        opt.step()
    assert torch.equal(batched.final[0], x.detach())


def test_runs_are_independent_also_with_sam():
    f = surface("levy")
    starts = uniform_starts(f, 3, seed=1)
    together = run(f, "adam_sam_cm", dict(lr=0.1, rho=0.05, topC=5), starts, steps=40)
    for i in range(3):
        alone = run(f, "adam_sam_cm", dict(lr=0.1, rho=0.05, topC=5), starts[i : i + 1], steps=40)
        assert torch.equal(alone.points[:, 0], together.points[:, i])
    assert together.points.shape == (41, 3, 2) and together.losses.shape == (41, 3)
    assert torch.allclose(together.losses[-1], f(together.final))


def test_uniform_starts_are_seeded_and_inside_the_box():
    f = surface("goldstein_price")
    a, b = uniform_starts(f, 20, seed=3), uniform_starts(f, 20, seed=3)
    assert torch.equal(a, b) and not torch.equal(a, uniform_starts(f, 20, seed=4))
    assert float(a.min()) >= f.low and float(a.max()) <= f.high
