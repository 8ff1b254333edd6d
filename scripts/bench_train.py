#!/usr/bin/env python
"""Time training steps of each real configuration on synthetic batches of its shape.

For cifar10, cifar100, imagenet, ptb and the task streams tinyimagenet and
five_datasets: the model, optimizer (adam_cm by default), batch size and input
shape of the dataset's config (a stream's model without its per-task heads), the training
step of ``cmrepro.training`` (forward, backward, clipping where configured,
optimizer step), on random batches of the real shapes: no data needed.
Steps are timed back to back on a batch already on the device, waited for once per group of
steps (a training loop never waits for each step). Reports seconds per 100 steps and the
estimated time of one real epoch
(steps per epoch from the paper's dataset sizes, Table 6; for a stream, one
epoch of each of its tasks). Prints a table and
writes JSON. ``--fused`` times each configuration twice, with
``torch.optim.Adam(fused=True)`` and with the optimizer at ``fused=True``, and
reports the ratio of their whole training steps (the training loop's
``zero_grad()`` sets gradients to None, so the fused optimizer copies them into
its flat storage each step; see docs/optimizers.md).

``--data-path loader on_device`` times the data pipeline alone instead, no model: one epoch
of CIFAR training batches (``--datasets`` cifar10 or cifar100, the config's batch size and
workers) over ``--data-images`` random uint8 images of CIFAR's shape (40K, the real training
split, by default), through the DataLoader path or ``dataset.on_device`` (cmrepro/data/on_device.py)
on ``--device``, each batch moved to the device as the training step does. Reports seconds per
epoch and per batch (the median over ``--data-epochs`` epochs after a warm-up epoch). Examples:

    python scripts/bench_train.py --out results/bench/train_cpu.json
    python scripts/bench_train.py --datasets cifar100 --fused --steps 3 --out results/bench/train_fused_cpu.json
    python scripts/bench_train.py --datasets tinyimagenet five_datasets --out results/bench/train_streams_cpu.json
    python scripts/bench_train.py --data-path loader on_device --out results/bench/data_cifar_cpu.json
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_json import write_bench_json  # noqa: E402  (beside this script)
from hydra import compose, initialize_config_dir  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from cmrepro.data.settings import CifarSettings  # noqa: E402
from cmrepro.data.vision import CIFAR_FORMATS, cifar_train  # noqa: E402
from cmrepro.models import ModelSpec, build_model  # noqa: E402
from cmrepro.optim import optimizer_from_config  # noqa: E402
from cmrepro.train import CONF_DIR  # noqa: E402
from cmrepro.training.compiled import COMPILE_MODES, forward_module  # noqa: E402
from cmrepro.training.steps import StepSettings, task_for  # noqa: E402

# Training examples per epoch (Table 6; PTB in tokens) and what the model sees.
DATASETS = {
    "cifar10": dict(train=40_000, spec=ModelSpec("classification", num_classes=10)),
    "cifar100": dict(train=40_000, spec=ModelSpec("classification", num_classes=100)),
    "imagenet": dict(train=1_281_167, spec=ModelSpec("classification", num_classes=1000)),
    "ptb": dict(train=929_589, spec=ModelSpec("language_model", vocab_size=10_000)),
    # Task streams: training images of one epoch of every task (nine tenths of each training
    # set; notMNIST_small's ~18,724 readable images first lose a tenth to its test split).
    "tinyimagenet": dict(train=90_000, spec=ModelSpec("classification", num_classes=200, image_size=64)),
    "five_datasets": dict(
        train=int(0.9 * (50_000 + 60_000 + 60_000 + 73_257) + 0.81 * 18_724),
        spec=ModelSpec("classification", num_classes=50),
    ),
}


def batch_for(name: str, cfg: dict, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = cfg["dataset"]
    b = batch_size
    if name == "ptb":
        tokens = torch.randint(0, 10_000, (data["bptt"] + 1, b))
        return tokens[:-1], tokens[1:]
    size = data.get("image_size", 32)
    return torch.randn(b, 3, size, size), torch.randint(0, DATASETS[name]["spec"].num_classes, (b,))


DATA_PATHS = ("loader", "on_device")


def composed(name: str, optimizer: str = "adam_cm") -> dict:
    """The resolved run config of ``dataset=name``."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base=None):
        cfg = compose(config_name="config", overrides=[f"dataset={name}", f"optimizer={optimizer}", "run_dir=unused"])
    return OmegaConf.to_container(cfg, resolve=True)


