"""cmrepro.data: every format loads from tiny real-format files, splits and orders are
seeded as documented, and missing or broken data fails early with a one-line DataError."""

from __future__ import annotations

import pickle
from pathlib import Path

import data_fixtures
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from cmrepro.data import DATASET_TASKS, DataBundle, DataError, build_data, is_task_stream
from cmrepro.data import text as text_module
from cmrepro.data.vision import CIFAR10, CIFAR100, IMAGENET_MEAN, IMAGENET_STD

# ---------------------------------------------------------------- helpers


def cifar_cfg(root: Path, name: str = "cifar10", **overrides) -> dict:
    cfg = {"name": name, "data_dir": str(root), "batch_size": 16, "val_size": 20, "augment": False}
    return {**cfg, **overrides}


def to_pixels(x: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised float images back to uint8 ``[B, C, H, W]``."""
    mean = torch.tensor(mean).view(1, -1, 1, 1)
    std = torch.tensor(std).view(1, -1, 1, 1)
    return ((x * std + mean) * 255).round().to(torch.uint8)


def collect(batches) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = zip(*batches)
    return torch.cat(xs), torch.cat(ys)


def assert_one_line_error(excinfo: pytest.ExceptionInfo, *fragments: object) -> None:
    message = str(excinfo.value)
    assert "\n" not in message and "\r" not in message
    for fragment in fragments:
        assert str(fragment) in message, message


def image_rows(pixels: torch.Tensor, labels: torch.Tensor) -> list[tuple[bytes, int]]:
    """Order-free fingerprint of a set of labelled images."""
    return sorted((image.numpy().tobytes(), int(label)) for image, label in zip(pixels, labels))


# ---------------------------------------------------------------- CIFAR


def test_cifar10_loads_and_round_trips(tmp_path: Path) -> None:
    written = data_fixtures.write_cifar10(tmp_path, n_train=100, n_test=20)
    bundle = build_data(cifar_cfg(tmp_path, use_test=True, eval_batch_size=8), seed=0)

    assert isinstance(bundle, DataBundle)
    assert (bundle.task, bundle.num_classes, bundle.vocab_size, bundle.input_shape) == (
        "classification",
        10,
        None,
        (3, 32, 32),
    )
    assert len(bundle.train) == len(bundle.train(0)) == 5  # 80 images in batches of 16
    for x, y in bundle.train(0):
        assert x.dtype == torch.float32 and x.shape[1:] == (3, 32, 32) and x.shape[0] <= 16
        assert y.dtype == torch.int64 and y.shape == (x.shape[0],)
    val_x, val_y = collect(bundle.val)
    assert len(bundle.val) == 3 and val_x.shape == (20, 3, 32, 32)

    test_x, test_y = collect(bundle.test)
    expected = torch.from_numpy(written["test_data"]).view(-1, 3, 32, 32)
    assert torch.equal(to_pixels(test_x, CIFAR10.mean, CIFAR10.std), expected)
    assert test_y.tolist() == written["test_labels"]


def test_cifar_split_partitions_the_training_files(tmp_path: Path) -> None:
    written = data_fixtures.write_cifar10(tmp_path, n_train=100, n_test=4)
    bundle = build_data(cifar_cfg(tmp_path, val_size=30), seed=3)
    train_x, train_y = collect(bundle.train(0))
    val_x, val_y = collect(bundle.val)
    assert (len(train_y), len(val_y)) == (70, 30)

    train_rows = image_rows(to_pixels(train_x, CIFAR10.mean, CIFAR10.std), train_y)
    val_rows = image_rows(to_pixels(val_x, CIFAR10.mean, CIFAR10.std), val_y)
    assert not set(train_rows) & set(val_rows)
    everything = image_rows(torch.from_numpy(written["train_data"]), torch.tensor(written["train_labels"]))
    assert sorted(train_rows + val_rows) == everything


def test_cifar_split_ignores_the_run_seed(tmp_path: Path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=100, n_test=4)
    val = [collect(build_data(cifar_cfg(tmp_path), seed=seed).val)[0] for seed in (0, 1)]
    other_split = collect(build_data(cifar_cfg(tmp_path, split_seed=1), seed=0).val)[0]
    assert torch.equal(val[0], val[1])
    assert not torch.equal(val[0], other_split)


def test_train_order_depends_only_on_seed_and_epoch(tmp_path: Path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=100, n_test=4)
    first = build_data(cifar_cfg(tmp_path), seed=0)
    epoch0, epoch1 = collect(first.train(0))[0], collect(first.train(1))[0]
    # A fresh bundle that starts at epoch 1, as a resumed run would, replays it exactly.
    resumed = build_data(cifar_cfg(tmp_path), seed=0)
    assert torch.equal(collect(resumed.train(1))[0], epoch1)
    assert torch.equal(collect(resumed.train(0))[0], epoch0)
    assert torch.equal(collect(first.train(0))[0], epoch0)
    assert not torch.equal(epoch0, epoch1)
    other_seed = collect(build_data(cifar_cfg(tmp_path), seed=1).train(0))[0]
    assert not torch.equal(epoch0, other_seed)


def test_workers_keep_the_order(tmp_path: Path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=40, n_test=4)
    plain = build_data(cifar_cfg(tmp_path), seed=0)
    workers = build_data(cifar_cfg(tmp_path, num_workers=2), seed=0)
    for epoch in (0, 1):  # epoch 1 reuses the persistent workers
        assert torch.equal(collect(workers.train(epoch))[1], collect(plain.train(epoch))[1])


def test_augmentation_is_for_training_only_and_follows_the_global_rng(tmp_path: Path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=100, n_test=4)
    plain = build_data(cifar_cfg(tmp_path), seed=0)
    augmented = build_data(cifar_cfg(tmp_path, augment=True), seed=0)
    torch.manual_seed(0)
    first = collect(augmented.train(0))[0]
    torch.manual_seed(0)
    assert torch.equal(collect(augmented.train(0))[0], first)
    assert not torch.equal(first, collect(plain.train(0))[0])
    assert torch.equal(collect(augmented.val)[0], collect(plain.val)[0])


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    written = data_fixtures.write_cifar100(tmp_path, n_train=60, n_test=10)
    cfg = OmegaConf.create(cifar_cfg(tmp_path, name="cifar100", val_size=10, use_test=True))
    bundle = build_data(cfg, seed=0)
    assert bundle.num_classes == 100 and len(bundle.train) == 4
    test_x, test_y = collect(bundle.test)
    assert test_y.tolist() == written["test_labels"]
    expected = torch.from_numpy(written["test_data"]).view(-1, 3, 32, 32)
    assert torch.equal(to_pixels(test_x, CIFAR100.mean, CIFAR100.std), expected)
    assert sorted(collect(bundle.train(0))[1].tolist() + collect(bundle.val)[1].tolist()) == sorted(
        written["train_labels"]
    )


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_fixtures_are_what_torchvision_reads(tmp_path: Path, monkeypatch, name: str) -> None:
    from torchvision import datasets
    from torchvision.datasets import cifar as torchvision_cifar

    reader = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
    writer = data_fixtures.write_cifar10 if name == "cifar10" else data_fixtures.write_cifar100
    written = writer(tmp_path, n_train=30, n_test=5)
    # torchvision checks the md5 of the real files; everything else is its own reader.
    monkeypatch.setattr(torchvision_cifar, "check_integrity", lambda *args, **kwargs: True)
    for split in ("train", "test"):
        dataset = reader(str(tmp_path), train=split == "train")
        assert np.array_equal(dataset.data, written[f"{split}_data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
        assert list(dataset.targets) == written[f"{split}_labels"]
    assert len(dataset.classes) == (10 if name == "cifar10" else 100)
    # The dataset page's reader, encoding="bytes", sees bytes keys as in the real files.
    first = "cifar-10-batches-py/data_batch_1" if name == "cifar10" else "cifar-100-python/train"
    label_key = b"labels" if name == "cifar10" else b"fine_labels"
    with open(tmp_path / first, "rb") as handle:
        assert {b"data", label_key} <= set(pickle.load(handle, encoding="bytes"))


def test_download_is_skipped_when_the_files_are_there(tmp_path: Path, monkeypatch) -> None:
    import cmrepro.data.on_demand as on_demand

    def no_network(*args, **kwargs):
        raise AssertionError("download attempted")

    monkeypatch.setattr(on_demand, "prepare", no_network)
    data_fixtures.write_cifar10(tmp_path, n_train=40, n_test=4)
    assert build_data(cifar_cfg(tmp_path, download=True), seed=0).num_classes == 10


def test_download_true_fetches_as_prepare_does_into_the_data_directory(tmp_path: Path, monkeypatch) -> None:
    """dataset.download=true goes through `python -m cmrepro.data prepare` (digests, no write
    through a planted link, stalled servers left), not torchvision's downloader."""
    import cmrepro.data.on_demand as on_demand

    calls = []

    def fake_prepare(name, data_dir, **kwargs):
        calls.append((name, data_dir))
        data_fixtures.write_cifar10(data_dir / "cifar10", n_train=40, n_test=4)
        return "cifar10: ok"

    monkeypatch.setattr(on_demand, "prepare", fake_prepare)
    assert build_data(cifar_cfg(tmp_path / "cifar10", download=True), seed=0).num_classes == 10
    assert calls == [("cifar10", tmp_path)]


def test_failed_download_raises_data_error(tmp_path: Path, monkeypatch) -> None:
    import cmrepro.data.on_demand as on_demand
    from cmrepro.data.fetch import FetchError

    def no_network(*args, **kwargs):
        raise FetchError("cifar10: https://www.cs.toronto.edu/...: URLError: Temporary failure in name resolution")

    monkeypatch.setattr(on_demand, "prepare", no_network)
    with pytest.raises(DataError) as excinfo:
        build_data(cifar_cfg(tmp_path / "cifar10", download=True), seed=0)
    assert_one_line_error(excinfo, tmp_path / "cifar10" / "cifar-10-batches-py", "download", "URLError")
    # elsewhere than <data directory>/cifar10 nothing is fetched: prepare names where it would go
    with pytest.raises(DataError) as excinfo:
        build_data(cifar_cfg(tmp_path / "mine", download=True), seed=0)
    assert_one_line_error(excinfo, "<data directory>/cifar10", "python -m cmrepro.data prepare cifar10")


# ---------------------------------------------------------------- ImageNet


def test_imagenet_image_folders(tmp_path: Path) -> None:
    written = data_fixtures.write_imagefolder(tmp_path, per_class=3, size=(16, 16))
    cfg = {"name": "imagenet", "data_dir": str(tmp_path), "batch_size": 4, "image_size": 16, "resize": 16}
    bundle = build_data(cfg, seed=0)
    assert (bundle.num_classes, bundle.input_shape, len(bundle.train)) == (3, (3, 16, 16), 3)
    train_x, train_y = collect(bundle.train(0))
    assert train_x.shape == (9, 3, 16, 16) and train_x.dtype == torch.float32
    assert sorted(train_y.tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]

    # Validation at the stored size: Resize and CenterCrop change nothing, PNG is lossless.
    val_x, val_y = collect(bundle.val)
    assert val_y.tolist() == [label for _, label, _ in written["val"]]
    expected = torch.stack([torch.from_numpy(pixels).permute(2, 0, 1) for _, _, pixels in written["val"]])
    assert torch.equal(to_pixels(val_x, IMAGENET_MEAN, IMAGENET_STD), expected)


def test_imagenet_jpeg_resized_and_cropped(tmp_path: Path) -> None:
    data_fixtures.write_imagefolder(tmp_path, classes=("a", "b"), per_class=1, size=(20, 30), image_format="JPEG")
    cfg = {"name": "imagenet", "data_dir": str(tmp_path), "batch_size": 2, "image_size": 12, "resize": 14}
    bundle = build_data(cfg, seed=0)
    assert collect(bundle.train(0))[0].shape == (2, 3, 12, 12)
    assert collect(bundle.val)[0].shape == (2, 3, 12, 12)


# ---------------------------------------------------------------- Penn Treebank


def ptb_cfg(root: Path, **overrides) -> dict:
    return {"name": "ptb", "data_dir": str(root), "batch_size": 1, "bptt": 100, **overrides}


def test_ptb_vocabulary_comes_from_train_with_eos(tmp_path: Path) -> None:
    data_fixtures.write_ptb(tmp_path, train=["a b <unk>", "c a"], valid=["a z q"], test=["b c"])
    bundle = build_data(ptb_cfg(tmp_path, use_test=True), seed=0)
    # a=0 b=1 <unk>=2 <eos>=3 c=4: first appearance, <eos> after each line, train only.
    assert (bundle.task, bundle.vocab_size, bundle.num_classes, bundle.input_shape) == ("language_model", 5, None, ())
    (x, y), *rest = list(bundle.train(0))
    assert not rest and x.dtype == y.dtype == torch.int64
    assert x[:, 0].tolist() == [0, 1, 2, 3, 4, 0] and y[:, 0].tolist() == [1, 2, 3, 4, 0, 3]
    (vx, vy), *_ = list(bundle.val)  # z and q are not in train: <unk>
    assert vx[:, 0].tolist() == [0, 2, 2] and vy[:, 0].tolist() == [2, 2, 3]
    (tx, ty), *_ = list(bundle.test)
    assert tx[:, 0].tolist() == [1, 4] and ty[:, 0].tolist() == [4, 3]
    assert build_data(ptb_cfg(tmp_path), seed=0).test is None


def test_batchify_and_bptt_windows() -> None:
    data = text_module.batchify(torch.arange(27), 2)  # the 27th token is dropped
    assert data.shape == (13, 2)
    assert data[:, 0].tolist() == list(range(13)) and data[:, 1].tolist() == list(range(13, 26))
    windows = list(text_module.BpttBatches(data, 5))
    assert len(text_module.BpttBatches(data, 5)) == len(windows) == 3
    assert [len(x) for x, _ in windows] == [5, 5, 2]
    for start, (x, y) in zip((0, 5, 10), windows):
        assert torch.equal(x, data[start : start + len(x)]) and torch.equal(y, data[start + 1 : start + 1 + len(x)])


def test_ptb_batches_cover_the_stream_in_order(tmp_path: Path) -> None:
    written = data_fixtures.write_ptb(tmp_path)
    bundle = build_data(ptb_cfg(tmp_path, batch_size=4, eval_batch_size=3, bptt=7), seed=5)
    vocabulary = text_module.build_vocabulary([line + ["<eos>"] for line in written["train"]])
    ids = torch.tensor([vocabulary[w] for line in written["train"] for w in [*line, "<eos>"]])
    assert bundle.vocab_size == len(vocabulary) == len({w for line in written["train"] for w in line}) + 1

    rows = len(ids) // 4
    windows = list(bundle.train(3))
    assert len(windows) == len(bundle.train) == -(-(rows - 1) // 7)
    x = torch.cat([x for x, _ in windows])
    y = torch.cat([y for _, y in windows])
    assert x.shape == y.shape == (rows - 1, 4)
    for column in range(4):  # column j holds the j-th quarter of the stream
        piece = ids[column * rows : (column + 1) * rows]
        assert torch.equal(x[:, column], piece[:-1]) and torch.equal(y[:, column], piece[1:])
    assert all(torch.equal(a, b) for (a, _), (b, _) in zip(windows, bundle.train(0)))  # no shuffling
    assert all(vx.shape[1] == 3 for vx, _ in bundle.val)


def test_ptb_word_outside_vocabulary_without_unk(tmp_path: Path) -> None:
    data_fixtures.write_ptb(tmp_path, train=["a b", "b c"], valid=["a zebra"], test=["a"])
    with pytest.raises(DataError) as excinfo:
        build_data(ptb_cfg(tmp_path), seed=0)
    assert_one_line_error(excinfo, tmp_path / "ptb.valid.txt", "'zebra'", "line 1")


def test_ptb_split_shorter_than_one_window(tmp_path: Path) -> None:
    data_fixtures.write_ptb(tmp_path, train=["a b c d"], valid=["a"], test=["a"])
    with pytest.raises(DataError) as excinfo:
        build_data(ptb_cfg(tmp_path, eval_batch_size=2), seed=0)
    assert_one_line_error(excinfo, tmp_path / "ptb.valid.txt", "2 tokens")


# ---------------------------------------------------------------- synthetic


def synthetic_image_cfg(**overrides) -> dict:
    cfg = {"name": "synthetic_image", "batch_size": 32, "num_train": 200, "num_val": 100, "image_size": 8}
    return {**cfg, **overrides}


def test_synthetic_image_is_fixed_by_the_seed() -> None:
    bundles = [build_data(synthetic_image_cfg(), seed=seed) for seed in (0, 0, 1)]
    assert (bundles[0].num_classes, bundles[0].input_shape, len(bundles[0].train)) == (10, (3, 8, 8), 7)
    x0, y0 = collect(bundles[0].train(0))
    x1, y1 = collect(bundles[1].train(0))
    assert x0.dtype == torch.float32 and y0.dtype == torch.int64 and x0.shape == (200, 3, 8, 8)
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert torch.equal(collect(bundles[0].val)[0], collect(bundles[1].val)[0])
    assert not torch.equal(collect(bundles[0].val)[0], collect(bundles[2].val)[0])
    assert bundles[0].test is None


def test_synthetic_image_is_learnable() -> None:
    bundle = build_data(synthetic_image_cfg(num_classes=4, use_test=True), seed=0)
    train_x, train_y = collect(bundle.train(0))
    means = torch.stack([train_x[train_y == c].mean(0) for c in range(4)])
    test_x, test_y = collect(bundle.test)
    predicted = torch.cdist(test_x.flatten(1), means.flatten(1)).argmin(1)
    assert (predicted == test_y).float().mean() > 0.9


def synthetic_text_cfg(**overrides) -> dict:
    cfg = {"name": "synthetic_text", "batch_size": 8, "eval_batch_size": 4, "bptt": 10}
    return {**cfg, "num_train_tokens": 2000, "num_val_tokens": 400, **overrides}


def test_synthetic_text_is_fixed_by_the_seed_and_learnable() -> None:
    bundles = [build_data(synthetic_text_cfg(), seed=seed) for seed in (4, 4, 5)]
    first, same, other = (collect(b.train(0))[0] for b in bundles)
    assert first.shape == (249, 8) and first.dtype == torch.int64  # 2000 // 8 rows, minus the last
    assert torch.equal(first, same) and not torch.equal(first, other)
    assert bundles[0].vocab_size == 50 and 0 <= int(first.min()) and int(first.max()) < 50
    for x, y in bundles[0].train(0):
        assert torch.equal(x[1:], y[:-1])

    # Learnable: almost every validation transition was already seen in training.
    seen = {(int(a), int(b)) for x, y in bundles[0].train(0) for a, b in zip(x.flatten(), y.flatten())}
    val_pairs = [(int(a), int(b)) for x, y in bundles[0].val for a, b in zip(x.flatten(), y.flatten())]
    assert sum(pair in seen for pair in val_pairs) / len(val_pairs) > 0.95
    assert len(seen) <= 50 * 4


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        (cifar_cfg(Path("missing")), "cifar-10-batches-py"),
        (cifar_cfg(Path("missing"), name="cifar100"), "cifar-100-python"),
        (ptb_cfg(Path("missing")), "missing"),
        ({"name": "imagenet", "data_dir": "missing", "batch_size": 2}, "train"),
    ],
    ids=["cifar10", "cifar100", "ptb", "imagenet"],
)
def test_missing_directory(tmp_path: Path, cfg: dict, expected: str) -> None:
    cfg = {**cfg, "data_dir": str(tmp_path / "missing")}
    with pytest.raises(DataError) as excinfo:
        build_data(cfg, seed=0)
    assert_one_line_error(excinfo, tmp_path / "missing", expected, "no such directory")


