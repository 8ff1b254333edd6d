"""What a run's checkpoint.pt costs on disk, per paper model and optimizer.

A checkpoint holds the model's state, the optimizer's state (Adam's two moments; Adam+CM's
buffer of ``topC`` critical momenta on top), every random generator's state and the config
(cmrepro/training/checkpoint.py). This builds each paper model at full width with its preset,
takes one optimizer step so that every state tensor exists, and measures torch.save's bytes.

    python scripts/checkpoint_sizes.py --out results/bench/checkpoint_sizes.json
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from bench_json import write_bench_json  # noqa: E402

from cmrepro.models import ModelSpec, build_model  # noqa: E402
from cmrepro.optim import needs_closure, optimizer_from_config  # noqa: E402
from cmrepro.training.checkpoint import rng_state  # noqa: E402

# (dataset config, what its model is built for): the paper's models at their real size.
DATASETS = {
    "cifar10": ModelSpec("classification", num_classes=10, image_size=32),
    "cifar100": ModelSpec("classification", num_classes=100, image_size=32),
    "imagenet": ModelSpec("classification", num_classes=1000, image_size=224),
    "ptb": ModelSpec("language_model", vocab_size=10000),
    "synthetic_image": ModelSpec("classification", num_classes=10, image_size=32),  # the README's demo
}
OPTIMIZERS = ("adam", "adam_cg", "adam_sam", "adam_cm", "adam_sam_cm", "sgd_cm")


def checkpoint_bytes(dataset: str, optimizer_name: str) -> dict:
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base=None):
        cfg = compose(config_name="config", overrides=[f"dataset={dataset}", f"optimizer={optimizer_name}"])
    config = OmegaConf.to_container(cfg, resolve=False)
    model = build_model(cfg.model, DATASETS[dataset])
    optimizer = optimizer_from_config(cfg.optimizer, model.parameters(), model)
    for parameter in model.parameters():
        parameter.grad = torch.randn_like(parameter)
    if needs_closure(optimizer):
        optimizer.step(lambda: torch.zeros(()))
    else:
        optimizer.step()
    payload = dict(model=model.state_dict(), optimizer=optimizer.state_dict(), rng=rng_state(), config=config)
    sizes = {}
    for part in ("model", "optimizer"):
        buffer = io.BytesIO()
        torch.save(payload[part], buffer)
        sizes[part] = buffer.tell()
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    parameters = sum(p.numel() for p in model.parameters())
    return dict(
        dataset=dataset,
        model=cfg.model.name,
        optimizer=optimizer_name,
        parameters=parameters,
        model_mib=sizes["model"] / 2**20,
        optimizer_mib=sizes["optimizer"] / 2**20,
        checkpoint_mib=buffer.tell() / 2**20,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "bench" / "checkpoint_sizes.json")
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--optimizers", nargs="*", default=list(OPTIMIZERS), choices=OPTIMIZERS)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    results = [checkpoint_bytes(d, o) for d in args.datasets for o in args.optimizers]
    header = ("dataset", "model", "optimizer", "params", "model MiB", "optim MiB", "ckpt MiB")
    print("{:<10} {:<16} {:<12} {:>10} {:>10} {:>10} {:>9}".format(*header))
    for r in results:
        print(
            f"{r['dataset']:<10} {r['model']:<16} {r['optimizer']:<12} {r['parameters']:>10,} "
            f"{r['model_mib']:>10.1f} {r['optimizer_mib']:>10.1f} {r['checkpoint_mib']:>9.1f}"
        )
    write_bench_json(args.out, torch.device("cpu"), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
