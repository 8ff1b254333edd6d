"""cmrepro.data.on_device (``dataset.on_device``): the loader path's batches, in its order, with
its augmentation distribution, exact on resume, on any device."""

from __future__ import annotations

from pathlib import Path

import data_fixtures
import pytest
import torch
import torchvision.transforms.functional as TF
from scipy import stats

from cmrepro.data import DataContext, build_data
from cmrepro.data.base import Shard, ShuffledTrainLoader
from cmrepro.data.on_device import CROP_PADDING, Normalise, OnDeviceEvalBatches, OnDeviceTrainLoader, epoch_crops
from cmrepro.data.vision import CIFAR10, NormalisedImages

CPU = DataContext(device=torch.device("cpu"))
# Pixels in [0, 1] unchanged: x = v / 255, so the test can read the uint8 values back.
IDENTITY = Normalise((0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
OFFSETS = 2 * CROP_PADDING + 1  # 9 crop positions per axis


def cifar_cfg(root: Path, **overrides) -> dict:
    cfg = {"name": "cifar10", "data_dir": str(root), "batch_size": 16, "eval_batch_size": 8, "val_size": 20}
    return {**cfg, **overrides}


def epochs(train, which) -> list[list[tuple[torch.Tensor, torch.Tensor]]]:
    return [list(train(epoch)) for epoch in which]


def assert_same_batches(first, second) -> None:
    first, second = list(first), list(second)
    assert len(first) == len(second)
    for (x1, y1), (x2, y2) in zip(first, second):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)


def collect(batches) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches)
    return torch.cat(xs), torch.cat(ys)


def random_images(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    return images, torch.randint(0, 10, (count,), generator=generator)


# ---------------------------------------------------------------- the loader path's batches


@pytest.mark.parametrize("augment", [False, True])
def test_cifar_on_device_has_the_loader_paths_order_and_without_augmentation_its_bits(tmp_path, augment) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=100, n_test=12)
    cfg = cifar_cfg(tmp_path, augment=augment, use_test=True)
    loader = build_data(cfg, seed=3, context=CPU)
    on_device = build_data({**cfg, "on_device": True}, seed=3, context=CPU)

    assert isinstance(on_device.train, OnDeviceTrainLoader) and isinstance(on_device.val, OnDeviceEvalBatches)
    assert len(on_device.train) == len(loader.train) == 5 and len(on_device.val) == len(loader.val) == 3
    for epoch in range(3):
        on, off = list(on_device.train(epoch)), list(loader.train(epoch))
        assert [y.tolist() for _, y in on] == [y.tolist() for _, y in off]  # the same images, batch by batch
        for x, y in on:
            assert x.dtype == torch.float32 and y.dtype == torch.int64 and x.shape == (len(y), 3, 32, 32)
        if not augment:
            assert_same_batches(on, off)
    assert_same_batches(on_device.val, loader.val)  # never augmented
    assert_same_batches(on_device.test, loader.test)


def test_crops_are_torchvisions_crops_at_the_same_offsets() -> None:
    images, labels = random_images(24)
    train = OnDeviceTrainLoader(
        images,
        labels,
        8,
        seed=5,
        device=torch.device("cpu"),
        normalise=Normalise(CIFAR10.mean, CIFAR10.std),
        augment=True,
    )
    epoch = 2
    crops = epoch_crops(5, epoch, len(labels))
    order, _ = train.epoch_order(epoch)
    assert crops.flip.any() and not crops.flip.all()
    mean, std = torch.tensor(CIFAR10.mean).view(-1, 1, 1), torch.tensor(CIFAR10.std).view(-1, 1, 1)
    x = torch.cat([x for x, _ in train(epoch)])
    for position, index in enumerate(order.tolist()):
        top, left, flip = int(crops.top[index]), int(crops.left[index]), bool(crops.flip[index])
        expected = TF.crop(TF.pad(images[index], [CROP_PADDING]), top, left, 32, 32)
        expected = TF.hflip(expected) if flip else expected
        assert torch.equal(x[position], (expected.float() / 255 - mean) / std), (position, top, left, flip)


# ---------------------------------------------------------------- the augmentation distribution


