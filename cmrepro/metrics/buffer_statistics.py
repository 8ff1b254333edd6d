"""Buffer variance and cosine similarity (Figure 8, bottom row), read from the optimizer.

The statistics themselves are defined and computed by the optimizers
(``CriticalOptimizer.diagnostics``, ``cmrepro.optim.buffer.buffer_statistics``):
the per-coordinate variance across the stored elements, averaged over
coordinates, and the mean cosine similarity between the stored element of
highest norm and each other one, the definition of Section 5.2.
"""

from __future__ import annotations

import math

from torch.optim import Optimizer

# Optimizer diagnostic -> metrics.jsonl key.
KEYS = {
    "buffer_variance": "buffer_variance",
    "buffer_cosine": "buffer_cosine",
    "buffer_size": "buffer_size",
    "insertions": "buffer_insertions",
}


def buffer_metrics(optimizer: Optimizer) -> dict[str, float | None]:
    """The buffer statistics, or ``{}`` for an optimizer without a critical buffer.

    Absent rather than zero, so a plot of Adam's buffer variance is empty, not
    a line at zero. An undefined value (the cosine while fewer than two
    elements are stored) is ``None`` (JSON null). ``buffer_insertions``
    counts insertions since the previous read, so it covers
    ``every_n_epochs`` epochs.
    """
    diagnostics = getattr(optimizer, "diagnostics", None)
    stats = diagnostics() if diagnostics is not None else {}
    row = {}
    for name, key in KEYS.items():
        if name in stats:
            value = float(stats[name])
            row[key] = value if math.isfinite(value) else None
    return row
