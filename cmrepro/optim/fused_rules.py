"""Each optimizer's elementwise step over a bucket's flat tensors, written for ``torch.compile``.

The fused path (``fused=True``, see :mod:`cmrepro.optim.fused`) compiles one of
these functions per optimizer class into a single loop over the bucket's memory:
weight decay, the moments, the aggregate from the running sum, the write of the
already-decided buffer slot, the running-sum update and the parameter update.
They restate what each class's ``direction()`` (and ``_move``'s weight decay)
does on a step after the first, with every hyperparameter a tensor so that a
learning-rate change or a new step count reuses the compiled code. The tests
(tests/test_optim_fused.py) hold them to the per-parameter oracle and to the
eager path.

Arguments, the same for every rule:

- ``param``, ``grad``, ``total``: ``(N,)``; ``moments``: the class's moments, ``(N,)`` each;
- ``store``: either the buffer row of the decided slot, ``(N,)`` (the decision was read on
  the host), or the whole buffer ``(C, N)`` with ``slot`` a ``(1,)`` device tensor;
- ``insert``: 0-d bool, whether the offered value goes in; ``count``: ``(1,)`` stored
  elements before this step; ``step``: ``(1,)`` the step number ``t``, already counted;
- ``hyper``: ``(len(HYPER),)`` float64, the group's values in the order of :data:`HYPER`.
  Both weight-decay forms are arguments: the one a group does not use is 0, which
  leaves every value bit for bit unchanged (``theta * 1`` and ``g + 0 * theta``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

HYPER = ("lr", "beta1", "beta2", "eps", "decoupled_wd", "coupled_wd", "momentum", "dampening")


def _aggregate(value: Tensor, total: Tensor, count: Tensor) -> Tensor:
    """``value + mean(buffer)``, dividing by the number stored now (before this step's insertion)."""
    return value + total / count.to(total.dtype)


def _offer(store: Tensor, slot: Tensor, insert: Tensor, value: Tensor, total: Tensor) -> None:
    """Write ``value`` into the decided slot if admitted, and move the running sum by ``new - old``.

    A rejected offer writes the old values back, so the running sum changes by
    exactly zero. ``store.dim()`` is fixed per compiled variant.
    """
    old = store if store.dim() == 1 else store.index_select(0, slot).squeeze(0)
    new = torch.where(insert, value.to(store.dtype), old)
    total.add_(new.to(total.dtype) - old.to(total.dtype))
    if store.dim() == 1:
        store.copy_(new)
    else:
        store.index_copy_(0, slot, new.unsqueeze(0))


def _weight_decay(param: Tensor, grad: Tensor, lr: Tensor, decoupled: Tensor, coupled: Tensor) -> Tensor:
    """Decay ``param`` in place (decoupled form) and return ``grad + coupled * param`` (coupled form)."""
    grad = grad + coupled.to(param.dtype) * param
    param.mul_((1 - lr * decoupled).to(param.dtype))
    return grad


def _adam_step(numerator: Tensor, exp_avg_sq: Tensor, step: Tensor, lr, beta1, beta2, eps) -> Tensor:
    """``lr / (1 - beta1^t) * numerator / (sqrt(v) / sqrt(1 - beta2^t) + eps)``, in the eager path's form.

    As ``cmrepro.optim._adam.adam_update``: the step size folded into the
    denominator, the bias corrections computed in the parameters' dtype. ``lr == 0``
    (which the eager path skips) gives no move rather than ``0 * inf``.
    """
    dtype = numerator.dtype
    lr, beta1, beta2, eps = lr.to(dtype), beta1.to(dtype), beta2.to(dtype), eps.to(dtype)
    t = step.reshape(-1)[0].to(dtype)
    inverse_step = (1 - beta1**t) / lr
    scale = inverse_step / (1 - beta2**t).sqrt()
    update = numerator / (exp_avg_sq.sqrt() * scale + inverse_step * eps)
    return torch.where(lr > 0, update, torch.zeros_like(update))


def adam_cm(param, grad, moments, total, store, slot, insert, count, hyper, step) -> None:
    lr, beta1, beta2, eps, decoupled, coupled, _, _ = hyper.unbind()
    exp_avg, exp_avg_sq = moments
    dtype = param.dtype
    grad = _weight_decay(param, grad, lr, decoupled, coupled)
    exp_avg.lerp_(grad, (1 - beta1).to(dtype))
    aggr = _aggregate(exp_avg, total, count)
    _offer(store, slot, insert, exp_avg, total)
    exp_avg_sq.mul_(beta2.to(dtype)).addcmul_(aggr, aggr * (1 - beta2).to(dtype))
    param.sub_(_adam_step(aggr, exp_avg_sq, step, lr, beta1, beta2, eps))


def adam_cg(param, grad, moments, total, store, slot, insert, count, hyper, step) -> None:
    lr, beta1, beta2, eps, decoupled, coupled, _, _ = hyper.unbind()
    exp_avg, exp_avg_sq = moments
    dtype = param.dtype
    aggr = _aggregate(grad, total, count)
    _offer(store, slot, insert, grad, total)  # the raw gradient; weight decay enters after
    aggr = _weight_decay(param, aggr, lr, decoupled, coupled)
    exp_avg.lerp_(aggr, (1 - beta1).to(dtype))
    exp_avg_sq.mul_(beta2.to(dtype)).addcmul_(aggr, aggr * (1 - beta2).to(dtype))
    param.sub_(_adam_step(exp_avg, exp_avg_sq, step, lr, beta1, beta2, eps))


def sgd_cm(param, grad, moments, total, store, slot, insert, count, hyper, step) -> None:
    lr, _, _, _, decoupled, coupled, momentum, _ = hyper.unbind()
    (momentum_buffer,) = moments
    dtype = param.dtype
    grad = _weight_decay(param, grad, lr, decoupled, coupled)
    momentum_buffer.lerp_(grad, (1 - momentum).to(dtype))
    aggr = _aggregate(momentum_buffer, total, count)
    _offer(store, slot, insert, momentum_buffer, total)
    param.sub_(aggr * lr.to(dtype))


def sgd_cg(param, grad, moments, total, store, slot, insert, count, hyper, step) -> None:
    lr, _, _, _, decoupled, coupled, momentum, dampening = hyper.unbind()
    dtype = param.dtype
    d = _weight_decay(param, grad, lr, decoupled, coupled)  # stored with its weight decay
    aggr = _aggregate(d, total, count)
    _offer(store, slot, insert, d, total)
    if moments:  # heavy-ball momentum (momentum != 0) after aggregation, PyTorch's form
        (velocity,) = moments
        velocity.mul_(momentum.to(dtype)).add_(aggr * (1 - dampening).to(dtype))
        aggr = velocity
    param.sub_(aggr * lr.to(dtype))


Rule = Callable[..., None]

# Keyed by the name of the class that defines the rule's direction(); subclasses that
# keep that direction() inherit the rule.
RULES: dict[str, Rule] = {"AdamCM": adam_cm, "AdamCG": adam_cg, "SGDCM": sgd_cm, "SGDCG": sgd_cg}


def rule_for(optimizer_class: type) -> Rule | None:
    """The fused rule of ``optimizer_class``, or None when its ``direction()`` has none."""
    for cls in optimizer_class.__mro__:
        if cls.__name__ in RULES and "direction" in vars(cls):
            return RULES[cls.__name__] if optimizer_class.direction is cls.direction else None
    return None
