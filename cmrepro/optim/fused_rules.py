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

Each rule comes in two parts. ``*_scalars(hyper, step, count)`` turns the
group's hyperparameters, the step number and the number of stored elements into
the few per-step scalars the loop needs (bias corrections, decay factors), as
a 1-D tensor, with tensor operations only (no host read). The loop itself,
``rule(param, grad, moments, total, store, slot, insert, scalars)``, is what
gets compiled: computing ``beta ** t`` inside it would repeat two ``pow`` per
16 elements on a CPU, where the compiled loop does not hoist them.

- ``param``, ``grad``, ``total``: ``(N,)``; ``moments``: the class's moments, ``(N,)`` each;
- ``store``: either the buffer row of the decided slot, ``(N,)`` (the decision was read on
  the host), or the whole buffer ``(C, N)`` with ``slot`` a ``(1,)`` device tensor;
- ``insert``: 0-d bool, whether the offered value goes in;
- ``hyper``: ``(len(HYPER),)`` float64, the group's values in the order of :data:`HYPER`.
  Both weight-decay forms are arguments: the one a group does not use is 0, which
  leaves every value bit for bit unchanged (``theta * 1`` and ``g + 0 * theta``);
- ``step``: ``(1,)`` the step number ``t``, already counted; ``count``: ``(1,)`` the
  number of stored elements before this step's insertion.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

HYPER = ("lr", "beta1", "beta2", "eps", "decoupled_wd", "coupled_wd", "momentum", "dampening")


def _aggregate(value: Tensor, total: Tensor, n: Tensor) -> Tensor:
    """``value + mean(buffer)``, dividing by the number stored now (before this step's insertion)."""
    return value + total / n


def _offer(store: Tensor, slot: Tensor | None, insert: Tensor, value: Tensor, total: Tensor) -> None:
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


def _weight_decay(param: Tensor, grad: Tensor, shrink: Tensor, coupled: Tensor) -> Tensor:
    """Shrink ``param`` in place (decoupled form) and return ``grad + coupled * param`` (coupled form)."""
    grad = grad + coupled * param
    param.mul_(shrink)
    return grad


def _common(hyper: Tensor, count: Tensor) -> tuple[Tensor, ...]:
    """``(lr, shrink = 1 - lr * decoupled_wd, coupled_wd, n)`` and the rest of ``hyper``."""
    lr, beta1, beta2, eps, decoupled, coupled, momentum, dampening = hyper.unbind()
    n = count.reshape(-1)[0].to(hyper.dtype)
    return lr, 1 - lr * decoupled, coupled, n, beta1, beta2, eps, momentum, dampening


def adam_scalars(hyper: Tensor, step: Tensor, count: Tensor) -> Tensor:
    """``(shrink, coupled, 1 - beta1, beta2, 1 - beta2, n, scale, offset, gain)``.

    Adam's step as the eager path folds it (``cmrepro.optim._adam``): the update is
    ``gain * numerator / (sqrt(v) * scale + offset)`` with ``scale = (1 - beta1^t) /
    (lr sqrt(1 - beta2^t))`` and ``offset = eps (1 - beta1^t) / lr``. ``lr == 0``, which
    the eager path skips, gives ``gain = 0`` and finite ``scale``, ``offset``: no move.
    """
    lr, shrink, coupled, n, beta1, beta2, eps, _, _ = _common(hyper, count)
    t = step.reshape(-1)[0].to(hyper.dtype)
    moves = lr > 0
    inverse_step = torch.where(moves, (1 - beta1**t) / torch.where(moves, lr, 1.0), 1.0)
    scale = inverse_step / (1 - beta2**t).sqrt()
    gain = moves.to(hyper.dtype)
    return torch.stack([shrink, coupled, 1 - beta1, beta2, 1 - beta2, n, scale, inverse_step * eps, gain])


