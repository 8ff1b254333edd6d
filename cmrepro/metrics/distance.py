"""Distance travelled: the L2 distance of the parameters from their initial values (Figure 8, top right)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .contexts import trainable_parameters


def snapshot(model: nn.Module) -> list[Tensor]:
    """A copy of the trainable parameters, to measure the distance from later."""
    return [p.detach().clone() for p in trainable_parameters(model)]


@torch.no_grad()
def distance_from(initial: list[Tensor], model: nn.Module) -> float:
    """``||theta - theta_0||_2`` over all trainable parameters taken as one vector (float64 sum)."""
    params = trainable_parameters(model)
    if len(params) != len(initial):
        raise ValueError(f"the model has {len(params)} trainable parameters, the snapshot {len(initial)}")
    squares = [torch.sub(p, p0).double().square().sum() for p, p0 in zip(params, initial)]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0
