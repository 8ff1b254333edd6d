"""Deterministic gradients for optimizer tests, independent of any model."""

from __future__ import annotations

import torch

SHAPES = [(5, 3), (5,), (2, 5), (2,), (4, 4)]


def make_params(dtype=torch.float64, shapes=SHAPES, seed=0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(*s, generator=g, dtype=dtype).requires_grad_() for s in shapes]


def set_grads(params, t: int, skip=()) -> None:
    """A gradient that depends on theta (so trajectories feed back) plus seeded noise.

    Parameters whose index is in ``skip`` get ``grad = None``. The noise scale
    changes with t so the priority keys rise and fall and the buffers replace.
    """
    for i, p in enumerate(params):
        if i in skip:
            p.grad = None
            continue
        noise = torch.randn(p.shape, generator=torch.Generator().manual_seed(7919 * t + i), dtype=p.dtype)
        scale = 1.0 + 0.9 * torch.sin(torch.tensor(0.37 * t + i, dtype=p.dtype))
        p.grad = (torch.sin(3 * p.detach()) + 0.3 * p.detach() + scale * noise).to(p.dtype)