def position_images(count: int) -> torch.Tensor:
    """uint8 images whose channel 0 holds row + 1 and channel 1 column + 1 (0 is the padding)."""
    rows = torch.arange(1, 33, dtype=torch.uint8).view(32, 1).expand(32, 32)
    image = torch.stack([rows, rows.T, torch.zeros_like(rows)])
    return image.expand(count, -1, -1, -1).contiguous()


def read_crops(x: torch.Tensor) -> torch.Tensor:
    """``[B]`` cell numbers ``(top * 9 + left) * 2 + flip`` of crops of :func:`position_images`.

    Crop row 16 shows image row ``top + 12`` (value ``top + 13``) for every offset; crop column
    16 shows image column ``left + 12`` (value ``left + 13``), or ``left + 11`` once flipped.
    """
    pixels = (x * 255).round().long()
    top = pixels[:, 0, 16, 16] - 13
    flip = pixels[:, 1, 16, 16] < pixels[:, 1, 16, 15]
    left = pixels[:, 1, 16, 16] - 13 + flip.long()
    assert top.min() >= 0 and top.max() < OFFSETS and left.min() >= 0 and left.max() < OFFSETS
    return (top * OFFSETS + left) * 2 + flip.long()


def crop_counts(train, epochs_: int) -> torch.Tensor:
    cells = torch.cat([read_crops(x) for epoch in range(epochs_) for x, _ in train(epoch)])
    return torch.bincount(cells, minlength=OFFSETS * OFFSETS * 2)


def test_crop_offsets_and_flips_have_the_loader_paths_distribution() -> None:
    images = position_images(1024)
    labels = torch.zeros(1024, dtype=torch.int64)
    on_device = OnDeviceTrainLoader(
        images, labels, 256, seed=0, device=torch.device("cpu"), normalise=IDENTITY, augment=True
    )
    dataset = NormalisedImages(images, labels, IDENTITY.mean, IDENTITY.std, augment=True)
    loader = ShuffledTrainLoader(dataset, 256, 0, {"num_workers": 0})
    torch.manual_seed(0)  # the loader path augments with the global generator
    counts = {"on_device": crop_counts(on_device, 4), "loader": crop_counts(loader, 4)}

    for path, count in counts.items():
        # Every (top, left, flip) of the 162 equally likely: offsets uniform and independent, p(flip) = 1/2.
        assert stats.chisquare(count.numpy()).pvalue > 1e-3, path
        flips = count.view(-1, 2)[:, 1].sum().item()
        assert abs(flips / count.sum().item() - 0.5) < 4 * (0.25 / count.sum().item()) ** 0.5, path
    # And the two paths agree with each other (a 2 x 162 contingency table).
    table = torch.stack(list(counts.values())).numpy()
    assert stats.chi2_contingency(table).pvalue > 1e-3


# ---------------------------------------------------------------- seeded, exact on resume


def make_train(seed: int = 11) -> OnDeviceTrainLoader:
    images, labels = random_images(40)
    return OnDeviceTrainLoader(images, labels, 16, seed, device=torch.device("cpu"), normalise=IDENTITY, augment=True)


def test_an_epoch_is_the_same_whether_or_not_the_epochs_before_it_ran() -> None:
    straight = epochs(make_train(), range(4))
    torch.manual_seed(123)  # nor does it depend on the global generators
    resumed = list(make_train()(3))
    assert_same_batches(resumed, straight[3])
    assert_same_batches(make_train()(3), make_train()(3))
    assert len(resumed) == 3 and [len(y) for _, y in resumed] == [16, 16, 8]
    # Epochs differ, and so do seeds: in order, and in the crops of each image.
    assert not torch.equal(straight[2][0][0], straight[3][0][0])
    assert not torch.equal(epoch_crops(11, 2, 40).top, epoch_crops(11, 3, 40).top)
    assert not torch.equal(list(make_train(12)(3))[0][1], resumed[0][1])


