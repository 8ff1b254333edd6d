#!/usr/bin/env python
"""Time the training-time analysis metrics on a CIFAR ResNet34 and their overhead per epoch.

The model, batch size, epoch size and metric settings are those of the Figure 8
experiment (``dataset=cifar100 metrics=analysis``: ResNet34, batch 64, 40,000
training and 10,000 validation images), on random batches of CIFAR shape (no data
needed). Timed: one training step of Adam+CM, one Hessian-vector product (one
batch), one whole sharpness estimate over the fixed batch set (Lanczos to the
configured tolerance), m-sharpness, distance and the buffer statistics. The
per-epoch overhead divides each metric's cost by its ``every_n_epochs`` and
compares the sum with the estimated time of an epoch (training steps plus one
validation pass). Prints a table and writes JSON. Example:

    python scripts/bench_metrics.py --out results/bench/metrics_cpu.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_json import write_bench_json  # noqa: E402  (beside this script)
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from cmrepro.metrics import buffer_metrics, distance_from, loss_for, m_sharpness, metrics_settings, snapshot  # noqa: E402
from cmrepro.metrics.sharpness import hessian_vector_product, sharpness  # noqa: E402
from cmrepro.models import ModelSpec, build_model  # noqa: E402
from cmrepro.optim import optimizer_from_config  # noqa: E402
from cmrepro.train import CONF_DIR  # noqa: E402
from cmrepro.training.steps import StepSettings, task_for  # noqa: E402

TRAIN_IMAGES, VAL_IMAGES, CLASSES = 40_000, 10_000, 100  # CIFAR100 as split in Table 6


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> tuple[float, object]:
    """Best seconds of ``repeats`` calls after one warm-up call, and the last result.

    The best, not the median: on a shared machine the other tenants only ever add time.
    """
    result = fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times), result


def once(fn: Callable[[], object], device: torch.device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    result = fn()
    sync(device)
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--overrides", nargs="*", default=["dataset=cifar100", "optimizer=adam_cm", "metrics=analysis"])
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats of a step, an HVP, a forward pass")
    parser.add_argument("--no-estimate", action="store_true", help="skip the whole sharpness estimate (slow on CPU)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads for torch; 1 gives steady timings on a machine shared with other jobs, "
        "where threads spinning at OpenMP barriers can make a step 10-50x slower",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[*args.overrides, "run_dir=unused"])
    cfg = OmegaConf.to_container(cfg, resolve=True)
    settings = metrics_settings(cfg["metrics"], cfg["dataset"]["batch_size"])
    batch_size, eval_batch = cfg["dataset"]["batch_size"], cfg["dataset"]["eval_batch_size"]

    torch.manual_seed(0)
    model = build_model(cfg["model"], ModelSpec("classification", num_classes=CLASSES)).to(device)
    optimizer = optimizer_from_config(cfg["optimizer"], model.parameters(), model)
    task, step_settings = task_for("classification"), StepSettings(device, "fp32", None)
    batches = [
        (torch.randn(batch_size, 3, 32, 32), torch.randint(0, CLASSES, (batch_size,)))
        for _ in range(max(settings.batches_needed, 1))
    ]
    loss = loss_for("classification")
    initial = snapshot(model)

    model.train()
    step_s, _ = timed(lambda: task.train_step(model, optimizer, batches[0], step_settings), device, args.repeats)
    model.eval()
    eval_x = torch.randn(eval_batch, 3, 32, 32, device=device)
    with torch.no_grad():
        forward_s, _ = timed(lambda: model(eval_x), device, args.repeats)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    product = hessian_vector_product(model.eval(), params, batches[:1], loss)
    probe = [torch.randn_like(p) for p in params]
    hvp_s, _ = timed(lambda: product(probe), device, args.repeats)
    model.train()

    sharp = settings.sharpness
    if args.no_estimate:
        estimate_s, iterations = None, sharp.max_iterations
    else:
        estimate_s, estimate = once(
            lambda: sharpness(
                model, batches[: sharp.batches], loss, tol=sharp.tol, max_iterations=sharp.max_iterations
            ),
            device,
        )
        iterations = estimate.iterations
    # The estimate's cost is its products: counted at the best HVP time, like the step it is compared with.
    modelled_s = iterations * sharp.batches * hvp_s
    ms = settings.m_sharpness
    m_sharpness_s, _ = once(lambda: m_sharpness(model, batches[: ms.batches], loss, m=ms.m, radius=ms.radius), device)
    distance_s, _ = timed(lambda: distance_from(initial, model), device, args.repeats)
    buffer_s, _ = timed(lambda: buffer_metrics(optimizer), device, args.repeats)

    steps_per_epoch = -(-TRAIN_IMAGES // batch_size)
    epoch_s = steps_per_epoch * step_s + -(-VAL_IMAGES // eval_batch) * forward_s
    worst_estimate_s = sharp.max_iterations * sharp.batches * hvp_s
    per_epoch = {
        "sharpness": modelled_s / sharp.schedule.every_n_epochs,
        "m_sharpness": m_sharpness_s / ms.schedule.every_n_epochs,
        "distance": distance_s / settings.distance.every_n_epochs,
        "buffer": buffer_s / settings.buffer.every_n_epochs,
    }
    overhead_s = sum(per_epoch.values())
    result = dict(
        model=cfg["model"]["name"],
        optimizer=cfg["optimizer"]["name"],
        batch_size=batch_size,
        sharpness_batches=sharp.batches,
        sharpness_tol=sharp.tol,
        sharpness_max_iterations=sharp.max_iterations,
        sharpness_every_n_epochs=sharp.schedule.every_n_epochs,
        seconds_per_train_step=step_s,
        seconds_per_hvp_batch=hvp_s,
        hvp_over_step=hvp_s / step_s,
        seconds_per_sharpness_estimate=modelled_s,
        seconds_per_sharpness_estimate_measured=estimate_s,
        sharpness_iterations=iterations,
        seconds_per_sharpness_estimate_at_max_iterations=worst_estimate_s,
        seconds_per_m_sharpness=m_sharpness_s,
        seconds_per_distance=distance_s,
        seconds_per_buffer_statistics=buffer_s,
        estimated_epoch_seconds=epoch_s,
        metric_seconds_per_epoch=per_epoch,
        overhead_seconds_per_epoch=overhead_s,
        overhead_fraction_of_epoch=overhead_s / epoch_s,
    )
    print(f"\nanalysis metrics on {device} (torch {torch.__version__}, {torch.get_num_threads()} threads), "
          f"{result['model']} batch {batch_size}")  # fmt: skip
    rows = [
        ("training step", step_s),
        ("Hessian-vector product, one batch", hvp_s),
        (f"sharpness estimate ({sharp.batches} batches x {iterations} iterations x best HVP)", modelled_s),
        ("sharpness estimate, wall time measured once", estimate_s),
        (f"sharpness at the cap ({sharp.max_iterations} iterations)", worst_estimate_s),
        (f"m-sharpness ({ms.batches} batches, m={ms.m})", m_sharpness_s),
        ("distance", distance_s),
        ("buffer statistics", buffer_s),
        (f"epoch ({steps_per_epoch} steps + validation)", epoch_s),
        ("Figure 8 metric set, per epoch", overhead_s),
    ]
    for name, seconds in rows:
        print(f"  {name:55s} {'-' if seconds is None else f'{seconds:10.3f} s'}")
    print(f"  overhead per epoch: {100 * result['overhead_fraction_of_epoch']:.1f}%")
    if args.out:
        write_bench_json(args.out, device, [result], load_average=os.getloadavg(), overrides=args.overrides)
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
