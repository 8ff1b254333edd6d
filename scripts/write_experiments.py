#!/usr/bin/env python
"""Write the paper-table experiment configs, conf/experiment/<table>/{best,grid}/<dataset>_<optimizer>.yaml,
from the transcribed paper numbers in cmrepro/paper_data/ (best_hyperparameters.csv, grids.csv).

A *best* config is the paper's best setting for one (dataset, optimizer) over five seeds;
a *grid* config is the paper's hyperparameter search for it (Table 8 or 12) restricted to
the hyperparameters the optimizer has (Appendix A.2.2: Adam {lr}; Adam+CG and Adam+CM
{lr, beta1, beta2, C, decay}; Adam+SAM {lr, beta1, beta2, rho}; Adam+SAM+CM all six).
Both run as one Hydra multirun: ``python -m cmrepro.train -m experiment=<table>/<kind>/<name>``.

The files are committed; tests/test_experiments.py regenerates them and fails when they
drift from the CSVs. Re-run after editing a CSV:

    python scripts/write_experiments.py            # rewrite conf/experiment/table{2,3,4}
    python scripts/write_experiments.py --check    # exit 1 if any file would change
"""

from __future__ import annotations

import argparse
import csv
import sys
from itertools import product
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# The paper's optimizer and dataset names -> cmrepro's config names.
from cmrepro.paper_data import PAPER_DATA  # noqa: E402
from cmrepro.paper_names import CONFIG_NAME_OF_PAPER_DATASET, FACTORY_NAME_OF_PAPER_OPTIMIZER  # noqa: E402

PAPER = PAPER_DATA
EXPERIMENTS = ROOT / "conf" / "experiment"
SEEDS = "0,1,2,3,4"  # "All results presented in this section are averaged across five seeds."

# Which hyperparameters each optimizer searches (Appendix A.2.2; SGD's as its update rule has them).
SEARCHED = {
    "adam": ("lr",),
    "adam_cg": ("lr", "beta1", "beta2", "topC", "decay"),
    "adam_cm": ("lr", "beta1", "beta2", "topC", "decay"),
    "adam_sam": ("lr", "beta1", "beta2", "rho"),
    "adam_sam_cm": ("lr", "beta1", "beta2", "topC", "decay", "rho"),
    "sgd": ("lr",),
    "sgd_cg": ("lr", "topC", "decay"),
    "sgd_cm": ("lr", "beta1", "topC", "decay"),  # beta1 is SGD+CM's momentum (eq. 4)
}

# table -> (the grid table, the best-settings tables, datasets, optimizers)
TABLES = {
    "table2": ("table8", ("table9", "table10"), ("ptb", "cifar10", "cifar100", "imagenet"),
               ("adam", "adam_cg", "adam_sam", "adam_cm", "adam_sam_cm")),
    "table3": ("table8", (), ("cifar10", "cifar100"), ("sgd", "sgd_cg", "sgd_cm")),
    "table4": ("table12", ("table13",), ("tinyimagenet", "five_datasets"),
               ("adam", "adam_cg", "adam_sam", "adam_cm", "adam_sam_cm")),
}  # fmt: skip

PAPER_NAMES = {
    "table2": "Table 2 (best settings: Tables 9, 10; grid: Table 8)",
    "table3": "Table 3 (the paper publishes no best settings for it: the defaults of conf/optimizer; grid: Table 8)",
    "table4": "Table 4 (best settings: Table 13; grid: Table 12)",
}


def read_csv(name: str) -> list[dict[str, str]]:
    with (PAPER / name).open(newline="") as file:
        return list(csv.DictReader(file))


def best_settings() -> dict[tuple[str, str], dict[str, str]]:
    """(dataset, optimizer) -> the paper's best hyperparameters (empty cells dropped)."""
    tables = {best for _, bests, _, _ in TABLES.values() for best in bests}  # not Table 11's toy surfaces
    settings = {}
    for row in read_csv("best_hyperparameters.csv"):
        if row["table"] in tables:
            values = {key: row[key] for key in ("lr", "beta1", "beta2", "topC", "decay", "rho") if row[key]}
            dataset = CONFIG_NAME_OF_PAPER_DATASET.get(row["dataset"], row["dataset"])
            settings[(dataset, FACTORY_NAME_OF_PAPER_OPTIMIZER[row["optimizer"]])] = values
    return settings


def grids() -> dict[str, dict[str, list[str]]]:
    """grid table -> hyperparameter -> values."""
    tables: dict[str, dict[str, list[str]]] = {}
    for row in read_csv("grids.csv"):
        tables.setdefault(row["table"], {})[row["hyperparameter"]] = row["values"].split(";")
    return tables


