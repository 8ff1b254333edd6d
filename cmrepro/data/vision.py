"""Image classification on disk: CIFAR10/100 (the python pickle batches) and ImageNet
(``train/`` and ``val/`` class folders)."""

from __future__ import annotations

import codecs
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from .bad_files import BadFiles, SkipUnreadable, read_rgb
from .base import (
    DEFAULT_CONTEXT,
    DataBundle,
    DataContext,
    DataError,
    ShuffledTrainLoader,
    data_error,
    eval_loader,
    prepare_command,
)
from .on_device import CROP_PADDING, Normalise, OnDeviceEvalBatches, OnDeviceTrainLoader
from .settings import CifarSettings, ImageNetSettings

CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
IMAGENET_URL = "https://image-net.org"

# ImageNet per-channel mean and std of pixels in [0, 1], the values torchvision's
# pretrained models were trained with.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class CifarFormat:
    """Where one CIFAR variant keeps what, in the python version of the dataset."""

    name: str
    folder: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    label_names_key: str
    num_classes: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @property
    def files(self) -> tuple[str, ...]:
        return (*self.train_files, self.test_file, self.meta_file)


# Mean and std are per channel over the 50K training images, pixels in [0, 1] (the
# exact standard deviations, not the often-copied 0.2023/0.1994/0.2010).
CIFAR10 = CifarFormat(
    name="cifar10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_file="test_batch",
    meta_file="batches.meta",
    label_key="labels",
    label_names_key="label_names",
    num_classes=10,
    mean=(0.4914, 0.4822, 0.4465),
    std=(0.2470, 0.2435, 0.2616),
)
CIFAR100 = CifarFormat(
    name="cifar100",
    folder="cifar-100-python",
    train_files=("train",),
    test_file="test",
    meta_file="meta",
    label_key="fine_labels",
    label_names_key="fine_label_names",
    num_classes=100,
    mean=(0.5071, 0.4865, 0.4409),
    std=(0.2673, 0.2564, 0.2762),
)
CIFAR_FORMATS = {fmt.name: fmt for fmt in (CIFAR10, CIFAR100)}


# ---------------------------------------------------------------- CIFAR files


def _cifar_how(fmt: CifarFormat, root: Path) -> str:
    """How to fix a CIFAR DataError. ``dataset.download=true`` fetches only when files are
    missing, so it is offered only then; files that are all there but unreadable or malformed
    need the folder rebuilt."""
    folder = root / fmt.folder
    if all((folder / name).is_file() for name in fmt.files):
        return f"delete {folder} and {prepare_command(fmt.name, root)}"
    return f"{prepare_command(fmt.name, root)} (or set dataset.download=true)"


def cifar_expected(fmt: CifarFormat, root: Path) -> str:
    return f"{root / fmt.folder} holding {', '.join(fmt.files)}"


def check_cifar_files(fmt: CifarFormat, root: Path) -> Path:
    """The CIFAR folder under ``root`` if it holds every file of the dataset, else DataError."""
    folder = root / fmt.folder
    expected, how = cifar_expected(fmt, root), _cifar_how(fmt, root)
    if not folder.exists():
        archives = sorted(p.name for p in root.glob("cifar-*.tar.gz")) if root.is_dir() else []
        found = "no such directory" + (f" ({', '.join(archives)} is there: extract it)" if archives else "")
        raise data_error(fmt.name, expected, found, how)
    if not folder.is_dir():
        raise data_error(fmt.name, expected, "a file, not a directory", how)
    missing = [f for f in fmt.files if not (folder / f).is_file()]
    if missing:
        present = len(fmt.files) - len(missing)
        found = f"a directory with {present} of {len(fmt.files)} files (missing {', '.join(missing)})"
        raise data_error(fmt.name, expected, found, how)
    return folder


