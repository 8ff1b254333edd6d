"""SGD with critical momenta (SGD+CM), Section 5.3 of the paper.

Not in the official package. The paper defines it as the momentum of eq. 4
aggregated with the critical momenta and applied with eq. 8; the rest is
built in the style of the official ``Adam_CM``:

- ``m_t = beta m + (1 - beta) g`` (eq. 4, with its ``1 - beta`` factor);
- ``aggr = m_t + mean(buffer)`` (read before insertion), ``m_t`` offered to
  the buffer, ``theta -= lr * aggr`` (eq. 8);
- the first step stores the raw gradient and does not move the parameter,
  the key is the official key and decays after every step, and weight decay
  is decoupled, as in Adam+CM (``decoupled_weight_decay=False``: coupled L2,
  ``g + weight_decay * theta`` in place of ``g``, as in Adam+CM).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import CriticalOptimizer, RuleState
from ._validation import check_critical, check_unit_interval


class SGDCM(CriticalOptimizer):
    """SGD+CM. ``momentum`` is ``beta`` of eq. 4, in ``[0, 1)``; weight decay as in :class:`~cmrepro.optim.AdamCM`."""

    decoupled_weight_decay = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        decay: float = 0.7,
        topC: int = 5,
        *,
        foreach: bool | None = None,
        buffer_dtype: torch.dtype | None = None,
        fused: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        decoupled_weight_decay: bool = True,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            weight_decay=weight_decay,
            decay=decay,
            topC=topC,
            foreach=foreach,
            buffer_dtype=buffer_dtype,
            fused=fused,
            decoupled_weight_decay=decoupled_weight_decay,
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        check_critical(group["lr"], group["weight_decay"], group["decay"], group["topC"])
        check_unit_interval("momentum", group["momentum"], closed=False)

    def moment_names(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",)

    def direction(self, group: dict, state: RuleState, grad: Tensor, theta: Tensor | None, first: bool):
        buffer = state.buffer
        if theta is not None:  # coupled L2, as in Adam+CM
            grad = grad.add(theta, alpha=group["weight_decay"])
        if first:
            buffer.offer_(grad)
            return None
        momentum = state.moments["momentum_buffer"]
        momentum.lerp_(grad, 1 - group["momentum"])
        aggr = buffer.aggregate(momentum)
        buffer.offer_(momentum)
        return aggr.mul_(group["lr"])
