"""BatchNorm over the global batch of a multi-process run, for CPU (gloo) processes.

Why it exists: torch's ``nn.SyncBatchNorm`` refuses CPU tensors ("SyncBatchNorm expected input
tensor to be on GPU ..."; its kernels, ``batch_norm_stats`` and the like, have no CPU
implementation), and DistributedDataParallel refuses any ``nn.SyncBatchNorm``, subclasses
included, in a CPU module ("SyncBatchNorm layers only work with GPU modules"). Multi-process CPU
runs (the tests, CPU-only hosts) need the same math to match a single process at the same global
batch, so :class:`CPUSyncBatchNorm` computes it from all-reduced sums with plain tensor ops.
On CUDA use torch's own (:func:`cmrepro.training.distributed.convert_sync_batchnorm` chooses).
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm


class _SumOverRanks(torch.autograd.Function):
    """``all_reduce(SUM)`` with its gradient: every rank's input feeds every rank's sum, so the
    gradient of an input is the sum over the ranks of the gradients of the sum.

    ``torch.distributed.nn.functional.all_reduce`` is this, but is deprecated in torch 2.14
    (a FutureWarning on every call), and its suggested replacement has no gradient.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        total = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(total)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        return _SumOverRanks.apply(grad)


def sum_over_ranks(tensor: Tensor) -> Tensor:
    """The sum of ``tensor`` over the ranks of the default group, differentiable."""
    return _SumOverRanks.apply(tensor)


def synchronised() -> bool:
    """Whether this process trains with others: a process group of more than one rank."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm whose training-mode statistics are those of the global batch (all ranks' inputs).

    In training mode under a process group of more than one rank it normalises with the global
    batch's mean and biased variance, gathered with differentiable all-reduces of per-rank sums
    and counts (two passes, the mean first, for the accuracy of the variance), and updates the
    running statistics as ``nn.BatchNorm2d`` would on the whole global batch (``momentum``,
    ``None`` included; unbiased variance). Otherwise it is plain batch norm. Any input of at
    least 2 dimensions, channels second, like ``nn.SyncBatchNorm``.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, input: Tensor) -> Tensor:
        if not (self.training and synchronised()):
            return super().forward(input)
        self._check_input_dim(input)
        factor = self._running_factor()
        mean, var, count = global_moments(input)
        if count < 2:  # as F.batch_norm: no variance of one value
            raise ValueError(f"expected more than 1 value per channel when training, got {count} in the global batch")
        if self.track_running_stats:
            self._update_running_stats(mean.detach(), var.detach(), count, factor)
        shape = (1, -1) + (1,) * (input.dim() - 2)
        out = (input - mean.to(input.dtype).view(shape)) * torch.rsqrt(var + self.eps).to(input.dtype).view(shape)
        if self.weight is not None:
            out = out * self.weight.view(shape)
        if self.bias is not None:
            out = out + self.bias.view(shape)
        return out

    def _running_factor(self) -> float:
        """Count this batch and return the weight of its statistics in the running ones, as
        ``_BatchNorm.forward`` does (``momentum``, or ``1 / batches`` when it is None)."""
        if not self.track_running_stats or self.num_batches_tracked is None:
            return 0.0
        self.num_batches_tracked.add_(1)
        return 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum

    @torch.no_grad()
    def _update_running_stats(self, mean: Tensor, var: Tensor, count: int, factor: float) -> None:
        unbiased = var * (count / (count - 1))
        self.running_mean.lerp_(mean.to(self.running_mean.dtype), factor)
        self.running_var.lerp_(unbiased.to(self.running_var.dtype), factor)


def global_moments(input: Tensor) -> tuple[Tensor, Tensor, int]:
    """``(mean [C], biased variance [C], count)`` per channel of ``input`` over all ranks,
    accumulated in float64 and differentiable with respect to ``input``."""
    dims = [0, *range(2, input.dim())]
    local_count = input.numel() // input.shape[1] if input.shape[1] else 0
    sums = torch.cat([input.sum(dims, dtype=torch.float64), input.new_full((1,), local_count, dtype=torch.float64)])
    sums = sum_over_ranks(sums)
    count = int(sums[-1].item())  # on the host already: this path runs on CPU only
    mean = sums[:-1] / max(count, 1)
    shape = (1, -1) + (1,) * (input.dim() - 2)
    centred = input - mean.to(input.dtype).view(shape)
    var = sum_over_ranks(centred.square().sum(dims, dtype=torch.float64)) / max(count, 1)
    return mean, var, count


def convert_to_cpu_sync(module: nn.Module) -> nn.Module:
    """``module`` with every BatchNorm (``_BatchNorm``) replaced by a :class:`CPUSyncBatchNorm`
    that shares its parameters and running statistics; a BatchNorm ``module`` itself is
    returned converted (as ``nn.SyncBatchNorm.convert_sync_batchnorm`` does)."""
    if isinstance(module, _BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        return _cpu_sync_copy(module)
    for name, child in module.named_children():
        converted = convert_to_cpu_sync(child)
        if converted is not child:
            setattr(module, name, converted)
    return module


def _cpu_sync_copy(norm: _BatchNorm) -> CPUSyncBatchNorm:
    sync = CPUSyncBatchNorm(
        norm.num_features,
        norm.eps,
        norm.momentum,
        norm.affine,
        norm.track_running_stats,
        bias=norm.bias is not None,
    )
    # The same tensors, not copies: an optimizer or a reference made before converting still sees them.
    sync.weight, sync.bias = norm.weight, norm.bias
    sync.running_mean, sync.running_var = norm.running_mean, norm.running_var
    sync.num_batches_tracked = norm.num_batches_tracked
    sync.train(norm.training)
    return sync
