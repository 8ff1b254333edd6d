"""Check a composed run config before any data is read or any model built.

Every problem is a ConfigError with one line naming the key and the value.
The optimizer's own argument checks are reused by building it on a dummy
parameter, so the rules live in one place (``cmrepro.optim``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from numbers import Integral, Real

import torch

from ..data import DATASET_TASKS
from ..metrics import metrics_settings
from ..models import MODEL_NAMES
from ..models.registry import MODEL_TASKS, model_width
from ..optim import OPTIMIZER_NAMES, create_optimizer
from ..weight_decay import SINGLE_FORM, base_optimizer, weight_decay_form
from .compiled import compile_mode

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
LOGGERS = ("local", "wandb")


class ConfigError(ValueError):
    """A config value that cannot run; the message is one line."""


def check_config(cfg: Mapping) -> None:
    _check_int("seed", cfg["seed"], minimum=0)
    _check_trainer(cfg["trainer"])
    _check_choice("logger.name", cfg["logger"]["name"], LOGGERS)
    _check_data_and_model(cfg["dataset"], cfg["model"])
    _check_optimizer(cfg["optimizer"])
    _check_metrics(cfg.get("metrics"), cfg["dataset"].get("batch_size"))


def optimizer_arguments(cfg: Mapping) -> dict:
    """The optimizer config as keyword arguments (``name`` removed, lists as tuples).

    ``weight_decay_form`` (official | decoupled | coupled, see :mod:`cmrepro.weight_decay`) becomes
    the optimizer's ``decoupled_weight_decay``, here and nowhere else; torch's SGD and AdamW take
    none (one form only). A ValueError with one line for a bad form.
    """
    arguments = {key: _plain(value) for key, value in cfg.items() if key not in ("name", "weight_decay_form")}
    form = weight_decay_form(cfg)
    if form is not None and base_optimizer(cfg["name"]) not in SINGLE_FORM:
        arguments["decoupled_weight_decay"] = form == "decoupled"
    return arguments


def _plain(value):
    """Config lists (also OmegaConf's ListConfig) as tuples, e.g. ``betas``."""
    return tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else value


def _check_trainer(cfg: Mapping) -> None:
    epochs = _check_int("trainer.epochs", cfg["epochs"], minimum=1)
    milestones = cfg["lr_milestones"]
    if not isinstance(milestones, list | tuple) or not all(_is_int(m) and 1 <= m <= epochs for m in milestones):
        raise ConfigError(
            f"invalid trainer.lr_milestones: {list(milestones)!r} (must be epochs between 1 and {epochs})"
        )
    _check_positive("trainer.lr_gamma", cfg["lr_gamma"])
    if cfg["grad_clip"] is not None:
        _check_positive("trainer.grad_clip", cfg["grad_clip"])
    _check_choice("trainer.device", cfg["device"], DEVICES)
    if cfg["device"] == "cuda" and not torch.cuda.is_available():
        raise ConfigError("invalid trainer.device: 'cuda' (no CUDA device is visible; use trainer.device=cpu or auto)")
    _check_choice("trainer.precision", cfg["precision"], PRECISIONS)
    _check_choice("trainer.progress", cfg["progress"], ("auto", True, False))
    try:
        compile_mode(cfg.get("compile", False))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for switch in ("checkpoint", "keep_checkpoint"):
        check_bool(f"trainer.{switch}", cfg[switch])
    if cfg["max_steps_per_epoch"] is not None:
        _check_int("trainer.max_steps_per_epoch", cfg["max_steps_per_epoch"], minimum=1)


def _check_data_and_model(dataset: Mapping, model: Mapping) -> None:
    _check_choice("dataset.name", dataset["name"], tuple(DATASET_TASKS))
    _check_choice("model.name", model["name"], MODEL_NAMES)
    for key in ("batch_size", "eval_batch_size"):
        if key in dataset:
            _check_int(f"dataset.{key}", dataset[key], minimum=1)
    try:
        model_width(model)
    except ValueError as error:
        raise ConfigError(str(error)) from None
    data_task, model_task = DATASET_TASKS[dataset["name"]], MODEL_TASKS[model["name"]]
    if data_task != model_task:
        raise ConfigError(
            f"invalid model.name: {model['name']!r} is a {model_task.replace('_', ' ')} model but "
            f"dataset {dataset['name']!r} is {data_task.replace('_', ' ')}"
        )


def _check_optimizer(cfg: Mapping) -> None:
    name = cfg["name"]
    _check_choice("optimizer.name", name, OPTIMIZER_NAMES)
    try:
        arguments = optimizer_arguments(cfg)
    except ValueError as error:  # the weight-decay form's one line, naming its key
        raise ConfigError(str(error)) from None
    probe = [torch.zeros(1, requires_grad=True)]
    try:
        create_optimizer(name, probe, **arguments)
    except ValueError as error:
        raise ConfigError(str(error).replace("invalid ", "invalid optimizer.", 1)) from None
    except TypeError as error:  # an argument the optimizer does not take
        raise ConfigError(f"invalid optimizer config for {name!r}: {error}") from None


def _check_metrics(cfg: Mapping | None, batch_size: int | None) -> None:
    try:
        metrics_settings(cfg, batch_size)
    except ValueError as error:  # the metrics module's own one-line message, naming the key
        raise ConfigError(str(error)) from None


def _is_int(value) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool)


def _check_int(key: str, value, minimum: int) -> int:
    if not _is_int(value) or value < minimum:
        raise ConfigError(f"invalid {key}: {value!r} (must be an integer >= {minimum})")
    return value


def _check_positive(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, Real) or not value > 0:
        raise ConfigError(f"invalid {key}: {value!r} (must be a number > 0)")


def check_bool(key: str, value) -> None:
    """A switch must be a YAML boolean: "yes" or 1 is refused rather than guessed."""
    if not isinstance(value, bool):
        raise ConfigError(f"invalid {key}: {value!r} (must be true or false)")


def _check_choice(key: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"invalid {key}: {value!r} (choose one of: {', '.join(map(str, choices))})")
