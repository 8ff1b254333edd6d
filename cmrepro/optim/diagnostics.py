"""The buffer statistics of Figure 8, read from a critical-buffer optimizer's buckets.

:class:`BufferDiagnostics` is a mixin of :class:`~cmrepro.optim._base.CriticalOptimizer`
(it reads the buckets through ``_group_buckets`` and unpacks packed groups with
``_rebuild_buckets``); ``step()`` never calls it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .buffer import buffer_gram, buffer_statistics


class BufferDiagnostics:
    """``optimizer.diagnostics()``: buffer variance, cosine similarity, stored elements, insertions."""

    @torch.no_grad()
    def diagnostics(self) -> dict[str, Tensor]:
        """Buffer statistics of Figure 8, as 0-d tensors on the device.

        Tensors, so that reading them costs no host synchronisation; for Python
        floats (logging), ``{k: v.item() for k, v in optimizer.diagnostics().items()}``,
        where each ``.item()`` waits for the device.

        - ``buffer_variance``: per coordinate, the variance across the stored
          elements (divided by their number ``n``), averaged over coordinates;
        - ``buffer_cosine``: mean cosine similarity between the stored element
          of highest norm and each other stored element, where an element is
          one slot taken across all parameters of a param group;
        - ``buffer_size``: number of stored elements (mean over parameters);
        - ``insertions``: elements inserted since the previous call (mean over
          parameters); reading resets it.

        Several param groups make separate decisions, so their slots do not
        line up: statistics are computed per group and averaged, weighted by
        the group's number of coordinates. Empty when no state exists yet.
        Never called by ``step()``: it costs one ``C x C`` Gram matrix per bucket.

        >>> w = torch.nn.Parameter(torch.ones(3))
        >>> opt = AdamCM([w], topC=2)
        >>> for t in range(2):
        ...     w.grad = torch.full((3,), t + 1.0)
        ...     opt.step()
        >>> stats = opt.diagnostics()
        >>> {v.dim() for v in stats.values()}  # 0-d tensors: nothing read on the host yet
        {0}
        >>> {k: round(v.item(), 6) for k, v in stats.items()}  # floats: each .item() waits for the device
        {'buffer_variance': 0.16, 'buffer_cosine': 1.0, 'buffer_size': 2.0, 'insertions': 2.0}
        """
        if any(b.fused is not None for g in self.param_groups for b in self._group_buckets(g).values()):
            self._rebuild_buckets()  # statistics are per group; the next step fuses again
        per_group, weights = [], []
        sizes, inserted = [], []
        for group in self.param_groups:
            buckets = list(self._group_buckets(group).values())
            gram = buffer_gram([b.critical_buffer() for b in buckets])
            if gram is None:
                continue
            per_group.append(buffer_statistics(gram))
            weights.append(gram.numel)
            device = gram.gram.device
            sizes += [b.count.to(device, torch.float64) for b in buckets]
            inserted += [b.insertions.to(device, torch.float64) for b in buckets]
            for b in buckets:
                b.insertions.zero_()
        if not per_group:
            return {}
        device = per_group[0]["buffer_variance"].device
        w = torch.tensor(weights, dtype=torch.float64, device=device) / sum(weights)
        stats = {name: (torch.stack([s[name].to(device) for s in per_group]) * w).sum() for name in per_group[0]}
        stats["buffer_size"] = torch.cat([s.to(device) for s in sizes]).mean()
        stats["insertions"] = torch.cat([s.to(device) for s in inserted]).mean()
        return stats
