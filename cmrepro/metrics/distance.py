"""How far the parameters went: two meanings of the paper's "distance travelled".

- :func:`distance_from`: ``||theta_t - theta_0||``, the straight-line distance from the initial
  point (what Figure 8, top right, plots: see docs/analysis.md);
- :class:`PathLength`: ``sum_t ||theta_{t+1} - theta_t||``, the length of the path itself, summed
  over every optimizer step. It is at least the distance, and equal to it only for a straight move.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .contexts import trainable_parameters


def snapshot(model: nn.Module) -> list[Tensor]:
    """A copy of the trainable parameters, to measure the distance from later."""
    return [p.detach().clone() for p in trainable_parameters(model)]


@torch.no_grad()
def distance_from(initial: list[Tensor], model: nn.Module) -> float:
    """``||theta - theta_0||_2`` over all trainable parameters taken as one vector (float64 sum)."""
    params = trainable_parameters(model)
    if len(params) != len(initial):
        raise ValueError(f"the model has {len(params)} trainable parameters, the snapshot {len(initial)}")
    squares = [torch.sub(p, p0).double().square().sum() for p, p0 in zip(params, initial)]
    return float(torch.stack(squares).sum().sqrt()) if squares else 0.0


class PathLength:
    """The cumulative path length of the trainable parameters, one term per optimizer step.

    :meth:`advance` after every step adds ``||theta - theta_previous||_2`` (all parameters as one
    vector) and moves ``theta_previous`` to ``theta``. Per step that is three passes over the
    parameters on the device (a subtraction, a norm, a copy) and no host synchronisation, plus
    one more copy of the parameters in memory: on one CPU thread 46 ms for a CIFAR ResNet34
    (a third of a foreach Adam step, about 1% of a training step at batch 64), cheap enough to be exact
    rather than sampled at epoch ends, which would cut the corners of the path. Each tensor's
    norm is taken in its own dtype (float64 norms of float32 tensors cost twice the whole rest)
    and the sum of squares in float64.
    """

    def __init__(self, model: nn.Module) -> None:
        self.params = trainable_parameters(model)
        self.previous = snapshot(model)
        device = self.params[0].device if self.params else torch.device("cpu")
        self.total = torch.zeros((), dtype=torch.float64, device=device)
        self.norm_dtype = torch.float64 if any(p.dtype == torch.float64 for p in self.params) else torch.float32

    @torch.no_grad()
    def advance(self) -> None:
        """Add the move since the previous call (or since construction / :meth:`load_state_dict`)."""
        if not self.params:
            return
        torch._foreach_sub_(self.previous, self.params)  # previous := theta_previous - theta
        norms = torch._foreach_norm(self.previous, 2, dtype=self.norm_dtype)
        self.total += torch.stack(norms).double().square().sum().sqrt()
        torch._foreach_copy_(self.previous, self.params)

    def value(self) -> float:
        return float(self.total)

    def state_dict(self) -> dict:
        return {"path_length": self.value()}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        """Resume the sum; call it after the model's checkpoint is loaded, so the next step is measured
        from the parameters the run stopped at (they are the ones it measured last)."""
        self.total.fill_(state["path_length"])
        torch._foreach_copy_(self.previous, self.params)