def optimizer_block(optimizer: str, values: dict[str, str]) -> list[str]:
    """The ``optimizer:`` lines setting ``values`` (beta1/beta2 as ``betas``, or SGD's momentum)."""
    lines = []
    for key in ("lr", "topC", "decay", "rho"):
        if key in values:
            lines.append(f"  {key}: {values[key]}")
    if optimizer.startswith("sgd"):
        if "beta1" in values:
            lines.append(f"  momentum: {values['beta1']}")
    elif "beta1" in values or "beta2" in values:
        beta2 = values.get("beta2", "${dataset.beta2}")
        lines.append(f"  betas: [{values.get('beta1', '0.9')}, {beta2}]")
    return ["optimizer:", *lines] if lines else []


def sweep_params(optimizer: str, grid: dict[str, list[str]]) -> dict[str, str]:
    """Hydra sweeper params for the grid, e.g. ``{"optimizer.lr": "0.1,0.01"}``; beta1 x beta2
    becomes one sweep over ``betas`` pairs, as the optimizers take them."""
    searched = [key for key in SEARCHED[optimizer] if key in grid]
    params = {}
    for key in searched:
        if key in ("beta1", "beta2") and not optimizer.startswith("sgd"):
            continue
        name = "momentum" if key == "beta1" else key
        params[f"optimizer.{name}"] = ",".join(grid[key])
    if "beta1" in searched and not optimizer.startswith("sgd"):
        beta2s = grid["beta2"] if "beta2" in searched else ["${dataset.beta2}"]
        pairs = [f"[{b1},{b2}]" for b1, b2 in product(grid["beta1"], beta2s)]
        params["optimizer.betas"] = ",".join(pairs)
    return params


# A grid is hundreds of runs per cell, judged by result.json and metrics.jsonl:
# their checkpoints (up to 0.7 GB each) are dropped once each run has ended.
GRID_TRAINER = ["trainer:", "  keep_checkpoint: false"]


def render(table: str, kind: str, dataset: str, optimizer: str, values: dict, params: dict[str, str]) -> str:
    what = "the best setting over five seeds" if kind == "best" else "the hyperparameter grid, seed 0"
    lines = [
        "# @package _global_",
        f"# {PAPER_NAMES[table]}: {dataset}, {optimizer}, {what}.",
        "# Written by scripts/write_experiments.py from cmrepro/paper_data/*.csv; edit those and re-run it.",
        f"# python -m cmrepro.train -m experiment={table}/{kind}/{dataset}_{optimizer}",
        "defaults:",
        f"  - override /dataset: {dataset}",
        f"  - override /optimizer: {optimizer}",
        "benchmark:",
        f"  table: {table}",
        f"  kind: {kind}",
        *optimizer_block(optimizer, values),
        *(GRID_TRAINER if kind == "grid" else []),
        "hydra:",
        "  sweeper:",
        "    params:",
        *(f"      {key}: {_quoted(value)}" for key, value in params.items()),
    ]
    return "\n".join(lines) + "\n"


def _quoted(value: str) -> str:
    # Lists of pairs must stay one string for Hydra's override parser, not become YAML lists.
    return f"'{value}'" if "[" in value or "$" in value else value


def experiment_files() -> dict[Path, str]:
    """Every experiment file's path and text."""
    best, grid_tables, files = best_settings(), grids(), {}
    for table, (grid_table, best_tables, datasets, optimizers) in TABLES.items():
        for dataset, optimizer in product(datasets, optimizers):
            stem = f"{dataset}_{optimizer}.yaml"
            values = best.get((dataset, optimizer), {}) if best_tables else {}
            if best_tables and not values:
                raise SystemExit(f"cmrepro/paper_data/best_hyperparameters.csv has no row for {dataset}, {optimizer}")
            files[EXPERIMENTS / table / "best" / stem] = render(
                table, "best", dataset, optimizer, values, {"seed": SEEDS}
            )
            params = sweep_params(optimizer, grid_tables[grid_table])
            files[EXPERIMENTS / table / "grid" / stem] = render(table, "grid", dataset, optimizer, {}, params)
    return files


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file would change")
    args = parser.parse_args()
    stale = []
    for path, text in experiment_files().items():
        if path.exists() and path.read_text() == text:
            continue
        stale.append(path.relative_to(ROOT))
        if not args.check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    verb = "stale" if args.check else "written"
    print(f"{len(stale)} experiment files {verb}" + "".join(f"\n  {path}" for path in stale))
    sys.exit(1 if args.check and stale else 0)


if __name__ == "__main__":
    main()
