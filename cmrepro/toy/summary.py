"""results/toy/README.md: our toy tables beside the paper's, and one line per claim of Section 4."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..paper_data import PAPER_DATA
from .claims import write_claims
from .experiments import ESCAPE_TOLERANCE, NEARER_FLAT_MARGIN
from .protocols import protocol_section

PAPER = PAPER_DATA / "toy_tables.csv"
FIGURES = {
    "figure1": "Figure 1: Goldstein-Price trajectories from several starts",
    "figure13": "Figure 13: Ackley trajectories from several starts",
    "figure14": "Figure 14: Goldstein-Price trajectories from several starts",
    "figure3": "Figure 3: convergence rate 1 - rho* vs condition number",
    "figure4": "Figure 4: Ackley loss curves (lr / 10 at step 250) and trajectories",
    "figure16": "Figure 16: Ackley loss curves with a constant learning rate",
    "figure5": "Figure 5: 1-D trajectories on f_s",
    "figure17": "Figure 17: 1-D trajectories, decay 0.7, C in {5, 10, 20}",
    "figure18": "Figure 18: 1-D trajectories, decay 0.99, C in {5, 10, 20}",
    "figure6": "Figure 6: escape ratio, D = 10",
    "figure7_left": "Figure 7 (left): escape ratio, D = 1, C = 10",
    "figure7_right": "Figure 7 (right): Adam+CM escape ratio for C in {5, 10, 20, 40}",
    "figure2": "Figure 2: Ackley, first 10 steps, Adam+CG / Adam+CM buffers against the new gradient",
    "figure11": "Figure 11: Ackley+Rosenbrock, three steps of Adam+CG (C = 5), buffer gradient directions",
    "figure12": "Figure 12: Goldstein-Price, six steps, Adam+CG / Adam+CM buffers against the new gradient",
    "figure15_ackley": "Figure 15 (Ackley): Adam+MEG beside Adam, Adam+SAM and Adam+CM",
    "figure15_goldstein_price": "Figure 15 (Goldstein-Price): Adam+MEG beside Adam, Adam+SAM and Adam+CM",
}


def _read(out: Path, name: str) -> pd.DataFrame | None:
    path = out / f"{name}.csv"
    return pd.read_csv(path) if path.exists() else None


def _table(ours: pd.DataFrame, table: str) -> str:
    paper = pd.read_csv(PAPER)
    paper = paper[paper.table == table].pivot_table(
        index=["surface", "optimizer", "C", "decay"], columns="metric", values="value", dropna=False
    )
    lines = [
        "| surface | optimizer | C | decay | loss (ours) | loss (paper) | sharpness (ours) | sharpness (paper) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in ours.itertuples():
        key = (
            row.surface,
            row.optimizer,
            row.C if table == "table5" else float("nan"),
            row.decay if table == "table5" else float("nan"),
        )
        match = [
            k
            for k in paper.index
            if k[0] == key[0] and k[1] == key[1] and (table != "table5" or (k[2], k[3]) == key[2:])
        ]
        p_loss = f"{paper.loc[match[0], 'loss']:.2f}" if match else "-"
        p_sharp = f"{paper.loc[match[0], 'sharpness']:.2f}" if match else "-"
        c = "" if pd.isna(row.C) else f"{int(row.C)}"
        d = "" if pd.isna(row.decay) else f"{row.decay:g}"
        lines.append(
            f"| {row.surface} | {row.optimizer} | {c} | {d} | {row.loss:.2f} ± {row.loss_std:.2f} | {p_loss} "
            f"| {row.sharpness:.2f} ± {row.sharpness_std:.2f} | {p_sharp} |"
        )
    return "\n".join(lines)


def _claim_lines(out: Path) -> list[str]:
    verdicts = write_claims(out)
    return [v.line() for v in verdicts]


SCALE_NOTE = (
    "The paper's Table 1 and 5 values are on another scale than ours: its Goldstein-Price losses (0.81-3.14) "
    "lie far above the function's global minimum (-3.13) with sharpness near 1.5, and its Levy losses "
    "(12.5-14.4) with sharpness 62-66 are far from what our runs reach from [-10, 10]^2. The paper does not "
    "state its initial points, step count or schedule for these tables (nor, for Levy, its hyperparameters: "
    "we use Table 11's GP column). The protocols we tried are side by side in \"Table 1 under other "
    'protocols" below (`make toy-protocols`): step count and schedule change little; starting Levy from a '
    "box twice as wide ([-20, 20]^2) brings its values near the paper's scale, with Adam+CM lowest as in "
    "the paper; nothing we tried reproduces the Goldstein-Price values. Compare orderings, not values."
)

METHOD = (
    "Each claim is a paired comparison over the same initial points: the estimate is the mean "
    "difference between the two settings (oriented so that a positive value supports the paper), the "
    "interval a 95% percentile bootstrap over runs (10,000 resamples). **supported**: the interval lies "
    "above 0; **not supported**: it lies at or below 0; **inconclusive**: it contains 0. Figure 3 is an "
    "exact computation. Every run's outcome is in `results/toy/<experiment>_runs.csv`, every verdict in "
    "`results/toy/claims.csv`."
)

ESCAPE = (
    'A run of f_s "escaped" (found the flat minimum at the origin, Section 4) when every coordinate of its '
    f"final point lies within {ESCAPE_TOLERANCE:g} of 0. The looser criterion used before (final point "
    f"nearer to 0 than to (1, ..., 1) by {NEARER_FLAT_MARGIN:g}) is kept as `nearer_flat` in the CSVs; in "
    "10-D it counted runs with up to 4 coordinates left at the sharp minimum."
)

MACHINES = (
    "Runs are float64 and single-threaded, with torch's CPU kernels pinned to their portable (non-SIMD) "
    "versions (`ATEN_CPU_CAPABILITY=default`, set by `python -m cmrepro.toy`), so the CSVs should not depend "
    "on the CPU's vector units. They can still differ in the last bits across C math libraries (libm) and "
    "torch builds, and these dynamics amplify last-bit differences into different basins for some runs: "
    "individual runs may differ across machines, which is why each verdict rests on an interval over runs "
    "and not on a single mean."
)


def write_summary(out: Path, figures: Path) -> None:
    parts = [
        "# Toy experiments (Sections 3.2 and 4)",
        "",
        "Written by `python -m cmrepro.toy` (`make reproduce-toy` runs every experiment). "
        "Configs: `conf/toy/experiment/` (each setting carries the reason it is the paper's). "
        "Initial points are uniform on each surface's search box (GP [-2, 2]^2, Levy [-10, 10]^2, "
        "Ackley and f_s [-5, 5]^D): the paper does not state its initial distribution.",
        "",
        "## Claims of Section 4 and its appendices",
        "",
        METHOD,
        "",
        *(_claim_lines(out) or ["(no experiment has run yet)"]),
        "",
        ESCAPE,
        "",
        MACHINES,
    ]
    tables = [
        (name, title) for name, title in (("table1", "Table 1"), ("table5", "Table 5")) if _read(out, name) is not None
    ]
    if tables:
        parts += ["", SCALE_NOTE]
    header = (
        "Mean ± std over {runs} runs from initial points uniform on the surface's standard search box "
        "(Goldstein-Price [-2, 2]^2, Levy [-10, 10]^2; seeded), 500 steps, learning rate / 10 at step 250; "
        "sharpness: largest eigenvalue of the exact Hessian at the final point."
    )
    for name, title in tables:
        ours = _read(out, name)
        parts += ["", f"## {title}", "", header.format(runs=int(ours.runs.max())), "", _table(ours, name)]
    protocols = protocol_section(out, PAPER)
    if protocols:
        parts += ["", *protocols]
    shown = [(name, title) for name, title in FIGURES.items() if (figures / f"{name}.png").exists()]
    if shown:
        parts += ["", "## Figures", ""]
        parts += [f"- {title}: `results/figures/{name}.png`, data `results/toy/{name}.csv`" for name, title in shown]
    (out / "README.md").write_text("\n".join(parts) + "\n")
