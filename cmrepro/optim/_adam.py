"""The Adam update shared by Adam+CM and Adam+CG."""

from __future__ import annotations

from torch import Tensor

from ._base import CriticalOptimizer, RuleState
from ._validation import check_betas, check_critical, check_non_negative


class CriticalAdam(CriticalOptimizer):
    """What Adam+CM and Adam+CG share: hyperparameters and moments."""

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
    if group["lr"] == 0:  # the folded step size would divide by zero
        return None
    inverse_step, scale, offset = bias_corrections(state, group, exp_avg_sq.dtype)
    return numerator, exp_avg_sq.sqrt().mul_(scale).add_(offset)


def bias_corrections(state: RuleState, group: dict, dtype) -> tuple[Tensor, Tensor, Tensor]:
    """``(1 / step_size, scale, offset)`` with ``denominator = sqrt(v) * scale + offset``, once per step.

    ``step_size = lr / (1 - beta1^t)``; ``scale = 1 / (step_size sqrt(1 - beta2^t))``;
    ``offset = eps / step_size``.
    """
    if "adam" not in state.memo:
        beta1, beta2 = group["betas"]
        t = state.t.to(dtype)
        inverse_step = (1 - beta1**t) / group["lr"]
        scale = inverse_step / (1 - beta2**t).sqrt()
        state.memo["adam"] = (inverse_step, scale, inverse_step * group["eps"])
    return state.memo["adam"]
