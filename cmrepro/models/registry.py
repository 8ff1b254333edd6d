"""Build a model from its config (``model.name`` plus its options) and the data's shape."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from torch import nn

from ..validation import check, is_number
from .cifar_resnet import cifar_resnet
from .efficientnet import efficientnet_b0
from .lamaml_cnn import lamaml_cnn
from .lstm import LSTMLanguageModel


@dataclass(frozen=True)
class ModelSpec:
    """What a builder needs to know about the data."""

    task: str  # "classification" or "language_model"
    num_classes: int | None = None
    vocab_size: int | None = None
    in_channels: int = 3
    image_size: int | None = None  # side of square image inputs, for models whose size depends on it


def model_width(cfg: Mapping) -> float:
    """``cfg["width"]``: every builder's channel (or hidden size) multiplier; 1.0 is the paper's model."""
    width = cfg.get("width", 1.0)
    check(is_number(width) and 0 < width <= 16, "model.width", width, "a number in (0, 16]")
    return float(width)


def _scaled(size: int, width: float) -> int:
    return max(1, round(size * width))


def _lstm(cfg: Mapping, spec: ModelSpec) -> nn.Module:
    width = model_width(cfg)
    return LSTMLanguageModel(
        spec.vocab_size,
        embedding_dim=_scaled(cfg.get("embedding_dim", 64), width),
        hidden_dim=_scaled(cfg.get("hidden_dim", 128), width),
        num_layers=cfg.get("num_layers", 1),
        dropout=cfg.get("dropout", 0.0),
        tie_weights=cfg.get("tie_weights", False),
    )


def _resnet(depth: int) -> Callable[[Mapping, ModelSpec], nn.Module]:
    return lambda cfg, spec: cifar_resnet(depth, spec.num_classes, spec.in_channels, model_width(cfg))


def _efficientnet(cfg: Mapping, spec: ModelSpec) -> nn.Module:
    implementation = cfg.get("implementation", "efficientnet_pytorch")
    return efficientnet_b0(spec.num_classes, implementation=implementation, width=model_width(cfg))


def _lamaml_cnn(cfg: Mapping, spec: ModelSpec) -> nn.Module:
    width = model_width(cfg)
    return lamaml_cnn(
        spec.num_classes,
        spec.in_channels,
        image_size=spec.image_size or 64,
        channels=_scaled(cfg.get("channels", 160), width),
        hidden=_scaled(cfg.get("hidden", 640), width),
        conv_layers=cfg.get("conv_layers", 4),
    )


_BUILDERS: dict[str, tuple[str, Callable[[Mapping, ModelSpec], nn.Module]]] = {
    "lstm": ("language_model", _lstm),
    "resnet18": ("classification", _resnet(18)),
    "resnet34": ("classification", _resnet(34)),
    "efficientnet_b0": ("classification", _efficientnet),
    "lamaml_cnn": ("classification", _lamaml_cnn),
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
