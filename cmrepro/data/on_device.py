"""Image sets kept on the training device (``dataset.on_device``): each batch is gathered,
randomly cropped, flipped and normalised there by a few tensor ops on the whole batch.

The loader path (a DataLoader over ``vision.NormalisedImages``) crops, flips and normalises
image by image on the host: a few ms per batch of 64, more than a compiled ResNet34 step
takes on a GPU. Here the uint8 set lives on the device once, and an epoch costs one host
draw of its order and augmentation, moved to the device once.

It replays the loader path: the same batches of the same images (its
:class:`~.base.EpochBatchSampler` orders both, so whatever that sampler does, sharding
included, holds here too), the same augmentation distribution (torchvision's
``RandomCrop(size, padding=4)`` then ``RandomHorizontalFlip()``: offsets uniform in
``0..8`` on each axis, zero padding, a flip with probability 1/2, on the uint8 image before
normalising) and the same normalisation, bit for bit. Its randomness is its own: epoch ``e``
draws from a generator seeded with ``(seed, e, SeedStream.AUGMENT)``, one crop per image of
the set, so an epoch's batches are the same whether or not the epochs before it ran in this
process (exact on resume), and an image's crop does not depend on how the epoch is batched.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import chain

import torch
import torch.nn.functional as F
from torch import Tensor

from ..seeds import SeedStream
from .base import EpochBatches, EpochBatchSampler, Shard, epoch_seed

# Zero padding on each side before the random crop back to the image size (the CIFAR
# ResNet recipe); the loader path's RandomCrop uses it too.
CROP_PADDING = 4
FLIP_PROBABILITY = 0.5  # RandomHorizontalFlip's default


@dataclass(frozen=True)
class Normalise:
    """Per-channel mean and std of pixels in [0, 1]: uint8 images become ``(x / 255 - mean) / std``."""

    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class Crops:
    """One random crop and flip per image: ``top`` and ``left`` offsets in the padded image
    and ``flip``, each ``[N]``."""

    top: Tensor
    left: Tensor
    flip: Tensor


def draw_crops(count: int, padding: int, generator: torch.Generator) -> Crops:
    """``count`` crops: offsets uniform in ``0..2 * padding`` on each axis and a flip with
    probability 1/2, the distributions of torchvision's RandomCrop and RandomHorizontalFlip."""
    offsets = torch.randint(0, 2 * padding + 1, (2, count), generator=generator)
    flip = torch.rand(count, generator=generator) < FLIP_PROBABILITY
    return Crops(offsets[0], offsets[1], flip)


def epoch_crops(seed: int, epoch: int, count: int, padding: int = CROP_PADDING) -> Crops:
    """The crops of epoch ``epoch``, one per image of a set of ``count`` in set order; drawn on
    the host, so every device gets the same ones."""
    generator = torch.Generator().manual_seed(epoch_seed(seed, epoch, SeedStream.AUGMENT))
    return draw_crops(count, padding, generator)


def crop_grid(crops: Crops, height: int, width: int) -> tuple[Tensor, Tensor]:
    """``(rows [N, height], cols [N, width])``: where each output pixel comes from in the padded
    image. A flipped crop reads its columns right to left, which flips the crop itself."""
    rows = crops.top[:, None] + torch.arange(height, device=crops.top.device)
    across = torch.arange(width, device=crops.left.device)
    cols = crops.left[:, None] + torch.where(crops.flip[:, None], width - 1 - across, across)
    return rows, cols


