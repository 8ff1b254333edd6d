"""Checks behind results/toy/notes_e2.md (issue 20, items 6 and 7); prints what the notes quote.

python scripts/toy_checks.py ackley-box      # mean initial Ackley loss per start box
python scripts/toy_checks.py gp-hypotheses   # Goldstein-Price scale: trajectory means, medians
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("ATEN_CPU_CAPABILITY", "default")  # as python -m cmrepro.toy

import yaml  # noqa: E402

from cmrepro.toy.batched_runs import RunSpec, uniform_starts  # noqa: E402
from cmrepro.toy.hessian import hessian_top_eigenvalue  # noqa: E402
from cmrepro.toy.protocols import GP_OFFSET  # noqa: E402
from cmrepro.toy.surfaces import surface  # noqa: E402

PAPER_LOSS_AXIS_TOP = 6  # Figures 4 and 16: the loss axis is labelled 0 to 6


def ackley_box() -> None:
    """Figures 4/16 plot the mean loss over 10 starts, so their curves begin at the mean initial loss."""
    f = surface("ackley")
    print("half-width | E[loss] over the box (200000 starts) | P(loss > 6) | 10 starts of start_seed 0: mean, max")
    for half in (1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0):
        box = (-half, half)
        many, ten = f(uniform_starts(f, 200_000, seed=123, box=box)), f(uniform_starts(f, 10, seed=0, box=box))
        print(
            f"{half:g} | {many.mean():.2f} | {(many > PAPER_LOSS_AXIS_TOP).double().mean():.2f} "
            f"| {ten.mean():.2f}, {ten.max():.2f}"
        )


def gp_hypotheses(seeds: int = 20) -> None:
    """Table 1's Goldstein-Price settings: loss (plus eq. 12's shift) and sharpness averaged over the
    trajectory (every 10th step) instead of at the final point, and the median run instead of the mean."""
    cfg = yaml.safe_load(open("conf/toy/experiment/table1.yaml"))
    f = surface("goldstein_price")
    starts = uniform_starts(f, seeds, seed=cfg["start_seed"])
    for setting in cfg["settings"]:
        hyper = {k: tuple(v) if isinstance(v, list) else v for k, v in setting["hyper"].items()}
        runs = RunSpec(f.name, setting["optimizer"], hyper, starts, cfg["steps"], cfg["lr_drop_step"]).execute()
        along = hessian_top_eigenvalue(f.fn, runs.points[::10].reshape(-1, 2))
        final = hessian_top_eigenvalue(f.fn, runs.final)
        print(
            f"{setting['optimizer']}: trajectory mean loss + shift {runs.losses.mean() + GP_OFFSET:.2f}, "
            f"sharpness {along.mean():.1f}; final median loss + shift {runs.losses[-1].median() + GP_OFFSET:.2f}, "
            f"sharpness {final.median():.1f}"
        )


if __name__ == "__main__":
    checks = {"ackley-box": ackley_box, "gp-hypotheses": gp_hypotheses}
    if len(sys.argv) != 2 or sys.argv[1] not in checks:
        sys.exit(f"usage: python scripts/toy_checks.py {{{','.join(checks)}}}")
    checks[sys.argv[1]]()
