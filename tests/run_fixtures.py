"""Run directories as ``cmrepro.train`` leaves them, written by hand for the report's tests."""

from __future__ import annotations

import json
from pathlib import Path


def write_run(
    root: Path,
    name: str,
    *,
    table: str = "table2",
    kind: str = "best",
    dataset: str = "cifar10",
    optimizer: str = "adam_cm",
    seed: int = 0,
    curve: list[float] = (50.0, 60.0),
    monitor: str = "val_accuracy",
    status: str = "done",
    lr: float = 0.001,
) -> Path:
    """A run directory as cmrepro.train leaves it: result.json (with the config) and metrics.jsonl."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    rows = [{"epoch": epoch, monitor: value} for epoch, value in enumerate(curve, start=1)]
    pick = max if monitor == "val_accuracy" else min
    best = pick(rows, key=lambda row: row[monitor])
    config = {
        "seed": seed,
        "benchmark": {"table": table, "kind": kind, "dataset": dataset},
        "dataset": {"name": dataset, "batch_size": 64},
        "optimizer": {"name": optimizer, "lr": lr, "betas": [0.9, 0.999], "topC": 5, "decay": 0.7},
        "trainer": {"epochs": len(curve)},
    }
    result = {
        "status": status,
        "config": config,
        "monitor": monitor,
        "best": {monitor: best[monitor], "epoch": best["epoch"]},
        "epochs_completed": len(curve),
    }
    (run_dir / "result.json").write_text(json.dumps(result))
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    return run_dir
