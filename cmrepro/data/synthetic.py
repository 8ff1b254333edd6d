"""Synthetic data for fast, file-free runs: images of noisy class prototypes, and text from
a sparse random Markov chain. Both are fixed by the run seed and learnable by small models.

The same generators give *stand-ins* for the real datasets (``dataset.stand_in``, set by
``scale=smoke``): data with the real dataset's task and label space but tiny sizes, so a
paper experiment runs end to end, with its own model and optimizer, without its files.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch.utils.data import TensorDataset

from .base import DEFAULT_CONTEXT, DataBundle, DataContext, SameEveryEpoch, ShuffledTrainLoader, eval_loader
from .on_device import OnDeviceEvalBatches, OnDeviceTrainLoader
from .settings import SyntheticImageSettings, SyntheticTextSettings, stand_in_sizes
from .text import BpttBatches, batchify, too_short

# Prototypes are drawn on a coarse grid and upsampled, so that classes differ in smooth,
# spatially extended patterns a small conv net picks up even after pooling.
PROTOTYPE_GRID = 4
# Per-pixel noise of the same scale as the prototypes: every image is visibly noisy, yet
# the class stays decidable from the whole image.
NOISE_STD = 1.0
# Each token can be followed by this many (random) tokens: the chain's entropy is at
# most log(4) nats per token against log(vocab_size) for a model that learned nothing.
SUCCESSORS_PER_TOKEN = 4


# ---------------------------------------------------------------- images


def class_prototypes(num_classes: int, channels: int, size: int, generator: torch.Generator) -> torch.Tensor:
    """One smooth random float32 image ``[channels, size, size]`` per class."""
    grid = min(PROTOTYPE_GRID, size)
    coarse = torch.randn(num_classes, channels, grid, grid, generator=generator)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


def noisy_samples(prototypes: torch.Tensor, count: int, generator: torch.Generator) -> TensorDataset:
    """``count`` images, each a prototype plus Gaussian noise; classes balanced, in random order."""
    labels = (torch.arange(count) % len(prototypes))[torch.randperm(count, generator=generator)]
    noise = NOISE_STD * torch.randn(count, *prototypes.shape[1:], generator=generator)
    return TensorDataset(prototypes[labels] + noise, labels)


def build_synthetic_image(cfg: Mapping, seed: int, context: DataContext = DEFAULT_CONTEXT) -> DataBundle:
    """Image classification without files; ``use_test`` adds a third, independent sample
    of ``num_val`` images. Under ``on_device`` the samples stay on ``context.device`` and give
    the same batches (the images are float and not augmented, so nothing is done to them there)."""
    s = SyntheticImageSettings.from_config(cfg)
    generator = torch.Generator().manual_seed(seed)
    prototypes = class_prototypes(s.num_classes, s.channels, s.image_size, generator)
    train = noisy_samples(prototypes, s.num_train, generator)
    val = noisy_samples(prototypes, s.num_val, generator)
    test = noisy_samples(prototypes, s.num_val, generator) if s.use_test else None
    return DataBundle(
        task="classification",
        train=_image_train(train, s, seed, context.device),
        val=_image_eval(val, s, context.device),
        test=None if test is None else _image_eval(test, s, context.device),
        num_classes=s.num_classes,
        vocab_size=None,
        input_shape=(s.channels, s.image_size, s.image_size),
    )


def _image_train(samples: TensorDataset, s: SyntheticImageSettings, seed: int, device: torch.device):
    batch_size = s.loader.batch_size
    if s.on_device:
        images, labels = samples.tensors
        return OnDeviceTrainLoader(images, labels, batch_size, seed, device=device, normalise=None, augment=False)
    return ShuffledTrainLoader(samples, batch_size, seed, s.loader.options)


def _image_eval(samples: TensorDataset, s: SyntheticImageSettings, device: torch.device):
    batch_size = s.loader.eval_batch_size
    if s.on_device:
        images, labels = samples.tensors
        return OnDeviceEvalBatches(images, labels, batch_size, device=device, normalise=None)
    return eval_loader(samples, batch_size, s.loader.options)


# ---------------------------------------------------------------- text


class MarkovChain:
    """A random first-order chain over ``vocab_size`` tokens: each token has
    ``SUCCESSORS_PER_TOKEN`` random successors with random (Dirichlet(1)) probabilities."""

    def __init__(self, vocab_size: int, generator: torch.Generator) -> None:
        successors = torch.randint(vocab_size, (vocab_size, SUCCESSORS_PER_TOKEN), generator=generator)
        weights = -torch.log1p(-torch.rand(vocab_size, SUCCESSORS_PER_TOKEN, generator=generator))
        cumulative = (weights / weights.sum(dim=1, keepdim=True)).cumsum(dim=1)
        # Python lists: the walk is a scalar loop, where tensor indexing would dominate.
        self.successors: list[list[int]] = successors.tolist()
        self.cumulative: list[list[float]] = cumulative.tolist()
        self.vocab_size = vocab_size

    def sample(self, length: int, generator: torch.Generator) -> torch.Tensor:
        """A walk of ``length`` tokens from a random start, as int64."""
        token = int(torch.randint(self.vocab_size, (), generator=generator))
        draws = torch.rand(length, generator=generator, dtype=torch.float64).tolist()
        walk = []
        for draw in draws:
            walk.append(token)
            options, cumulative = self.successors[token], self.cumulative[token]
            # min(): float rounding can leave the last cumulative weight just below a draw.
            token = options[min(bisect.bisect_right(cumulative, draw), len(options) - 1)]
        return torch.tensor(walk, dtype=torch.int64)


def build_synthetic_text(cfg: Mapping, seed: int, context: DataContext = DEFAULT_CONTEXT) -> DataBundle:
    """Language modelling without files: one walk of the chain cut into train, val (and
    test, ``num_val_tokens`` long, when ``use_test``), batched like Penn Treebank."""
    s = SyntheticTextSettings.from_config(cfg)
    # split -> (tokens, batch columns, the key that sets its length)
    layout = {
        "train": (s.num_train_tokens, s.batch_size, "num_train_tokens"),
        "val": (s.num_val_tokens, s.eval_batch_size, "num_val_tokens"),
    }
    if s.use_test:
        layout["test"] = (s.num_val_tokens, s.eval_batch_size, "num_val_tokens")

    generator = torch.Generator().manual_seed(seed)
    walk = MarkovChain(s.vocab_size, generator).sample(sum(length for length, _, _ in layout.values()), generator)
    splits: dict[str, BpttBatches] = {}
    start = 0
    for name, (length, columns, key) in layout.items():
        shortage = too_short(length, columns)
        if shortage:
            raise ValueError(f"synthetic_text: dataset.{key}={length} gives {shortage}")
        splits[name] = BpttBatches(batchify(walk[start : start + length], columns), s.bptt)
        start += length
    return DataBundle(
        task="language_model",
        train=SameEveryEpoch(splits["train"]),
        val=splits["val"],
        test=splits.get("test"),
        num_classes=None,
        vocab_size=s.vocab_size,
        input_shape=(),
    )


# ---------------------------------------------------------------- stand-ins

# What a stand-in keeps of each real dataset: its label space and input channels (a
# vocabulary for language modelling).
STAND_IN_SHAPES: dict[str, dict[str, int]] = {
    "cifar10": {"num_classes": 10, "channels": 3},
    "cifar100": {"num_classes": 100, "channels": 3},
    "imagenet": {"num_classes": 1000, "channels": 3},
    "ptb": {"vocab_size": 10000},
}


def build_stand_in(cfg: Mapping, seed: int, context: DataContext = DEFAULT_CONTEXT) -> DataBundle:
    """Synthetic data shaped like dataset ``cfg["name"]``, sized by the ``cfg["stand_in"]`` mapping
    (``train``/``val`` images, ``image_size``, ``train_tokens``/``val_tokens``)."""
    sizes = stand_in_sizes(cfg)
    shape = STAND_IN_SHAPES[cfg["name"]]
    settings = {**cfg, **shape}
    if "vocab_size" in shape:  # language modelling
        settings.update(num_train_tokens=sizes.get("train_tokens", 2000), num_val_tokens=sizes.get("val_tokens", 400))
        return build_synthetic_text(settings, seed, context)
    settings.update(
        num_train=sizes.get("train", 64), num_val=sizes.get("val", 32), image_size=sizes.get("image_size", 16)
    )
    return build_synthetic_image(settings, seed, context)
