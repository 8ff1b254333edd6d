"""Data that moves, breaks or is missing: the dataset fingerprint a resumed run compares, corrupt
images skipped (and counted across worker processes and resumes), and error hints that name a
fix that works."""

from __future__ import annotations

import shutil
from pathlib import Path

import data_fixtures
import online_fixtures
import pytest
import torch

from cmrepro.data import DataContext, DataError, build_data
from cmrepro.data.fingerprint import dataset_fingerprint
from cmrepro.data.vision import IMAGENET_MEAN, IMAGENET_STD

# ---------------------------------------------------------------- A. fingerprint


def _grow(path: Path) -> None:
    path.write_bytes(path.read_bytes() + b"\0")


def _fingerprint(name: str, root: Path) -> dict:
    return dataset_fingerprint({"name": name, "data_dir": str(root)})


@pytest.mark.parametrize(
    ("name", "write", "a_file"),
    [
        (
            "cifar10",
            lambda root: data_fixtures.write_cifar10(root, n_train=10, n_test=2),
            "cifar-10-batches-py/test_batch",
        ),
        (
            "imagenet",
            lambda root: data_fixtures.write_imagefolder(root, size=(8, 8)),
            "val/n01443537/n01443537_0001.png",
        ),
    ],
)
def test_fingerprint_follows_the_files_not_their_place(tmp_path: Path, name, write, a_file) -> None:
    write(tmp_path / "here")
    shutil.copytree(tmp_path / "here", tmp_path / "there")
    here, there = _fingerprint(name, tmp_path / "here"), _fingerprint(name, tmp_path / "there")
    assert here == there and here["files"] > 1 and here["bytes"] > 0

    _grow(tmp_path / "there" / a_file)
    grown = _fingerprint(name, tmp_path / "there")
    assert grown["digest"] != here["digest"] and (grown["files"], grown["bytes"]) == (here["files"], here["bytes"] + 1)

    # A file the builder does not read (CIFAR's readme) changes nothing; one more image does.
    (tmp_path / "there" / a_file).with_name("readme.html").write_text("<html></html>")
    assert _fingerprint(name, tmp_path / "there") == grown
    shutil.copy(tmp_path / "there" / a_file, (tmp_path / "there" / a_file).with_name("added.png"))
    if name == "imagenet":
        more = _fingerprint(name, tmp_path / "there")
        assert more["digest"] != grown["digest"] and more["files"] == grown["files"] + 1
    (tmp_path / "there" / a_file).unlink()
    assert _fingerprint(name, tmp_path / "there")["files"] == grown["files"] - (name == "cifar10")


def test_fingerprint_of_five_datasets_combines_its_sources(tmp_path: Path) -> None:
    online_fixtures.write_five_datasets(tmp_path / "five", per_split=10)
    cfg = {"name": "five_datasets", "data_dir": str(tmp_path / "five"), "batch_size": 4}
    whole = dataset_fingerprint(cfg)
    # CIFAR10 shared with the CIFAR runs (dataset.roots): same files, other place, same fingerprint.
    shutil.copytree(tmp_path / "five" / "cifar10", tmp_path / "cifar10")
    moved = dataset_fingerprint({**cfg, "roots": {"cifar10": str(tmp_path / "cifar10")}})
    assert moved == whole
    # 7 CIFAR + 4 MNIST + 4 Fashion-MNIST + 2 SVHN + 10 letters x 3 + 2 unreadable notMNIST files
    assert whole["files"] == 7 + 4 + 4 + 2 + 30 + 2

    _grow(tmp_path / "five" / "svhn" / "test_32x32.mat")
    assert dataset_fingerprint(cfg)["digest"] != whole["digest"]
    # A missing source is no error here (the builder reports it): its files just are not there.
    shutil.rmtree(tmp_path / "five" / "mnist")
    assert dataset_fingerprint(cfg)["files"] == whole["files"] - 4


def test_fingerprint_of_missing_or_file_free_data(tmp_path: Path) -> None:
    empty = dataset_fingerprint({"name": "imagenet", "data_dir": str(tmp_path / "nowhere")})
    assert (empty["files"], empty["bytes"]) == (0, 0)
    online_fixtures.write_tiny_imagenet(tmp_path, num_classes=2, train_per_class=2, val_per_class=1)
    tiny = dataset_fingerprint({"name": "tinyimagenet", "data_dir": str(tmp_path)})
    assert tiny["files"] == 2 + 2 * 2 + 2  # wnids.txt, val_annotations.txt, the JPEGs
    assert dataset_fingerprint({"name": "tinyimagenet", "data_dir": str(tmp_path), "stand_in": {"train": 8}}) is None
    assert dataset_fingerprint({"name": "synthetic_image"}) is None


