"""Flat storage of optimizer state, with per-parameter views.

All state of the parameters of one param group that live on one device with
one dtype (a *bucket*) sits in a few flat tensors: each moment as ``(N,)``, the
buffer as ``(C, N)``, the running sum as ``(N,)``, keys as ``(P, C)`` and the
counters as ``(P,)``. ``optimizer.state[p]`` holds *views* of them, so
``state_dict()`` and the per-parameter (single-tensor) path see ordinary
per-parameter tensors while the multi-tensor path updates the whole bucket
with a handful of large kernels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .buffer import CriticalBuffer

# Per-parameter entries that are not moments: the critical buffer and counters.
BUFFER_ENTRIES = ("step", "buffer", "buffer_sum", "keys", "count", "insertions")

# On a CPU the multi-tensor path walks each bucket in chunks of this many
# elements, so that the dozen elementwise passes of a step run on data that
# sits in cache and temporaries stay small enough for malloc to recycle (a
# fresh 85 MB temporary costs ~15 ms of page faults per pass on the 2-core
# development machine). Accelerators take a bucket in one chunk: there the
# number of kernel launches, not cache, is what counts.
CPU_CHUNK_ELEMENTS = 1 << 18

# The running sum of a buffer is updated by differences (new - old), which
# drifts by rounding: in float32 about 6e-6 of its magnitude after 15,000
# insertions. Every RESYNC_EVERY steps of a parameter it is recomputed from
# the stored elements, as the official code does on every step.
RESYNC_EVERY = 1024

# Unused elements in front of each bucket's buffer storage (see FlatBucket.__init__).
BUFFER_PAD = 6


@dataclass(frozen=True)
class Chunk:
    """Flat coordinates ``[start, stop)`` of a bucket and the parameter pieces covering them."""

    start: int
    stop: int
    pieces: tuple[tuple[int, int, int], ...]  # (parameter index, start, stop) in its flat view


def plan_chunks(sizes: Sequence[int], chunk_elements: int) -> list[Chunk]:
    """Cut the concatenation of ``sizes`` into chunks of ``chunk_elements`` (the last may be shorter)."""
    chunks, pieces, start, position = [], [], 0, 0
    for index, size in enumerate(sizes):
        offset = 0
        while offset < size:
            stop = min(size, offset + chunk_elements - (position - start))
            pieces.append((index, offset, stop))
            position += stop - offset
            offset = stop
            if position - start == chunk_elements:
                chunks.append(Chunk(start, position, tuple(pieces)))
                start, pieces = position, []
    if pieces:
        chunks.append(Chunk(start, position, tuple(pieces)))
    return chunks


@dataclass
class ChunkViews:
    """What one chunk of a bucket covers, as views of the bucket's storage."""

    chunk: Chunk
    params: list[Tensor]  # flat pieces of the parameters
    moments: dict[str, Tensor]
    buffer: Tensor  # (C, chunk length)
    total: Tensor

    def theta(self) -> Tensor:
        """The parameter values over the chunk (a view when the chunk is inside one parameter)."""
        return self.params[0] if len(self.params) == 1 else torch.cat(self.params)


