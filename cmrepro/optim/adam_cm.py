"""Adam with critical momenta (Adam+CM), Algorithm 1 of the paper.

As the official ``Adam_CM`` does (see docs/optimizers.md for each departure
from the paper's equations):

- the first step of a parameter stores its raw gradient in the buffer and does
  not move it (apart from weight decay); ``t`` becomes 1;
- later steps: ``m_t = beta1 m + (1 - beta1) g``; ``aggr = m_t + mean(buffer)``
  (buffer read before insertion); ``m_t`` is offered to the buffer;
  ``v_t = beta2 v + (1 - beta2) aggr^2``; the update uses ``aggr`` and ``v_t``
  with Adam's bias corrections at ``t``;
- weight decay is decoupled (AdamW style); ``decoupled_weight_decay=False``
  gives coupled L2 instead: ``g + weight_decay * theta`` replaces ``g``
  everywhere (buffer, moments), as ``torch.optim.Adam``'s L2 does;
- keys decay by ``decay`` after every step.
"""

from __future__ import annotations

from torch import Tensor

from ._adam import CriticalAdam, adam_update
from ._base import RuleState


class AdamCM(CriticalAdam):
    """Adam+CM. Arguments and defaults follow the official ``Adam_CM``.

    Args:
        params: parameters or param-group dicts.
        lr: learning rate ``alpha``.
        betas: ``(beta1, beta2)``.
        eps: added to the denominator.
        weight_decay: decoupled weight decay (L2 when ``decoupled_weight_decay`` is false).
        decay: priority-key decay ``lambda`` per step, in ``[0, 1]``.
        topC: buffer capacity ``C`` (default 5).
        foreach: use the multi-tensor (flat) path where it applies.
        buffer_dtype: dtype of the stored momenta (e.g. ``torch.bfloat16``);
            ``None`` keeps the parameter's dtype.
        fused: ``True``: each bucket's elementwise step as one compiled kernel
            (:mod:`cmrepro.optim.fused`); ``None``/``False``: the eager path.
        decoupled_weight_decay: the official AdamW-style decay; ``False``: coupled L2.
    """

    decoupled_weight_decay = True
    default_topC = 5

    def direction(self, group: dict, state: RuleState, grad: Tensor, theta: Tensor | None, first: bool):
        buffer = state.buffer
        if theta is not None:  # coupled L2: the rule sees the regularised loss's gradient
            grad = grad.add(theta, alpha=group["weight_decay"])
        if first:
            buffer.offer_(grad)
            return None
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state.moments["exp_avg"], state.moments["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        aggr = buffer.aggregate(exp_avg)
        buffer.offer_(exp_avg)
        exp_avg_sq.mul_(beta2).addcmul_(aggr, aggr, value=1 - beta2)
        return adam_update(aggr, exp_avg_sq, state, group)
