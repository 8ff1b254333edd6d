"""``trainer.compile``: the forward and backward passes of training and evaluation through torch.compile.

Opt-in. On one H200 this project's CIFAR100 ResNet34 training step at batch 64
took 13.5 ms eager and 8.7 ms compiled with mode "reduce-overhead" (CUDA graphs),
after 21 s of compilation and warm-up (ImageNet's EfficientNet-B0: 153 ms, 52 ms,
63 s; `make device-checks`, results/bench/device/train_cuda*.json); on a CPU
compilation costs more than it saves for short runs.

A compiled graph is specialised to the batch size it first sees. An epoch's last batch
is usually smaller (ImageNet's training set, most validation sets), and would compile the
model again, every run, for one step: :class:`OneShapeCompiled` sends a batch of any other
size through the eager model instead, so a run compiles once per mode (training,
evaluation) and computes what an eager run computes.

The compiled module is a wrapper that shares the model's parameters, buffers
and train/eval flags. Everything else keeps the plain model: checkpoints (the
wrapper's state_dict keys carry a prefix, so checkpoints stay interchangeable
between compiled and eager runs), the optimizer, and the analysis metrics
(sharpness needs double backward, which compiled graphs do not support).
The PTB LSTM runs eager whatever the setting: Dynamo does not trace nn.LSTM.
"""

from __future__ import annotations

import sys

import torch
from torch import nn

from .distributed import DistEnv, wrap_model

# torch.compile's modes; ``true`` in a config means "default".
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode(setting) -> str | None:
    """The torch.compile mode of a ``trainer.compile`` value, None for off; ValueError if invalid."""
    if setting is False or setting is None:
        return None
    if setting is True:
        return "default"
    if setting in COMPILE_MODES:
        return setting
    raise ValueError(f"invalid trainer.compile: {setting!r} (false, true or one of: {', '.join(COMPILE_MODES)})")


def forward_module(model: nn.Module, setting) -> nn.Module:
    """What training and evaluation call: ``model`` itself, or its compiled wrapper."""
    mode = compile_mode(setting)
    if mode is None:
        return model
    if any(isinstance(module, nn.RNNBase) for module in model.modules()):
        # Dynamo stops at nn.LSTM (a graph break, then eager): compiling would only add its cost.
        print(
            "cmrepro.train: trainer.compile ignored: torch.compile does not trace the LSTM; running eager",
            file=sys.stderr,
        )
        return model
    return OneShapeCompiled(torch.compile(model, mode=mode), model)


class OneShapeCompiled(nn.Module):
    """``compiled(x)`` for batches of the size the compiled graph was first called with in the
    current mode (training or evaluation), ``eager(x)`` for any other size: one compilation per
    mode, however uneven the last batches. ``eager`` is the module ``compiled`` compiles, so both
    share parameters, buffers and the train/eval flag."""

    def __init__(self, compiled: nn.Module, eager: nn.Module) -> None:
        super().__init__()
        self.eager = eager
        object.__setattr__(self, "compiled", compiled)  # not a second child: the same parameters
        self.batch_sizes: dict[bool, int] = {}  # training flag -> the compiled batch size

    def forward(self, x, *args, **kwargs):
        size = self.batch_sizes.setdefault(self.eager.training, x.shape[0])
        module = self.compiled if x.shape[0] == size else self.eager
        return module(x, *args, **kwargs)


def training_modules(model: nn.Module, setting, env: DistEnv, device: torch.device) -> tuple[nn.Module, nn.Module]:
    """``(runner, evaluator)``: what the training steps and the evaluation passes call.

    In a process group the runner is DistributedDataParallel around ``model``, and it is the
    wrapper that is compiled, so that torch.compile sees DDP's gradient buckets and lets their
    all-reduce overlap the backward pass (compiling the model inside DDP would leave DDP one
    opaque module whose communication waits for the whole backward). The evaluator is ``model``,
    compiled apart: evaluation needs no gradient communication. In one process both are the
    same module, compiled once.
    """
    runner = forward_module(wrap_model(model, env, device), setting)
    evaluator = forward_module(model, setting) if env.enabled else runner
    return runner, evaluator


def check_compile_in_process_group(setting, sync_batchnorm: bool, env: DistEnv) -> None:
    """ValueError (one line) for ``trainer.compile`` with SyncBatchNorm on several processes."""
    if compile_mode(setting) is None or not sync_batchnorm or env.world_size < 2:
        return
    raise ValueError(
        f"trainer.compile={setting} with trainer.sync_batchnorm=true on {env.world_size} processes: torch.compile "
        "breaks its graph at every SyncBatchNorm layer (little is left to compile) and compile with DDP and "
        "SyncBatchNorm has open upstream failures; set trainer.sync_batchnorm=false (BatchNorm statistics per "
        "GPU, the usual DDP recipe) or trainer.compile=false"
    )