# What the real CIFAR pickles name, and nothing else: numpy arrays (rebuilt by numpy's own
# reconstructor, which the arrays' pickles name under numpy.core or, from numpy 2, numpy._core)
# with their dtypes, and the Python 3 spelling of bytes. Lists, dicts, str, bytes and ints need
# no name. Any other name (os.system, builtins.eval, ...) is how a pickle runs code.
_RECONSTRUCT = np.empty(0).__reduce__()[0]
CIFAR_PICKLE_NAMES = {
    ("numpy.core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _RECONSTRUCT,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,
}


class RefusedPickle(pickle.UnpicklingError):
    """A pickle names something a CIFAR file never holds."""


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits only :data:`CIFAR_PICKLE_NAMES`: a data folder may be writable by
    others, and ``pickle.load`` would call whatever a crafted file names."""

    def find_class(self, module: str, name: str):
        try:
            return CIFAR_PICKLE_NAMES[(module, name)]
        except KeyError:
            raise RefusedPickle(f"it names {module}.{name}, which no CIFAR file holds (it may run code)") from None


def read_cifar_pickle(fmt: CifarFormat, path: Path, root: Path) -> dict[str, Any]:
    """One pickle of the dataset, its keys as str (the original files are Python 2 pickles
    whose keys may come back as bytes), read by :class:`CifarUnpickler`."""
    try:
        with open(path, "rb") as handle:
            content = CifarUnpickler(handle, encoding="latin1").load()
    except RefusedPickle as exc:
        found = f"a pickle {path.name} refused unread: {exc}"
        raise data_error(fmt.name, cifar_expected(fmt, root), found, _cifar_how(fmt, root)) from None
    except Exception as exc:  # truncated or garbage files fail in many ways
        found = f"an unreadable pickle {path.name} ({type(exc).__name__}: {exc})"
        raise data_error(fmt.name, cifar_expected(fmt, root), found, _cifar_how(fmt, root)) from exc
    if not isinstance(content, dict):
        found = f"{path.name} holding a {type(content).__name__}, not a dict"
        raise data_error(fmt.name, cifar_expected(fmt, root), found, _cifar_how(fmt, root))
    return {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in content.items()}


def read_cifar_batch(fmt: CifarFormat, path: Path, root: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 ``[N, 3, 32, 32]`` and labels int64 ``[N]`` of one pickle batch."""
    content = read_cifar_pickle(fmt, path, root)

    def malformed(what: str) -> DataError:
        return data_error(fmt.name, cifar_expected(fmt, root), f"{path.name} with {what}", _cifar_how(fmt, root))

    if "data" not in content or fmt.label_key not in content:
        raise malformed(f"keys {sorted(content)} instead of data and {fmt.label_key}")
    data = np.asarray(content["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise malformed(f"data of {data.dtype} {list(data.shape)} instead of uint8 [N, 3072]")
    labels = np.asarray(content[fmt.label_key])
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise malformed(f"{fmt.label_key} of {labels.dtype} {list(labels.shape)} instead of {len(data)} integers")
    if len(labels) and (labels.min() < 0 or labels.max() >= fmt.num_classes):
        raise malformed(f"labels outside 0..{fmt.num_classes - 1}")
    # Each row is the red, green and blue 32x32 planes, row-major: already C, H, W.
    images = torch.from_numpy(data.reshape(-1, 3, 32, 32).copy())
    return images, torch.from_numpy(labels.astype(np.int64))


def read_cifar_split(
    fmt: CifarFormat, folder: Path, files: tuple[str, ...], root: Path
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of the batches ``files``, concatenated in file order."""
    parts = [read_cifar_batch(fmt, folder / name, root) for name in files]
    return torch.cat([images for images, _ in parts]), torch.cat([labels for _, labels in parts])


def check_cifar_meta(fmt: CifarFormat, folder: Path, root: Path) -> None:
    """The meta pickle is readable and names ``num_classes`` classes."""
    content = read_cifar_pickle(fmt, folder / fmt.meta_file, root)
    names = content.get(fmt.label_names_key)
    if names is None or len(names) != fmt.num_classes:
        count = "no" if names is None else len(names)
        found = f"{fmt.meta_file} with {count} {fmt.label_names_key} instead of {fmt.num_classes}"
        raise data_error(fmt.name, cifar_expected(fmt, root), found, _cifar_how(fmt, root))


# ---------------------------------------------------------------- CIFAR datasets


def split_indices(size: int, val_size: int, split_seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, val)`` indices: a fixed random ``val_size`` of ``range(size)`` for validation.

    Seeded by ``split_seed`` alone so that every run seed validates on the same images.
    """
    generator = torch.Generator().manual_seed(split_seed)
    order = torch.randperm(size, generator=generator)
    return order[val_size:].sort().values, order[:val_size].sort().values


class NormalisedImages(Dataset):
    """uint8 images in memory, returned as normalised float32, randomly cropped and flipped
    when ``augment`` (with torch's global RNG)."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, mean: tuple, std: tuple, *, augment: bool) -> None:
        self.images = images
        self.labels = labels
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.augment = _crop_flip(images.shape[-1]) if augment else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.images[index]
        if self.augment is not None:
            image = self.augment(image)
        return (image.float() / 255 - self.mean) / self.std, self.labels[index]


def _crop_flip(size: int):
    from torchvision import transforms

    # The paper does not state its augmentation (its Table 6 lists split sizes only). We use
    # the standard CIFAR one: a random crop of the original size from the image zero-padded
    # by 4 pixels, and a horizontal flip, as the ResNet CIFAR recipe (He et al., 2016) and
    # most CIFAR ResNet34 baselines do.
    crop = transforms.RandomCrop(size, padding=CROP_PADDING)
    return transforms.Compose([crop, transforms.RandomHorizontalFlip()])


def cifar_train(
    images: torch.Tensor,
    labels: torch.Tensor,
    fmt: CifarFormat,
    settings: CifarSettings,
    seed: int,
    device: torch.device,
):
    """The bundle's ``train`` over uint8 ``images``: kept on ``device`` under ``dataset.on_device``,
    else a DataLoader over :class:`NormalisedImages`; the same images in each batch either way."""
    loader = settings.loader
    if settings.on_device:
        normalise = Normalise(fmt.mean, fmt.std)
        return OnDeviceTrainLoader(
            images, labels, loader.batch_size, seed, device=device, normalise=normalise, augment=settings.augment
        )
    dataset = NormalisedImages(images, labels, fmt.mean, fmt.std, augment=settings.augment)
    return ShuffledTrainLoader(dataset, loader.batch_size, seed, loader.options)


def cifar_eval(
    images: torch.Tensor, labels: torch.Tensor, fmt: CifarFormat, settings: CifarSettings, device: torch.device
):
    """Validation or test batches, in set order; on ``device`` under ``dataset.on_device`` too, since
    evaluating through the loader path would bring back, for 10K images every epoch, the per-image
    host work that ``on_device`` takes out of training."""
    loader = settings.loader
    if settings.on_device:
        normalise = Normalise(fmt.mean, fmt.std)
        return OnDeviceEvalBatches(images, labels, loader.eval_batch_size, device=device, normalise=normalise)
    dataset = NormalisedImages(images, labels, fmt.mean, fmt.std, augment=False)
    return eval_loader(dataset, loader.eval_batch_size, loader.options)


def build_cifar(cfg: Mapping, seed: int, context: DataContext = DEFAULT_CONTEXT) -> DataBundle:
    """CIFAR10/100: the 50K training images split into train and ``val_size`` validation
    images, and the official test set as ``test`` when ``use_test``."""
    settings = CifarSettings.from_config(cfg)
    fmt, root, device = CIFAR_FORMATS[settings.name], settings.root, context.device
    folder = check_cifar_files(fmt, root)  # dataset.download=true fetched them first (.on_demand)
    check_cifar_meta(fmt, folder, root)
    images, labels = read_cifar_split(fmt, folder, fmt.train_files, root)
    if settings.val_size >= len(labels):
        found = f"{len(labels)} training images, not more than dataset.val_size={settings.val_size}"
        raise data_error(fmt.name, cifar_expected(fmt, root), found, _cifar_how(fmt, root))
    train_idx, val_idx = split_indices(len(labels), settings.val_size, settings.split_seed)
    test = None
    if settings.use_test:
        test_images, test_labels = read_cifar_split(fmt, folder, (fmt.test_file,), root)
        test = cifar_eval(test_images, test_labels, fmt, settings, device)
    return DataBundle(
        task="classification",
        train=cifar_train(images[train_idx], labels[train_idx], fmt, settings, seed, device),
        val=cifar_eval(images[val_idx], labels[val_idx], fmt, settings, device),
        test=test,
        num_classes=fmt.num_classes,
        vocab_size=None,
        input_shape=(3, 32, 32),
    )


# ---------------------------------------------------------------- ImageNet


def _imagenet_how(root: Path) -> str:
    archives = "ILSVRC2012_img_train.tar ILSVRC2012_img_val.tar ILSVRC2012_devkit_t12.tar.gz"
    return f"{prepare_command('imagenet', root)} --from {archives} (the archives of {IMAGENET_URL})"


def _class_folders(split: Path) -> list[str]:
    return sorted(entry.name for entry in split.iterdir() if entry.is_dir())


def check_imagenet_folders(root: Path) -> list[str]:
    """The class names shared by ``root/train`` and ``root/val``, else DataError."""
    how = _imagenet_how(root)
    for split in ("train", "val"):
        path = root / split
        if not path.is_dir():
            found = "a file, not a directory" if path.exists() else "no such directory"
            raise data_error("imagenet", f"{path} holding one folder per class", found, how)
    train, val = _class_folders(root / "train"), _class_folders(root / "val")
    if not train:
        raise data_error("imagenet", f"{root / 'train'} holding one folder per class", "no class folders", how)
    if train != val:
        only_train, only_val = sorted(set(train) - set(val)), sorted(set(val) - set(train))
        found = (
            f"{len(val)} classes against {len(train)} in train/"
            f" (only in train: {', '.join(only_train[:5]) or '-'}; only in val: {', '.join(only_val[:5]) or '-'})"
        )
        raise data_error("imagenet", f"{root / 'val'} holding the class folders of {root / 'train'}", found, how)
    return train


def imagenet_transforms(image_size: int, resize: int, *, augment: bool):
    """``(train, eval)`` transforms: RandomResizedCrop + flip for training, Resize +
    CenterCrop for evaluation (and for training without ``augment``)."""
    from torchvision import transforms

    finish = [transforms.ToTensor(), transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    evaluate = transforms.Compose([transforms.Resize(resize), transforms.CenterCrop(image_size), *finish])
    if not augment:
        return evaluate, evaluate
    train = transforms.Compose([transforms.RandomResizedCrop(image_size), transforms.RandomHorizontalFlip(), *finish])
    return train, evaluate


def _image_folder(path: Path, transform, how: str, bad_files: BadFiles) -> SkipUnreadable:
    """The images of ``path``'s class folders; an image that cannot be decoded is skipped
    (:mod:`.bad_files`), not a crash in the middle of an epoch."""
    from torchvision.datasets import ImageFolder

    try:
        images = ImageFolder(str(path), transform=transform, loader=read_rgb)
    except OSError as exc:
        # e.g. a class folder without any image file
        raise data_error("imagenet", f"{path} holding one folder of images per class", str(exc), how) from exc
    return SkipUnreadable(images, bad_files)


def build_imagenet(cfg: Mapping, seed: int, context: DataContext = DEFAULT_CONTEXT) -> DataBundle:
    """ImageNet from ``train/`` and ``val/`` class folders; the validation images serve as
    ``val`` (the labelled test set is not public). Unreadable images are skipped, up to
    ``dataset.max_bad_files``, and recorded in the run directory."""
    settings = ImageNetSettings.from_config(cfg)
    root, loader = settings.root, settings.loader
    classes = check_imagenet_folders(root)
    train_tf, eval_tf = imagenet_transforms(settings.image_size, settings.resize, augment=settings.augment)
    how = _imagenet_how(root)
    intact = f"replace them with intact copies from the archives, or rebuild the folder: {how}"
    bad_files = BadFiles("imagenet", root, settings.max_bad_files, context.run_dir, intact)
    bad_files.note_recorded()
    train_set = _image_folder(root / "train", train_tf, how, bad_files)
    val_set = _image_folder(root / "val", eval_tf, how, bad_files)
    return DataBundle(
        task="classification",
        train=ShuffledTrainLoader(train_set, loader.batch_size, seed, loader.options),
        val=eval_loader(val_set, loader.eval_batch_size, loader.options),
        test=None,
        num_classes=len(classes),
        vocab_size=None,
        input_shape=(3, settings.image_size, settings.image_size),
    )
