"""An optimizer from its config section: ``optimizer_from_config(cfg["optimizer"], model.parameters())``.

The adapter between a run config's ``optimizer`` mapping (``name`` plus the optimizer's keyword
arguments, as ``conf/optimizer/*.yaml`` write them) and :func:`~cmrepro.optim.create_optimizer`.
It takes any ``Mapping`` (a plain dict, or an OmegaConf ``DictConfig``, which is one), so
``cmrepro.optim`` stays free of Hydra and OmegaConf.

An optimizer defined outside cmrepro is reached by naming its module in the config
(``module: mypkg.signum`` beside ``name: signum``): the module is imported before the name is
looked up, and its ``@register_optimizer("signum")`` makes the name known (docs/extending.md).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence

from torch import nn
from torch.optim import Optimizer

from .factory import create_optimizer, optimizer_names
from .weight_decay import SINGLE_FORM, base_optimizer, weight_decay_form

# Config keys that say which optimizer and how to find it, passed to no optimizer class.
NOT_ARGUMENTS = ("name", "module", "weight_decay_form")


def import_optimizer_module(cfg: Mapping) -> None:
    """Import ``cfg["module"]`` (if set), where the optimizer ``cfg["name"]`` is registered.

    A ValueError with one line when it cannot be imported, or registers no such name. Python
    imports a module once, so a second call costs nothing."""
    module = cfg.get("module")
    if module is None:
        return
    try:
        importlib.import_module(str(module))
    except ImportError as error:
        raise ValueError(
            f"invalid optimizer.module: {module!r} cannot be imported ({error}); "
            "put its package on PYTHONPATH or install it"
        ) from None
    if cfg.get("name") not in optimizer_names():
        raise ValueError(
            f"invalid optimizer.name: {cfg.get('name')!r} is not registered by module {module!r} "
            "(it needs @register_optimizer(name) on the class)"
        )


def optimizer_arguments(cfg: Mapping) -> dict:
    """The optimizer config as keyword arguments (``name`` removed, lists as tuples).

    ``weight_decay_form`` (official | decoupled | coupled, see :mod:`.weight_decay`) becomes the
    optimizer's ``decoupled_weight_decay``, here and nowhere else; torch's SGD and AdamW take
    none (one form only). A ValueError with one line for a bad form.
    """
    arguments = {key: _plain(value) for key, value in cfg.items() if key not in NOT_ARGUMENTS}
    form = weight_decay_form(cfg)
    if form is not None and base_optimizer(cfg["name"]) not in SINGLE_FORM:
        arguments["decoupled_weight_decay"] = form == "decoupled"
    return arguments


def optimizer_from_config(cfg: Mapping, params: Iterable, model: nn.Module | None = None) -> Optimizer:
    """The optimizer ``cfg["name"]`` over ``params`` with the config's arguments.

    ``model``: for the SAM and MEG variants (their BatchNorm handling); the others ignore it.
    """
    import_optimizer_module(cfg)
    return create_optimizer(cfg["name"], params, model=model, **optimizer_arguments(cfg))


def _plain(value):
    """Config lists (also OmegaConf's ListConfig) as tuples, e.g. ``betas``."""
    return tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else value
