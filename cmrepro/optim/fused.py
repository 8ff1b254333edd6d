"""The fused step: a bucket's whole elementwise step as one compiled kernel.

With ``fused=True`` a param group's bucket is stepped by its class's rule from
:mod:`cmrepro.optim.fused_rules`, compiled by ``torch.compile`` (inductor: C++
with OpenMP on a CPU, Triton on a GPU) into one loop over the bucket's flat
parameters, gradient, moments, running sum and the one buffer row that the
step writes. What is not elementwise stays as it is: the priority key, the
insertion decision (a device tensor; on a CPU also read on the host, which is
a plain memory read), and the keys and counters, which are ``(P, C)`` small.

Compilation happens once per rule and variant (device, dtypes, and whether the
slot is a host-chosen row or a device index), for any bucket size: shapes are
compiled dynamic, and every hyperparameter and the step count are tensor
arguments, so neither a new learning rate nor a new step recompiles.
:data:`COMPILE_LOG` records the seconds each compilation took; :func:`on_compile`
lets a caller say something before one starts (it is silent for seconds to minutes).
"""

from __future__ import annotations

import time
import types
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from .buffer import Decision
from .fused_rules import HYPER, FusedRule

# emulate_precision_casts: round at every explicit cast as eager does (a bf16
# buffer stores the rounded value and the running sum adds the rounded value),
# instead of keeping the wider intermediate.
COMPILE_OPTIONS = {"emulate_precision_casts": True}


@dataclass(frozen=True)
class CompileRecord:
    """One compilation: which rule, which variant, and how long its first call took."""

    rule: str
    variant: str
    seconds: float


COMPILE_LOG: list[CompileRecord] = []

# One compiled function per (rule, variant). Each gets its own copy of the
# rule's code object: dynamo keeps its compiled graphs, and its recompile limit
# (8), per code object, and the variants of a rule should not share that budget.
_COMPILED: dict[tuple, object] = {}
_RAN: set[tuple] = set()  # variants that have run once
# Called with a variant's description before it compiles (on_compile); none by default: the
# optimizer prints nothing of its own, its caller decides what a person is told.
_COMPILE_LISTENERS: list[Callable[[str], None]] = []


def on_compile(listener: Callable[[str], None]) -> Callable[[], None]:
    """Call ``listener(description)`` before each new fused variant compiles (its first step:
    seconds to minutes); returns the function that removes it again."""
    _COMPILE_LISTENERS.append(listener)

    def remove() -> None:
        if listener in _COMPILE_LISTENERS:
            _COMPILE_LISTENERS.remove(listener)

    return remove


def compile_seconds() -> float:
    """Total seconds spent compiling fused steps in this process."""
    return sum(r.seconds for r in COMPILE_LOG)


def fused_step(
    rule: FusedRule,
    bucket,
    param: Tensor,
    grad: Tensor,
    decision: Decision,
    hyper: Tensor,
) -> None:
    """Run ``rule`` over the bucket in one kernel, the insertion already decided."""
    if decision.host is not None:  # CPU: the row is chosen here, the kernel writes it in its one loop
        store, slot = bucket.buffer[decision.host[0]], None
    else:
        store, slot = bucket.buffer, decision.slot.reshape(-1)[:1]
    moments = tuple(bucket.moments.values())
    # A few 0-d operations, outside the compiled loop (see cmrepro.optim.fused_rules).
    scalars = rule.scalars(hyper, bucket.step[:1], bucket.count[:1]).to(torch.promote_types(param.dtype, torch.float32))
    args = (param, grad, moments, bucket.total, store, slot, decision.insert.reshape(-1)[0], scalars)
    variant = (rule.name, param.device.type, param.dtype, store.dtype, store.dim(), len(moments))
    compiled = _COMPILED.get(variant)
    if compiled is None:
        compiled = torch.compile(_own_code(rule.loop), dynamic=True, fullgraph=True, options=COMPILE_OPTIONS)
        _COMPILED[variant] = compiled
        for listener in tuple(_COMPILE_LISTENERS):
            listener(_describe(variant))
    graphs = _graphs_compiled()
    start = time.perf_counter()
    try:
        compiled(*args)
    except Exception as error:
        if variant in _RAN:  # it compiled and ran before: not a compiler problem
            raise
        raise RuntimeError(  # the eager path needs no compiler: say so, in one line
            f"fused=True: compiling the {rule.name} step for {param.device.type} failed "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}); "
            "set fused=False to use the eager multi-tensor path"
        ) from error
    _RAN.add(variant)
    if _graphs_compiled() != graphs:  # this call compiled: a new variant, or a shape dynamo specialised
        if param.device.type == "cuda":
            torch.cuda.synchronize(param.device)
        COMPILE_LOG.append(CompileRecord(rule.name, _describe(variant), time.perf_counter() - start))


