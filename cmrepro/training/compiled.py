"""``trainer.compile``: the forward and backward passes of training and evaluation through torch.compile.

Opt-in. On one H200 a CIFAR ResNet34 training step at batch 64 took 15.5-17 ms
eager and 3.4 ms compiled with mode "reduce-overhead" (CUDA graphs), after a
compilation of about a minute (../shared/DESIGN.md, performance notes); on a
CPU compilation costs more than it saves for short runs.

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
        print("cmrepro: trainer.compile ignored: torch.compile does not trace the LSTM; running eager", file=sys.stderr)
        return model
    return torch.compile(model, mode=mode)