class DeviceImages:
    """Images ``[N, C, H, W]`` and labels ``[N]`` on ``device``, zero-padded by ``padding``
    when they are to be cropped; :meth:`batch` gives normalised float32 images and int64 labels.

    uint8 images are kept as uint8 (a quarter of float32's memory) and normalised per batch;
    with ``normalise`` None the images are used as they are (float sets, e.g. synthetic ones).
    """

    def __init__(
        self, images: Tensor, labels: Tensor, device: torch.device, normalise: Normalise | None, padding: int = 0
    ) -> None:
        self.height, self.width = images.shape[-2:]
        # Zero padding of the raw pixels, as the loader path's RandomCrop pads them before normalising.
        padded = F.pad(images, (padding,) * 4) if padding else images
        self.images = padded.to(device)
        self.labels = labels.to(device=device, dtype=torch.int64)
        self.channels = torch.arange(images.shape[1], device=device).view(1, -1, 1)
        self.normalise = normalise
        if normalise is not None:
            self.mean = torch.tensor(normalise.mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
            self.std = torch.tensor(normalise.std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
            # A tensor on the device, not the number 255: CUDA divides by a host scalar as a
            # multiplication by its reciprocal, which differs from x / 255 in the last bit for 126
            # of the 256 pixel values; dividing by a device tensor is a true division everywhere.
            self.scale = torch.tensor(255.0, dtype=torch.float32, device=device)

    def __len__(self) -> int:
        return len(self.labels)

    def batch(self, index: Tensor | slice) -> tuple[Tensor, Tensor]:
        """The images at ``index`` (indices or a slice), uncropped."""
        return self._finish(self.images[index]), self.labels[index]

    def cropped_batch(self, index: Tensor, rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
        """The images at ``index``, each cut from its padded image at its ``rows`` and ``cols``
        (:func:`crop_grid`), for the whole batch at once."""
        # Whole padded rows first, then the columns within them: a CPU copies rows much faster than
        # single pixels (one gather of each pixel by four indices took five times as long here),
        # and a GPU does either in microseconds.
        lines = self.images[index[:, None, None], self.channels, rows[:, None, :]]  # [B, C, H, padded W]
        pixels = torch.gather(lines, 3, cols[:, None, None, :].expand(-1, lines.shape[1], lines.shape[2], -1))
        return self._finish(pixels), self.labels[index]

    def _finish(self, pixels: Tensor) -> Tensor:
        if self.normalise is None:
            return pixels.float()
        # The loader path's formula and operation order, so both give the same bits.
        return (pixels.float() / self.scale - self.mean) / self.std


class OnDeviceTrainLoader:
    """``train(epoch)`` for an image set kept on ``device``: the batches of the loader path's
    sampler, randomly cropped and flipped when ``augment``.

    Sharded (:meth:`sharded`), every rank keeps the whole set and draws the same crops, so the
    ranks' parts of step ``i``, put together, are the single-process batch ``i``, crops included.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        batch_size: int,
        seed: int,
        *,
        device: torch.device,
        normalise: Normalise | None,
        augment: bool,
    ) -> None:
        self.seed = seed
        self.augment = augment
        self.data = DeviceImages(images, labels, device, normalise, CROP_PADDING if augment else 0)
        self.sampler = EpochBatchSampler(len(labels), batch_size, seed)

    def __call__(self, epoch: int) -> EpochBatches:
        return EpochBatches(self, epoch)

    def __len__(self) -> int:
        return len(self.sampler)

    def sharded(self, shard: Shard) -> OnDeviceTrainLoader:
        """The same loader, and the same images on the device, giving ``shard``'s part of every batch."""
        part = copy.copy(self)
        part.sampler = EpochBatchSampler(self.sampler.size, self.sampler.batch_size, self.seed, shard)
        return part

    def loss_weight(self, step: int) -> float:
        """The factor on the mean loss of step ``step``'s batch (:meth:`EpochBatchSampler.loss_weight`)."""
        return self.sampler.loss_weight(step)

    def epoch_order(self, epoch: int) -> tuple[Tensor, list[int]]:
        """The epoch's image indices, batch after batch, on the device, and the batch sizes."""
        self.sampler.set_epoch(epoch)
        batches = list(self.sampler)
        order = torch.tensor(list(chain.from_iterable(batches)), dtype=torch.int64)
        return order.to(self.data.labels.device), [len(batch) for batch in batches]

    # A resumed epoch starts at any step: iterate() slices the epoch's index and crop tensors.
    resumes_mid_epoch = True

    def iterate(self, epoch: int, start: int = 0) -> Iterator[tuple[Tensor, Tensor]]:
        # Everything random is drawn here, when iteration starts, as the loader path does.
        order, sizes = self.epoch_order(epoch)
        indices = order.split(sizes)
        if not self.augment:
            return (self.data.batch(index) for index in indices[start:])
        crops = epoch_crops(self.seed, epoch, len(self.data))
        device = order.device
        # Crops are drawn per image of the set (set order), then put in the epoch's order.
        crops = Crops(crops.top.to(device), crops.left.to(device), crops.flip.to(device))
        rows, cols = crop_grid(crops, self.data.height, self.data.width)
        batches = zip(indices[start:], rows[order].split(sizes)[start:], cols[order].split(sizes)[start:])
        return (self.data.cropped_batch(index, r, c) for index, r, c in batches)


class OnDeviceEvalBatches:
    """Validation or test batches of an image set kept on ``device``, in set order, re-iterable."""

    def __init__(
        self, images: Tensor, labels: Tensor, batch_size: int, *, device: torch.device, normalise: Normalise | None
    ) -> None:
        self.data = DeviceImages(images, labels, device, normalise)
        self.batch_size = batch_size
        self.part = range(len(labels))  # the images this process evaluates

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        starts = range(self.part.start, self.part.stop, self.batch_size)
        return (self.data.batch(slice(start, min(start + self.batch_size, self.part.stop))) for start in starts)

    def __len__(self) -> int:
        return -(-len(self.part) // self.batch_size)

    def sharded(self, shard: Shard) -> OnDeviceEvalBatches:
        """``shard``'s contiguous part of the set (:meth:`Shard.part`), as the loader path's
        ``EvalLoader.sharded``; ``batch_size`` is per rank."""
        part = copy.copy(self)
        part.part = shard.part(len(self.data))
        return part
