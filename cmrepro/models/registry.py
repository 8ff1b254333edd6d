"""Build a model from its config (``model.name`` plus its options) and the data's shape."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from .cifar_resnet import cifar_resnet
from .efficientnet import efficientnet_b0
from .lstm import LSTMLanguageModel


@dataclass(frozen=True)
class ModelSpec:
    """What a builder needs to know about the data."""

    task: str  # "classification" or "language_model"
    num_classes: int | None = None
    vocab_size: int | None = None
    in_channels: int = 3


def _lstm(cfg: Mapping, spec: ModelSpec) -> nn.Module:
    return LSTMLanguageModel(
        spec.vocab_size,
        embedding_dim=cfg.get("embedding_dim", 64),
        hidden_dim=cfg.get("hidden_dim", 128),
        num_layers=cfg.get("num_layers", 1),
        dropout=cfg.get("dropout", 0.0),
        tie_weights=cfg.get("tie_weights", False),
    )


def _resnet(depth: int) -> Callable[[Mapping, ModelSpec], nn.Module]:
    return lambda cfg, spec: cifar_resnet(depth, spec.num_classes, spec.in_channels)


def _efficientnet(cfg: Mapping, spec: ModelSpec) -> nn.Module:
    return efficientnet_b0(spec.num_classes, implementation=cfg.get("implementation", "efficientnet_pytorch"))


_BUILDERS: dict[str, tuple[str, Callable[[Mapping, ModelSpec], nn.Module]]] = {
    "lstm": ("language_model", _lstm),
    "resnet18": ("classification", _resnet(18)),
    "resnet34": ("classification", _resnet(34)),
    "efficientnet_b0": ("classification", _efficientnet),
}
MODEL_NAMES = tuple(_BUILDERS)
MODEL_TASKS = {name: task for name, (task, _) in _BUILDERS.items()}


def build_model(cfg: Mapping, spec: ModelSpec) -> nn.Module:
    """``cfg["name"]`` selects the builder; a model for the wrong task is a ValueError."""
    name = cfg["name"]
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_NAMES)}")
    task, builder = _BUILDERS[name]
    if task != spec.task:
        raise ValueError(
            f"model {name!r} is for {task.replace('_', ' ')}, but the dataset is {spec.task.replace('_', ' ')}"
        )
    return builder(cfg, spec)
