"""Hyperparameter checks shared by the optimizers: one ValueError per bad value."""

from __future__ import annotations

import math
from numbers import Integral, Real


def _fail(name: str, value: object, rule: str) -> None:
    raise ValueError(f"invalid {name}: {value!r} (must be {rule})")


def _is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def check_non_negative(name: str, value: object) -> None:
    if not _is_real(value) or value < 0:
        _fail(name, value, "a finite number >= 0")


def check_positive(name: str, value: object) -> None:
    if not _is_real(value) or value <= 0:
        _fail(name, value, "a finite number > 0")


def check_unit_interval(name: str, value: object, *, closed: bool) -> None:
    """``[0, 1]`` when ``closed``, else ``[0, 1)``."""
    ok = _is_real(value) and 0 <= value and (value <= 1 if closed else value < 1)
    if not ok:
        _fail(name, value, "in [0, 1]" if closed else "in [0, 1)")


def check_betas(value: object) -> None:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        _fail("betas", value, "a pair (beta1, beta2)")
    for i, beta in enumerate(value):
        check_unit_interval(f"betas[{i}]", beta, closed=False)


def check_capacity(value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        _fail("topC", value, "a positive integer")


def check_critical(lr, weight_decay, decay, topC) -> None:
    """Checks common to every critical-buffer optimizer."""
    check_non_negative("lr", lr)
    check_non_negative("weight_decay", weight_decay)
    check_unit_interval("decay", decay, closed=True)
    check_capacity(topC)
