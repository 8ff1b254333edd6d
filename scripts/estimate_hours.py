#!/usr/bin/env python
"""Device-hours of `make reproduce-table2/3/4` and `make grid-table2/3/4` at full scale, from
measured training-step times.

Reads the JSON of scripts/bench_train.py (seconds per training step of each dataset's
model at its batch size, on whatever device it ran) and multiplies by the steps of every
run each target makes: runs x epochs x steps per epoch (from conf/ and the dataset sizes
bench_train.py uses). SAM variants take two forward-backward passes per step and are
counted at twice the measured step; evaluation and data loading are not counted, so the
figures are lower bounds. `--step dataset=seconds` replaces a measured time (e.g. one
measured on another machine). Prints a table and writes JSON:

    python scripts/bench_train.py --device cuda --out results/bench/train_cuda.json
    python scripts/bench_train.py --device cuda --datasets tinyimagenet five_datasets \
        --out results/bench/streams_cuda.json
    python scripts/estimate_hours.py results/bench/train_cuda.json results/bench/streams_cuda.json

``--reference`` estimates H200-hours of every full-scale target, including those no bench file covers,
from one reference step time instead (docs/gpu_hours.md): this repository's own H200 measurement of
the CIFAR ResNet34 training step at batch 64 (Adam+CM, fp32), read from the files `make device-checks`
wrote: results/bench/device/train_cuda.json (eager; CIFAR100's step, and the faster of CIFAR10's and
CIFAR100's as the low figure) and train_cuda_compiled.json (trainer.compile=reduce-overhead). Each
dataset's step, and each evaluation batch, is that time scaled by its work relative to the reference
step (scripts/step_costs.py: FLOPs, or operator calls where the model is too small to be FLOP-bound,
whichever ratio is larger; "traffic": memory traffic counted too, an upper figure for memory-bound
models); SAM's second pass, the evaluation passes and the analysis figures' sharpness estimates are
counted. Covers the tables, their grids, reproduce-meg and the analysis figures (figure8, 9, 10, 19,
20):

    python scripts/estimate_hours.py --reference --out results/bench/hours_reference.json
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cmrepro.reproduce import experiments, sweep_size  # noqa: E402

SAM_STEP_FACTOR = 2  # SAM's ascent pass doubles the forward-backward work of a step


def epochs_of(dataset: str) -> int:
    """The paper's epochs for ``dataset``: its preset (conf/preset/, chosen by the dataset's config)."""
    return OmegaConf.load(ROOT / "conf" / "preset" / f"{dataset}.yaml").trainer.epochs


def dataset_and_optimizer(experiment: str) -> tuple[str, str]:
    """``table4/best/five_datasets_adam_cm`` -> ``("five_datasets", "adam_cm")``."""
    config = OmegaConf.load(ROOT / "conf" / "experiment" / f"{experiment}.yaml")
    overrides = dict(next(iter(entry.items())) for entry in config.defaults)
    return overrides["override /dataset"], overrides["override /optimizer"]


def estimate(step_seconds: dict[str, float], steps_per_epoch: dict[str, int]) -> list[dict]:
    rows = []
    for table in ("table2", "table3", "table4"):
        for kind in ("best", "grid"):
            hours: dict[str, float] = {}
            for name in experiments(table, kind):
                dataset, optimizer = dataset_and_optimizer(name)
                if dataset not in step_seconds:
                    hours[dataset] = math.nan
                    continue
                factor = SAM_STEP_FACTOR if "sam" in optimizer else 1
                steps = sweep_size(name) * epochs_of(dataset) * steps_per_epoch[dataset]
                hours[dataset] = hours.get(dataset, 0.0) + steps * step_seconds[dataset] * factor / 3600
            target = f"{'reproduce' if kind == 'best' else 'grid'}-{table}"
            rows.append({"target": target, "hours": hours, "total": sum(hours.values())})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("bench", type=Path, nargs="*", help="JSON written by scripts/bench_train.py")
    parser.add_argument("--step", action="append", default=[], help="dataset=seconds per step, replacing a measure")
    parser.add_argument(
        "--reference", action="store_true", help="no bench file: H200-hours from the reference step (docs/gpu_hours.md)"
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    if args.reference:
        if args.bench or args.step:
            parser.error("--reference takes no bench files or --step: it estimates from the reference step alone")
        from reference_hours import MissingReference, reference_estimate  # beside this script; needs torch

        try:
            reference = reference_estimate()
        except MissingReference as error:
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        write_reference(reference, args.out)
        return
    if not args.bench:
        parser.error("give the bench files of scripts/bench_train.py, or --reference to estimate without one")
    missing = [str(path) for path in args.bench if not path.is_file()]
    if missing:
        parser.error(f"no bench file {', '.join(missing)}: write it with scripts/bench_train.py --out")
    benches = [json.loads(path.read_text()) for path in args.bench]
    results = [row for bench in benches for row in bench["results"]]
    step_seconds = {row["dataset"]: row["seconds_per_step"] for row in results}
    steps_per_epoch = {row["dataset"]: row["steps_per_epoch"] for row in results}
    for item in args.step:
        dataset, seconds = item.split("=")
        step_seconds[dataset] = float(seconds)
    rows = estimate(step_seconds, steps_per_epoch)

    device = ", ".join(sorted({bench["meta"]["device"] for bench in benches}))
    datasets = list(steps_per_epoch)
    replaced = f"; step times replaced: {', '.join(args.step)}" if args.step else ""
    sources = ", ".join(map(str, args.bench))
    print(f"device-hours on {device} (from {sources}{replaced}; evaluation and data loading not counted)")
    print(f"{'target':18s}" + "".join(f"{name:>14s}" for name in datasets) + f"{'total':>14s}")
    for row in rows:
        cells = "".join(f"{row['hours'].get(name, 0.0):14.1f}" for name in datasets)
        print(f"{row['target']:18s}{cells}{row['total']:14.1f}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(
            json.dumps(
                {"meta": {"sources": [b["meta"] for b in benches], "step_seconds": step_seconds}, "rows": rows},
                indent=2,
            )
        )


def write_reference(estimate: dict, out: Path | None) -> None:
    """Print the reference estimate (totals at the eager, eager-low and compiled step times, and
    traffic-priced); write its JSON."""
    datasets = list(estimate["meta"]["step_seconds"])
    seconds = estimate["meta"]["reference"]["seconds"]
    eager, low, compiled = (f"{1000 * seconds[mode]:.1f} ms" for mode in ("eager", "eager_low", "compiled"))
    sources = ", ".join(source["file"] for source in estimate["meta"]["sources"])
    print(f"H200-hours estimated from the reference step measured on an H200 ({sources}; docs/gpu_hours.md)")
    print(f"total at {eager} per CIFAR ResNet34 step eager, {low} its faster timing, {compiled} compiled")
    totals = f"{'total':>10s}{low:>10s}{'compiled':>10s}{'traffic':>10s}"
    print(f"{'target':18s}" + "".join(f"{name:>14s}" for name in datasets) + totals)
    for row in estimate["rows"]:
        cells = "".join(f"{row['hours'].get(name, 0.0):14.1f}" for name in datasets)
        totals = f"{row['total']:10.1f}{row['total_eager_low']:10.1f}{row['total_compiled']:10.1f}"
        totals += f"{row['total_traffic_bound']:10.1f}"
        print(f"{row['target']:18s}{cells}{totals}")
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(estimate, indent=2))


if __name__ == "__main__":
    main()