def steps_per_epoch(name: str, cfg: dict) -> int:
    data = cfg["dataset"]
    if name == "ptb":
        return DATASETS[name]["train"] // (data["batch_size"] * data["bptt"])
    return -(-DATASETS[name]["train"] // data["batch_size"])


def measure(
    name: str,
    optimizer: str,
    steps: int,
    device: torch.device,
    batch_size: int | None,
    compile_mode: str | None,
    fused: bool = False,
) -> dict:
    """``batch_size`` below the config's: time that batch and scale per example (memory-bound machines).

    ``compile_mode``: the step's forward and backward through torch.compile in that mode, as
    ``trainer.compile`` does; the warm-up steps (compilation, CUDA-graph recording) are timed apart.
    """
    cfg = composed(name, optimizer)
    torch.manual_seed(0)
    model = build_model(cfg["model"], DATASETS[name]["spec"]).to(device)
    opt = optimizer_from_config(cfg["optimizer"] | (dict(fused=True) if fused else {}), model.parameters(), model)
    runner = forward_module(model, compile_mode or False)
    settings = StepSettings(device, cfg["trainer"]["precision"], cfg["trainer"]["grad_clip"])
    task = task_for(DATASETS[name]["spec"].task)
    task.begin_epoch()
    model.train()
    config_batch = cfg["dataset"]["batch_size"]
    timed_batch = batch_size or config_batch
    # On the device before timing, as dataset.on_device (or a pinned, prefetched loader) has it:
    # a 154 MB ImageNet batch copied from pageable memory every step would be timed as training.
    batch = tuple(t.to(device) for t in batch_for(name, cfg, timed_batch))
    started = time.perf_counter()
    # Warm-up: state creation, allocator; compiled (or fused), also compilation and CUDA-graph recording.
    for _ in range(3 if compile_mode or fused else 1):
        float(task.train_step(runner, opt, batch, settings))
    warmup = time.perf_counter() - started
    per_step = statistics.median(pipelined_step_seconds(task, runner, opt, batch, settings, steps, device))
    per_step *= config_batch / timed_batch
    epoch_steps = steps_per_epoch(name, cfg)
    return dict(
        dataset=name,
        model=cfg["model"]["name"],
        optimizer=optimizer,
        fused=fused,
        compile=compile_mode,
        warmup_seconds=warmup,
        batch_size=config_batch,
        timed_batch_size=timed_batch,
        steps_timed=max(1, steps // TIMED_GROUPS) * TIMED_GROUPS,
        seconds_per_step=per_step,
        seconds_per_100_steps=100 * per_step,
        steps_per_epoch=epoch_steps,
        estimated_epoch_minutes=epoch_steps * per_step / 60,
    )


TIMED_GROUPS = 3  # the timed steps in this many groups; the median group's mean step is reported


def pipelined_step_seconds(task, runner, opt, batch, settings, steps: int, device: torch.device) -> list[float]:
    """Seconds per step of ``TIMED_GROUPS`` groups of back-to-back steps, each group waited for
    once at its end, as a training loop runs them (its host never waits for a step: the loss is
    read every 50 steps). Waiting after every step would add a host round trip to each."""
    groups = []
    per_group = max(1, steps // TIMED_GROUPS)
    for _ in range(TIMED_GROUPS):
        _synchronize(device)
        start = time.perf_counter()
        for _ in range(per_group):
            loss = task.train_step(runner, opt, batch, settings)
        float(loss)  # waits for the group's last step, hence for all of them
        groups.append((time.perf_counter() - start) / per_group)
    return groups


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_epoch(batches, device: torch.device) -> float:
    """Seconds to draw every batch of one epoch and have it on ``device``, as the training step gets it."""
    start = time.perf_counter()
    for x, y in batches:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def measure_data(name: str, path: str, images: int, epochs: int, device: torch.device, workers: int | None) -> dict:
    """The data pipeline of ``dataset=name`` alone, over ``images`` random uint8 CIFAR images,
    by ``path`` (the DataLoader or ``dataset.on_device``); one warm-up epoch, then ``epochs`` timed."""
    data = composed(name)["dataset"]
    data |= {"on_device": path == "on_device"} | ({} if workers is None else {"num_workers": workers})
    settings = CifarSettings.from_config(data)
    fmt = CIFAR_FORMATS[name]
    generator = torch.Generator().manual_seed(0)
    pixels = torch.randint(0, 256, (images, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, fmt.num_classes, (images,), generator=generator)
    started = time.perf_counter()
    train = cifar_train(pixels, labels, fmt, settings, 0, device)
    setup = time.perf_counter() - started
    warmup = time_epoch(train(0), device)  # workers start, allocator, first copies
    times = [time_epoch(train(epoch), device) for epoch in range(1, epochs + 1)]
    per_epoch = statistics.median(times)
    return dict(
        dataset=name,
        data_path=path,
        augment=settings.augment,
        num_workers=0 if settings.on_device else settings.loader.options["num_workers"],
        images=images,
        batch_size=settings.loader.batch_size,
        batches_per_epoch=len(train),
        setup_seconds=setup,
        warmup_epoch_seconds=warmup,
        epochs_timed=epochs,
        seconds_per_epoch=per_epoch,
        ms_per_batch=1000 * per_epoch / len(train),
        images_per_second=images / per_epoch,
    )


def data_main(args: argparse.Namespace, device: torch.device) -> None:
    names = args.datasets or ["cifar10"]
    if not set(names) <= set(CIFAR_FORMATS):
        sys.exit(f"--data-path times CIFAR pipelines only: --datasets must be among {', '.join(CIFAR_FORMATS)}")
    rows = []
    for name in names:
        for path in args.data_path:
            rows.append(measure_data(name, path, args.data_images, args.data_epochs, device, args.num_workers))
            print(f"{name} {path}: {rows[-1]['seconds_per_epoch']:.3f} s/epoch", file=sys.stderr)
    print(
        f"\ndata pipeline alone, {args.data_images} uint8 CIFAR images, batches to {device} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads)"
    )
    print(
        f"{'dataset':10s} {'path':10s} {'workers':>8s} {'batch':>6s} {'batches':>8s} {'s/epoch':>9s}"
        f" {'ms/batch':>9s} {'images/s':>10s}"
    )
    for r in rows:
        print(
            f"{r['dataset']:10s} {r['data_path']:10s} {r['num_workers']:8d} {r['batch_size']:6d}"
            f" {r['batches_per_epoch']:8d} {r['seconds_per_epoch']:9.3f} {r['ms_per_batch']:9.3f}"
            f" {r['images_per_second']:10.0f}"
        )
    if args.out:
        write_bench_json(args.out, device, rows, benchmark="data_pipeline")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--datasets", nargs="*", default=None, help="default: all of them; cifar10 alone with --data-path"
    )
    parser.add_argument("--optimizer", default="adam_cm")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per configuration (median is reported)")
    parser.add_argument("--imagenet-steps", type=int, default=2, help="timed steps for imagenet (slow on a CPU)")
    parser.add_argument(
        "--imagenet-batch",
        type=int,
        default=64,
        help="time imagenet at this batch and scale to the config's 256 per example (batch 256 at 224x224 "
        "needs more than 24 GiB of host memory for EfficientNet-B0's activations)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", choices=COMPILE_MODES, default=None, help="time steps as trainer.compile=MODE")
    parser.add_argument(
        "--fused", action="store_true", help="time adam and --optimizer, both with fused=True, and their ratio"
    )
    parser.add_argument(
        "--data-path",
        nargs="+",
        choices=DATA_PATHS,
        default=None,
        help="time the CIFAR data pipeline alone, per epoch, by these paths, instead of training steps",
    )
    parser.add_argument("--data-images", type=int, default=40_000, help="training images (CIFAR's 40K split)")
    parser.add_argument("--data-epochs", type=int, default=2, help="epochs timed after the warm-up epoch")
    parser.add_argument("--num-workers", type=int, default=None, help="loader path workers (default: the config's)")
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch's intra-op threads (default: torch's); 1 on a shared machine, where busy cores slow "
        "multi-threaded kernels many times over",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.data_path:
        data_main(args, device)
        return
    rows = []
    for name in args.datasets or list(DATASETS):
        steps = args.imagenet_steps if name == "imagenet" else args.steps
        batch = args.imagenet_batch if name == "imagenet" else None
        for optimizer in ("adam", args.optimizer) if args.fused else (args.optimizer,):
            rows.append(measure(name, optimizer, steps, device, batch, args.compile, args.fused))
            print(f"{name} {optimizer}: {rows[-1]['seconds_per_step']:.3f} s/step", file=sys.stderr)
        if args.fused:  # the whole step (forward, backward, step) over the step with fused Adam
            rows[-1]["x_fused_adam_train_step"] = rows[-1]["seconds_per_step"] / rows[-2]["seconds_per_step"]
    what = f"adam and {args.optimizer}, fused=True," if args.fused else args.optimizer
    print(
        f"\n{what} training steps on {device}{f' compiled ({args.compile})' if args.compile else ''} "
        f"(torch {torch.__version__}, {torch.get_num_threads()} threads)"
    )
    header = f"{'dataset':10s} {'optimizer':12s} {'model':16s} {'batch':>6s} {'timed at':>9s} {'s/100 steps':>12s}"
    print(header + f" {'steps/epoch':>12s} {'min/epoch':>10s} {'x fused Adam':>13s}")
    for r in rows:
        ratio = r.get("x_fused_adam_train_step")
        print(
            f"{r['dataset']:10s} {r['optimizer']:12s} {r['model']:16s} {r['batch_size']:6d} {r['timed_batch_size']:9d} "
            f"{r['seconds_per_100_steps']:12.1f} {r['steps_per_epoch']:12d} {r['estimated_epoch_minutes']:10.1f}"
            f" {f'{ratio:.2f}' if ratio else '-':>13s}"
        )
    if args.out:
        write_bench_json(args.out, device, rows)


if __name__ == "__main__":
    main()