# ---------------------------------------------------------------- B. unreadable images


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])


def _imagenet_cfg(root: Path, **overrides) -> dict:
    cfg = {"name": "imagenet", "data_dir": str(root), "batch_size": 2, "image_size": 8, "resize": 8}
    return {**cfg, "augment": False, "max_bad_files": 1, **overrides}


def _rows(batches) -> list[tuple[bytes, int]]:
    """Every (uint8 HWC image bytes, label) of ``batches``, sorted: an epoch's data, whatever its order."""
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    rows = []
    for xs, ys in batches:
        for x, y in zip(xs, ys):
            pixels = ((x * std + mean) * 255).round().to(torch.uint8).permute(1, 2, 0)
            rows.append((pixels.numpy().tobytes(), int(y)))
    return sorted(rows)


@pytest.fixture
def imagefolder(tmp_path: Path) -> tuple[Path, dict]:
    written = data_fixtures.write_imagefolder(tmp_path / "imagenet", classes=("a", "b"), per_class=3, size=(8, 8))
    return tmp_path / "imagenet", written


def test_unreadable_image_is_replaced_by_the_next_with_or_without_workers(tmp_path, imagefolder, capfd) -> None:
    root, written = imagefolder
    bad = root / "train" / "a" / "a_0001.png"
    _truncate(bad)
    epochs = {}
    for workers in (0, 1):
        run_dir = tmp_path / f"run{workers}"
        bundle = build_data(_imagenet_cfg(root, num_workers=workers), seed=0, context=DataContext(run_dir=run_dir))
        epochs[workers] = [_rows(bundle.train(epoch)) for epoch in (0, 1)]
        assert (run_dir / "bad_files.txt").read_text() == "train/a/a_0001.png\n"
    assert epochs[0] == epochs[1] and epochs[0][0] == epochs[0][1]

    # a_0001 is replaced by the next image, a_0002, with its label, in every epoch.
    images = {path.name: (pixels.tobytes(), label) for path, label, pixels in written["train"]}
    names = ["a_0000", "a_0002", "a_0002", "b_0000", "b_0001", "b_0002"]
    assert epochs[0][0] == sorted(images[f"{name}.png"] for name in names)
    # Named once per run, in one line on stderr (each run has its own record).
    err = capfd.readouterr().err
    assert err.count(f"skipping unreadable image {bad}") == 2 and all(
        "cmrepro.train: imagenet:" in line for line in err.splitlines() if str(bad) in line
    )


@pytest.mark.parametrize("workers", [0, 1])
def test_too_many_unreadable_images_stop_the_run_in_one_line_even_after_a_resume(tmp_path, imagefolder, workers):
    root, _ = imagefolder
    run_dir, cfg = tmp_path / "run", _imagenet_cfg(root, num_workers=workers)
    _truncate(root / "train" / "a" / "a_0001.png")
    _rows(build_data(cfg, seed=0, context=DataContext(run_dir=run_dir)).train(0))  # one is allowed

    # The resumed run meets a second one: with the first, recorded in the run, that is too many.
    _truncate(root / "val" / "b" / "b_0000.png")
    bundle = build_data(cfg, seed=0, context=DataContext(run_dir=run_dir))
    with pytest.raises(DataError) as excinfo:
        _rows(bundle.val)
    message = str(excinfo.value)  # the worker's exception, re-created by PyTorch, keeps its one line
    assert message.startswith("imagenet: 2 unreadable image files") and "\n" not in message
    assert "Traceback" not in message and "dataset.max_bad_files=1: train/a/a_0001.png, val/b/b_0000.png" in message
    assert str(run_dir / "bad_files.txt") in message and "prepare imagenet" in message

    # A run whose record is already past the limit stops before any training.
    with pytest.raises(DataError, match="^imagenet: 2 unreadable image files"):
        build_data(cfg, seed=0, context=DataContext(run_dir=run_dir))


