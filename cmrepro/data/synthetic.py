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

from .base import (
    DATASET_TASKS,
    DataBundle,
    DataError,
    SameEveryEpoch,
    ShuffledTrainLoader,
    batch_sizes,
    eval_loader,
    get_bool,
    get_int,
    loader_options,
)
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


def build_synthetic_image(cfg: Mapping, seed: int) -> DataBundle:
    """Image classification without files; ``use_test`` adds a third, independent sample
    of ``num_val`` images."""
    batch_size, eval_batch_size = batch_sizes(cfg)
    num_classes = get_int(cfg, "num_classes", 10, minimum=2)
    size = get_int(cfg, "image_size", 32)
    channels = get_int(cfg, "channels", 3)
    num_val = get_int(cfg, "num_val", 256)
    options = loader_options(cfg)

    generator = torch.Generator().manual_seed(seed)
    prototypes = class_prototypes(num_classes, channels, size, generator)
    train = noisy_samples(prototypes, get_int(cfg, "num_train", 512), generator)
    val = noisy_samples(prototypes, num_val, generator)
    test = noisy_samples(prototypes, num_val, generator) if get_bool(cfg, "use_test", False) else None
    return DataBundle(
        task="classification",
        train=ShuffledTrainLoader(train, batch_size, seed, options),
        val=eval_loader(val, eval_batch_size, options),
        test=None if test is None else eval_loader(test, eval_batch_size, options),
        num_classes=num_classes,
        vocab_size=None,
        input_shape=(channels, size, size),
    )


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


def build_synthetic_text(cfg: Mapping, seed: int) -> DataBundle:
    """Language modelling without files: one walk of the chain cut into train, val (and
    test, ``num_val_tokens`` long, when ``use_test``), batched like Penn Treebank."""
    batch_size, eval_batch_size = batch_sizes(cfg)
    vocab_size = get_int(cfg, "vocab_size", 50, minimum=2)
    bptt = get_int(cfg, "bptt", 35)
    num_val = get_int(cfg, "num_val_tokens", 4000)
    # split -> (tokens, batch columns, the key that sets its length)
    layout = {
        "train": (get_int(cfg, "num_train_tokens", 20000), batch_size, "num_train_tokens"),
        "val": (num_val, eval_batch_size, "num_val_tokens"),
    }
    if get_bool(cfg, "use_test", False):
        layout["test"] = (num_val, eval_batch_size, "num_val_tokens")

    generator = torch.Generator().manual_seed(seed)
    walk = MarkovChain(vocab_size, generator).sample(sum(length for length, _, _ in layout.values()), generator)
    splits: dict[str, BpttBatches] = {}
    start = 0
    for name, (length, columns, key) in layout.items():
        shortage = too_short(length, columns)
        if shortage:
            raise ValueError(f"synthetic_text: dataset.{key}={length} gives {shortage}")
        splits[name] = BpttBatches(batchify(walk[start : start + length], columns), bptt)
        start += length
    return DataBundle(
        task="language_model",
        train=SameEveryEpoch(splits["train"]),
        val=splits["val"],
        test=splits.get("test"),
        num_classes=None,
        vocab_size=vocab_size,
        input_shape=(),
    )


# ---------------------------------------------------------------- stand-ins

# What a stand-in keeps of each real dataset: its label space and input channels.
STAND_IN_SHAPES: dict[str, dict[str, int]] = {
    "cifar10": {"num_classes": 10, "channels": 3},
    "cifar100": {"num_classes": 100, "channels": 3},
    "imagenet": {"num_classes": 1000, "channels": 3},
    "ptb": {"vocab_size": 10000},
}


def build_stand_in(cfg: Mapping, seed: int) -> DataBundle:
    """Synthetic data shaped like dataset ``cfg["name"]``, sized by the ``cfg["stand_in"]`` mapping
    (``train``/``val`` images, ``image_size``, ``train_tokens``/``val_tokens``)."""
    name = cfg["name"]
    if name not in STAND_IN_SHAPES:
        raise DataError(f"{name}: no synthetic stand-in is defined for this dataset; run it without dataset.stand_in")
    sizes = cfg["stand_in"]
    if not isinstance(sizes, Mapping):
        raise ValueError(f"invalid dataset.stand_in: {sizes!r} (must be a mapping of stand-in sizes, or null)")
    settings = {**cfg, **STAND_IN_SHAPES[name]}
    if DATASET_TASKS[name] == "language_model":
        settings.update(num_train_tokens=sizes.get("train_tokens", 2000), num_val_tokens=sizes.get("val_tokens", 400))
        return build_synthetic_text(settings, seed)
    settings.update(
        num_train=sizes.get("train", 64), num_val=sizes.get("val", 32), image_size=sizes.get("image_size", 16)
    )
    return build_synthetic_image(settings, seed)
