"""Momentum extragradient (Kim, Gidel, Kyrillidis and Pedregosa, 2022) around any base optimizer.

MEG, for a gradient field ``g``, with step ``h``, extrapolation ``gamma`` and momentum ``m``::

    w_{t+1/2} = w_t - gamma * g(w_t)
    w_{t+1}   = w_t - h * g(w_{t+1/2}) + m * (w_t - w_{t-1})

The paper (Appendix A.2.1, "Adam+MEG") prints no equations for its Adam version.
Here the base optimizer's step takes the place of ``- h * g``; the extrapolation
and the heavy-ball term are MEG's own::

    w_{t+1/2} = w_t - gamma * g(w_t)                              (raw gradient, as MEG)
    w_{t+1}   = w_t + base_step(w_t; g(w_{t+1/2})) + m * (w_t - w_{t-1})

``base_step`` is one step of the base optimizer from ``w_t`` fed the gradient
taken at ``w_{t+1/2}``: for Adam, its moments average the extrapolated
gradients and its weight decay acts on ``w_t``; for AdamCM (Adam+MEG+CM) the
critical buffer is keyed on, and stores momenta of, the extrapolated gradient.
``gamma=None`` uses the group's current learning rate (extragradient with
equal steps, and schedulers scale both); ``m = 0`` by default, since Adam's
first moment is already a momentum (docs/optimizers.md, "MEG").

Usage, as :class:`~cmrepro.optim.SAM`: compute the loss and ``backward()`` at
``w_t``, then ``optimizer.step(closure)`` where the closure zeroes the
gradients, evaluates the loss again and calls ``backward()``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from ._validation import check_positive, check_unit_interval
from .sam import frozen_batchnorm_statistics, missing_closure
from .wrapper import OptimizerWrapper

# The top-level state_dict entry holding w_{t-1} per parameter index (heavy_ball > 0 only).
PREVIOUS_KEY = "meg_previous"


def _check_group(group: dict) -> None:
    if group["gamma"] is not None:
        check_positive("gamma", group["gamma"])
    check_unit_interval("heavy_ball", group["heavy_ball"], closed=False)


class MEG(OptimizerWrapper):
    """Wrap ``base_optimizer`` into its momentum-extragradient version.

    Args:
        params: parameters or param-group dicts (a group may set its own
            ``gamma`` and ``heavy_ball``).
        base_optimizer: an optimizer class (or any callable ``(param_groups, **kwargs)``).
        gamma: extrapolation step on the raw gradient, > 0; ``None``: the group's ``lr``.
        heavy_ball: MEG's momentum ``m`` on ``w_t - w_{t-1}``, in ``[0, 1)``.
        model: the module being trained. When given, BatchNorm running
            statistics are updated by the user's forward pass at ``w_t`` only,
            as with :class:`~cmrepro.optim.SAM`.
        **kwargs: hyperparameters of the base optimizer.

    The param groups and ``state`` are the base optimizer's, so schedulers drive
    it; :meth:`state_dict` is the base optimizer's plus ``w_{t-1}`` under
    ``"meg_previous"`` when ``heavy_ball > 0``.
    """

    kept = ("model", "previous")

    def __init__(
        self,
        params,
        base_optimizer: Callable[..., Optimizer],
        gamma: float | None = None,
        heavy_ball: float = 0.0,
        *,
        model: nn.Module | None = None,
        **kwargs,
    ) -> None:
        super().__init__(params, dict(gamma=gamma, heavy_ball=heavy_ball, **kwargs))
        self._wrap(base_optimizer, kwargs)
        self.model = model
        # w_{t-1} per parameter: kept here, not in the base optimizer's state, which
        # the critical-buffer optimizers re-pack into their own flat storage.
        self.previous: dict[Tensor, Tensor] = {}

    def _fill_group(self, param_group: dict) -> None:
        param_group.setdefault("gamma", self.defaults["gamma"])
        param_group.setdefault("heavy_ball", self.defaults["heavy_ball"])
        _check_group(param_group)

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """Extrapolate, re-evaluate the gradient with ``closure``, restore, base step, heavy ball.

        Returns the loss at the extrapolated point.
        """
        if closure is None:
            raise missing_closure("MEG", "extrapolated")
        moved = [(group, [p for p in group["params"] if p.grad is not None]) for group in self.param_groups]
        moved = [(group, ps) for group, ps in moved if ps]
        origins = [self._extrapolate(group, ps) for group, ps in moved]
        frozen = frozen_batchnorm_statistics(self.model) if self.model is not None else nullcontext()
        with torch.enable_grad(), frozen:
            loss = closure()
        for (_, ps), origin in zip(moved, origins):
            torch._foreach_copy_(ps, origin)  # back to w_t exactly, not by subtraction
        self._base_step()
        for (group, ps), origin in zip(moved, origins):
            self._heavy_ball(group, ps, origin)
        return loss

    def _extrapolate(self, group: dict, ps: list[Tensor]) -> list[Tensor]:
        """Move ``ps`` to ``w_t - gamma * g(w_t)``; returns copies of ``w_t``."""
        origin = [p.detach().clone() for p in ps]
        gamma = group["lr"] if group["gamma"] is None else group["gamma"]
        ascent = group.get("maximize", False)  # the base ascends: extrapolate up the gradient too
        torch._foreach_add_(ps, [p.grad for p in ps], alpha=float(gamma) if ascent else -float(gamma))
        return origin

    def _heavy_ball(self, group: dict, ps: list[Tensor], origin: list[Tensor]) -> None:
        """Add ``m * (w_t - w_{t-1})`` (nothing on a parameter's first step) and remember ``w_t``."""
        m = group["heavy_ball"]
        if m == 0:
            return
        with_previous = [(p, w) for p, w in zip(ps, origin) if p in self.previous]
        if with_previous:
            params, current = zip(*with_previous)
            displacement = torch._foreach_sub(list(current), [self.previous[p] for p in params])
            torch._foreach_add_(list(params), displacement, alpha=m)
        self.previous.update(zip(ps, origin))

    def _params(self) -> list[Tensor]:
        """The parameters in state_dict order (groups, then their params)."""
        return [p for group in self.param_groups for p in group["params"]]

    def _save(self) -> dict:
        state = self.base_optimizer.state_dict()
        index = {p: i for i, p in enumerate(self._params())}
        state[PREVIOUS_KEY] = {index[p]: w for p, w in self.previous.items() if p in index}
        return state

    def _load(self, state_dict: dict) -> None:
        state_dict = dict(state_dict)
        previous = state_dict.pop(PREVIOUS_KEY, {})
        self.base_optimizer.load_state_dict(state_dict)
        params = self._params()
        self.previous = {params[i]: w.to(params[i].device, params[i].dtype, copy=True) for i, w in previous.items()}
