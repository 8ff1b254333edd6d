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


def real_view(tensor: Tensor) -> Tensor:
    """What the optimizer computes on: a complex tensor as ``torch.view_as_real`` (a view), else itself.

    Detached, so that in-place updates of the views are not autograd events of the
    parameter (``torch.compile`` refuses views made under ``no_grad`` of a tensor
    that requires grad).
    """
    if tensor.is_complex():
        return torch.view_as_real(tensor.detach())
    # A gradient needs no detach, and a step calls this per chunk: keep it cheap.
    return tensor.detach() if tensor.requires_grad else tensor


class BucketState(dict):
    """``optimizer.state[p]`` of a parameter in a bucket: views of the flat storage.

    It notes any change of its entries (``state[p]["exp_avg"] = t``, ``del``,
    ``update``...), so that the next step copies the new values into the bucket
    (:meth:`FlatBucket.stale`). It pickles and deep-copies as a plain dict.
    """

    edited = False

    def _edit(method):
        def edit(self, *args, **kwargs):
            self.edited = True
            return method(self, *args, **kwargs)

        return edit

    __setitem__ = _edit(dict.__setitem__)
    __delitem__ = _edit(dict.__delitem__)
    __ior__ = _edit(dict.__ior__)
    update = _edit(dict.update)
    setdefault = _edit(dict.setdefault)
    pop = _edit(dict.pop)
    popitem = _edit(dict.popitem)
    clear = _edit(dict.clear)
    del _edit

    def __reduce__(self):
        return dict, (dict(self),)


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
        reals = [real_view(p) for p in self.params]
        self.sizes = [r.numel() for r in reals]
        self._indices = {id(p): i for i, p in enumerate(self.params)}
        self.where = bucket_key(self.params[0])
        first = reals[0]
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
        self.contiguous = all(r.is_contiguous() for r in reals)
        self.chunks = plan_chunks(self.sizes, CPU_CHUNK_ELEMENTS if device.type == "cpu" else n)
        # Set by fuse() when the bucket holds several param groups.
        self.fused: tuple[int, ...] | None = None
        self.group_of_row: Tensor | None = None
        self.row_of_element: Tensor | None = None
        self._chunk_views: list[ChunkViews] | None = None
        # Where each parameter's data lay when the views were made, and the dicts
        # this bucket put in optimizer.state (see stale()).
        self.param_ptrs = [p.data_ptr() for p in self.params]
        self.published: list[BucketState] = []
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
            flat = [real_view(p).view(-1) for p in self.params]
            self._chunk_views = [
                ChunkViews(
                    chunk,
                    [flat[i][a:b] for i, a, b in chunk.pieces],
                    {name: m[chunk.start : chunk.stop] for name, m in self.moments.items()},
                    self.buffer[:, chunk.start : chunk.stop],
                    self.total[chunk.start : chunk.stop],
                )
                for chunk in self.chunks
            ]
        return self._chunk_views

    def forget_views(self) -> None:
        """Drop the cached chunk views: a parameter's storage moved (``p.data = ...``, flat storage adopted it)."""
        self._chunk_views = None
        self.param_ptrs = [p.data_ptr() for p in self.params]

    def moved(self) -> bool:
        """Whether a parameter's data moved since the views were made (``p.data = ...``,
        ``vector_to_parameters``, ``model.double().float()``).

        Pointers on the host, no device read. The cached views keep the old storage
        alive, so a replaced tensor cannot reuse its address.
        """
        return list(map(Tensor.data_ptr, self.params)) != self.param_ptrs

    def same_layout(self) -> bool:
        """Whether every parameter still has the size, dtype, device and contiguity the bucket was built for."""
        reals = [real_view(p) for p in self.params]
        return (
            [r.numel() for r in reals] == self.sizes
            and all(bucket_key(p) == self.where for p in self.params)
            and all(r.is_contiguous() for r in reals) == self.contiguous
        )

    def publish(self, state: dict) -> None:
        """Put each parameter's views in ``optimizer.state``, remembering the dicts."""
        self.published = [BucketState(self.param_state(i)) for i in range(len(self.params))]
        for p, entry in zip(self.params, self.published):
            state[p] = entry

    def stale(self, state: dict) -> bool:
        """Whether ``optimizer.state`` no longer holds this bucket's views: cleared,
        reassigned, a parameter's entry deleted or replaced, or one of its tensors replaced."""
        return any(state.get(p) is not entry or entry.edited for p, entry in zip(self.params, self.published))

    def chunk_grad(self, chunk: Chunk) -> Tensor:
        """The gradient over ``chunk``: a view inside one parameter, a small copy across several."""
        grads = [real_view(self.params[i].grad).reshape(-1)[a:b] for i, a, b in chunk.pieces]
        return grads[0] if len(grads) == 1 else torch.cat(grads)

    def param_state(self, index: int) -> dict[str, Tensor]:
        """The views that make up ``optimizer.state[params[index]]``."""
        start = sum(self.sizes[:index])
        stop = start + self.sizes[index]
        shape = real_view(self.params[index]).shape
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
                    " (is it another optimizer's state?)"
                )
            value = torch.as_tensor(saved[name])  # a Python number (say, a step saved as a float) too
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
        if capturing(self.device):
            # A CUDA graph replays kernels, not this bookkeeping: a resync captured here would
            # run on every replay, and none would run when due. Under replay the sums are
            # resynchronised by calling resync() (CriticalOptimizer.resync_running_sums) outside the graph.
            return
        due = [i for i in indices if self.host_steps[i] % RESYNC_EVERY == 0]
        if index is None and len(due) == len(self.params):
            self.resync()
            return
        for i in due:
            state = self.param_state(i)
            torch.sum(state["buffer"], dim=0, dtype=self.total.dtype, out=state["buffer_sum"])

    def resync(self) -> None:
        """Recompute every running sum from the stored elements (drops the rounding drift)."""
        torch.sum(self.buffer, dim=0, dtype=self.total.dtype, out=self.total)

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


def capturing(device: torch.device) -> bool:
    """Whether work on ``device`` is being captured into a CUDA graph now (a host-side query)."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def bucket_key(param: Tensor) -> tuple[torch.device, torch.dtype]:
    return param.device, param.dtype


def key_dtype(group: dict) -> torch.dtype:
    """float64 keys for float64 groups (exact oracles), else float32."""
    return torch.float64 if any(p.dtype == torch.float64 for p in group["params"]) else torch.float32