def test_without_a_run_directory_the_record_is_kept_in_memory(imagefolder, capfd) -> None:
    root, _ = imagefolder
    _truncate(root / "val" / "a" / "a_0002.png")
    bundle = build_data(_imagenet_cfg(root), seed=0)
    assert len(_rows(bundle.val)) == len(_rows(bundle.val)) == 6
    assert capfd.readouterr().err.count("skipping unreadable image") == 1
    with pytest.raises(DataError, match="max_bad_files=0: val/a/a_0002.png; replace them"):
        _rows(build_data(_imagenet_cfg(root, max_bad_files=0), seed=0).val)


def test_tinyimagenet_skips_an_unreadable_jpeg(tmp_path, capfd) -> None:
    online_fixtures.write_tiny_imagenet(tmp_path, num_classes=5, train_per_class=4, val_per_class=1, size=8)
    bad = next((tmp_path / "tiny-imagenet-200" / "train").glob("*/images/*_1.JPEG"))
    _truncate(bad)
    cfg = {"name": "tinyimagenet", "data_dir": str(tmp_path), "image_size": 8, "batch_size": 4, "augment": False}
    stream = build_data({**cfg, "max_bad_files": 1}, seed=0, context=DataContext(run_dir=tmp_path / "run"))
    task = stream.tasks[0]
    assert sum(len(y) for _, y in task.train(0)) + sum(len(y) for _, y in task.val) == 20
    assert (tmp_path / "run" / "bad_files.txt").read_text() == f"{bad.relative_to(bad.parents[3]).as_posix()}\n"
    assert capfd.readouterr().err.count(f"tinyimagenet: skipping unreadable image {bad}") == 1


def test_notmnist_unreadable_files_are_named_and_counted_like_the_others(tmp_path, capfd) -> None:
    online_fixtures.write_notmnist(tmp_path / "notmnist", per_letter=3)
    cfg = {"name": "five_datasets", "data_dir": str(tmp_path), "tasks": ["notmnist"], "batch_size": 8}
    stream = build_data(cfg, seed=0, context=DataContext(run_dir=tmp_path / "run"))
    assert stream.skipped_files == {"notmnist": 2}
    assert capfd.readouterr().err.count("notmnist: skipping unreadable image") == 2
    assert len((tmp_path / "run" / "bad_files.txt").read_text().splitlines()) == 2
    with pytest.raises(DataError, match="^notmnist: 2 unreadable image files .*max_bad_files=1: notMNIST_small/A/"):
        build_data({**cfg, "max_bad_files": 1}, seed=0)


# ---------------------------------------------------------------- C. hints that work


def test_a_corrupt_cifar_file_says_rebuild_not_download(tmp_path) -> None:
    data_fixtures.write_cifar10(tmp_path, n_train=10, n_test=2)
    folder = tmp_path / "cifar-10-batches-py"
    (folder / "data_batch_2").write_bytes(b"not a pickle at all")
    cfg = {"name": "cifar10", "data_dir": str(tmp_path), "batch_size": 2, "val_size": 2}
    for download in (False, True):  # download=true would find every file there and fetch nothing
        with pytest.raises(DataError) as excinfo:
            build_data({**cfg, "download": download}, seed=0)
        message = str(excinfo.value)
        assert f"delete {folder} and run python -m cmrepro.data prepare cifar10" in message
        assert "download" not in message
    (folder / "data_batch_2").unlink()  # a missing file: there download=true does help
    with pytest.raises(DataError, match="missing data_batch_2.*dataset.download=true"):
        build_data(cfg, seed=0)


def test_five_datasets_names_every_missing_dataset_at_once(tmp_path) -> None:
    online_fixtures.write_five_datasets(tmp_path, per_split=10)
    shutil.rmtree(tmp_path / "mnist")
    shutil.rmtree(tmp_path / "svhn")
    cfg = {"name": "five_datasets", "data_dir": str(tmp_path), "batch_size": 8}
    with pytest.raises(DataError) as excinfo:
        build_data(cfg, seed=0)
    message = str(excinfo.value)
    assert (
        message.startswith("five_datasets: 2 of its 5 datasets cannot be read (mnist, svhn): ") and "\n" not in message
    )
    assert str(tmp_path / "mnist") in message and str(tmp_path / "svhn" / "train_32x32.mat") in message
    assert "prepare mnist" in message and "prepare svhn" in message
