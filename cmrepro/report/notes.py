"""Notes a table's report carries beside its cells: what the numbers rest on that the cells cannot show.

- Table 2: the weight-decay form each optimizer applied on ImageNet (the only dataset with weight
  decay), read from the runs' configs, else the default (``optimizer.weight_decay_form``).
- Table 3: the paper publishes no best settings for the SGD family, so its best-config cells run
  the defaults until ``make grid-table3`` has run; and which momentum each baseline uses.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from ..optim.weight_decay import weight_decay_form
from ..paper_names import PAPER_NAME_OF_OPTIMIZER

CONF_OPTIMIZERS = Path(__file__).resolve().parents[2] / "conf" / "optimizer"
TABLE2_OPTIMIZERS = ("adam", "adam_cg", "adam_sam", "adam_cm", "adam_sam_cm")
TABLE3_OPTIMIZERS = ("sgd", "sgd_cg", "sgd_cm")
FORM_WORDS = {"decoupled": "decoupled (AdamW style)", "coupled": "coupled L2"}


def table_notes(table: str, runs: pd.DataFrame) -> tuple[str, str]:
    """``(above, below)``: markdown to put above and below ``table``'s cells ("" for none).

    ``runs`` is every run of the run root (``load_runs``); each note picks the runs it needs.
    """
    if table == "table2":
        return "", f"**ImageNet weight decay.** {imagenet_weight_decay_note(runs)}\n"
    if table == "table3":
        return table3_note(runs), ""
    return "", ""


def caption_note(table: str, runs: pd.DataFrame) -> str:
    """The notes in a sentence or two of plain text, for the LaTeX table's caption ("" for none)."""
    if table == "table2":
        return f"ImageNet weight decay: {imagenet_weight_decay_note(runs)}"
    if table == "table3":
        return "No best settings are published for the SGD variants: these cells use the defaults of conf/optimizer."
    return ""


def imagenet_weight_decay_note(runs: pd.DataFrame) -> str:
    """One line: the weight-decay form of each Table 2 optimizer on ImageNet, and where it was read."""
    mine = runs[(runs["table"] == "table2") & (runs["kind"] == "best") & (runs["dataset"] == "imagenet")]
    forms = []
    for optimizer in TABLE2_OPTIMIZERS:
        used = sorted(set(mine.loc[mine["optimizer"] == optimizer, "weight_decay_form"].dropna()))
        source = "runs" if used else "default"
        used = used or [weight_decay_form({"name": optimizer})]
        forms.append(f"{PAPER_NAME_OF_OPTIMIZER[optimizer]} {' and '.join(used)} ({source})")
    return (
        f"1e-4, as the paper states, applied {', '.join(forms)}; decoupled: θ ← θ·(1 − lr·wd) before the "
        "update (AdamW), coupled: wd·θ added to the (aggregated) gradient, so Adam rescales it (L2). "
        "(runs): read from the ImageNet runs' configs; (default): no run yet, optimizer.weight_decay_form=official, "
        "which keeps the official code's asymmetry (Adam+CM decoupled, Adam+CG coupled); "
        "optimizer.weight_decay_form=decoupled (or coupled) gives every optimizer the same form."
    )


def table3_note(runs: pd.DataFrame) -> str:
    """Above Table 3: the settings its best-config cells run, and each baseline's momentum."""
    defaults = {name: OmegaConf.load(CONF_OPTIMIZERS / f"{name}.yaml") for name in TABLE3_OPTIMIZERS}
    grid = runs[(runs["table"] == "table3") & (runs["kind"] == "grid")]
    searched = (
        f"`make grid-table3` has {len(grid)} grid runs here: its best setting per cell is in "
        "`table3_grid.md` (`python -m cmrepro.report table3 --grid`); copy it into "
        "`conf/experiment/table3/best/` to run the cells with it."
        if len(grid)
        else "until `make grid-table3` has run and its best setting per cell (`table3_grid.md`) is put "
        "into `conf/experiment/table3/best/`."
    )
    sgd, cg, cm = (defaults[name] for name in TABLE3_OPTIMIZERS)
    lines = [
        "**Settings.** The paper publishes no best settings for SGD, SGD+CG and SGD+CM, so these cells run "
        f"the defaults of `conf/optimizer/sgd*.yaml` (lr {sgd['lr']:g}; SGD+CG and SGD+CM: C = {cg['topC']}, "
        f"decay {cg['decay']:g}), not tuned settings, {searched}",
        "",
        "**Momentum.**",
        f"- SGD: `torch.optim.SGD`, heavy-ball momentum {sgd['momentum']:g} without dampening: "
        "v ← μv + g, θ ← θ − lr·v.",
        f"- SGD+CG: the official `SGD_C` (eq. 10) with momentum {cg['momentum']:g}: θ ← θ − lr·(g + mean(buffer)); "
        "with momentum > 0, PyTorch's heavy-ball (with dampening) on that aggregate.",
        f"- SGD+CM: eq. 4's moving average m ← βm + (1 − β)g with β = {cm['momentum']:g}, aggregated with the "
        "critical momenta (eq. 8): θ ← θ − lr·(m + mean(buffer)). For a steady gradient g, m → g while "
        f"SGD's v → g / (1 − μ) = {1 / (1 - sgd['momentum']):g}g: at equal lr its steps are that much shorter.",
    ]
    return "\n".join(lines) + "\n"
