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
from functools import cached_property

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


# Where the buffer lives in host memory (CPU tensors), reading the decision
# is a plain memory read, not a host-device synchronisation. Reading it there
# lets a step write the one slot through a view, or skip the write, instead
# of copying the slot out and back (index_select / index_copy_ run at a
# fraction of memory bandwidth on CPUs). Tests switch this off to run the
# device path on CPU.
READ_CPU_DECISIONS_ON_HOST = True


@dataclass
class Decision:
    """Where the next element goes and whether it goes in, one entry per row of keys."""

    slot: Tensor  # (...), int64
    insert: Tensor  # (...), bool
    # (slot, insert) of the first row as Python values, for CPU buffers only.
    host: tuple[int, bool] | None = None

    @cached_property
    def weight(self) -> Tensor:
        """The first row's decision as a 0-d 0.0 / 1.0, for blending rows."""
        return self.insert.reshape(-1)[0].to(torch.float32)


@dataclass
class CriticalBuffer:
    """Views of the buffer state of one parameter, or of one flat bucket.

    ``keys`` and ``count`` carry one row per parameter; in a flat bucket every
    row is identical (the parameters share their history), so the decision is
    computed for all rows at once and the first row's decision moves the data.

    A step is: :meth:`decide` (from the keys, once), :meth:`aggregate` and
    :meth:`offer_` (elementwise, possibly chunk by chunk on column views of
    the same storage), then :meth:`commit_` (keys and counters, once) and :meth:`decay_`.
    """

    buffer: Tensor  # (C, *shape), stored elements, in the buffer dtype
    total: Tensor  # (*shape), running sum of the stored elements
    keys: Tensor  # (..., C), priority keys, 0 in empty slots
    count: Tensor  # (...), int64, number of stored elements
    insertions: Tensor  # (...), int64, insertions since the last diagnostics read
    decision: Decision | None = None
    # Row of keys/count for each flat coordinate, when rows make different
    # decisions (param groups fused into one bucket); None: rows share history.
    rows: Tensor | None = None

    @property
    def capacity(self) -> int:
        return self.buffer.shape[0]

    def decide(self, key: Tensor) -> Decision:
        """The official rule, for an element of priority ``key``.

        Not full: append in the next free slot. Full: replace the element of
        smallest key, ties to the lowest slot, only if ``key`` is strictly
        greater.
        """
        min_key, min_slot = self.keys.min(dim=-1)
        full = self.count >= self.capacity
        insert = (~full) | (key > min_key)
        decision = Decision(torch.where(full, min_slot, self.count), insert)
        if self.rows is None and self.keys.device.type == "cpu" and READ_CPU_DECISIONS_ON_HOST:
            decision.host = (int(decision.slot.reshape(-1)[0]), bool(decision.insert.reshape(-1)[0]))
        return decision

    def aggregate(self, value: Tensor) -> Tensor:
        """``value + mean(buffer)``, the aggregation of eqs. 3, 6 and 10.

        The mean is over the elements stored now (official: divide by ``n``,
        not ``C``), read before this step's insertion.
        """
        if self.rows is not None:
            return torch.addcdiv(value, self.total, self.count.to(self.total.dtype)[self.rows])
        n = self.count.reshape(-1)[0].to(self.total.dtype)
        return torch.addcdiv(value, self.total, n)

    def offer_(self, value: Tensor) -> None:
        """Write ``value`` into the decided slot if the decision admits it.

        Only that one slot of the buffer is read and written.
        """
        if self.decision.host is not None:
            self._offer_on_host_(value)
            return
        if self.rows is not None:
            self._offer_per_row_(value)
            return
        slot = self.decision.slot.reshape(-1)[:1]
        old = self.buffer.index_select(0, slot).squeeze(0)
        # lerp with weight exactly 0 or 1 returns old or value bit for bit
        # (for finite values) and, unlike where(), is vectorised on CPUs.
        new = torch.lerp(old, value.to(self.buffer.dtype), self.decision.weight.to(self.buffer.dtype))
        self.buffer.index_copy_(0, slot, new.unsqueeze(0))
        # new - old is exactly zero when nothing is inserted, so a rejected
        # offer leaves the running sum bit-for-bit unchanged.
        self.total.add_(new.to(self.total.dtype).sub_(old.to(self.total.dtype)))

    def _offer_on_host_(self, value: Tensor) -> None:
        """:meth:`offer_` with the decision already in host memory (CPU buffers)."""
        slot, insert = self.decision.host
        if not insert:
            return
        row = self.buffer[slot]
        new = value.to(self.buffer.dtype)
        self.total.add_(new.to(self.total.dtype) - row.to(self.total.dtype))
        row.copy_(new)

    def _offer_per_row_(self, value: Tensor) -> None:
        """:meth:`offer_` where each row has its own slot: gather and scatter per coordinate."""
        slot = self.decision.slot[self.rows].unsqueeze(0)
        old = self.buffer.gather(0, slot).squeeze(0)
        new = torch.where(self.decision.insert[self.rows], value.to(self.buffer.dtype), old)
        self.buffer.scatter_(0, slot, new.unsqueeze(0))
        self.total.add_(new.to(self.total.dtype).sub_(old.to(self.total.dtype)))

    def commit_(self, key: Tensor) -> None:
        """Record the decided insertion in keys and counters; ``key`` is one per row or shared."""
        slot, insert = self.decision.slot, self.decision.insert
        index = slot.unsqueeze(-1)
        current = self.keys.gather(-1, index)
        key = key.to(self.keys.dtype)
        if key.dim():  # one key per row
            key = key.unsqueeze(-1)
        self.keys.scatter_(-1, index, torch.where(insert.unsqueeze(-1), key, current))
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


GRAM_BLOCK = 1 << 20


def buffer_gram(buffers: list[CriticalBuffer]) -> BufferGram | None:
    """Accumulate the Gram matrix of the stored elements over ``buffers``."""
    if not buffers:
        return None
    capacity = buffers[0].capacity
    device = buffers[0].buffer.device
    gram = torch.zeros(capacity, capacity, dtype=torch.float64, device=device)
    numel = 0
    for b in buffers:
        rows = b.buffer.reshape(capacity, -1)
        # float64 in column blocks: precise (the variance subtracts two large
        # sums) without a float64 copy of the whole buffer.
        for block in rows.split(GRAM_BLOCK, dim=1):
            block = block.to(torch.float64)
            gram += (block @ block.T).to(device)
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
