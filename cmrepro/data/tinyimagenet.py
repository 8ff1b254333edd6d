"""The ``tiny-imagenet-200/`` layout as distributed: ``wnids.txt`` (the 200 class ids),
``train/<wnid>/images/*.JPEG`` (500 per class) and ``val/images/*.JPEG`` labelled by
``val/val_annotations.txt`` (50 per class). Images are decoded when read, not at start-up."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .bad_files import open_image
from .base import data_error, prepare_command

TINY_IMAGENET_URL = "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
FOLDER = "tiny-imagenet-200"


def how_to_get(root: Path) -> str:
    """How to put Tiny ImageNet into ``root``, for the "how to fix it" part of a DataError."""
    return f"{prepare_command('tinyimagenet', root)}, or unzip {TINY_IMAGENET_URL} into {root}"


def find_tiny_imagenet_folder(root: Path) -> Path | None:
    """``<root>/tiny-imagenet-200``, or ``root`` itself if it holds ``wnids.txt``; None if neither does."""
    for folder in (root / FOLDER, root):
        if (folder / "wnids.txt").is_file():
            return folder
    return None


def tiny_imagenet_folder(root: Path) -> Path:
    """:func:`find_tiny_imagenet_folder`, else DataError naming what is missing."""
    folder = find_tiny_imagenet_folder(root)
    if folder is not None:
        return folder
    found = "no such directory" if not root.exists() else "no wnids.txt"
    if (root / f"{FOLDER}.zip").exists():
        found += f" ({FOLDER}.zip is there: unzip it)"
    raise data_error("tinyimagenet", f"{root / FOLDER} holding wnids.txt, train/ and val/", found, how_to_get(root))


def read_wnids(folder: Path) -> list[str]:
    """The class ids of ``wnids.txt``, sorted (the file's own order is not part of the format)."""
    wnids = sorted({line.strip() for line in (folder / "wnids.txt").read_text().splitlines() if line.strip()})
    if not wnids:
        raise data_error("tinyimagenet", folder / "wnids.txt", "an empty file", how_to_get(folder.parent))
    return wnids


def train_files(folder: Path, wnids: list[str]) -> dict[str, list[Path]]:
    """``wnid -> sorted image paths`` under ``train/<wnid>/images/``."""
    files = {}
    for wnid in wnids:
        images = folder / "train" / wnid / "images"
        paths = sorted(images.glob("*.JPEG")) if images.is_dir() else []
        if not paths:
            found = "no such directory" if not images.is_dir() else "no .JPEG files"
            raise data_error(
                "tinyimagenet", f"{images} holding the JPEG images of {wnid}", found, how_to_get(folder.parent)
            )
        files[wnid] = paths
    return files


def val_files(folder: Path, wnids: list[str]) -> dict[str, list[Path]]:
    """``wnid -> sorted image paths`` of the official validation images, from ``val_annotations.txt``
    (tab-separated: file name, wnid, bounding box)."""
    annotations = folder / "val" / "val_annotations.txt"
    expected = f"{annotations} labelling the images of {folder / 'val' / 'images'}"
    if not annotations.is_file():
        raise data_error("tinyimagenet", expected, "no such file", how_to_get(folder.parent))
    files: dict[str, list[Path]] = {wnid: [] for wnid in wnids}
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or fields[1] not in files:
            found = f"line {number} naming {fields[1] if len(fields) > 1 else 'no'} class of wnids.txt"
            raise data_error("tinyimagenet", expected, found, how_to_get(folder.parent))
        path = folder / "val" / "images" / fields[0]
        if not path.is_file():
            raise data_error(
                "tinyimagenet", expected, f"line {number} naming a missing {path.name}", how_to_get(folder.parent)
            )
        files[fields[1]].append(path)
    empty = [wnid for wnid, paths in files.items() if not paths]
    if empty:
        found = f"no images for {len(empty)} classes (e.g. {empty[0]})"
        raise data_error("tinyimagenet", expected, found, how_to_get(folder.parent))
    return {wnid: sorted(paths) for wnid, paths in files.items()}


class ImageFiles:
    """Image files decoded on access as uint8 ``[3, size, size]`` tensors (RGB, resized if
    needed): the lazy counterpart of an in-memory uint8 image tensor, with ``shape`` and
    indexing, so :class:`~cmrepro.data.vision.NormalisedImages` can serve either. A file that
    cannot be decoded raises :class:`~cmrepro.data.bad_files.UnreadableImage`."""

    def __init__(self, paths: list[Path], size: int) -> None:
        self.paths = paths
        self.size = size

    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.paths), 3, self.size, self.size)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        from PIL import Image

        # Some Tiny ImageNet images are greyscale JPEGs: convert all to RGB.
        image = open_image(self.paths[index], "RGB")
        if image.size != (self.size, self.size):
            image = image.resize((self.size, self.size), Image.BILINEAR)
        return torch.from_numpy(np.asarray(image, dtype=np.uint8).copy()).permute(2, 0, 1)
