"""The Adam update shared by Adam+CM and Adam+CG."""

from __future__ import annotations

import torch
from torch import Tensor

from ._base import CriticalOptimizer, RuleState
from ._validation import check_betas, check_critical, check_non_negative


class CriticalAdam(CriticalOptimizer):
    """What Adam+CM and Adam+CG share: the constructor, hyperparameters and moments.

    A subclass sets its official defaults as class attributes: :attr:`default_topC`
    and :attr:`decoupled_weight_decay`; ``None`` for either argument takes them.
    """

    #: The buffer capacity ``C`` when ``topC`` is not given (the official package's default).
    default_topC: int = 5

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        decay: float = 0.7,
        topC: int | None = None,
        *,
        foreach: bool | None = None,
        buffer_dtype: torch.dtype | None = None,
        fused: bool | None = None,
        decoupled_weight_decay: bool | None = None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        **unknown,
    ) -> None:
        if unknown:  # Python would name this shared constructor; the message names the class the user called,
            # worded as Python words it for SGDCM's own constructor and torch.optim.Adam's.
            name = next(iter(unknown))
            raise TypeError(f"{type(self).__name__}.__init__() got an unexpected keyword argument {name!r}")
        defaults = dict(
            lr=lr,
            betas=betas,
            eps=eps,
            weight_decay=weight_decay,
            decay=decay,
            topC=self.default_topC if topC is None else topC,
            foreach=foreach,
            buffer_dtype=buffer_dtype,
            fused=fused,
            decoupled_weight_decay=(
                type(self).decoupled_weight_decay if decoupled_weight_decay is None else decoupled_weight_decay
            ),
            maximize=maximize,
            capturable=capturable,
            differentiable=differentiable,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict) -> None:
        check_critical(group["lr"], group["weight_decay"], group["decay"], group["topC"])
        check_betas(group["betas"])
        check_non_negative("eps", group["eps"])

    def moment_names(self, group: dict) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")


def adam_update(numerator: Tensor, exp_avg_sq: Tensor, state: RuleState, group: dict) -> tuple[Tensor, Tensor] | None:
    """Adam's step ``lr / (1 - beta1^t) * numerator / (sqrt(v / (1 - beta2^t)) + eps)`` (eq. 2 / 7).

    Returned as ``(numerator, denominator)`` with the step size folded into
    the denominator, ``(sqrt(v) / sqrt(1 - beta2^t) + eps) * (1 - beta1^t) / lr``,
    so the parameter update is a single ``addcdiv``. The bias corrections come
    from the step counter tensor, on the device: no host synchronisation,
    safe under CUDA-graph capture.
    """
    if not isinstance(group["lr"], Tensor) and group["lr"] == 0:  # the folded step size would divide by zero
        return None
    inverse_step, scale, offset = bias_corrections(state, group, exp_avg_sq.dtype)
    return numerator, exp_avg_sq.sqrt().mul_(scale).add_(offset)


def bias_corrections(state: RuleState, group: dict, dtype) -> tuple[Tensor, Tensor, Tensor]:
    """``(1 / step_size, scale, offset)`` with ``denominator = sqrt(v) * scale + offset``, once per step.

    ``step_size = lr / (1 - beta1^t)``; ``scale = 1 / (step_size sqrt(1 - beta2^t))``;
    ``offset = eps / step_size``. A tensor ``lr`` of 0 (not known on the host) gives
    ``scale = 0`` and ``offset = inf``: the denominator is ``inf`` and the parameter
    does not move, bit for bit, as with a Python 0.
    """
    if "adam" not in state.memo:
        beta1, beta2 = group["betas"]
        t = state.t.to(dtype)
        lr = group["lr"]
        inverse_step = (1 - beta1**t) / lr
        scale = inverse_step / (1 - beta2**t).sqrt()
        offset = inverse_step * group["eps"]
        if isinstance(lr, Tensor):
            moves = lr.to(t.device) > 0
            scale, offset = torch.where(moves, scale, 0.0), torch.where(moves, offset, torch.inf)
        state.memo["adam"] = (inverse_step, scale, offset)
    return state.memo["adam"]
