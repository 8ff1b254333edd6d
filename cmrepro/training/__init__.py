"""Supervised training: config checks, the loop, checkpoints and run records.

``train(cfg, run_dir)`` runs one configured training job; it needs no Hydra
(``cmrepro.train`` is the Hydra entry point around it).
"""

from .checkpoint import CheckpointError
from .checks import ConfigError, check_config
from .loop import train

__all__ = ["CheckpointError", "ConfigError", "check_config", "train"]
