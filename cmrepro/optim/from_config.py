"""An optimizer from its config section: ``optimizer_from_config(cfg["optimizer"], model.parameters())``.

The adapter between a run config's ``optimizer`` mapping (``name`` plus the optimizer's keyword
arguments, as ``conf/optimizer/*.yaml`` write them) and :func:`~cmrepro.optim.create_optimizer`.
It takes any ``Mapping`` (a plain dict, or an OmegaConf ``DictConfig``, which is one), so
``cmrepro.optim`` stays free of Hydra and OmegaConf.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from torch import nn
from torch.optim import Optimizer

from .factory import create_optimizer
from .weight_decay import SINGLE_FORM, base_optimizer, weight_decay_form


def optimizer_arguments(cfg: Mapping) -> dict:
    """The optimizer config as keyword arguments (``name`` removed, lists as tuples).

    ``weight_decay_form`` (official | decoupled | coupled, see :mod:`.weight_decay`) becomes the
    optimizer's ``decoupled_weight_decay``, here and nowhere else; torch's SGD and AdamW take
    none (one form only). A ValueError with one line for a bad form.
    """
    arguments = {key: _plain(value) for key, value in cfg.items() if key not in ("name", "weight_decay_form")}
    form = weight_decay_form(cfg)
    if form is not None and base_optimizer(cfg["name"]) not in SINGLE_FORM:
        arguments["decoupled_weight_decay"] = form == "decoupled"
    return arguments


def optimizer_from_config(cfg: Mapping, params: Iterable, model: nn.Module | None = None) -> Optimizer:
    """The optimizer ``cfg["name"]`` over ``params`` with the config's arguments.

    ``model``: for the SAM and MEG variants (their BatchNorm handling); the others ignore it.
    """
    return create_optimizer(cfg["name"], params, model=model, **optimizer_arguments(cfg))


def _plain(value):
    """Config lists (also OmegaConf's ListConfig) as tuples, e.g. ``betas``."""
    return tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
