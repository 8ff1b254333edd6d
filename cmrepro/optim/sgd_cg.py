"""SGD with critical gradients (SGD+CG, McRae et al. 2022), eq. 10.

As the official ``SGD_C`` does:

- ``d = g (+ weight_decay * theta)``, or, with ``decoupled_weight_decay=True``,
  ``d = g`` and ``theta *= 1 - lr * weight_decay`` as in SGD+CM; the first step stores ``d`` and uses it
  as is; later steps use ``aggr = d + mean(buffer)`` (read before insertion)
  and offer ``d`` to the buffer;
- heavy-ball momentum in PyTorch's form (with ``dampening``) is applied to the
  result afterwards; ``theta -= lr * d``;
- keys decay by ``decay`` after every step, except that ``decay == 0`` skips
  the decay (an official quirk: the keys then keep their values).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import CriticalOptimizer, RuleState
from ._validation import check_critical, check_non_negative


class SGDCG(CriticalOptimizer):
    """SGD+CG. ``momentum`` and ``dampening`` as in ``torch.optim.SGD``; ``weight_decay`` is L2 unless
    ``decoupled_weight_decay``."""

    skip_zero_decay = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        decay: float = 0.7,
        topC: int = 10,
        *,
        foreach: bool | None = None,
        buffer_dtype: torch.dtype | None = None,
        fused: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        decoupled_weight_decay: bool = False,
    ) -> None:
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
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
        check_non_negative("momentum", group["momentum"])
        check_non_negative("dampening", group["dampening"])

    def moment_names(self, group: dict) -> tuple[str, ...]:
        return ("momentum_buffer",) if group["momentum"] else ()

    def direction(self, group: dict, state: RuleState, grad: Tensor, theta: Tensor | None, first: bool):
        buffer = state.buffer
        d = grad if theta is None else grad.add(theta, alpha=group["weight_decay"])
        aggr = d if first else buffer.aggregate(d)
        buffer.offer_(d)
        momentum = group["momentum"]
        if momentum:
            velocity = state.moments["momentum_buffer"]
            if first:
                velocity.copy_(aggr)
            else:
                velocity.mul_(momentum).add_(aggr, alpha=1 - group["dampening"])
            aggr = velocity
        return aggr.mul(group["lr"])
