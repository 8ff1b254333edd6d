"""``torch.optim``'s common flags on the critical-buffer optimizers: ``foreach``, ``maximize``,
``capturable``, ``differentiable``.

- ``foreach``: ``None`` (torch's default, "pick the fast path") and ``True`` take the
  multi-tensor path wherever a bucket can be updated as flat tensors; ``False`` the
  per-parameter path.
- ``maximize``: the step ascends; the rules see ``-grad`` (the priority key, a norm, is unchanged).
- ``capturable``: accepted and changes nothing: the step never reads a device tensor on
  the host, so it can be captured in a CUDA graph either way (docs/optimizers.md, "CUDA graphs").
- ``differentiable=True`` is refused: the buffer keeps or drops an element by comparing keys.
"""

from __future__ import annotations

from ..validation import check


def uses_foreach(group: dict) -> bool:
    return group["foreach"] is not False


def check_torch_flags(optimizer_class: type, group: dict) -> None:
    """One ValueError per flag a group sets to something the optimizers cannot honour."""
    check(group["foreach"] in (None, True, False), "foreach", group["foreach"], "True, False or None")
    for flag in ("maximize", "capturable"):
        check(isinstance(group[flag], bool), flag, group[flag], "True or False")
    if group["differentiable"] is not False:
        raise ValueError(
            f"invalid differentiable: {group['differentiable']!r} for {optimizer_class.__name__} (must be False: "
            "whether the buffer keeps an element is a comparison of keys, which autograd cannot differentiate)"
        )
