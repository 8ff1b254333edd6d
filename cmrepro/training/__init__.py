"""Training: config checks, the supervised and task-stream loops, checkpoints and run records.

``train(cfg, run_dir)`` runs one configured training job (:mod:`.dispatch` picks its loop); it
needs no Hydra (``cmrepro.train`` is the Hydra entry point around it).
"""

from .checkpoint import CheckpointError
from .checks import ConfigError, check_config
from .dispatch import process_env, train
from .interrupts import Interrupted

__all__ = ["CheckpointError", "ConfigError", "Interrupted", "check_config", "process_env", "train"]
