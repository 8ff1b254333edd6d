"""Build any optimizer of the paper from a name and keyword arguments.

Names: ``adam``, ``adamw``, ``sgd`` (torch), ``adam_cm``, ``adam_cg``,
``sgd_cm``, ``sgd_cg`` (cmrepro), and any of them with ``_sam`` after the
first word for the SAM version: ``adam_sam`` (Adam+SAM), ``adam_sam_cm``
(Adam+SAM+CM), ``sgd_sam``, ... , or with ``_meg`` for the momentum-extragradient
version: ``adam_meg`` (Adam+MEG), ``adam_meg_cm``, ... . This is what the Hydra
configs call.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import Optimizer

from .adam_cg import AdamCG
from .adam_cm import AdamCM
from .meg import MEG
from .sam import SAM
from .sgd_cg import SGDCG
from .sgd_cm import SGDCM

BASE_OPTIMIZERS: dict[str, type[Optimizer]] = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "adam_cm": AdamCM,
    "adam_cg": AdamCG,
    "sgd_cm": SGDCM,
    "sgd_cg": SGDCG,
}


# Wrappers around any base optimizer: the infix in the name, the class, the arguments only it takes.
WRAPPERS: dict[str, tuple[type[Optimizer], tuple[str, ...]]] = {
    "sam": (SAM, ("rho",)),
    "meg": (MEG, ("gamma", "heavy_ball")),
}


def _wrapped_name(base: str, wrapper: str) -> str:
    first, _, rest = base.partition("_")
    return f"{first}_{wrapper}_{rest}" if rest else f"{first}_{wrapper}"


OPTIMIZER_NAMES: tuple[str, ...] = tuple(BASE_OPTIMIZERS) + tuple(
    _wrapped_name(n, wrapper) for wrapper in WRAPPERS for n in BASE_OPTIMIZERS
)


def create_optimizer(name: str, params, *, model: nn.Module | None = None, **kwargs) -> Optimizer:
    """``create_optimizer("adam_sam_cm", model.parameters(), lr=1e-3, rho=0.05, model=model)``.

    ``model`` is used by the SAM and MEG variants only (BatchNorm statistics, see
    :class:`~cmrepro.optim.SAM`); ``rho`` is accepted by the SAM variants only,
    ``gamma`` and ``heavy_ball`` by the MEG variants only.
    """
    if name not in OPTIMIZER_NAMES:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZER_NAMES)}")
    first, *rest = name.split("_")
    wrapper = rest[0] if rest and rest[0] in WRAPPERS else None  # "adam_sam_cm": SAM around adam_cm
    base = "_".join([first, *rest[1:]]) if wrapper else name
    for other, (_, arguments) in WRAPPERS.items():
        refused = [key for key in arguments if key in kwargs and other != wrapper]
        if refused:
            raise ValueError(
                f"invalid {refused[0]} for {name!r}: only the {other.upper()} variants "
                f"({_wrapped_name(base, other)}) take {refused[0]}"
            )
    if wrapper is None:
        return BASE_OPTIMIZERS[name](params, **kwargs)
    return WRAPPERS[wrapper][0](params, BASE_OPTIMIZERS[base], model=model, **kwargs)


def needs_closure(optimizer: Optimizer) -> bool:
    """Whether ``optimizer.step`` must be given a closure that re-evaluates the loss (SAM, MEG).

    Training loops call ``optimizer.step(closure)`` when this holds, ``optimizer.step()`` otherwise.
    """
    return isinstance(optimizer, tuple(cls for cls, _ in WRAPPERS.values()))
