"""The oracle tests' optimizer settings and trajectory runner, shared by the fused-path tests."""

from __future__ import annotations

import torch
from helpers import set_grads

from cmrepro.optim import SGDCG, SGDCM, AdamCG, AdamCM

STEPS = 200

# Two groups with different hyperparameters: weight decay on in the first, off in the second.
HYPER = {
    "adam_cm": (
        AdamCM,
        [
            dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, decay=0.9, topC=3),
            dict(lr=0.03, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, decay=0.7, topC=2),
        ],
    ),
    "adam_cg": (
        AdamCG,
        [
            dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1, decay=0.9, topC=3),
            dict(lr=0.03, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.0, decay=0.7, topC=2),
        ],
    ),
    "sgd_cg": (
        SGDCG,
        [
            dict(lr=0.01, momentum=0.9, dampening=0.1, weight_decay=0.1, decay=0.9, topC=3),
            dict(lr=0.02, momentum=0.0, dampening=0.0, weight_decay=0.0, decay=0.7, topC=2),
        ],
    ),
    "sgd_cm": (
        SGDCM,
        [
            dict(lr=0.01, momentum=0.9, weight_decay=0.1, decay=0.9, topC=3),
            dict(lr=0.02, momentum=0.5, weight_decay=0.0, decay=0.7, topC=2),
        ],
    ),
}


# Parameter 4 (second group) has no gradient on its first steps and on every
# third step after: it joins its bucket late and skips steps.
def skipped(t: int) -> set[int]:
    return {4} if t < 2 or t % 3 == 0 else set()


def never(t: int) -> set[int]:
    return set()


def split_groups(params):
    return [params[:3], params[3:]]


def run_trajectory(step_fn, params, skip) -> list[torch.Tensor]:
    trajectory = []
    for t in range(STEPS):
        set_grads(params, t, skip=skip(t))
        step_fn()
        trajectory.append(torch.cat([p.detach().reshape(-1) for p in params]).clone())
    return trajectory


def max_gap(a, b) -> float:
    return max(float((x - y).abs().max()) for x, y in zip(a, b))
