"""Training-time analysis of Section 5.2 and Appendix A.3 (Figures 8, 9, 19, 20).

- :mod:`.sharpness`: the largest Hessian eigenvalue of the training loss (Lanczos on Hessian-vector products);
- :mod:`.distance`: L2 distance of the parameters from their initial values;
- :mod:`.buffer_statistics`: buffer variance and cosine similarity, read from the optimizer's diagnostics;
- :mod:`.m_sharpness`: m-sharpness (eq. 15) with SAM's one-step inner maximisation;
- :mod:`.tracker`: the per-run object the training loop calls after each epoch;
- :mod:`.settings`, :mod:`.batches`, :mod:`.losses`, :mod:`.contexts`: its config, the fixed
  batch set, the per-task loss, and the guards that keep training undisturbed.

See docs/analysis.md.
"""

from .buffer_statistics import buffer_metrics
from .distance import distance_from, snapshot
from .losses import BatchLoss, loss_for
from .m_sharpness import m_sharpness
from .settings import MetricsSettings, metrics_settings
from .sharpness import Eigenvalue, hessian_vector_product, sharpness, top_eigenvalue
from .tracker import TrainingMetrics

__all__ = [
    "BatchLoss",
    "Eigenvalue",
    "MetricsSettings",
    "TrainingMetrics",
    "buffer_metrics",
    "distance_from",
    "hessian_vector_product",
    "loss_for",
    "m_sharpness",
    "metrics_settings",
    "sharpness",
    "snapshot",
    "top_eigenvalue",
]
