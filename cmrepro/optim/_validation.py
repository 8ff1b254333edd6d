"""Hyperparameter checks shared by the optimizers: one ValueError per bad value.

Worded by ``cmrepro.validation`` (``invalid KEY: VALUE (must be ...)``), the package's one
standard-library leaf that ``cmrepro.optim`` imports: the optimizers stay free of the rest of cmrepro.
"""

from __future__ import annotations

import math

from torch import Tensor

from ..validation import check, is_integer, is_number


def _is_real(value: object) -> bool:
    return is_number(value) and math.isfinite(value)


def check_non_negative(name: str, value: object) -> None:
    check(_is_real(value) and value >= 0, name, value, "a finite number >= 0")


def check_positive(name: str, value: object) -> None:
    check(_is_real(value) and value > 0, name, value, "a finite number > 0")


def check_unit_interval(name: str, value: object, *, closed: bool) -> None:
    """``[0, 1]`` when ``closed``, else ``[0, 1)``."""
    ok = _is_real(value) and 0 <= value and (value <= 1 if closed else value < 1)
    check(ok, name, value, "in [0, 1]" if closed else "in [0, 1)")


def check_betas(value: object) -> None:
    check(isinstance(value, (tuple, list)) and len(value) == 2, "betas", value, "a pair (beta1, beta2)")
    for i, beta in enumerate(value):
        check_unit_interval(f"betas[{i}]", beta, closed=False)


def check_capacity(value: object) -> None:
    check(is_integer(value) and value >= 1, "topC", value, "a positive integer")


def check_learning_rate(lr: object) -> None:
    """A number >= 0, or a one-element floating tensor >= 0 (read once, here, as torch.optim.Adam does)."""
    if not isinstance(lr, Tensor):
        check_non_negative("lr", lr)
        return
    must = "a one-element floating tensor >= 0"
    check(lr.numel() == 1 and lr.is_floating_point(), "lr", lr, must)
    check(bool(math.isfinite(float(lr)) and float(lr) >= 0), "lr", lr, must)


def check_critical(lr, weight_decay, decay, topC) -> None:
    """Checks common to every critical-buffer optimizer."""
    check_learning_rate(lr)
    check_non_negative("weight_decay", weight_decay)
    check_unit_interval("decay", decay, closed=True)
    check_capacity(topC)