class FlatBucket:
    """State of the parameters of one (group, device, dtype)."""

    def __init__(
        self,
        params: Sequence[Tensor],
        moments: Sequence[str],
        capacity: int,
        buffer_dtype: torch.dtype,
        key_dtype: torch.dtype,
    ) -> None:
        self.params = list(params)
        self.sizes = [p.numel() for p in self.params]
        self._indices = {id(p): i for i, p in enumerate(self.params)}
        first = self.params[0]
        device, dtype = first.device, first.dtype
        n, count = sum(self.sizes), len(self.params)
        zeros = dict(device=device)
        self.moments = {name: torch.zeros(n, dtype=dtype, **zeros) for name in moments}
        # Every row starts at a storage offset >= BUFFER_PAD: the fused step passes the row
        # it writes, and torch.compile then needs one graph for all rows (it specialises
        # offsets 0 and 1, and an offset equal to a size, into graphs of their own).
        padded = torch.zeros(BUFFER_PAD + capacity * n, dtype=buffer_dtype, **zeros)
        self.buffer = padded[BUFFER_PAD:].view(capacity, n)
        self.total = torch.zeros(n, dtype=dtype, **zeros)
        self.keys = torch.zeros(count, capacity, dtype=key_dtype, **zeros)
        self.count = torch.zeros(count, dtype=torch.int64, **zeros)
        self.insertions = torch.zeros(count, dtype=torch.int64, **zeros)
        self.step = torch.zeros(count, dtype=torch.float32, **zeros)
        # The step counts again, on the host, so that a step can decide when
        # to resynchronise the running sums without reading the device.
        self.host_steps = [0] * count
        # True while every parameter of the bucket has stepped on exactly the
        # same steps: then their keys, counts and steps are equal and the
        # bucket can be updated as one tensor. Host-side knowledge only.
        self.lockstep = True
        self.contiguous = all(p.is_contiguous() for p in self.params)
        self.chunks = plan_chunks(self.sizes, CPU_CHUNK_ELEMENTS if device.type == "cpu" else n)
        # Set by fuse() when the bucket holds several param groups.
        self.fused: tuple[int, ...] | None = None
        self.group_of_row: Tensor | None = None
        self.row_of_element: Tensor | None = None
        self._chunk_views: list[ChunkViews] | None = None
        # Fused groups only (fused=True): the flat parameters and gradients
        # (cmrepro.optim.flat_grads) and the hyperparameters as a device tensor
        # with the values it was made from (cmrepro.optim.fused).
        self.flat_storage = None
        self.fused_hyper: tuple[tuple[float, ...], Tensor] | None = None

    @property
    def flattenable(self) -> bool:
        """Whether the multi-tensor path may update this bucket as flat tensors."""
        return self.lockstep and self.contiguous

    @property
    def device(self) -> torch.device:
        return self.total.device

    def fuse(self, group_ids: tuple[int, ...], group_of_row: list[int]) -> None:
        """Mark the bucket as holding several param groups: rows decide separately."""
        device = self.device
        self.fused = group_ids
        self.group_of_row = torch.tensor(group_of_row, dtype=torch.int64, device=device)
        sizes = torch.tensor(self.sizes, dtype=torch.int64, device=device)
        self.row_of_element = torch.repeat_interleave(torch.arange(len(self.params), device=device), sizes)

    def index(self, param: Tensor) -> int:
        return self._indices[id(param)]

    def critical_buffer(self) -> CriticalBuffer:
        return CriticalBuffer(self.buffer, self.total, self.keys, self.count, self.insertions)

    def chunk_views(self) -> list[ChunkViews]:
        """Per chunk, the views of parameters, moments and buffer it covers.

        Built once per bucket: a step then only slices the gradients.
        """
        if self._chunk_views is None:
            self._chunk_views = [
                ChunkViews(
                    chunk,
                    [self.params[i].view(-1)[a:b] for i, a, b in chunk.pieces],
                    {name: m[chunk.start : chunk.stop] for name, m in self.moments.items()},
                    self.buffer[:, chunk.start : chunk.stop],
                    self.total[chunk.start : chunk.stop],
                )
                for chunk in self.chunks
            ]
        return self._chunk_views

    def forget_views(self) -> None:
        """Drop the cached chunk views: a parameter's storage moved (flat storage adopted it)."""
        self._chunk_views = None

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        """The gradient over ``chunk``: a view inside one parameter, a small copy across several."""
        grads = [self.params[i].grad.reshape(-1)[a:b] for i, a, b in chunk.pieces]
        return grads[0] if len(grads) == 1 else torch.cat(grads)

    def param_state(self, index: int) -> dict[str, Tensor]:
        """The views that make up ``optimizer.state[params[index]]``."""
        start = sum(self.sizes[:index])
        stop = start + self.sizes[index]
        shape = self.params[index].shape
        state = {name: flat[start:stop].view(shape) for name, flat in self.moments.items()}
        state.update(
            step=self.step[index],
            buffer=self.buffer[:, start:stop].view(self.buffer.shape[0], *shape),
            buffer_sum=self.total[start:stop].view(shape),
            keys=self.keys[index],
            count=self.count[index],
            insertions=self.insertions[index],
        )
        return state

    def load_param_state(self, index: int, saved: dict[str, Tensor]) -> None:
        """Copy a saved per-parameter state into this bucket's storage.

        Copying (rather than adopting the saved tensors) keeps the bucket's
        own dtypes: keys stay in the key dtype and counters stay integers
        even when the saved tensors were cast on the way in.
        """
        for name, view in self.param_state(index).items():
            if name not in saved:
                raise ValueError(
                    f"saved optimizer state lacks {name!r} for a parameter of shape {tuple(self.params[index].shape)}"
                )
            value = saved[name]
            if value.shape != view.shape:
                raise ValueError(
                    f"saved optimizer state {name!r} has shape {tuple(value.shape)}, expected {tuple(view.shape)}"
                )
            view.copy_(value)

    def count_step(self, index: int | None = None) -> None:
        """Count a step of one parameter (``index``) or of all; resynchronise sums that are due."""
        indices = range(len(self.params)) if index is None else [index]
        for i in indices:
            self.host_steps[i] += 1
        due = [i for i in indices if self.host_steps[i] % RESYNC_EVERY == 0]
        if index is None and len(due) == len(self.params):
            torch.sum(self.buffer, dim=0, dtype=self.total.dtype, out=self.total)
            return
        for i in due:
            state = self.param_state(i)
            torch.sum(state["buffer"], dim=0, dtype=self.total.dtype, out=state["buffer_sum"])

    def shares_history(self) -> bool:
        """Whether all parameters have equal steps, counts and keys.

        Reads values on the host: used when a bucket is rebuilt (loading a
        state dict), never inside ``step()``.
        """
        return bool(
            (self.step == self.step[0]).all()
            and (self.count == self.count[0]).all()
            and (self.keys == self.keys[0]).all()
        )


def bucket_key(param: Tensor) -> tuple[torch.device, torch.dtype]:
    return param.device, param.dtype


def key_dtype(group: dict) -> torch.dtype:
    """float64 keys for float64 groups (exact oracles), else float32."""
    return torch.float64 if any(p.dtype == torch.float64 for p in group["params"]) else torch.float32
