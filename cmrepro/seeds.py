"""The seed streams of a run: one named number for each random draw derived from the run seed.

A draw that depends on the run seed and an index (an epoch, a task) takes its generator's seed
from ``epoch_seed(seed, index, stream)`` (:mod:`cmrepro.data.base`), which mixes the three with
numpy's SeedSequence. Giving every kind of draw its own stream keeps the draws unrelated: the
shuffle of epoch 3 never equals the split of task 3. The values are part of every result
(changing one changes the runs it seeds), so they are fixed here, once, and never reused.
Standard library only, so any layer may name a stream.
"""

from __future__ import annotations

from enum import IntEnum


class SeedStream(IntEnum):
    """The ``stream`` argument of ``epoch_seed``; each value is used by one kind of draw only."""

    #: The order of an epoch's training batches (``data.base.EpochBatchSampler``).
    SHUFFLE = 0
    #: The DataLoader generator of an epoch: the base seed of its workers' augmentation.
    WORKERS = 1
    #: Each task's train/validation split in the task streams (``data.online``).
    TASK_SPLIT = 2
    #: notMNIST's held-out test tenth in 5-dataset (it has no official test split).
    NOTMNIST_TEST = 3
    #: The Lanczos start vector of the sharpness estimate after each epoch (``metrics.tracker``).
    SHARPNESS = 7
    #: An epoch's random crops and flips of an image set kept on the device (``data.on_device``).
    AUGMENT = 8
    #: Torch's generator on the processes other than rank 0 of a distributed run, which load
    #: other images and must not draw the same crops for them (``training.run_setup``).
    RANK = 9
