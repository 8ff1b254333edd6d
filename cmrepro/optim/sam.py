"""Sharpness-aware minimisation (Foret et al., 2021) around any base optimizer.

``SAM(params, AdamCM, rho=0.05, lr=1e-3, ...)`` is Adam+SAM+CM: the base
optimizer steps with the gradient taken at the perturbed point
``theta + rho * g / ||g||``, so a critical buffer sees (and keys on) the
perturbed gradient, as in the paper's Adam+SAM+CM.

Usage: compute the loss and ``backward()`` at ``theta`` as usual, then call
``optimizer.step(closure)`` where the closure zeroes the gradients, evaluates
the loss again and calls ``backward()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import Optimizer

from ._validation import check_positive
from .wrapper import OptimizerWrapper


@contextmanager
def frozen_batchnorm_statistics(module: nn.Module) -> Iterator[None]:
    """Run a block without changing any BatchNorm running statistics.

    The statistics are saved and restored exactly (also ``num_batches_tracked``),
    which is correct for every ``momentum``, ``None`` (cumulative average) included.
    """
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [[b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)] for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, tracked) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(tracked)


class SAM(OptimizerWrapper):
    """Wrap ``base_optimizer`` into its sharpness-aware version.

    Args:
        params: parameters or param-group dicts (a group may set its own ``rho``).
        base_optimizer: an optimizer class (or any callable ``(param_groups, **kwargs)``).
        rho: radius of the perturbation, > 0.
        model: the module being trained. When given, BatchNorm running
            statistics are updated by the user's forward pass at ``theta`` only:
            the perturbed forward pass inside :meth:`step` leaves them unchanged.
            Without it they are updated by both passes.
        group_norm: normalise each param group's perturbation by the norm of
            that group's gradient, as if every group were a separate model
            (independent runs batched in one optimizer); default: one norm
            over all groups (Foret et al.).
        **kwargs: hyperparameters of the base optimizer.

    The param groups and ``state`` are the base optimizer's own, so learning-rate schedulers
    wrapping this object drive the base optimizer; :meth:`state_dict` is the
    base optimizer's (with ``rho`` in its groups); ``defaults`` has both optimizers' keys.
    """

    kept = ("model", "group_norm")

    def __init__(
        self,
        params,
        base_optimizer: Callable[..., Optimizer],
        rho: float = 0.05,
        *,
        model: nn.Module | None = None,
        group_norm: bool = False,
        **kwargs,
    ) -> None:
        check_positive("rho", rho)
        self.group_norm = group_norm
        super().__init__(params, dict(rho=rho, **kwargs))
        self._wrap(base_optimizer, kwargs)
        self.model = model

    def _fill_group(self, param_group: dict) -> None:
        param_group.setdefault("rho", self.defaults["rho"])
        check_positive("rho", param_group["rho"])

    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor:
        """Perturb, re-evaluate the gradient with ``closure``, restore, base step.

        Returns the loss at the perturbed point. Without any gradient there is nothing
        to perturb: the closure is still evaluated and the base optimizer steps on
        what it left (nothing, for a closure that does not call ``backward()``).
        """
        if closure is None:
            raise missing_closure("SAM", "perturbed")
        params, origin = self._perturb()
        frozen = frozen_batchnorm_statistics(self.model) if self.model is not None else nullcontext()
        with torch.enable_grad(), frozen:
            loss = closure()
        if params:
            torch._foreach_copy_(params, origin)  # back to theta exactly, not by subtraction
        self._base_step()
        return loss

    def _perturb(self) -> tuple[list[Tensor], list[Tensor]]:
        """Move to ``theta + rho * g / ||g||``; ``||g||`` is the norm over all groups. Returns copies of theta."""
        groups = [[p for p in g["params"] if p.grad is not None] for g in self.param_groups]
        grads = [p.grad for ps in groups for p in ps]
        if not grads:
            return [], []
        device = grads[0].device
        dtype = torch.float64 if any(g.dtype in (torch.float64, torch.complex128) for g in grads) else torch.float32

        def norm_of(tensors: list[Tensor]) -> Tensor:
            return torch.linalg.vector_norm(torch.stack([n.to(device, dtype) for n in torch._foreach_norm(tensors)]))

        grad_norm = None if self.group_norm else norm_of(grads)
        params, origin = [], []
        for group, ps in zip(self.param_groups, groups):
            if not ps:
                continue
            norm = norm_of([p.grad for p in ps]) if self.group_norm else grad_norm
            # maximize: the base ascends, so the sharpness it sees is that of -loss
            scale = (-group["rho"] if group.get("maximize") else group["rho"]) / (norm + 1e-12)
            origin += [p.detach().clone() for p in ps]
            # theta += g * scale in one pass, without a temporary the size of the model
            torch._foreach_addcmul_(ps, [p.grad for p in ps], [scale.to(p.device, p.real.dtype) for p in ps])
            params += ps
        return params, origin


def missing_closure(wrapper: str, point: str) -> ValueError:
    """The one-line error of a two-gradient wrapper (SAM, MEG) stepped without its closure."""
    return ValueError(
        f"{wrapper}.step() needs a closure: it must re-evaluate the loss at the {point} "
        "parameters and call backward(), e.g. optimizer.step(lambda: loss_fn(model(x), y).backward() ...)"
    )
