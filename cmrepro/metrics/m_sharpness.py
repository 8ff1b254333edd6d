"""m-sharpness (Foret et al., 2021; the paper's Appendix A.3.1, eq. 15).

    (1/n) sum_M  max_{||eps||_2 <= r}  (1/m) sum_{s in M} [L_s(theta + eps) - L_s(theta)]

over ``n`` mini-batches ``M`` of ``m`` training examples. The inner maximum
is approximated as SAM does, by one normalised ascent step from ``theta``:
``eps_M = r * g_M / ||g_M||`` with ``g_M`` the gradient of the mini-batch
loss, the maximiser of the loss's first-order expansion on the ball. It is a
lower bound of the true maximum up to second-order terms (exact for a linear
loss). ``||.||`` is the norm over all trainable parameters together.

Losses are taken in eval mode: ``L_s`` is then a function of example ``s``
alone, as the sum over ``s`` in eq. 15 assumes (BatchNorm in train mode would
couple the examples of a mini-batch through its statistics).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .contexts import evaluation_mode, restored_parameters, trainable_parameters
from .losses import Batch, BatchLoss, on_device

# Guards the normalisation at a stationary point (SAM's own epsilon).
GRAD_NORM_EPS = 1e-12


def m_sharpness(model: nn.Module, batches: Sequence[Batch], loss: BatchLoss, *, m: int, radius: float) -> float:
    """Mean over the size-``m`` mini-batches cut from ``batches`` of the one-step worst-case loss increase.

    Parameters are restored bit for bit and train/eval flags are kept.
    """
    params = trainable_parameters(model)
    device = params[0].device
    increases = []
    with evaluation_mode(model), loss.kernels(), restored_parameters(params) as restore:
        for batch in batches:
            for mini in loss.split(on_device(batch, device), m):
                increases.append(_worst_case_increase(model, params, mini, loss, radius))
                restore()
    if not increases:
        raise ValueError(f"no mini-batch of m={m} examples fits in the batches given")
    return float(torch.stack(increases).mean())


def _worst_case_increase(model, params, batch: Batch, loss: BatchLoss, radius: float) -> torch.Tensor:
    """``L_M(theta + eps_M) - L_M(theta)``; leaves the parameters at ``theta + eps_M`` (the caller restores)."""
    at_theta = loss.loss(model, batch)
    grads = torch.autograd.grad(at_theta, params, allow_unused=True)
    grads = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, params)]
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    with torch.no_grad():
        torch._foreach_add_(params, torch._foreach_mul(grads, radius / (norm + GRAD_NORM_EPS)))
        return loss.loss(model, batch).double() - at_theta.detach().double()
