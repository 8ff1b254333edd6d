"""Readers for the on-disk formats of 5-dataset's small-image tasks: MNIST and Fashion-MNIST
(LeCun's idx files, as torchvision stores them), SVHN (the cropped-digits ``.mat`` files) and
notMNIST (a folder of letter folders ``A``-``J`` of PNG images).

Each reader returns uint8 images ``[N, C, H, W]`` (C = 1 for grey images, 3 for SVHN) and int64
labels 0-9, or raises a one-line :class:`~cmrepro.data.base.DataError` naming the expected path.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .bad_files import UnreadableImage, open_image
from .base import data_error, prepare_command

SVHN_URL = "http://ufldl.stanford.edu/housenumbers/"
NOTMNIST_URL = "http://yaroslavvb.com/upload/notMNIST/"
NOTMNIST_LETTERS = "ABCDEFGHIJ"
NOTMNIST_SIZE = 28
# Resizing runs over this many images at a time, to bound the float copy it makes.
RESIZE_CHUNK = 4096


# ---------------------------------------------------------------- MNIST / Fashion-MNIST


@dataclass(frozen=True)
class IdxFormat:
    """One dataset stored as idx files: where torchvision puts them and where to get them."""

    name: str
    torchvision_folder: str  # <root>/<folder>/raw/ in torchvision's layout
    url: str


MNIST = IdxFormat("mnist", "MNIST", "http://yann.lecun.com/exdb/mnist/")
FASHION_MNIST = IdxFormat("fashion_mnist", "FashionMNIST", "https://github.com/zalandoresearch/fashion-mnist")
# split -> (images file, labels file), each possibly gzipped (".gz").
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_UINT8 = 0x08


class _Unreadable(Exception):
    """What is wrong with a file; the caller turns it into a DataError naming the dataset."""


def read_idx(path: Path) -> np.ndarray:
    """The uint8 array of one idx file (magic: two zero bytes, type 0x08, number of dims;
    then big-endian uint32 sizes and the row-major data), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            content = handle.read()
    except OSError as error:  # unreadable, or a broken gzip stream
        raise _Unreadable(f"an unreadable {path.name} ({error})") from error
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] != IDX_UINT8:
        raise _Unreadable(f"{path.name} without the idx magic of uint8 data")
    ndim = content[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(content) < header:
        raise _Unreadable(f"{path.name} with a truncated header")
    shape = struct.unpack(f">{ndim}I", content[4:header])
    if len(content) - header != int(np.prod(shape)):
        raise _Unreadable(f"{path.name} holding {len(content) - header} bytes for a {list(shape)} array")
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape)


def _idx_folders(fmt: IdxFormat, root: Path) -> list[Path]:
    # torchvision's layout first; a folder holding the files themselves also works.
    return [root / fmt.torchvision_folder / "raw", root / "raw", root]


def find_idx(fmt: IdxFormat, root: Path, stem: str) -> Path | None:
    """The idx file ``stem`` (or ``stem.gz``) of ``fmt`` under ``root``, None if there is none."""
    for folder in _idx_folders(fmt, root):
        for name in (stem, f"{stem}.gz"):
            if (folder / name).is_file():
                return folder / name
    return None


