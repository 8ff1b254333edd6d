"""What every benchmark script writes: its results with the facts of the machine that made them."""

from __future__ import annotations

import json
import platform
from pathlib import Path

import torch


def write_bench_json(path: Path, device: torch.device, results: list[dict], **meta) -> None:
    """``{"meta": {device, torch, threads, platform, gpu, **meta}, "results": results}`` at ``path``."""
    meta = dict(
        device=str(device),
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        platform=platform.platform(),
        gpu=torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        **meta,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(meta=meta, results=results), indent=2) + "\n")
    print(f"wrote {path}")
