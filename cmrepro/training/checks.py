"""Check a composed run config before any data is read or any model built.

Every problem is a ConfigError with one line naming the key and the value.
The optimizer's own argument checks are reused by building it on a dummy
parameter, so the rules live in one place (``cmrepro.optim``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError
from torch.optim import Optimizer

from ..data import DATASET_TASKS
from ..metrics import metrics_settings
from ..models import MODEL_NAMES
from ..models.registry import MODEL_TASKS, model_width
from ..optim import import_optimizer_module, optimizer_from_config, optimizer_names
from ..optim.weight_decay import weight_decay_form
from ..validation import check, is_integer, is_number
from .checkpoint_policy import AUTO, CheckpointEvery
from .compiled import compile_mode

DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
LOGGERS = ("local", "wandb")
# numpy's global generator (seeded from the run seed: the official CM code draws from it) takes
# seeds below 2**32 only.
MAX_SEED = 2**32 - 1


class ConfigError(ValueError):
    """A config value that cannot run; the message is one line."""


def check_config(cfg: Mapping) -> None:
    _check_int("seed", cfg["seed"], minimum=0, maximum=MAX_SEED)
    _check_trainer(cfg["trainer"])
    _check_choice("logger.name", cfg["logger"]["name"], LOGGERS)
    _check_data_and_model(cfg["dataset"], cfg["model"])
    _check_optimizer(cfg["optimizer"])
    _check_metrics(cfg.get("metrics"), cfg["dataset"].get("batch_size"))


def _check_trainer(cfg: Mapping) -> None:
    epochs = _check_int("trainer.epochs", cfg["epochs"], minimum=1)
    milestones = cfg["lr_milestones"]
    is_list = isinstance(milestones, list | tuple)
    valid = is_list and all(is_integer(m) and 1 <= m <= epochs for m in milestones)
    shown = list(milestones) if is_list else milestones
    expected = f"epochs between 1 and trainer.epochs={epochs}; for a shorter run set trainer.lr_milestones=[]"
    check(valid, "trainer.lr_milestones", shown, expected, ConfigError)
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
        CheckpointEvery.parse(cfg.get("checkpoint_every", AUTO))
    except ValueError as error:
        raise ConfigError(str(error)) from None
    for switch in ("checkpoint", "keep_checkpoint", "sync_batchnorm"):
        check_bool(f"trainer.{switch}", cfg[switch])
    _check_positive("trainer.dist_timeout_s", cfg["dist_timeout_s"])
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
    try:
        import_optimizer_module(cfg)  # where a user's optimizer registers its name
    except ValueError as error:
        raise ConfigError(str(error)) from None
    _check_choice("optimizer.name", name, optimizer_names())
    try:
        weight_decay_form(cfg)
    except ValueError as error:  # the weight-decay form's one line, naming its key
        raise ConfigError(str(error)) from None
    try:
        optimizer_from_config(cfg, [torch.zeros(1, requires_grad=True)])
    except ValueError as error:
        raise ConfigError(str(error).replace("invalid ", "invalid optimizer.", 1)) from None
    except TypeError as error:  # an argument the optimizer does not take
        raise ConfigError(f"invalid optimizer config for {name!r}: {error}") from None


def _check_metrics(cfg: Mapping | None, batch_size: int | None) -> None:
    try:
        metrics_settings(cfg, batch_size)
    except ValueError as error:  # the metrics module's own one-line message, naming the key
        raise ConfigError(str(error)) from None


def _check_int(key: str, value, minimum: int, maximum: int | None = None) -> int:
    within = is_integer(value) and value >= minimum and (maximum is None or value <= maximum)
    must = f"an integer >= {minimum}" if maximum is None else f"an integer from {minimum} to {maximum}"
    check(within, key, value, must, ConfigError)
    return value


def _check_positive(key: str, value) -> None:
    check(is_number(value) and value > 0, key, value, "a number > 0", ConfigError)


def check_bool(key: str, value) -> None:
    """A switch must be a YAML boolean: "yes" or 1 is refused rather than guessed."""
    check(isinstance(value, bool), key, value, "true or false", ConfigError)


def _check_choice(key: str, value, choices: tuple) -> None:
    if value not in choices:
        raise ConfigError(f"invalid {key}: {value!r} (choose one of: {', '.join(map(str, choices))})")


def resolved_config(cfg: DictConfig) -> dict:
    """``cfg`` as a plain dict with every interpolation resolved; a ConfigError naming the key
    whose value cannot be (``${oc.env:NAME}`` with NAME unset, a reference to no key)."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except InterpolationResolutionError as error:
        raw = OmegaConf.to_container(cfg, resolve=False)
        for part in str(error.full_key).split("."):
            raw = raw.get(part) if isinstance(raw, Mapping) else raw
        # OmegaConf's first line, less its "KeyError raised while resolving interpolation:" preamble.
        reason = re.sub(r"^.*resolving interpolation: ", "", str(error).splitlines()[0]).strip('"')
        raise ConfigError(
            f"cannot resolve {error.full_key}: {raw!r} ({reason}); "
            f"set the variable it reads, or give {error.full_key} a value on the command line"
        ) from None


def check_buffer_memory(optimizer: Optimizer, device: torch.device) -> None:
    """ConfigError when the critical-momenta buffers (``topC`` copies of every parameter, allocated
    at the first step) need more memory than ``device`` has free: refused before the run starts,
    not at its first step."""
    groups = [group for group in optimizer.param_groups if group.get("topC")]
    if not groups:
        return
    per_copy = sum(_buffer_item_bytes(group) * p.numel() for group in groups for p in group["params"])
    capacity = max(group["topC"] for group in groups)
    free = free_memory(device)
    if free is None or capacity * per_copy <= free:
        return
    raise ConfigError(
        f"invalid optimizer.topC: {capacity} (must be at most {free // per_copy} here: its buffer would need "
        f"{_size(capacity * per_copy)}, {capacity} copies of the parameters' {_size(per_copy)}, and "
        f"{device.type} has {_size(free)} free)"
    )


def _buffer_item_bytes(group: dict) -> int:
    dtype = group.get("buffer_dtype") or group["params"][0].dtype
    return torch.empty(0, dtype=dtype).element_size()


def free_memory(device: torch.device) -> int | None:
    """Bytes free on ``device`` now (a GPU's free memory; the host's available memory); None if unknown."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # Linux: what can be allocated without swapping
        with open("/proc/meminfo") as meminfo:
            available = next(line for line in meminfo if line.startswith("MemAvailable:"))
        return int(available.split()[1]) * 1024
    except (OSError, StopIteration):
        return None


def _size(count: int) -> str:
    """``count`` bytes in the largest unit that keeps it at least 1 (decimal units)."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if count < 1000 or unit == "PB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
