"""The optimizers of the paper as plain ``torch.optim.Optimizer`` classes.

``from cmrepro.optim import AdamCM`` and use it like ``torch.optim.Adam``.
Nothing here imports the rest of cmrepro.
"""

from .adam_cg import AdamCG
from .adam_cm import AdamCM
from .factory import OPTIMIZER_NAMES, create_optimizer, needs_closure, optimizer_names, register_optimizer
from .from_config import import_optimizer_module, optimizer_arguments, optimizer_from_config
from .meg import MEG
from .sam import SAM, frozen_batchnorm_statistics
from .sgd_cg import SGDCG
from .sgd_cm import SGDCM

__all__ = [
    "AdamCG",
    "AdamCM",
    "MEG",
    "OPTIMIZER_NAMES",
    "SAM",
    "SGDCG",
    "SGDCM",
    "create_optimizer",
    "frozen_batchnorm_statistics",
    "import_optimizer_module",
    "needs_closure",
    "optimizer_arguments",
    "optimizer_from_config",
    "optimizer_names",
    "register_optimizer",
]
