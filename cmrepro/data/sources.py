"""Where each dataset comes from and where it goes: the one table ``prepare`` reads.

A :class:`Source` names the files to fetch (URLs in order of preference, expected size and
digest), how to unpack them, and which unpacked paths land where under the dataset's folder
``<paths.data_dir>/<folder>`` (the folder the readers in :mod:`cmrepro.data` look in).
Datasets torchvision knows take their URLs and MD5s from torchvision's own classes, so the
two never disagree; the others (PTB, TinyImageNet, notMNIST) are written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .digit_formats import NOTMNIST_URL
from .text import PTB_URL
from .tinyimagenet import TINY_IMAGENET_URL


@dataclass(frozen=True)
class Remote:
    """One file to download: its mirrors in order, and what it must be."""

    filename: str
    urls: tuple[str, ...]
    md5: str | None = None
    sha256: str | None = None
    size: int | None = None  # bytes; None where no size is documented


@dataclass(frozen=True)
class Source:
    """One dataset: its files, how they unpack (``tar``, ``zip`` or ``file`` for files used as
    downloaded) and ``place``: path inside the unpacked files -> path under ``folder``."""

    name: str
    folder: str  # under paths.data_dir
    remotes: tuple[Remote, ...]
    kind: str
    place: dict[str, str] = field(default_factory=dict)
    # What verify must count (e.g. {"classes": 200}); None where the count is not fixed.
    counts: dict[str, int] | None = None


def _torchvision_cifar(name: str, folder: str, classes: int) -> Source:
    from torchvision.datasets import CIFAR10, CIFAR100

    tv = CIFAR10 if name == "cifar10" else CIFAR100
    remote = Remote(tv.filename, (tv.url,), md5=tv.tgz_md5)
    counts = {"train": 50000, "test": 10000, "classes": classes}
    return Source(name, name, (remote,), "tar", {tv.base_folder: tv.base_folder}, counts)


def _torchvision_idx(name: str, tv_class: str) -> Source:
    import torchvision.datasets as tvd

    tv = getattr(tvd, tv_class)
    # Each file from every mirror torchvision lists, in its order; kept gzipped (the reader reads .gz).
    remotes = tuple(Remote(file, tuple(m + file for m in tv.mirrors), md5=md5) for file, md5 in tv.resources)
    place = {file: f"{tv_class}/raw/{file}" for file, _ in tv.resources}
    return Source(name, f"five_datasets/{name}", remotes, "file", place, {"train": 60000, "test": 10000})


def _torchvision_svhn() -> Source:
    from torchvision.datasets import SVHN

    splits = {split: SVHN.split_list[split] for split in ("train", "test")}  # "extra" is not used
    remotes = tuple(Remote(file, (url,), md5=md5) for url, file, md5 in splits.values())
    place = {file: file for _, file, _ in splits.values()}
    return Source("svhn", "five_datasets/svhn", remotes, "file", place, {"train": 73257, "test": 26032})


# Mikolov's archive; no published digest was found, so prepare prints the one it computes.
PTB = Source(
    "ptb",
    "ptb",
    (Remote("simple-examples.tgz", (PTB_URL,)),),
    "tar",
    {f"simple-examples/data/ptb.{split}.txt": f"ptb.{split}.txt" for split in ("train", "valid", "test")},
    {"vocabulary": 10000},
)
# The MD5 that TinyImageNet loaders built on torchvision's helpers check the cs231n zip against.
TINY_IMAGENET = Source(
    "tinyimagenet",
    "tinyimagenet",
    (Remote("tiny-imagenet-200.zip", (TINY_IMAGENET_URL,), md5="90528d7ca1a48142e341f4ef8d21d0de"),),
    "zip",
    {"tiny-imagenet-200": "tiny-imagenet-200"},
    {"classes": 200, "train": 100000, "val": 10000},
)
# notMNIST_small.tar.gz from Bulatov's page; no published digest was found.
NOTMNIST = Source(
    "notmnist",
    "five_datasets/notmnist",
    (Remote("notMNIST_small.tar.gz", (NOTMNIST_URL + "notMNIST_small.tar.gz",)),),
    "tar",
    {"notMNIST_small": "notMNIST_small"},
)

FIVE_PARTS = ("cifar10", "mnist", "fashion_mnist", "svhn", "notmnist")
# Groups prepare as their parts; imagenet needs the user's own archives (see imagenet_prepare).
GROUPS = {"five_datasets": FIVE_PARTS}
IMAGENET = "imagenet"


def sources() -> dict[str, Source]:
    """Every downloadable dataset by name (built on call: torchvision is imported lazily)."""
    table = [
        _torchvision_cifar("cifar10", "cifar10", 10),
        _torchvision_cifar("cifar100", "cifar100", 100),
        PTB,
        TINY_IMAGENET,
        _torchvision_idx("mnist", "MNIST"),
        _torchvision_idx("fashion_mnist", "FashionMNIST"),
        _torchvision_svhn(),
        NOTMNIST,
    ]
    return {source.name: source for source in table}


def dataset_names() -> list[str]:
    """What ``prepare`` accepts, besides ``all``."""
    return [*sources(), *GROUPS, IMAGENET]


def expand(name: str) -> list[str]:
    """``name`` as the datasets it stands for (``all`` is every downloadable one, not imagenet)."""
    if name == "all":
        return list(sources())
    if name in GROUPS:
        return list(GROUPS[name])
    if name in sources() or name == IMAGENET:
        return [name]
    raise ValueError(f"unknown dataset: {name!r} (must be one of: all, {', '.join(dataset_names())})")
