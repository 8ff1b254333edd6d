"""The base class of the critical-buffer optimizers.

It owns what every variant shares: state creation in flat buckets, the
priority key, the choice between the multi-tensor and the per-parameter path,
weight decay, the key decay and ``state_dict`` round trips; small groups
packed into one bucket (:mod:`.group_packing`) and the buffer statistics
(:mod:`.diagnostics`) come from mixins of their own. A
variant only writes its update rule, :meth:`CriticalOptimizer.direction`, once:
it receives either one parameter's views or a whole bucket's flat tensors and
cannot tell which.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace

import torch
from torch import Tensor
from torch.optim import Optimizer

from ._state import BUFFER_ENTRIES, BucketState, FlatBucket, bucket_key, key_dtype, real_view
from .buffer import CriticalBuffer, priority_key
from .diagnostics import BufferDiagnostics
from .flat_grads import flat_grads, flat_params
from .fused import check_fused, fused_step, hyper_tensor
from .fused_rules import rule_for
from .group_packing import GroupPacking
from .rule_state import RuleState
from .torch_flags import check_torch_flags, uses_foreach


class CriticalOptimizer(GroupPacking, BufferDiagnostics, Optimizer):
    """A ``torch.optim.Optimizer`` with a critical buffer per parameter.

    Subclasses set :attr:`decoupled_weight_decay` (their default form) and
    implement :meth:`moment_names` and :meth:`direction`.
    """

    #: ``True``: ``theta *= 1 - lr * weight_decay`` before the update (AdamW
    #: style). ``False``: the rule adds ``weight_decay * theta`` itself. A
    #: group's ``decoupled_weight_decay`` overrides it; this class value serves
    #: groups saved before the option existed.
    decoupled_weight_decay: bool = False
    #: The official SGD+CG skips the key decay when ``decay == 0``.
    skip_zero_decay: bool = False

    def __init__(self, params, defaults: dict) -> None:
        defaults.setdefault("fused", None)  # None/False: the eager multi-tensor path (cmrepro.optim.fused)
        for flag in ("maximize", "capturable", "differentiable"):  # torch.optim's flags (.torch_flags)
            defaults.setdefault(flag, False)
        self._buckets: dict[int, tuple[dict, dict]] = {}
        super().__init__(params, defaults)

    # ---- what a variant defines -------------------------------------------------
    def moment_names(self, group: dict) -> tuple[str, ...]:
        """The per-parameter moment tensors the rule keeps (zeros at creation)."""
        raise NotImplementedError

    def direction(
        self, group: dict, state: RuleState, grad: Tensor, theta: Tensor | None, first: bool
    ) -> Tensor | tuple[Tensor, Tensor] | None:
        """Offer to the buffer and return what to subtract from the parameter.

        The insertion was already decided from the keys: the rule calls
        ``state.buffer.aggregate`` and ``state.buffer.offer_`` in its own order
        and never sees the key. ``first`` is true on the parameter's first step (state just created).
        ``theta`` holds the parameter values when the rule needs them for
        coupled weight decay, else ``None``. Return ``None`` for no move, a
        tensor ``u`` for ``theta -= u``, or a pair ``(u, d)`` for
        ``theta -= u / d`` (one fused kernel instead of three).
        """
        raise NotImplementedError

    # ---- step ---------------------------------------------------------------------
    @torch.no_grad()
    def step(self, closure: Callable[[], Tensor] | None = None) -> Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self._follow_user_changes()
        fused = self._fused_sets()
        for groups, bucket in fused:
            self._step_fused(groups, bucket)
        done = {id(group) for groups, _ in fused for group in groups}
        for group in self.param_groups:
            if id(group) not in done:
                self._step_group(group)
        return loss

    def _step_group(self, group: dict) -> None:
        params = [p for p in group["params"] if p.grad is not None]
        if not params:
            return
        for p in params:
            if p.grad.is_sparse:
                raise ValueError(f"invalid grad: sparse gradients are not supported by {type(self).__name__}")
        key = priority_key([real_view(p.grad) for p in params], key_dtype(group))
        for bucket, stepping, new in self._buckets_for(group, params):
            bucket_key_value = key_on(bucket.device, key)
            if len(stepping) < len(bucket.params):
                bucket.lockstep = False
            if uses_foreach(group) and bucket.flattenable:
                # In lockstep every parameter of the bucket is new or none is.
                if group["fused"]:
                    self._step_bucket_fused(group, bucket, bucket_key_value, first=bool(new))
                else:
                    self._step_bucket(group, bucket, bucket_key_value, first=bool(new))
            else:
                for p in stepping:
                    self._step_param(group, p, bucket_key_value, first=id(p) in new)
                    bucket.count_step(bucket.index(p))

    def _step_bucket(self, group: dict, bucket: FlatBucket, key: Tensor, first: bool) -> None:
        """Multi-tensor path: one decision for the bucket, then flat chunks."""
        buffer = self._begin(bucket.step, bucket.critical_buffer(), key)
        with_theta = self._needs_theta(group)
        memo: dict = {}
        for views in bucket.chunk_views():
            part = replace(buffer, buffer=views.buffer, total=views.total)
            state = RuleState(bucket.step, views.moments, part, memo)
            theta = views.theta() if with_theta else None
            self._move(group, state, views.params, bucket.chunk_grad(views.chunk), theta, first)
        self._finish(group, buffer, key)
        bucket.count_step()

    def _step_bucket_fused(self, group: dict, bucket: FlatBucket, key: Tensor, first: bool) -> None:
        """Fused path: flat parameters and gradients, then one compiled kernel for the elementwise step."""
        param, grad = flat_params(bucket), flat_grads(bucket)
        if first:  # once per bucket: not worth a compiled variant of its own
            self._step_bucket(group, bucket, key, first=True)
            return
        if group["maximize"]:
            grad = grad.neg()
        buffer = self._begin(bucket.step, bucket.critical_buffer(), key)
        hyper = hyper_tensor(bucket, group, self._decoupled(group))
        fused_step(rule_for(type(self)), bucket, param, grad, buffer.decision, hyper)
        self._finish(group, buffer, key)
        bucket.count_step()

    def _step_param(self, group: dict, p: Tensor, key: Tensor, first: bool) -> None:
        """Single-tensor path: one parameter through its views. The readable reference."""
        s = self.state[p]
        buffer = CriticalBuffer(s["buffer"], s["buffer_sum"], s["keys"], s["count"], s["insertions"])
        buffer = self._begin(s["step"], buffer, key)
        state = RuleState(s["step"], {name: s[name] for name in self.moment_names(group)}, buffer)
        theta = real_view(p)
        self._move(group, state, [theta], real_view(p.grad), theta if self._needs_theta(group) else None, first)
        self._finish(group, buffer, key)

    @staticmethod
    def _begin(step: Tensor, buffer: CriticalBuffer, key: Tensor) -> CriticalBuffer:
        """Count the step and decide this step's insertion, before any elementwise work."""
        step.add_(1)
        buffer.decision = buffer.decide(key)
        return buffer

    def _move(self, group, state: RuleState, params: list[Tensor], grad, theta, first: bool) -> None:
        """The elementwise part: weight decay, the rule, the parameter update."""
        lr, weight_decay = group["lr"], group["weight_decay"]
        if weight_decay and self._decoupled(group):
            torch._foreach_mul_(params, 1 - lr * weight_decay)
        if group["maximize"]:
            grad = torch.neg(grad)
        update = self.direction(group, state, grad, theta, first)
        if update is None:
            return
        if isinstance(update, tuple):  # (numerator, denominator): one fused addcdiv
            numerator, denominator = update
            torch._foreach_addcdiv_(params, _pieces(numerator, params), _pieces(denominator, params), value=-1)
        else:
            torch._foreach_sub_(params, _pieces(update, params))

    def _finish(self, group: dict, buffer: CriticalBuffer, key: Tensor) -> None:
        buffer.commit_(key)
        if not (self.skip_zero_decay and group["decay"] == 0):
            buffer.decay_(group["decay"])

    def _needs_theta(self, group: dict) -> bool:
        return not self._decoupled(group) and group["weight_decay"] != 0

    def _decoupled(self, group: dict) -> bool:
        return group.get("decoupled_weight_decay", self.decoupled_weight_decay)

    # ---- state creation ---------------------------------------------------------------
    def _follow_user_changes(self) -> None:
        """Catch up, before a step, with what users do to parameters and state between steps.

        A parameter whose ``.data`` was replaced gets fresh views (or, if its dtype,
        device or size changed, a re-packed bucket); ``optimizer.state`` that was
        cleared, reassigned or edited is re-packed from what it holds now, so
        parameters without state start afresh, as in ``torch.optim``. The check
        compares host pointers and dict identities: no device read. Re-packing
        reads step counters on the host, once.
        """
        buckets = {id(b): b for _, per_group in self._buckets.values() for b in per_group.values()}
        for bucket in buckets.values():
            moved = bucket.moved()
            if bucket.stale(self.state) or (moved and not bucket.same_layout()):
                self._rebuild_buckets()
                return
            if moved:
                bucket.forget_views()

    def resync_running_sums(self) -> None:
        """Recompute every buffer's running sum from its stored elements.

        ``step()`` does this every ``RESYNC_EVERY`` steps of a parameter; a step
        replayed from a CUDA graph does not (replay runs kernels, not the host
        bookkeeping that counts steps), so call this, outside the graph, every
        thousand replays or so.
        """
        for _, per_group in self._buckets.values():
            for bucket in per_group.values():
                bucket.resync()

    def _buckets_for(self, group: dict, params: list[Tensor]) -> Iterator[tuple[FlatBucket, list[Tensor], set[int]]]:
        """Yield ``(bucket, its stepping params, ids of those stepping for the first time)``.

        State is created here, in the bucket of the parameter's device and dtype.
        """
        buckets = self._group_buckets(group)
        new_params = [p for p in params if not self.state.get(p)]
        if new_params and any(b.fused is not None for b in buckets.values()):
            self._rebuild_buckets()  # unfuse before a fused group grows
            buckets = self._group_buckets(group)
        for where in dict.fromkeys(bucket_key(p) for p in new_params):
            joining = [p for p in new_params if bucket_key(p) == where]
            old = buckets.get(where)
            members = (old.params if old else []) + joining
            buckets[where] = self._pack(group, members, old.host_steps if old else [])
            # Parameters that join a bucket late have a different history.
            buckets[where].lockstep = old is None
        new_ids = set(map(id, new_params))
        for bucket in buckets.values():
            members = set(map(id, bucket.params))
            stepping = [p for p in params if id(p) in members]
            if stepping:
                yield bucket, stepping, {id(p) for p in stepping if id(p) in new_ids}

    def _pack(self, group: dict, params: list[Tensor], host_steps: list[int]) -> FlatBucket:
        """A bucket for ``params``, whose first ``len(host_steps)`` already have state to copy in.

        ``host_steps`` are those parameters' step counts. ``self.state`` is
        re-pointed to views of the new bucket.
        """
        bucket = FlatBucket(
            params,
            self.moment_names(group),
            group["topC"],
            group["buffer_dtype"] or real_view(params[0]).dtype,
            key_dtype(group),
        )
        for i, steps in enumerate(host_steps):
            bucket.load_param_state(i, self.state[params[i]])
            bucket.host_steps[i] = steps
        bucket.publish(self.state)
        return bucket

    def _group_buckets(self, group: dict) -> dict:
        if not hasattr(self, "_buckets"):  # unpickled or deep-copied optimizer
            self._buckets = {}
            self._rebuild_buckets()
        entry = self._buckets.get(id(group))
        if entry is None or entry[0] is not group:
            entry = (group, {})
            self._buckets[id(group)] = entry
        return entry[1]

    def _rebuild_buckets(self) -> None:
        """Re-pack ``self.state`` (plain per-parameter tensors) into flat buckets."""
        self._buckets = {}
        for group in self.param_groups:
            buckets = self._group_buckets(group)
            with_state = [p for p in group["params"] if self.state.get(p)]
            for where in dict.fromkeys(bucket_key(p) for p in with_state):
                members = [p for p in with_state if bucket_key(p) == where]
                host_steps = [int(self.state[p]["step"]) for p in members]  # loading: host reads allowed
                buckets[where] = self._pack(group, members, host_steps)
                buckets[where].lockstep = buckets[where].shares_history()

    # ---- persistence ---------------------------------------------------------------------
    # torch.optim.Optimizer.load_state_dict runs the load hooks and ends in __setstate__,
    # which re-packs: every counter, moment, buffer and key is copied into fresh flat
    # storage in the optimizer's own dtypes (keys, integer counters, ``buffer_dtype``)
    # and on each parameter's device, so a state saved on one device loads on another.

    def state_dict(self) -> dict:
        """``torch.optim.Optimizer.state_dict``, with each parameter's state as a plain dict."""
        saved = super().state_dict()
        saved["state"] = {k: dict(v) if isinstance(v, BucketState) else v for k, v in saved["state"].items()}
        return saved

    def __setstate__(self, state: dict) -> None:
        for key, saved in state["state"].items():  # before anything changes: a foreign state is refused whole
            if not isinstance(key, Tensor) or not saved:
                continue  # a non-parameter entry is kept as it is, as torch does
            missing = [name for name in BUFFER_ENTRIES if name not in saved]
            if missing:
                raise ValueError(
                    f"state_dict is not from a {type(self).__name__}: the state of a parameter of shape "
                    f"{tuple(key.shape)} lacks {missing}"
                )
        super().__setstate__(state)
        for group in self.param_groups:
            group.setdefault("foreach", True)
            group.setdefault("buffer_dtype", None)
            group.setdefault("fused", None)
            group.setdefault("maximize", False)
            group.setdefault("capturable", False)
            group.setdefault("differentiable", False)
        self._rebuild_buckets()

    def add_param_group(self, param_group: dict) -> None:
        super().add_param_group(param_group)
        check_torch_flags(type(self), self.param_groups[-1])
        self._check_group(self.param_groups[-1])
        check_fused(type(self), rule_for(type(self)), self.param_groups[-1])
        decoupled = self._decoupled(self.param_groups[-1])
        if not isinstance(decoupled, bool):
            raise ValueError(f"invalid decoupled_weight_decay: {decoupled!r} (must be True or False)")

    def _check_group(self, group: dict) -> None:
        """Validate one group's hyperparameters (called for every group)."""


def key_on(device: torch.device, key: Tensor) -> Tensor:
    """The priority key on a bucket's device.

    To an accelerator the copy is asynchronous, ordered on its stream before the
    kernels that read it. To the host it blocks: the host reads the decision made
    from it (a CPU bucket in a group whose first gradient is on a GPU), and an
    asynchronous copy could be read before it lands.
    """
    return key.to(device, non_blocking=device.type != "cpu")


def _pieces(flat: Tensor, params: list[Tensor]) -> list[Tensor] | tuple[Tensor, ...]:
    """Split an update over a chunk into the chunk's parameter pieces."""
    return [flat] if len(params) == 1 else flat.split([q.numel() for q in params])
