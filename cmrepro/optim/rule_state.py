"""What an update rule sees: the step counter(s), the moments and the critical buffer."""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from .buffer import CriticalBuffer


@dataclass
class RuleState:
    """What an update rule sees: counters, moments and the critical buffer."""

    step: Tensor  # float32 step counter(s), already incremented for this step
    moments: dict[str, Tensor]
    buffer: CriticalBuffer
    # Values that depend on the step only (bias corrections), computed once
    # per step and shared by the chunks of a bucket.
    memo: dict = field(default_factory=dict)

    @property
    def t(self) -> Tensor:
        """This step's number ``t`` (1 on the first step), as a 0-d tensor."""
        return self.step.reshape(-1)[0]