def sgd_scalars(hyper: Tensor, step: Tensor, count: Tensor) -> Tensor:
    """``(shrink, coupled, momentum, 1 - momentum, 1 - dampening, n, lr)``."""
    lr, shrink, coupled, n, _, _, _, momentum, dampening = _common(hyper, count)
    return torch.stack([shrink, coupled, momentum, 1 - momentum, 1 - dampening, n, lr])


def adam_cm(param, grad, moments, total, store, slot, insert, scalars) -> None:
    shrink, coupled, one_minus_beta1, beta2, one_minus_beta2, n, scale, offset, gain = scalars.unbind()
    exp_avg, exp_avg_sq = moments
    grad = _weight_decay(param, grad, shrink, coupled)
    exp_avg.lerp_(grad, one_minus_beta1)
    aggr = _aggregate(exp_avg, total, n)
    _offer(store, slot, insert, exp_avg, total)
    exp_avg_sq.mul_(beta2).addcmul_(aggr, aggr * one_minus_beta2)
    param.sub_(aggr * gain / (exp_avg_sq.sqrt() * scale + offset))


def adam_cg(param, grad, moments, total, store, slot, insert, scalars) -> None:
    shrink, coupled, one_minus_beta1, beta2, one_minus_beta2, n, scale, offset, gain = scalars.unbind()
    exp_avg, exp_avg_sq = moments
    aggr = _aggregate(grad, total, n)
    _offer(store, slot, insert, grad, total)  # the raw gradient; weight decay enters after
    aggr = _weight_decay(param, aggr, shrink, coupled)
    exp_avg.lerp_(aggr, one_minus_beta1)
    exp_avg_sq.mul_(beta2).addcmul_(aggr, aggr * one_minus_beta2)
    param.sub_(exp_avg * gain / (exp_avg_sq.sqrt() * scale + offset))


def sgd_cm(param, grad, moments, total, store, slot, insert, scalars) -> None:
    shrink, coupled, _, one_minus_momentum, _, n, lr = scalars.unbind()
    (momentum_buffer,) = moments
    grad = _weight_decay(param, grad, shrink, coupled)
    momentum_buffer.lerp_(grad, one_minus_momentum)
    aggr = _aggregate(momentum_buffer, total, n)
    _offer(store, slot, insert, momentum_buffer, total)
    param.sub_(aggr * lr)


def sgd_cg(param, grad, moments, total, store, slot, insert, scalars) -> None:
    shrink, coupled, momentum, _, one_minus_dampening, n, lr = scalars.unbind()
    d = _weight_decay(param, grad, shrink, coupled)  # stored with its weight decay
    aggr = _aggregate(d, total, n)
    _offer(store, slot, insert, d, total)
    if moments:  # heavy-ball momentum (momentum != 0) after aggregation, PyTorch's form
        (velocity,) = moments
        velocity.mul_(momentum).add_(aggr * one_minus_dampening)
        aggr = velocity
    param.sub_(aggr * lr)


@dataclass(frozen=True)
class FusedRule:
    """A class's compiled loop and the per-step scalars it reads."""

    loop: Callable[..., None]
    scalars: Callable[[Tensor, Tensor, Tensor], Tensor]

    @property
    def name(self) -> str:
        return self.loop.__name__


# Keyed by the name of the class that defines the rule's direction(); subclasses that
# keep that direction() inherit the rule.
RULES: dict[str, FusedRule] = {
    "AdamCM": FusedRule(adam_cm, adam_scalars),
    "AdamCG": FusedRule(adam_cg, adam_scalars),
    "SGDCM": FusedRule(sgd_cm, sgd_scalars),
    "SGDCG": FusedRule(sgd_cg, sgd_scalars),
}


def rule_for(optimizer_class: type) -> FusedRule | None:
    """The fused rule of ``optimizer_class``, or None when its ``direction()`` has none."""
    for cls in optimizer_class.__mro__:
        if cls.__name__ in RULES and "direction" in vars(cls):
            return RULES[cls.__name__] if optimizer_class.direction is cls.direction else None
    return None