def test_partial_cifar_directory(tmp_path: Path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=20, n_test=4)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_4").unlink()
    (folder / "test_batch").unlink()
    with pytest.raises(DataError) as excinfo:
        build_data(cifar_cfg(tmp_path, val_size=2), seed=0)
    assert_one_line_error(excinfo, folder, "5 of 7 files", "data_batch_4", "test_batch", "download=true")


@pytest.mark.parametrize("content", [b"not a pickle at all", pickle.dumps({b"data": 1}, protocol=2)[:-5]])
def test_corrupt_pickle(tmp_path: Path, content: bytes) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=20, n_test=4)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(content)
    with pytest.raises(DataError) as excinfo:
        build_data(cifar_cfg(tmp_path, val_size=2), seed=0)
    assert_one_line_error(excinfo, tmp_path / "cifar-10-batches-py", "unreadable pickle data_batch_2")


def test_malformed_cifar_batch(tmp_path: Path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=20, n_test=4)
    batch = {b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0, 1, 2, 3]}
    with open(tmp_path / "cifar-10-batches-py" / "data_batch_1", "wb") as handle:
        pickle.dump(batch, handle, protocol=2)
    with pytest.raises(DataError) as excinfo:
        build_data(cifar_cfg(tmp_path, val_size=2), seed=0)
    assert_one_line_error(excinfo, tmp_path / "cifar-10-batches-py", "data_batch_1", "[N, 3072]")


