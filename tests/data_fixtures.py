"""Tiny datasets in the real on-disk formats, for tests of the data loaders and of anything
that trains on them. Each writer returns what it wrote, so tests can check round trips."""

from __future__ import annotations

import pickle
import struct
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _random_cifar(rng: np.random.Generator, count: int, num_classes: int) -> tuple[np.ndarray, list[int]]:
    data = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
    return data, rng.integers(0, num_classes, size=count).tolist()


class _Py2Str(bytes):
    """A Python 2 ``str``, the type of every key and name in the real CIFAR pickles."""


class _Py2Pickler(pickle._Pickler):
    """Protocol 2 pickler writing :class:`_Py2Str` with Python 2's string opcodes.

    Python 3 loads those as ``str`` under ``encoding="latin1"`` (torchvision's reader) and
    as ``bytes`` under ``encoding="bytes"`` (the dataset page's snippet), as it does the
    real files; a Python 3 ``str`` or ``bytes`` key would look right to only one of them.
    """

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: _Py2Str) -> None:
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(obj)) + obj)
        self.memoize(obj)

    dispatch[_Py2Str] = save_py2_str


def _py2(value: object) -> object:
    """``value`` with its strings (and dict keys) turned into Python 2 strings."""
    if isinstance(value, str):
        return _Py2Str(value.encode("latin1"))
    if isinstance(value, dict):
        return {_py2(key): _py2(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_py2(item) for item in value]
    return value


def _write_pickle(path: Path, content: dict) -> None:
    """``content`` pickled as Python 2 wrote the real files, its ``str`` as Python 2 strings."""
    with open(path, "wb") as handle:
        _Py2Pickler(handle, protocol=2).dump(_py2(content))


def write_cifar10(root: str | Path, n_train: int = 100, n_test: int = 20, seed: int = 0) -> dict[str, object]:
    """``root/cifar-10-batches-py/`` with data_batch_1..5 (``n_train`` images spread over
    them), test_batch and batches.meta. Returns the written ``train_data`` uint8
    ``[n_train, 3072]``, ``train_labels``, ``test_data`` and ``test_labels``, in file order."""
    folder = Path(root) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    train_data, train_labels = _random_cifar(rng, n_train, 10)
    test_data, test_labels = _random_cifar(rng, n_test, 10)
    bounds = np.linspace(0, n_train, 6).astype(int)
    for number, (start, stop) in enumerate(zip(bounds, bounds[1:]), start=1):
        batch = {
            "batch_label": f"training batch {number} of 5",
            "labels": train_labels[start:stop],
            "data": train_data[start:stop],
            "filenames": [f"img_{i}.png" for i in range(start, stop)],
        }
        _write_pickle(folder / f"data_batch_{number}", batch)
    test = {"batch_label": "testing batch 1 of 1", "labels": test_labels, "data": test_data, "filenames": []}
    _write_pickle(folder / "test_batch", test)
    meta = {"num_cases_per_batch": 10000, "label_names": CIFAR10_NAMES, "num_vis": 3072}
    _write_pickle(folder / "batches.meta", meta)
    return {"train_data": train_data, "train_labels": train_labels, "test_data": test_data, "test_labels": test_labels}


def write_cifar100(root: str | Path, n_train: int = 100, n_test: int = 20, seed: int = 0) -> dict[str, object]:
    """``root/cifar-100-python/`` with train, test and meta; returns what
    :func:`write_cifar10` returns, the labels being the fine labels."""
    folder = Path(root) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written: dict[str, object] = {}
    for split, count in (("train", n_train), ("test", n_test)):
        data, fine = _random_cifar(rng, count, 100)
        content = {
            "filenames": [f"img_{i}.png" for i in range(count)],
            "batch_label": f"{split} batch",
            "fine_labels": fine,
            "coarse_labels": [label // 5 for label in fine],
            "data": data,
        }
        _write_pickle(folder / split, content)
        written[f"{split}_data"], written[f"{split}_labels"] = data, fine
    meta = {
        "fine_label_names": [f"fine_{i}" for i in range(100)],
        "coarse_label_names": [f"coarse_{i}" for i in range(20)],
    }
    _write_pickle(folder / "meta", meta)
    return written


def write_imagefolder(
    root: str | Path,
    classes: Sequence[str] = ("n01440764", "n01443537", "n01484850"),
    per_class: int = 2,
    splits: Sequence[str] = ("train", "val"),
    size: tuple[int, int] = (20, 24),
    image_format: str = "png",
    seed: int = 0,
) -> dict[str, list[tuple[Path, int, np.ndarray]]]:
    """``root/<split>/<class>/<class>_<i>.<image_format>`` RGB images of ``size`` (H, W).

    Returns, per split, ``(path, class index, uint8 [H, W, 3] array)`` in ImageFolder's
    order (classes sorted, then file names). PNG round-trips exactly; "JPEG" gives the
    ImageNet file format at the cost of lossy pixels.
    """
    rng = np.random.default_rng(seed)
    suffix = "JPEG" if image_format.upper() in ("JPG", "JPEG") else image_format
    written: dict[str, list[tuple[Path, int, np.ndarray]]] = {}
    for split in splits:
        written[split] = []
        for index, name in enumerate(sorted(classes)):
            folder = Path(root) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, size=(*size, 3), dtype=np.uint8)
                path = folder / f"{name}_{i:04d}.{suffix}"
                Image.fromarray(pixels).save(path, format="JPEG" if suffix == "JPEG" else None)
                written[split].append((path, index, pixels))
    return written


_PTB_WORDS = "the a of and to in N <unk> market stock share price rose fell said year company new".split()


def _ptb_sentences(rng: np.random.Generator, count: int) -> list[list[str]]:
    lengths = rng.integers(3, 10, size=count)
    return [[_PTB_WORDS[i] for i in rng.integers(0, len(_PTB_WORDS), size=length)] for length in lengths]


def write_ptb(
    root: str | Path,
    train: Sequence[str] | None = None,
    valid: Sequence[str] | None = None,
    test: Sequence[str] | None = None,
    seed: int = 0,
) -> dict[str, list[list[str]]]:
    """``root/ptb.{train,valid,test}.txt`` in Mikolov's layout (a leading space, words
    separated by spaces, a trailing space, one sentence a line).

    Each split is a list of sentences (strings of space-separated words); by default
    random sentences over a small vocabulary containing ``<unk>`` (120 train, 30 valid,
    30 test). Returns the words of each line, per split.
    """
    rng = np.random.default_rng(seed)
    Path(root).mkdir(parents=True, exist_ok=True)
    written = {}
    for split, given, count in (("train", train, 120), ("valid", valid, 30), ("test", test, 30)):
        sentences = [line.split() for line in given] if given is not None else _ptb_sentences(rng, count)
        text = "".join(f" {' '.join(words)} \n" for words in sentences)
        (Path(root) / f"ptb.{split}.txt").write_text(text, encoding="utf-8")
        written[split] = sentences
    return written
