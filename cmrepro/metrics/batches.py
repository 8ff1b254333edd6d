"""The fixed set of training batches that sharpness and m-sharpness are measured on."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from itertools import islice

import torch

from .contexts import preserved_rng
from .losses import Batch

# A seed stream of its own: the set must not be the batches a run trains on
# first, nor change when the training streams do.
SEED_OFFSET = 0x5EED_0F_5E7


def fixed_batches(train: Callable[[int], Iterable], count: int, seed: int) -> list[Batch]:
    """The first ``count`` batches of an epoch-0 pass over the training data (fewer if the epoch is shorter).

    Drawn with the global generators seeded from ``seed`` and restored
    afterwards, so the set is the same whenever it is drawn again (a resumed
    run redraws it) and drawing it does not change the training's random
    streams. Augmentation applies as in training. Kept on the CPU.
    """
    with preserved_rng():
        # The CPU generator only: torch.manual_seed would also queue a CUDA re-seed for later.
        torch.random.default_generator.manual_seed(seed + SEED_OFFSET)
        return [tuple(t.detach().cpu() for t in batch) for batch in islice(iter(train(0)), count)]
