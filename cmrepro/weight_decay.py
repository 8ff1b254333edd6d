"""Moved to :mod:`cmrepro.optim.weight_decay`, beside the config-to-optimizer adapter that applies it.

Kept only while ``cmrepro/report/run_table.py`` and ``cmrepro/report/notes.py`` (owned by another
engineer in issue 13) still import this path: switch their imports, then delete this file.
"""

from .optim.weight_decay import FORMS, OFFICIAL_FORMS, SINGLE_FORM, base_optimizer, weight_decay_form

__all__ = ["FORMS", "OFFICIAL_FORMS", "SINGLE_FORM", "base_optimizer", "weight_decay_form"]