def read_idx_split(fmt: IdxFormat, root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 ``[N, 1, 28, 28]`` and labels int64 ``[N]`` of the ``train`` or ``test`` split."""
    image_stem, label_stem = IDX_FILES[split]
    expected = f"{root / fmt.torchvision_folder / 'raw'} holding {image_stem} and {label_stem} (or .gz)"
    how = f"{prepare_command(fmt.name, root, f'five_datasets/{fmt.name}')}, or put the idx files of {fmt.url} there"
    paths = [find_idx(fmt, root, stem) for stem in (image_stem, label_stem)]
    if None in paths:
        found = "no such directory" if not root.exists() else f"no {image_stem if paths[0] is None else label_stem}"
        raise data_error(fmt.name, expected, found, how)
    try:
        images, labels = (read_idx(path) for path in paths)
    except _Unreadable as error:
        raise data_error(fmt.name, expected, str(error), how) from None
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        found = f"images {list(images.shape)} and labels {list(labels.shape)} instead of [N, H, W] and [N]"
        raise data_error(fmt.name, expected, found, how)
    if len(labels) and labels.max() > 9:
        raise data_error(fmt.name, expected, f"labels up to {labels.max()} instead of 0-9", how)
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


# ---------------------------------------------------------------- SVHN


def svhn_path(root: Path, split: str) -> Path:
    """The ``.mat`` file of SVHN's ``train`` or ``test`` split under ``root``."""
    return root / f"{split}_32x32.mat"


def read_svhn_split(root: Path, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]`` (digit 0 is stored as label 10
    in the files) of ``<root>/<split>_32x32.mat``."""
    path = svhn_path(root, split)
    expected = f"{path} (SVHN format 2, cropped digits)"
    how = f"{prepare_command('svhn', root, 'five_datasets/svhn')}, or download {path.name} from {SVHN_URL} into {root}"
    if not path.is_file():
        raise data_error("svhn", expected, "no such file" if not path.exists() else "not a file", how)
    from scipy.io import loadmat  # the files are MATLAB v5 .mat files

    try:
        content = loadmat(str(path))
    except Exception as error:  # scipy raises several types for corrupt files
        raise data_error("svhn", expected, f"an unreadable .mat file ({type(error).__name__}: {error})", how) from None
    images, labels = content.get("X"), content.get("y")
    if images is None or labels is None:
        raise data_error("svhn", expected, f"variables {sorted(k for k in content if not k.startswith('_'))}", how)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[:3] != (32, 32, 3):
        raise data_error("svhn", expected, f"X of {images.dtype} {list(images.shape)} instead of [32, 32, 3, N]", how)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != images.shape[3] or (len(labels) and (labels.min() < 1 or labels.max() > 10)):
        raise data_error("svhn", expected, f"{len(labels)} labels outside 1-10 for {images.shape[3]} images", how)
    pixels = torch.from_numpy(np.ascontiguousarray(images.transpose(3, 2, 0, 1)))
    return pixels, torch.from_numpy((labels % 10).astype(np.int64))


# ---------------------------------------------------------------- notMNIST


def notmnist_how(root: Path) -> str:
    """How to put notMNIST into ``root``, for the "how to fix it" part of a DataError."""
    command = prepare_command("notmnist", root, "five_datasets/notmnist")
    return f"{command}, or extract notMNIST_small.tar.gz of {NOTMNIST_URL} into {root}"


def find_notmnist_folder(root: Path) -> Path | None:
    """``<root>/notMNIST_small`` (as the archive extracts), or ``root`` itself if it holds the
    letters; None if no folder holds them."""
    for folder in (root / "notMNIST_small", root / "notMNIST_large", root):
        if all((folder / letter).is_dir() for letter in NOTMNIST_LETTERS):
            return folder
    return None


def notmnist_folder(root: Path) -> Path:
    """:func:`find_notmnist_folder`, else DataError naming what is missing."""
    folder = find_notmnist_folder(root)
    if folder is not None:
        return folder
    archives = sorted(p.name for p in root.glob("notMNIST_*.tar.gz")) if root.is_dir() else []
    found = "no such directory" if not root.exists() else "no folders A-J"
    if archives:
        found += f" ({', '.join(archives)} is there: extract it)"
    expected = f"{root / 'notMNIST_small'} holding one folder of PNG images per letter A-J"
    raise data_error("notmnist", expected, found, notmnist_how(root))


def _read_letter(path: Path) -> np.ndarray:
    """One grey 28x28 image; UnreadableImage if the file is not a readable image."""
    from PIL import Image

    image = open_image(path, "L")
    if image.size != (NOTMNIST_SIZE, NOTMNIST_SIZE):
        image = image.resize((NOTMNIST_SIZE, NOTMNIST_SIZE), Image.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def read_notmnist_files(root: Path) -> tuple[torch.Tensor, torch.Tensor, list[UnreadableImage]]:
    """Images uint8 ``[N, 1, 28, 28]``, labels int64 (A = 0 ... J = 9) and the files skipped
    because they are not readable images (the public archives hold a few), with the reason."""
    folder = notmnist_folder(root)
    images, labels, skipped = [], [], []
    for label, letter in enumerate(NOTMNIST_LETTERS):
        for path in sorted(p for p in (folder / letter).iterdir() if p.is_file()):
            try:
                images.append(_read_letter(path))
            except UnreadableImage as error:
                skipped.append(error)
                continue
            labels.append(label)
    if not images:
        found = f"none readable ({len(skipped)} skipped)"
        raise data_error("notmnist", f"PNG images in {folder}/A-J", found, notmnist_how(root))
    stacked = torch.from_numpy(np.stack(images)).unsqueeze(1)
    return stacked, torch.tensor(labels, dtype=torch.int64), skipped


def read_notmnist(root: Path) -> tuple[torch.Tensor, torch.Tensor, int]:
    """:func:`read_notmnist_files` with the number of files skipped instead of the files."""
    images, labels, skipped = read_notmnist_files(root)
    return images, labels, len(skipped)


# ---------------------------------------------------------------- shape


def resize_images(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` resized bilinearly to ``[N, C, size, size]`` (unchanged if already so)."""
    if images.shape[-2:] == (size, size):
        return images
    parts = []
    for chunk in images.split(RESIZE_CHUNK):
        resized = F.interpolate(chunk.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        parts.append(resized.round().clamp(0, 255).to(torch.uint8))
    return torch.cat(parts) if parts else images.new_empty((0, images.shape[1], size, size))