def check_fused(optimizer_class: type, rule: FusedRule | None, group: dict) -> None:
    """Refuse, in one line, a ``fused`` value that the fused step cannot honour."""
    fused = group["fused"]
    if fused is None or fused is False:
        return
    name = optimizer_class.__name__
    if fused is not True:
        raise ValueError(f"invalid fused: {fused!r} (must be True, False or None)")
    if group["foreach"] is False:
        raise ValueError(
            f"invalid fused=True with foreach=False for {name}: the fused step is a multi-tensor path; drop one"
        )
    if rule is None:
        raise ValueError(
            f"invalid fused=True for {name}: its direction() has no rule in cmrepro.optim.fused_rules; use fused=False"
        )
    if any(p.is_complex() for p in group["params"]):
        raise ValueError(
            f"invalid fused=True for complex parameters in {name}: the fused step compiles real dtypes "
            "(torch.optim.Adam(fused=True) refuses them too); use fused=False, which steps them as view_as_real"
        )
    devices = sorted({p.device.type for p in group["params"]} - {"cpu", "cuda"})
    if devices:
        raise ValueError(
            f"invalid fused=True for parameters on {devices}: the fused step compiles for cpu and cuda; use fused=False"
        )


def hyper_tensor(bucket, group: dict, decoupled: bool) -> Tensor:
    """The group's hyperparameters as one float64 tensor on the bucket's device.

    Always the same tensor for a bucket, written in place: a CUDA graph captured
    around the step reads it at its address, so a new value must land there.
    Python numbers are written when they change, copied from the host without a
    synchronisation. A tensor ``lr`` is copied on the device on every step, in the
    graph too: a replay then reads it as it is now (``lr.fill_(x)``, as torch's
    schedulers do for tensor learning rates).
    """
    weight_decay = group["weight_decay"]
    betas = group.get("betas", (0.0, 0.0))
    values = dict(
        lr=group["lr"],
        beta1=betas[0],
        beta2=betas[1],
        eps=group.get("eps", 0.0),
        decoupled_wd=weight_decay if decoupled else 0.0,
        coupled_wd=0.0 if decoupled else weight_decay,
        momentum=group.get("momentum", 0.0),
        dampening=group.get("dampening", 0.0),
    )
    key = tuple(0.0 if isinstance(values[name], Tensor) else float(values[name]) for name in HYPER)
    if bucket.fused_hyper is None:
        bucket.fused_hyper = (None, torch.zeros(len(HYPER), dtype=torch.float64, device=bucket.device))
    written, tensor = bucket.fused_hyper
    if written != key:
        host = torch.tensor(key, dtype=torch.float64)
        if bucket.device.type == "cuda":
            host = host.pin_memory()  # a non-blocking copy: no host synchronisation
        tensor.copy_(host, non_blocking=True)
        bucket.fused_hyper = (key, tensor)
    for i, name in enumerate(HYPER):
        if isinstance(values[name], Tensor):
            tensor[i].copy_(values[name].reshape(()), non_blocking=True)
    return tensor


def _graphs_compiled() -> int:
    """Graphs dynamo has compiled in this process (a counter, read without touching the device)."""
    return torch._dynamo.utils.counters["stats"]["unique_graphs"]


def _own_code(rule) -> types.FunctionType:
    """``rule`` with a private copy of its code object (see :data:`_COMPILED`)."""
    return types.FunctionType(rule.__code__.replace(), rule.__globals__, rule.__name__)


def _describe(variant: tuple) -> str:
    _, device, dtype, store_dtype, store_dim, _ = variant
    slot = "host row" if store_dim == 1 else "device slot"
    return (
        f"{device} {str(dtype).removeprefix('torch.')} params, {str(store_dtype).removeprefix('torch.')} buffer, {slot}"
    )
