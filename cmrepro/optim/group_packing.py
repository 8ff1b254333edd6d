"""Many small param groups of equal hyperparameters stepped as one bucket.

An optimizer with many param groups of equal hyperparameters (say, one group per
independent run of a toy problem) would spend most of a step in per-group Python
overhead. Such groups are packed into one bucket whose rows keep their own keys,
counts and decisions; each group still gets its own priority key (the sum over
*its* parameters' gradient norms). ("Fused" in these names means packed groups,
an eager path; the compiled step of a group with ``fused=True`` is
``CriticalOptimizer._step_bucket_fused``, and such groups are never packed.)

:class:`GroupPacking` is a mixin of :class:`~cmrepro.optim._base.CriticalOptimizer`:
it uses the base class's bucket bookkeeping (``_group_buckets``, ``_pack``) and its
step phases (``_begin``, ``_move``, ``_finish``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ._state import FlatBucket, bucket_key, key_dtype, real_view
from .rule_state import RuleState

# Only groups up to this size are packed: for them the per-group overhead of a
# step dominates; larger groups keep the one-slot write of their own bucket.
FUSE_MAX_ELEMENTS = 1 << 16


class GroupPacking:
    """Find the groups that can share a bucket, pack them, and step a packed bucket."""

    def _fused_sets(self) -> list[tuple[list[dict], FlatBucket]]:
        """Groups to step as one bucket, packing them on first use."""
        by_signature: dict[tuple, list[dict]] = {}
        for group in self.param_groups:
            signature = self._fusion_signature(group)
            if signature is not None:
                by_signature.setdefault(signature, []).append(group)
        sets = []
        for groups in by_signature.values():
            buckets = {id(b): b for g in groups for b in self._group_buckets(g).values()}
            if len(buckets) == 1 and next(iter(buckets.values())).fused == tuple(map(id, groups)):
                sets.append((groups, next(iter(buckets.values()))))
            elif len(groups) > 1 and all(b.fused is None for b in buckets.values()):
                sets.append((groups, self._fuse(groups)))
        return sets

    def _fusion_signature(self, group: dict) -> tuple | None:
        """Hyperparameters, device, dtype and step of a group that can join a fused bucket, else None."""
        params = group["params"]
        # Cheapest checks first: this runs for every group on every step.
        if group["foreach"] is False or group["fused"] or not params:
            return None
        if sum(p.numel() for p in params) > FUSE_MAX_ELEMENTS:
            return None  # large groups run large kernels already; per-coordinate gathers would only cost
        if any(p.grad is None or p.grad.is_sparse for p in params):
            return None
        buckets = list(self._group_buckets(group).values())
        if len(buckets) != 1 or not all(self.state.get(p) for p in params):
            return None
        bucket = buckets[0]
        if bucket.fused is None and not (bucket.flattenable and len(bucket.params) == len(params)):
            return None
        hyper = self._hyper_signature(group)
        if hyper is None:
            return None
        signature = (hyper, *bucket_key(params[0]), bucket.host_steps[bucket.index(params[0])])
        try:
            hash(signature)
        except TypeError:  # a group value we cannot compare (say, a nested list): keep the group on its own
            return None
        return signature

    def _hyper_signature(self, group: dict) -> tuple | None:
        """The group's hyperparameters as a sorted tuple, rebuilt only when one of them changes.

        Sorting and converting every group's values on every step was most of
        the per-group cost of a step over hundreds of small groups (the toys).
        """
        values = [value for key, value in group.items() if key != "params"]
        memo = self.__dict__.setdefault("_hyper_memo", {}).get(id(group))
        if memo is not None and memo[0] is group and memo[1] == values:  # list ==: an unchanged tensor by identity
            return memo[2]
        hyper = tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in group.items() if k != "params"))
        if any(isinstance(v, Tensor) for v in values):  # a tensor lr: values not comparable on the host
            hyper = None
        self._hyper_memo[id(group)] = (group, values, hyper)
        return hyper

    def _fuse(self, groups: list[dict]) -> FlatBucket:
        params = [p for g in groups for p in g["params"]]
        steps = [b.host_steps[b.index(p)] for g in groups for b in self._group_buckets(g).values() for p in g["params"]]
        bucket = self._pack(groups[0], params, steps)
        rows = [i for i, g in enumerate(groups) for _ in g["params"]]
        bucket.fuse(tuple(map(id, groups)), rows)
        for group in groups:
            self._group_buckets(group).clear()
            self._group_buckets(group)[bucket_key(params[0])] = bucket
        return bucket

    def _step_fused(self, groups: list[dict], bucket: FlatBucket) -> None:
        """One step of every group of a fused bucket: per-row decisions, one set of kernels."""
        group = groups[0]  # every group has these hyperparameters
        grads = [real_view(p.grad) for p in bucket.params]
        dtype = key_dtype(group)
        norms = torch.stack([n.to(dtype) for n in torch._foreach_norm(grads)])
        group_keys = torch.zeros(len(groups), dtype=dtype, device=bucket.device).index_add_(
            0, bucket.group_of_row, norms
        )
        keys = group_keys[bucket.group_of_row]
        buffer = bucket.critical_buffer()
        buffer.rows = bucket.row_of_element
        self._begin(bucket.step, buffer, keys)
        flat = [real_view(p).view(-1) for p in bucket.params]
        grad = torch.cat([g.reshape(-1) for g in grads])
        theta = torch.cat(flat) if self._needs_theta(group) else None
        self._move(group, RuleState(bucket.step, bucket.moments, buffer), flat, grad, theta, first=False)
        self._finish(group, buffer, keys)
        bucket.count_step()
