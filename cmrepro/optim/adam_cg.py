"""Adam with critical gradients (Adam+CG, McRae et al. 2022), eq. 3.

As the official ``Adam_C`` does:

- the first step of a parameter stores its raw gradient and feeds that
  gradient itself to the moments (no aggregation yet);
- later steps: ``aggr = g + mean(buffer)`` (read before insertion), the raw
  ``g`` is offered to the buffer, and ``aggr`` replaces the gradient in Adam's
  moments;
- weight decay is coupled L2: ``weight_decay * theta`` is added to the
  aggregate, after the buffer saw the raw gradient
  (``decoupled_weight_decay=True``: AdamW style instead, as Adam+CM);
- keys decay by ``decay`` after every step.
"""

from __future__ import annotations

from torch import Tensor

from ._adam import CriticalAdam, adam_update
from ._base import RuleState


class AdamCG(CriticalAdam):
    """Adam+CG. Arguments as :class:`~cmrepro.optim.AdamCM` (the constructor is
    :class:`~cmrepro.optim._adam.CriticalAdam`'s), with the official ``Adam_C``'s defaults:
    ``topC=10``, and ``weight_decay`` as L2 unless ``decoupled_weight_decay`` (as in
    ``torch.optim.Adam``)."""

    default_topC = 10

    def direction(self, group: dict, state: RuleState, grad: Tensor, theta: Tensor | None, first: bool):
        buffer = state.buffer
        aggr = grad if first else buffer.aggregate(grad)
        buffer.offer_(grad)
        if theta is not None:
            aggr = aggr.add(theta, alpha=group["weight_decay"])
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state.moments["exp_avg"], state.moments["exp_avg_sq"]
        exp_avg.lerp_(aggr, 1 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(aggr, aggr, value=1 - beta2)
        return adam_update(exp_avg, exp_avg_sq, state, group)
