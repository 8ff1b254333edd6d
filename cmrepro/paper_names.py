"""The paper's display names for cmrepro's optimizers and datasets, in one place.

The paper writes "Adam+SAM+CM" and "5-dataset" where the factory
(``cmrepro.optim.create_optimizer``) and the configs say ``adam_sam_cm`` and
``five_datasets``. The report reads the paper's CSVs (paper's names) and labels
its tables and figures with them; the toy runs label their CSVs and plots with
them too. Standard library only, importing nothing from cmrepro: a leaf that
any layer may use.
"""

from __future__ import annotations

# Paper name -> factory name, in the paper's row order (Tables 2-4, the appendix, the toy tables).
FACTORY_NAME_OF_PAPER_OPTIMIZER: dict[str, str] = {
    "Adam": "adam", "Adam+CG": "adam_cg", "Adam+SAM": "adam_sam", "Adam+CM": "adam_cm",
    "Adam+SAM+CM": "adam_sam_cm", "SGD": "sgd", "SGD+CG": "sgd_cg", "SGD+CM": "sgd_cm",
    "Adam+MEG": "adam_meg", "Adam+MEG+CM": "adam_meg_cm",
}  # fmt: skip
PAPER_NAME_OF_OPTIMIZER: dict[str, str] = {ours: paper for paper, ours in FACTORY_NAME_OF_PAPER_OPTIMIZER.items()}

# Paper name -> config name (``conf/dataset/<name>.yaml``); every dataset not listed is spelled the same.
CONFIG_NAME_OF_PAPER_DATASET: dict[str, str] = {"5-dataset": "five_datasets"}
PAPER_NAME_OF_DATASET: dict[str, str] = {ours: paper for paper, ours in CONFIG_NAME_OF_PAPER_DATASET.items()}
