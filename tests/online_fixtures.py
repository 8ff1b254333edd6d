"""Tiny datasets in the real on-disk formats of the online-learning streams: a
``tiny-imagenet-200/`` tree, MNIST / Fashion-MNIST idx files, SVHN ``.mat`` files and notMNIST
letter folders (with unreadable files, as the public archives have). CIFAR10 comes from
:mod:`data_fixtures`. Each writer returns what it wrote."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import data_fixtures
import numpy as np
from PIL import Image

# Images of class k are filled with this grey level (+ small noise), so a test can read the
# class back from the pixels even after lossy JPEG compression.
LEVEL_STEP = 20


def class_level(label: int) -> int:
    return 10 + LEVEL_STEP * (label % 12)


def _class_image(rng: np.random.Generator, label: int, shape: tuple[int, ...]) -> np.ndarray:
    noise = rng.integers(-3, 4, size=shape)
    return np.clip(class_level(label) + noise, 0, 255).astype(np.uint8)


def write_tiny_imagenet(
    root: str | Path, num_classes: int = 10, train_per_class: int = 10, val_per_class: int = 2, size: int = 16
) -> dict[str, object]:
    """``root/tiny-imagenet-200/`` with wnids.txt, words.txt, train/<wnid>/images/*.JPEG (and the
    boxes file), val/images/*.JPEG with val_annotations.txt. Class ``i`` (in wnids.txt's order,
    which is deliberately unsorted) has grey level ``class_level(i)``.
    Returns ``wnids`` and ``val`` (file name -> wnid)."""
    folder = Path(root) / "tiny-imagenet-200"
    rng = np.random.default_rng(0)
    wnids = [f"n{9 - i:08d}" for i in range(num_classes)]  # listed in reverse sorted order
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "wnids.txt").write_text("".join(f"{w}\n" for w in wnids))
    (folder / "words.txt").write_text("".join(f"{w}\tthing {i}\n" for i, w in enumerate(wnids)))
    for label, wnid in enumerate(wnids):
        images = folder / "train" / wnid / "images"
        images.mkdir(parents=True)
        boxes = []
        for i in range(train_per_class):
            name = f"{wnid}_{i}.JPEG"
            Image.fromarray(_class_image(rng, label, (size, size, 3))).save(images / name, format="JPEG")
            boxes.append(f"{name}\t0\t0\t{size - 1}\t{size - 1}\n")
        (folder / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(boxes))
    val_images = folder / "val" / "images"
    val_images.mkdir(parents=True)
    annotations, val = [], {}
    for k in range(num_classes * val_per_class):
        label = k % num_classes
        name = f"val_{k}.JPEG"
        # A greyscale JPEG among them, as in the real set.
        mode_shape = (size, size) if k == 0 else (size, size, 3)
        Image.fromarray(_class_image(rng, label, mode_shape)).save(val_images / name, format="JPEG")
        annotations.append(f"{name}\t{wnids[label]}\t0\t0\t{size - 1}\t{size - 1}\n")
        val[name] = wnids[label]
    (folder / "val" / "val_annotations.txt").write_text("".join(annotations))
    return {"wnids": wnids, "val": val}


def write_idx(path: Path, array: np.ndarray) -> None:
    """``array`` (uint8) as an idx file, gzipped if ``path`` ends in .gz."""
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    content = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as handle:
        handle.write(content)


def write_mnist_like(
    root: str | Path, folder: str = "MNIST", n_train: int = 40, n_test: int = 10, gz: bool = False, seed: int = 0
) -> dict[str, np.ndarray]:
    """torchvision's layout ``root/<folder>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]``
    with 28x28 images of grey level ``class_level(label)``. Returns the arrays written."""
    raw = Path(root) / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    written = {}
    for split, count in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(count) % 10).astype(np.uint8)
        images = np.stack([_class_image(rng, int(label), (28, 28)) for label in labels])
        write_idx(raw / f"{split}-images-idx3-ubyte{suffix}", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte{suffix}", labels)
        written[f"{split}_images"], written[f"{split}_labels"] = images, labels
    return written


def write_svhn(root: str | Path, n_train: int = 40, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """``root/{train,test}_32x32.mat`` as in SVHN format 2: ``X`` uint8 [32, 32, 3, N] and ``y``
    [N, 1] in 1..10 (10 for the digit 0). Returns X and y per split."""
    from scipy.io import savemat

    Path(root).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = {}
    for split, count in (("train", n_train), ("test", n_test)):
        digits = np.arange(count) % 10
        images = np.stack([_class_image(rng, int(d), (32, 32, 3)) for d in digits], axis=3)
        labels = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        savemat(str(Path(root) / f"{split}_32x32.mat"), {"X": images, "y": labels})
        written[f"{split}_X"], written[f"{split}_y"] = images, labels
    return written


def write_notmnist(root: str | Path, per_letter: int = 5, seed: int = 0) -> dict[str, int]:
    """``root/notMNIST_small/A..J/*.png`` 28x28 grey images, plus two unreadable files (one empty,
    one truncated PNG), as in the public archive. Returns ``readable`` and ``unreadable`` counts."""
    folder = Path(root) / "notMNIST_small"
    rng = np.random.default_rng(seed)
    for label, letter in enumerate("ABCDEFGHIJ"):
        (folder / letter).mkdir(parents=True, exist_ok=True)
        for i in range(per_letter):
            Image.fromarray(_class_image(rng, label, (28, 28))).save(folder / letter / f"font{i}.png")
    (folder / "A" / "RGVtb2NyYXRpY2FCb2xkT2xkc3R5bGUgQm9sZC50dGY=.png").write_bytes(b"")
    good = (folder / "B" / "font0.png").read_bytes()
    (folder / "B" / "Q3Jvc3NvdmVyIEJvbGRPYmxpcXVlLnR0Zg==.png").write_bytes(good[: len(good) // 2])
    return {"readable": 10 * per_letter, "unreadable": 2}


def write_five_datasets(root: str | Path, per_split: int = 40) -> dict[str, object]:
    """All five datasets under ``root/<task>/`` in their real formats (CIFAR10 pickles, MNIST idx
    plain, Fashion-MNIST idx gzipped, SVHN .mat, notMNIST folders)."""
    root = Path(root)
    return {
        "cifar10": data_fixtures.write_cifar10(root / "cifar10", n_train=per_split, n_test=10),
        "mnist": write_mnist_like(root / "mnist", "MNIST", n_train=per_split),
        "fashion_mnist": write_mnist_like(root / "fashion_mnist", "FashionMNIST", n_train=per_split, gz=True),
        "svhn": write_svhn(root / "svhn", n_train=per_split),
        "notmnist": write_notmnist(root / "notmnist", per_letter=max(3, per_split // 10)),
    }