def test_validation_larger_than_the_training_files(tmp_path: Path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=20, n_test=4)
    with pytest.raises(DataError) as excinfo:
        build_data(cifar_cfg(tmp_path, val_size=10000), seed=0)
    assert_one_line_error(excinfo, tmp_path / "cifar-10-batches-py", "20 training images")


def test_imagenet_class_mismatch(tmp_path: Path) -> None:
    data_fixtures.write_imagefolder(tmp_path, classes=("a", "b", "c"), per_class=1, splits=("train",), size=(8, 8))
    data_fixtures.write_imagefolder(tmp_path, classes=("a", "b", "d"), per_class=1, splits=("val",), size=(8, 8))
    with pytest.raises(DataError) as excinfo:
        build_data({"name": "imagenet", "data_dir": str(tmp_path), "batch_size": 2}, seed=0)
    assert_one_line_error(excinfo, tmp_path / "val", "only in train: c", "only in val: d")


def test_imagenet_class_folder_without_images(tmp_path: Path) -> None:
    data_fixtures.write_imagefolder(tmp_path, classes=("a", "b"), per_class=1, size=(8, 8))
    for path in (tmp_path / "val" / "b").iterdir():
        path.unlink()
    with pytest.raises(DataError) as excinfo:
        build_data({"name": "imagenet", "data_dir": str(tmp_path), "batch_size": 2}, seed=0)
    assert_one_line_error(excinfo, tmp_path / "val")


