"""Build any optimizer of the paper from a name and keyword arguments.

Names: ``adam``, ``adamw``, ``sgd`` (torch), ``adam_cm``, ``adam_cg``,
``sgd_cm``, ``sgd_cg`` (cmrepro), and any of them with ``_sam`` after the
first word for the SAM version: ``adam_sam`` (Adam+SAM), ``adam_sam_cm``
(Adam+SAM+CM), ``sgd_sam``, ... , or with ``_meg`` for the momentum-extragradient
version: ``adam_meg`` (Adam+MEG), ``adam_meg_cm``, ... . This is what the Hydra
configs call.

A new optimizer class needs one registration, and its SAM and MEG versions come with it::

    @register_optimizer("signum")
    class Signum(torch.optim.Optimizer): ...

    register_optimizer("nadam", torch.optim.NAdam)  # a class one does not own

after which ``create_optimizer("signum", ...)``, ``create_optimizer("signum_sam", ...)`` and the
config check of a run (``optimizer.name: signum``) know it (docs/extending.md).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence

import torch
from torch import nn
from torch.optim import Optimizer

from .adam_cg import AdamCG
from .adam_cm import AdamCM
from .meg import MEG
from .sam import SAM
from .sgd_cg import SGDCG
from .sgd_cm import SGDCM

# The registered base optimizers, by name: filled by register_optimizer only.
_BASE_OPTIMIZERS: dict[str, type[Optimizer]] = {}

# Wrappers around any base optimizer: the infix in the name, the class, the arguments only it takes.
WRAPPERS: dict[str, tuple[type[Optimizer], tuple[str, ...]]] = {
    "sam": (SAM, ("rho",)),
    "meg": (MEG, ("gamma", "heavy_ball")),
}

# A name is part of config values and wrapped names: lower-case words joined by "_".
_NAME = re.compile(r"[a-z][a-z0-9]*(_[a-z0-9]+)*")


def register_optimizer(name: str, cls: type[Optimizer] | None = None):
    """Make ``cls`` known to :func:`create_optimizer` as ``name``, and its SAM and MEG versions
    as :func:`wrapped_name` spells them. As a decorator: ``@register_optimizer("signum")``.

    A ValueError (one line) for a name that is not lower-case words joined by ``_``, whose second
    word is a wrapper's (``adam_sam`` would read as SAM around ``adam``), or that is taken by
    another class. Registering the same class under its name again changes nothing (a module
    imported twice)."""

    def register(cls: type[Optimizer]) -> type[Optimizer]:
        _check_new_name(name, cls)
        _BASE_OPTIMIZERS[name] = cls
        return cls

    return register if cls is None else register(cls)


def _check_new_name(name: str, cls) -> None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"invalid optimizer name {name!r}: must be lower-case words joined by '_', e.g. 'my_adam'")
    if not isinstance(cls, type):
        raise ValueError(f"invalid optimizer class for {name!r}: {cls!r} (must be a class, e.g. torch.optim.Adam)")
    second = name.split("_")[1] if "_" in name else None
    if second in WRAPPERS:
        raise ValueError(
            f"invalid optimizer name {name!r}: its second word {second!r} names the {second.upper()} "
            "wrapper; choose another name"
        )
    taken = _BASE_OPTIMIZERS.get(name)
    if taken is not None and taken is not cls:
        raise ValueError(
            f"optimizer name {name!r} is taken by {_qualified(taken)}; register {_qualified(cls)} under another name"
        )


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


register_optimizer("adam", torch.optim.Adam)
register_optimizer("adamw", torch.optim.AdamW)
register_optimizer("sgd", torch.optim.SGD)
register_optimizer("adam_cm", AdamCM)
register_optimizer("adam_cg", AdamCG)
register_optimizer("sgd_cm", SGDCM)
register_optimizer("sgd_cg", SGDCG)


def wrapped_name(base: str, wrapper: str) -> str:
    """The name of ``wrapper`` (``sam``, ``meg``) around ``base``: after the first word (``adam_sam_cm``)."""
    first, _, rest = base.partition("_")
    return f"{first}_{wrapper}_{rest}" if rest else f"{first}_{wrapper}"


def optimizer_names() -> tuple[str, ...]:
    """Every name :func:`create_optimizer` takes now: the registered ones, then their wrapped versions."""
    bases = tuple(_BASE_OPTIMIZERS)
    return bases + tuple(wrapped_name(base, wrapper) for wrapper in WRAPPERS for base in bases)


class _LiveNames(Sequence):
    """:func:`optimizer_names` as a sequence that sees later registrations (``OPTIMIZER_NAMES``)."""

    def __getitem__(self, index):
        return optimizer_names()[index]

    def __len__(self) -> int:
        return len(optimizer_names())

    def __iter__(self) -> Iterator[str]:
        return iter(optimizer_names())

    def __contains__(self, name) -> bool:
        return name in optimizer_names()

    def __repr__(self) -> str:
        return repr(optimizer_names())


#: Every name create_optimizer takes, read at each use (kept for code written against the tuple).
OPTIMIZER_NAMES: Sequence[str] = _LiveNames()


def create_optimizer(name: str, params, *, model: nn.Module | None = None, **kwargs) -> Optimizer:
    """``create_optimizer("adam_sam_cm", model.parameters(), lr=1e-3, rho=0.05, model=model)``.

    ``model`` is used by the SAM and MEG variants only (BatchNorm statistics, see
    :class:`~cmrepro.optim.SAM`); ``rho`` is accepted by the SAM variants only,
    ``gamma`` and ``heavy_ball`` by the MEG variants only.
    """
    names = optimizer_names()
    if name not in names:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(names)}")
    first, *rest = name.split("_")
    wrapper = rest[0] if rest and rest[0] in WRAPPERS else None  # "adam_sam_cm": SAM around adam_cm
    base = "_".join([first, *rest[1:]]) if wrapper else name
    for other, (_, arguments) in WRAPPERS.items():
        refused = [key for key in arguments if key in kwargs and other != wrapper]
        if refused:
            raise ValueError(
                f"invalid {refused[0]} for {name!r}: only the {other.upper()} variants "
                f"({wrapped_name(base, other)}) take {refused[0]}"
            )
    if wrapper is None:
        return _BASE_OPTIMIZERS[name](params, **kwargs)
    return WRAPPERS[wrapper][0](params, _BASE_OPTIMIZERS[base], model=model, **kwargs)


def needs_closure(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.step`` must be given a closure that re-evaluates the loss (SAM, MEG).

    Training loops call ``optimizer.step(closure)`` when this holds, ``optimizer.step()`` otherwise.
    """
    return isinstance(optimizer, tuple(cls for cls, _ in WRAPPERS.values()))
