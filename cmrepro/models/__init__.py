"""Model builders by name. Each builder takes the model config and what the data tells it."""

from .registry import MODEL_NAMES, ModelSpec, build_model

__all__ = ["MODEL_NAMES", "ModelSpec", "build_model"]
