"""The Adam update shared by Adam+CM and Adam+CG."""

from __future__ import annotations

from torch import Tensor

from ._base import CriticalOptimizer
from ._validation import check_betas, check_critical, check_non_negative


class CriticalAdam(CriticalOptimizer):
    """What Adam+CM and Adam+CG share: hyperparameters and moments."""

    def _check_group(self, group: dict) -> None:
        check_critical(group["lr"], group["weight_decay"], group["decay"], group["topC"])
        check_betas(group["betas"])
        check_non_negative("eps", group["eps"])

    def moment_names(self, group: dict) -> tuple[str, ...]:
        return ("exp_avg", "exp_avg_sq")


def adam_update(numerator: Tensor, exp_avg_sq: Tensor, t: Tensor, group: dict) -> Tensor:
    """``lr / (1 - beta1^t) * numerator / (sqrt(v / (1 - beta2^t)) + eps)`` (eq. 2 / 7).

    ``t`` is the step counter tensor, so the bias corrections are computed on
    the device: no host synchronisation and safe under CUDA-graph capture.
    """
    beta1, beta2 = group["betas"]
    t = t.to(exp_avg_sq.dtype)
    bias1 = 1 - beta1**t
    bias2 = 1 - beta2**t
    denom = (exp_avg_sq.sqrt() / bias2.sqrt()).add_(group["eps"])
    return (numerator / denom).mul_(group["lr"] / bias1)
