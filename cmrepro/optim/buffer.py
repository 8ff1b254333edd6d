"""The critical buffer: priority keys, insertion, key decay and statistics.

A buffer holds up to ``C`` tensors (critical gradients or critical momenta),
each with a scalar priority key, plus the running sum of what it stores. The
functions here work on one parameter's buffer (``buffer`` of shape
``(C, *shape)``, ``keys`` of shape ``(C,)``) and, unchanged, on the flat buffer
of many parameters that share their history (``buffer`` of shape ``(C, N)``,
``keys`` of shape ``(P, C)``, one identical row per parameter).

Every decision is made with tensor operations on the buffer's device: nothing
here reads a tensor's value on the host, so a step can run without host-device
synchronisation and be captured in a CUDA graph.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def priority_key(grads: list[Tensor], dtype: torch.dtype) -> Tensor:
    """The official priority key: the sum of each gradient's L2 norm.

    Not the norm of the concatenated gradient: the official code adds up the
    per-parameter norms of the group, and so do we. Returned as a 0-d tensor in
    ``dtype`` on the device of the first gradient.
    """
    device = grads[0].device
    norms = torch._foreach_norm(grads)
    return torch.stack([n.to(device=device, dtype=dtype) for n in norms]).sum()


@dataclass
class CriticalBuffer:
    """Views of the buffer state of one parameter, or of one flat bucket.

    ``keys`` and ``count`` carry one row per parameter; in a flat bucket every
    row is identical (the parameters share their history), so the decision is
    computed for all rows at once and the first row's decision moves the data.
    """

    buffer: Tensor  # (C, *shape), stored elements, in the buffer dtype
    total: Tensor  # (*shape), running sum of the stored elements
    keys: Tensor  # (..., C), priority keys, 0 in empty slots
    count: Tensor  # (...), int64, number of stored elements
    insertions: Tensor  # (...), int64, insertions since the last diagnostics read

    @property
    def capacity(self) -> int:
        return self.buffer.shape[0]

    def mean(self) -> Tensor:
        """Mean over the elements stored now (official: divide by n, not C).

        Only called once the buffer holds at least one element.
        """
        n = self.count.reshape(-1)[0].to(self.total.dtype)
        return self.total / n

    def aggregate(self, value: Tensor) -> Tensor:
        """``value + mean(buffer)``, the aggregation of eqs. 3, 6 and 10."""
        n = self.count.reshape(-1)[0].to(self.total.dtype)
        return torch.addcdiv(value, self.total, n)

    def offer_(self, value: Tensor, key: Tensor) -> None:
        """Store ``value`` with priority ``key`` if the official rule admits it.

        Not full: append in the next free slot. Full: replace the element of
        smallest key, ties to the lowest slot, only if ``key`` is strictly
        greater. Only one slot of the buffer is read and written.
        """
        capacity = self.capacity
        min_key, min_slot = self.keys.min(dim=-1)
        full = self.count >= capacity
        insert = (~full) | (key > min_key)
        slot = torch.where(full, min_slot, self.count)
        self._write_row_(slot.reshape(-1)[:1], insert.reshape(-1)[0], value)
        self._record_key_(slot, insert, key)

    def _write_row_(self, slot: Tensor, insert: Tensor, value: Tensor) -> None:
        old = self.buffer.index_select(0, slot).squeeze(0)
        new = torch.where(insert, value.to(self.buffer.dtype), old)
        self.buffer.index_copy_(0, slot, new.unsqueeze(0))
        # new - old is exactly zero when nothing is inserted, so a rejected
        # offer leaves the running sum bit-for-bit unchanged.
        self.total.add_(new.to(self.total.dtype) - old.to(self.total.dtype))

    def _record_key_(self, slot: Tensor, insert: Tensor, key: Tensor) -> None:
        index = slot.unsqueeze(-1)
        current = self.keys.gather(-1, index)
        self.keys.scatter_(-1, index, torch.where(insert.unsqueeze(-1), key.to(self.keys.dtype), current))
        self.count.add_(insert).clamp_(max=self.capacity)
        self.insertions.add_(insert)

    def decay_(self, decay: float) -> None:
        """Multiply every stored key by ``decay`` (after the insertion decision)."""
        self.keys.mul_(decay)


@dataclass
class BufferGram:
    """Inner products between stored elements, summed over buffers.

    An "element" of the optimizer is slot ``i`` taken across every parameter:
    the whole-model momentum (or gradient) stored at that slot. Its inner
    products are sums of the per-parameter inner products, so they can be
    accumulated bucket by bucket.
    """

    gram: Tensor  # (C, C) float64
    numel: int  # number of coordinates summed into gram
    count: Tensor  # 0-d, number of stored elements (first parameter's count)


def buffer_gram(buffers: list[CriticalBuffer]) -> BufferGram | None:
    """Accumulate the Gram matrix of the stored elements over ``buffers``."""
    if not buffers:
        return None
    capacity = buffers[0].capacity
    device = buffers[0].buffer.device
    gram = torch.zeros(capacity, capacity, dtype=torch.float64, device=device)
    numel = 0
    for b in buffers:
        rows = b.buffer.reshape(capacity, -1).to(torch.float32)
        gram += (rows @ rows.T).to(device=device, dtype=torch.float64)
        numel += rows.shape[1]
    return BufferGram(gram, numel, buffers[0].count.reshape(-1)[0].to(device))


def buffer_statistics(g: BufferGram) -> dict[str, Tensor]:
    """Buffer variance and mean cosine similarity from the Gram matrix.

    - ``buffer_variance``: the variance across the stored elements, per
      coordinate, averaged over coordinates:
      ``mean_j (1/n) sum_i (b_ij - mean_i b_ij)^2``, with ``n`` the number of
      stored elements (Figure 8, bottom left).
    - ``buffer_cosine``: the mean cosine similarity between the stored element
      of highest norm and each other stored element (Figure 8, bottom right;
      the definition of Section 5.2). NaN while fewer than two are stored.
    """
    capacity = g.gram.shape[0]
    valid = torch.arange(capacity, device=g.gram.device) < g.count
    mask = (valid.unsqueeze(0) & valid.unsqueeze(1)).to(g.gram.dtype)
    gram = g.gram * mask
    n = g.count.to(g.gram.dtype)
    sq_norms = torch.diagonal(gram)
    variance = (sq_norms.sum() / n - gram.sum() / (n * n)) / g.numel
    lead = torch.argmax(torch.where(valid, sq_norms, -1.0))
    norms = sq_norms.clamp_min(0).sqrt()
    cosines = gram[lead] / (norms[lead] * norms).clamp_min(torch.finfo(gram.dtype).tiny)
    others = valid & (torch.arange(capacity, device=gram.device) != lead)
    cosine = (cosines * others).sum() / others.sum()
    return {"buffer_variance": variance, "buffer_cosine": cosine}
