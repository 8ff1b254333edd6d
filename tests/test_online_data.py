"""Task streams: each real format read back from tiny fixtures, the task order, class split and
train/validation split fixed by the seeds, unreadable notMNIST files skipped and counted, and
missing data reported in one line that names the expected path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import online_fixtures
import pytest
import torch
from train_helpers import compose_run

from cmrepro.data import DataError, build_data, is_task_stream
from cmrepro.data.digit_formats import MNIST, read_idx_split, read_notmnist, read_svhn_split, resize_images
from cmrepro.data.online import TaskStream, split_per_class
from cmrepro.data.vision import IMAGENET_MEAN, IMAGENET_STD
from cmrepro.training import check_config


def pixels_of(batches) -> tuple[torch.Tensor, torch.Tensor]:
    """All images of ``batches`` back in [0, 255] (un-normalised) and their labels."""
    xs, ys = zip(*batches)
    x = torch.cat(xs) * torch.tensor(IMAGENET_STD).view(1, 3, 1, 1) + torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    return x * 255, torch.cat(ys)


def level_to_class(level: torch.Tensor) -> torch.Tensor:
    return ((level - 10) / online_fixtures.LEVEL_STEP).round().long()


def tiny_cfg(root: Path, **overrides) -> dict:
    cfg = {
        "name": "tinyimagenet",
        "data_dir": str(root),
        "classes_per_task": 5,
        "image_size": 16,
        "batch_size": 8,
        "eval_batch_size": 64,
        "augment": False,
    }
    return {**cfg, **overrides}


def five_cfg(root: Path, **overrides) -> dict:
    cfg = {"name": "five_datasets", "data_dir": str(root), "batch_size": 16, "eval_batch_size": 64}
    return {**cfg, **overrides}


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("tiny")
    return root, online_fixtures.write_tiny_imagenet(root, num_classes=10, train_per_class=10, val_per_class=2)


@pytest.fixture(scope="module")
def five_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("five")
    online_fixtures.write_five_datasets(root, per_split=40)
    return root


# ---------------------------------------------------------------- TinyImageNet


def test_tinyimagenet_stream_has_seeded_class_order_and_per_class_splits(tiny_root):
    root, written = tiny_root
    stream = build_data(tiny_cfg(root, use_test=True), seed=3)
    assert isinstance(stream, TaskStream) and is_task_stream("tinyimagenet")
    assert (stream.num_tasks, stream.classes_per_task, stream.input_shape) == (2, 5, (3, 16, 16))
    listed = written["wnids"]
    order = [wnid for task in stream.tasks for wnid in task.classes]
    assert sorted(order) == sorted(listed) and order != sorted(listed)  # a permutation, not the sorted list
    for task in stream.tasks:
        val_x, val_y = pixels_of(task.val)
        train_x, train_y = pixels_of(task.train(0))
        test_x, test_y = pixels_of(task.test)
        # 10 images per class: 1 for validation, 9 for training; the 2 official val images as test.
        assert val_y.bincount().tolist() == [1] * 5 and train_y.bincount().tolist() == [9] * 5
        assert test_y.bincount().tolist() == [2] * 5
        for x, y in ((train_x, train_y), (val_x, val_y), (test_x, test_y)):
            # Head label k is the task's k-th class: its images have that class's grey level.
            expected = torch.tensor([listed.index(task.classes[label]) for label in y.tolist()])
            assert torch.equal(level_to_class(x.mean(dim=(1, 2, 3))), expected)
    # The same seeds give the same stream, another run seed another class order.
    again = build_data(tiny_cfg(root), seed=3)
    assert [t.classes for t in again.tasks] == [t.classes for t in stream.tasks]
    other = build_data(tiny_cfg(root), seed=4)
    assert [t.classes for t in other.tasks] != [t.classes for t in stream.tasks]


def test_tinyimagenet_prefix_of_tasks_and_too_many_tasks(tiny_root):
    root, _ = tiny_root
    assert build_data(tiny_cfg(root, num_tasks=1), seed=0).num_tasks == 1
    with pytest.raises(ValueError, match="invalid dataset.num_tasks: 3 .*at most 2 tasks of 5"):
        build_data(tiny_cfg(root, num_tasks=3), seed=0)


def test_tinyimagenet_missing_data_is_one_line_naming_the_path(tmp_path):
    with pytest.raises(DataError) as excinfo:
        build_data(tiny_cfg(tmp_path / "nowhere"), seed=0)
    message = str(excinfo.value)
    assert "\n" not in message and str(tmp_path / "nowhere" / "tiny-imagenet-200") in message
    assert "tiny-imagenet-200.zip" in message
    online_fixtures.write_tiny_imagenet(tmp_path, num_classes=5, train_per_class=2, val_per_class=1)
    (tmp_path / "tiny-imagenet-200" / "val" / "val_annotations.txt").unlink()
    assert build_data(tiny_cfg(tmp_path), seed=0).num_tasks == 1  # val/ is read only for use_test
    with pytest.raises(DataError, match="val_annotations.txt .*no such file"):
        build_data(tiny_cfg(tmp_path, use_test=True), seed=0)


# ---------------------------------------------------------------- 5-dataset formats


@pytest.mark.parametrize("gz", [False, True])
def test_idx_files_round_trip(tmp_path, gz):
    written = online_fixtures.write_mnist_like(tmp_path, "MNIST", n_train=12, n_test=4, gz=gz)
    images, labels = read_idx_split(MNIST, tmp_path, "train")
    assert images.shape == (12, 1, 28, 28) and images.dtype == torch.uint8
    assert np.array_equal(images[:, 0].numpy(), written["train_images"])
    assert labels.tolist() == written["train_labels"].tolist()


def test_broken_idx_file_is_a_data_error(tmp_path):
    online_fixtures.write_mnist_like(tmp_path, "MNIST", n_train=12, n_test=4)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match="mnist: expected .*train-images-idx3-ubyte.* bytes for a \\[12, 28, 28\\]"):
        read_idx_split(MNIST, tmp_path, "train")
    with pytest.raises(DataError, match="no such directory"):
        read_idx_split(MNIST, tmp_path / "absent", "train")


def test_svhn_mat_round_trip(tmp_path):
    written = online_fixtures.write_svhn(tmp_path, n_train=12, n_test=4)
    images, labels = read_svhn_split(tmp_path, "train")
    assert images.shape == (12, 3, 32, 32)
    assert np.array_equal(images.permute(2, 3, 1, 0).numpy(), written["train_X"])
    assert labels.tolist() == [i % 10 for i in range(12)]  # label 10 in the file is the digit 0
    with pytest.raises(DataError, match="svhn: expected .*test_32x32.mat.*no such file"):
        read_svhn_split(tmp_path / "absent", "test")


def test_notmnist_skips_and_counts_unreadable_files(tmp_path):
    counts = online_fixtures.write_notmnist(tmp_path, per_letter=3)
    images, labels, skipped = read_notmnist(tmp_path)
    assert skipped == counts["unreadable"] == 2
    assert images.shape == (counts["readable"], 1, 28, 28) and labels.bincount().tolist() == [3] * 10
    assert torch.equal(level_to_class(images.float().mean(dim=(1, 2, 3))), labels)
    with pytest.raises(DataError, match="notmnist: expected .*notMNIST_small.*no folders A-J"):
        read_notmnist(tmp_path / "notMNIST_small" / "A")


def test_resize_keeps_constant_images_constant():
    images = torch.full((3, 1, 28, 28), 77, dtype=torch.uint8)
    assert torch.equal(resize_images(images, 32), torch.full((3, 1, 32, 32), 77, dtype=torch.uint8))


# ---------------------------------------------------------------- 5-dataset stream


def test_five_datasets_stream_from_real_formats(five_root):
    stream = build_data(five_cfg(five_root, use_test=True), seed=0)
    names = [task.name for task in stream.tasks]
    assert sorted(names) == sorted(["cifar10", "mnist", "fashion_mnist", "svhn", "notmnist"])
    assert stream.skipped_files == {"notmnist": 2} and stream.input_shape == (3, 32, 32)
    for task in stream.tasks:
        x, y = next(iter(task.train(0)))
        assert x.shape[1:] == (3, 32, 32) and int(y.max()) <= 9
        val_y = torch.cat([labels for _, labels in task.val])
        if task.name != "cifar10":  # (whose fixture labels are random) 4 images per class -> 1 for validation
            assert val_y.bincount().tolist() == [1] * 10
        val_x = pixels_of(task.val)[0]
        if task.name in ("mnist", "fashion_mnist", "notmnist"):  # grey images come out as three equal channels
            assert torch.allclose(val_x[:, 0], val_x[:, 1], atol=1e-3) and torch.allclose(val_x[:, 0], val_x[:, 2])
        if task.name != "cifar10":  # labels match the images (the fixtures' grey level per class)
            assert torch.equal(level_to_class(val_x.mean(dim=(1, 2, 3))), val_y)
        assert task.test is not None
    orders = {tuple(t.name for t in build_data(five_cfg(five_root), seed=s).tasks) for s in range(6)}
    assert tuple(names) in orders and len(orders) > 1  # the order follows the seed


def test_five_datasets_subset_and_missing_dataset(five_root, tmp_path):
    stream = build_data(five_cfg(five_root, tasks=["svhn", "mnist"], task_order_seed=0), seed=0)
    assert sorted(task.name for task in stream.tasks) == ["mnist", "svhn"]
    roots = {"svhn": str(tmp_path / "elsewhere")}
    with pytest.raises(DataError) as excinfo:
        build_data(five_cfg(five_root, tasks=["svhn"], roots=roots), seed=0)
    assert "\n" not in str(excinfo.value) and str(tmp_path / "elsewhere" / "train_32x32.mat") in str(excinfo.value)
    with pytest.raises(ValueError, match="invalid dataset.tasks"):
        build_data(five_cfg(five_root, tasks=["svhn", "kmnist"]), seed=0)


# ---------------------------------------------------------------- splits and stand-ins


def test_split_per_class_is_stratified_and_seeded():
    labels = torch.arange(100) % 4
    train, val = split_per_class(labels, 0.1, seed=7)
    assert labels[val].bincount().tolist() == [2, 2, 2, 2] and len(train) + len(val) == 100
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.equal(split_per_class(labels, 0.1, seed=7)[1], val)
    assert not torch.equal(split_per_class(labels, 0.1, seed=8)[1], val)


@pytest.mark.parametrize("name, tasks, classes", [("tinyimagenet", 40, 5), ("five_datasets", 5, 10)])
def test_smoke_scale_stand_ins_keep_the_real_structure(name, tasks, classes, tmp_path):
    cfg = compose_run([f"dataset={name}", "scale=smoke", f"paths.data_dir={tmp_path / 'none'}"], tmp_path)
    check_config(cfg)
    stream = build_data(cfg["dataset"], seed=0)  # no files: the stand-in
    size = cfg["dataset"]["stand_in"]["image_size"]
    assert (stream.num_tasks, stream.classes_per_task, stream.input_shape) == (tasks, classes, (3, size, size))
    x, y = next(iter(stream.tasks[-1].train(0)))
    assert x.shape[1:] == (3, size, size) and int(y.max()) < classes