def test_unknown_dataset_name() -> None:
    with pytest.raises(DataError) as excinfo:
        build_data({"name": "mnist", "data_dir": "x", "batch_size": 2}, seed=0)
    assert_one_line_error(excinfo, "'mnist'", "cifar10", "synthetic_text")


def test_dataset_tasks_match_the_bundles(tmp_path: Path) -> None:
    data_fixtures.write_cifar10(tmp_path / "cifar10", n_train=20, n_test=4)
    data_fixtures.write_cifar100(tmp_path / "cifar100", n_train=20, n_test=4)
    data_fixtures.write_imagefolder(tmp_path / "imagenet", per_class=1, size=(8, 8))
    data_fixtures.write_ptb(tmp_path / "ptb")
    extra = {"val_size": 2, "image_size": 8, "resize": 8, "num_train": 20, "num_val": 10}
    for name, task in DATASET_TASKS.items():
        cfg = {"name": name, "data_dir": str(tmp_path / name), "batch_size": 2, **extra}
        if name == "synthetic_text":
            cfg.update(num_train_tokens=100, num_val_tokens=50)
        if is_task_stream(name):  # their real formats are covered in test_online_data.py
            cfg.update(stand_in={"train": 8, "val": 4})
        assert build_data(cfg, seed=0).task == task, name


def test_loaders_pin_memory_when_cuda_is_visible_unless_told():
    from cmrepro.data.settings import loader_options

    assert loader_options({})["pin_memory"] is torch.cuda.is_available()
    assert loader_options({"pin_memory": "auto", "num_workers": 2})["persistent_workers"] is True
    assert loader_options({"pin_memory": False})["pin_memory"] is False
    with pytest.raises(ValueError, match="invalid dataset.pin_memory: 'yes'"):
        loader_options({"pin_memory": "yes"})
