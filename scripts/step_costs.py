#!/usr/bin/env python
"""The work of one training step and one evaluation batch of each dataset's model, counted on the CPU.

For the GPU-hour estimate from a reference step time (scripts/estimate_hours.py --reference,
docs/gpu_hours.md): per dataset, the FLOPs of one training forward and backward pass at the config's
batch size and of one evaluation forward pass at its evaluation batch size
(``torch.utils.flop_counter.FlopCounterMode``), the aten operator calls of each (a count of the
kernels a GPU would launch, views and other cheap calls included) and the bytes those calls read and
write (every call as its own kernel: no fusion). Everything runs on the ``meta``
device: shapes only, no arithmetic, so ImageNet's EfficientNet-B0 at batch 256 is counted in seconds
on a 2-core machine at its full batch, not a small one scaled. Prints a table and writes JSON:

    python scripts/step_costs.py --out results/bench/step_costs.json
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode, conv_flop_count

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench_train import DATASETS, batch_for, composed  # noqa: E402  (beside this script)

from cmrepro.metrics.losses import classification_loss, next_token_loss  # noqa: E402
from cmrepro.models import build_model  # noqa: E402

META = torch.device("meta")


class OperatorCount(TorchDispatchMode):
    """Counts the aten operator calls dispatched while it is active, and the bytes of the tensors each
    reads and writes (its arguments and results: the memory traffic of an unfused kernel)."""

    def __init__(self):
        super().__init__()
        self.calls, self.bytes = 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.calls += 1
        result = func(*args, **(kwargs or {}))
        tensors = [t for t in tree_flatten((args, kwargs, result))[0] if isinstance(t, torch.Tensor)]
        self.bytes += sum(t.numel() * t.element_size() for t in tensors)
        return result


@dataclass(frozen=True)
class StepCost:
    dataset: str
    model: str
    batch_size: int
    train_flops: float  # one forward + backward at batch_size
    train_calls: int
    train_bytes: float
    eval_batch_size: int
    eval_flops: float  # one forward at eval_batch_size
    eval_calls: int
    eval_bytes: float

    def train_flops_at(self, batch_size: int) -> float:
        """Convolutions and matrix products grow linearly with the batch: FLOPs per example times it."""
        return self.train_flops * batch_size / self.batch_size

    def train_bytes_at(self, batch_size: int) -> float:
        """Activations grow linearly with the batch (weights do not: an upper bound above batch_size)."""
        return self.train_bytes * batch_size / self.batch_size


def conv_backward_flop(grad_out_shape, x_shape, w_shape, _bias, _stride, _padding, _dilation, transposed,
                       _output_padding, _groups, output_mask, out_shape=None) -> int:  # fmt: skip
    """A convolution's backward: its gradient with respect to the input and to the weight (each asked
    for in ``output_mask``) cost what its forward costs. torch's own formula (torch 2.14) counts a
    grouped convolution's input gradient as if it were not grouped: 65 times the forward for a 64-channel
    depthwise convolution, which would make EfficientNet-B0's step 14 times its FLOPs."""
    forward = conv_flop_count(x_shape, w_shape, grad_out_shape, transposed)
    return forward * (int(output_mask[0]) + int(output_mask[1]))


def flop_counter() -> FlopCounterMode:
    return FlopCounterMode(display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward_flop})


def _counted(work) -> tuple[float, int, float]:
    flops, calls = flop_counter(), OperatorCount()
    with flops, calls:
        work()
    return float(flops.get_total_flops()), calls.calls, float(calls.bytes)


def step_cost(name: str, batch_size: int | None = None) -> StepCost:
    """``name``'s model (the config's, without a stream's per-task heads) on the meta device."""
    cfg = composed(name)
    spec = DATASETS[name]["spec"]
    model = build_model(cfg["model"], spec).to(META)
    batch_size = batch_size or cfg["dataset"]["batch_size"]
    eval_batch = cfg["dataset"].get("eval_batch_size") or batch_size
    x, y = (t.to(META) for t in batch_for(name, cfg, batch_size))

    def train():
        _loss(model, x, y).backward()

    model.train()
    train_flops, train_calls, train_bytes = _counted(train)
    ex, ey = (t.to(META) for t in batch_for(name, cfg, eval_batch))
    model.eval()
    with torch.no_grad():
        eval_flops, eval_calls, eval_bytes = _counted(lambda: _loss(model, ex, ey))
    return StepCost(name, cfg["model"]["name"], batch_size, train_flops, train_calls, train_bytes, eval_batch,
                    eval_flops, eval_calls, eval_bytes)  # fmt: skip


def _loss(model, x, y):
    """The loss of one batch as the training step computes it (a language model from a zero state)."""
    if hasattr(model, "init_hidden"):
        logits, _ = model(x, model.init_hidden(x.shape[1], META))
        return next_token_loss(logits, y)
    return classification_loss(model(x), y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="*", default=list(DATASETS))
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    costs = [step_cost(name) for name in args.datasets]
    print(f"{'dataset':14s} {'model':16s} {'batch':>6s} {'train GFLOP':>12s} {'calls':>7s} {'GB':>7s}"
          f" {'eval GFLOP':>11s} {'calls':>6s} {'GB':>7s}")  # fmt: skip
    for c in costs:
        train = f"{c.train_flops / 1e9:12.1f} {c.train_calls:7d} {c.train_bytes / 1e9:7.1f}"
        evaluation = f"{c.eval_flops / 1e9:11.1f} {c.eval_calls:6d} {c.eval_bytes / 1e9:7.1f}"
        print(f"{c.dataset:14s} {c.model:16s} {c.batch_size:6d} {train} {evaluation}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "device": "meta (counted, not timed)"}
        args.out.write_text(json.dumps({"meta": meta, "results": [asdict(c) for c in costs]}, indent=2))


if __name__ == "__main__":
    main()
