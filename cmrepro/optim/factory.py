"""Build any optimizer of the paper from a name and keyword arguments.

Names: ``adam``, ``adamw``, ``sgd`` (torch), ``adam_cm``, ``adam_cg``,
``sgd_cm``, ``sgd_cg`` (cmrepro), and any of them with ``_sam`` after the
first word for the SAM version: ``adam_sam`` (Adam+SAM), ``adam_sam_cm``
(Adam+SAM+CM), ``sgd_sam``, ... . This is what the Hydra configs call.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.optim import Optimizer

from .adam_cg import AdamCG
from .adam_cm import AdamCM
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


def _sam_name(base: str) -> str:
    first, _, rest = base.partition("_")
    return f"{first}_sam_{rest}" if rest else f"{first}_sam"


OPTIMIZER_NAMES: tuple[str, ...] = tuple(BASE_OPTIMIZERS) + tuple(_sam_name(n) for n in BASE_OPTIMIZERS)


def create_optimizer(name: str, params, *, model: nn.Module | None = None, **kwargs) -> Optimizer:
    """``create_optimizer("adam_sam_cm", model.parameters(), lr=1e-3, rho=0.05, model=model)``.

    ``model`` is used by the SAM variants only (BatchNorm statistics, see
    :class:`~cmrepro.optim.SAM`); ``rho`` is accepted by the SAM variants only.
    """
    if name not in OPTIMIZER_NAMES:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(OPTIMIZER_NAMES)}")
    if "_sam" not in name:
        if "rho" in kwargs:
            raise ValueError(f"invalid rho for {name!r}: only the SAM variants ({_sam_name(name)}) take rho")
        return BASE_OPTIMIZERS[name](params, **kwargs)
    base = name.replace("_sam", "", 1)
    return SAM(params, BASE_OPTIMIZERS[base], model=model, **kwargs)