@pytest.mark.parametrize("world_size", [2, 3])
def test_the_ranks_parts_put_together_are_the_single_process_batches(world_size) -> None:
    images, labels = random_images(40)
    whole = OnDeviceTrainLoader(images, labels, 12, 7, device=torch.device("cpu"), normalise=IDENTITY, augment=True)
    ranks = [whole.sharded(Shard(rank, world_size)) for rank in range(world_size)]
    parts = [list(rank(2)) for rank in ranks]
    assert all(len(rank) == len(whole) == 4 for rank in ranks)
    for step, (x, y) in enumerate(whole(2)):  # crops included
        assert torch.equal(torch.cat([part[step][0] for part in parts]), x)
        assert torch.equal(torch.cat([part[step][1] for part in parts]), y)
    # The last batch holds 4 images: split 2 + 2 (weights 1) or 2 + 1 + 1 (rank 0 weighs 2 * 3 / 4).
    assert ranks[0].loss_weight(3) == (1.0 if world_size == 2 else 1.5) and whole.loss_weight(3) == 1.0

    evaluation = OnDeviceEvalBatches(images, labels, 8, device=torch.device("cpu"), normalise=IDENTITY)
    shards = [evaluation.sharded(Shard(rank, world_size)) for rank in range(world_size)]
    xs, ys = zip(*(collect(shard) for shard in shards))
    assert_same_batches([(torch.cat(xs), torch.cat(ys))], [collect(evaluation)])
    assert all(len(list(shard)) == len(shard) for shard in shards)


# ---------------------------------------------------------------- synthetic sets, settings, devices


def synthetic_cfg(**overrides) -> dict:
    cfg = {"name": "synthetic_image", "batch_size": 16, "eval_batch_size": 32, "num_train": 40, "num_val": 40}
    return {**cfg, **overrides}


@pytest.mark.parametrize(
    "cfg",
    [synthetic_cfg(use_test=True), {"name": "cifar10", "batch_size": 8, "stand_in": {"train": 20, "val": 12}}],
    ids=["synthetic_image", "cifar10-stand-in"],
)
def test_synthetic_images_on_device_are_the_loader_paths_batches(cfg) -> None:
    loader = build_data(cfg, seed=4, context=CPU)
    on_device = build_data({**cfg, "on_device": True}, seed=4, context=CPU)
    assert isinstance(on_device.train, OnDeviceTrainLoader)
    for epoch in range(2):
        assert_same_batches(on_device.train(epoch), loader.train(epoch))
    assert_same_batches(on_device.val, loader.val)
    if loader.test is not None:
        assert_same_batches(on_device.test, loader.test)


@pytest.mark.parametrize("cfg", [cifar_cfg(Path("missing")), synthetic_cfg()], ids=["cifar10", "synthetic_image"])
def test_on_device_must_be_a_boolean(cfg) -> None:
    with pytest.raises(ValueError) as refused:
        build_data({**cfg, "on_device": "true"}, seed=0)
    assert str(refused.value) == "invalid dataset.on_device: 'true' (must be true or false)"


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_on_cuda_are_the_cpu_batches() -> None:
    images, labels = random_images(40)
    cifar = Normalise(CIFAR10.mean, CIFAR10.std)

    def train(device: str) -> OnDeviceTrainLoader:
        return OnDeviceTrainLoader(images, labels, 16, 2, device=torch.device(device), normalise=cifar, augment=True)

    on_cuda = list(train("cuda")(1))
    assert on_cuda[0][0].is_cuda and on_cuda[0][1].is_cuda
    cpu = [(x.cpu(), y.cpu()) for x, y in on_cuda]
    assert_same_batches(cpu, train("cpu")(1))


def test_on_device_is_refused_for_datasets_that_cannot_keep_their_data_there(tmp_path):
    with pytest.raises(ValueError, match="invalid dataset.on_device: true for ptb"):
        build_data({"name": "ptb", "data_dir": str(tmp_path), "on_device": True}, seed=0)


@pytest.mark.parametrize("on_device", [False, True])
def test_an_epoch_resumed_at_a_step_gives_the_rest_of_that_epoch(tmp_path, on_device) -> None:
    """A run stopped inside an epoch resumes there (cmrepro.training.epoch): the loader skips the
    steps before it without reading them and gives the batches an uninterrupted epoch gives."""
    data_fixtures.write_cifar10(tmp_path, n_train=100, n_test=12)
    train = build_data(cifar_cfg(tmp_path, augment=False, on_device=on_device), seed=5, context=CPU).train
    assert train.resumes_mid_epoch
    assert_same_batches(train(2).starting_at(3), list(train(2))[3:])
