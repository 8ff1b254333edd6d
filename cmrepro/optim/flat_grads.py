"""Flat parameter and gradient storage for the buckets of a fused param group.

The fused step walks a bucket's memory once, so the bucket's parameters and
their gradients must each lie in one flat tensor, like its moments and buffer
do. :func:`flat_storage` moves them there once: each ``param.data`` becomes a
view of one flat ``(N,)`` tensor (values copied), and each ``param.grad`` a
view of another. Backward then accumulates straight into the flat gradient,
and a step reads it without gathering anything.

- ``optimizer.zero_grad(set_to_none=False)`` zeroes the views in place: the
  next backward accumulates into them and the step copies nothing.
- ``optimizer.zero_grad()`` (torch's default ``set_to_none=True``) drops the
  views; backward then allocates fresh gradients, and the step copies each into
  the flat gradient (one read and one write of the gradients, what the eager
  path's gather costs) and points ``param.grad`` at its view again. Results
  are identical either way; :attr:`FlatStorage.grad_copies` counts the copies.
- A parameter whose ``.data`` was replaced since (``model.to(...)``, a manual
  assignment) is copied back into the flat storage on the next step.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import accumulate

import torch
from torch import Tensor


@dataclass
class FlatStorage:
    """The flat parameters and gradients of one bucket, and where each piece starts."""

    params: Tensor  # (N,), param.data are views of it
    grads: Tensor  # (N,), param.grad are views of it (until set to None)
    offsets: list[int]
    # Where each parameter's and gradient's view starts: a step compares these
    # integers rather than building 2P views.
    param_ptrs: list[int]
    grad_ptrs: list[int]
    grad_copies: int = 0  # gradients copied in rather than accumulated in place


def flat_storage(bucket) -> FlatStorage:
    """The bucket's flat storage, created on first use, with every parameter and gradient in it."""
    storage = bucket.flat_storage
    if storage is None:
        first = bucket.params[0]
        n = sum(bucket.sizes)
        offsets = [0, *accumulate(bucket.sizes[:-1])]
        params = torch.empty(n, dtype=first.dtype, device=first.device)
        grads = torch.zeros(n, dtype=first.dtype, device=first.device)
        step = params.element_size()
        storage = FlatStorage(
            params,
            grads,
            offsets,
            [params.data_ptr() + step * o for o in offsets],
            [grads.data_ptr() + step * o for o in offsets],
        )
        bucket.flat_storage = storage
        for i in range(len(bucket.params)):
            _adopt_param(storage, bucket, i)
    return storage


@torch.no_grad()
def flat_params(bucket) -> Tensor:
    """The flat parameters, after copying back any parameter whose ``.data`` was replaced."""
    storage = flat_storage(bucket)
    for i, (p, ptr) in enumerate(zip(bucket.params, storage.param_ptrs)):
        if p.data_ptr() != ptr:
            _adopt_param(storage, bucket, i)
    return storage.params


@torch.no_grad()
def flat_grads(bucket) -> Tensor:
    """The flat gradient: zero-copy where ``param.grad`` is its view, else copied in and re-pointed."""
    storage = flat_storage(bucket)
    for i, (p, ptr) in enumerate(zip(bucket.params, storage.grad_ptrs)):
        if p.grad.data_ptr() != ptr:
            view = _view(storage.grads, storage, bucket, i)
            view.copy_(p.grad)
            p.grad = view
            storage.grad_copies += 1
    return storage.grads


def _view(flat: Tensor, storage: FlatStorage, bucket, index: int) -> Tensor:
    start = storage.offsets[index]
    return flat[start : start + bucket.sizes[index]].view(bucket.params[index].shape)


@torch.no_grad()
def _adopt_param(storage: FlatStorage, bucket, index: int) -> None:
    p = bucket.params[index]
    view = _view(storage.params, storage, bucket, index)
    view.copy_(p)
    p.data = view
    bucket.forget_views()  # the eager path's cached views point at the old storage
    if p.grad is not None:
        grad = _view(storage.grads, storage, bucket, index)
        grad.copy_(p.grad)
        p.grad = grad
