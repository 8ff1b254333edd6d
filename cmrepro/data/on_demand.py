"""``dataset.download=true``: a training run fetches its missing data itself, the way
``python -m cmrepro.data prepare`` does (the archive's digest checked, no write through a link
planted in the data directory, a stalled server left), before the dataset is built.

Kept out of the data families' modules: preparing reads them back to verify what it made, so
they cannot import it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from .base import DataError, data_error, prepare_command
from .fetch import FetchError
from .prepare import prepare
from .settings import CifarSettings
from .sources import sources
from .vision import CIFAR_FORMATS, CIFAR_URL, check_cifar_files, cifar_expected


def fetch_cifar(cfg: Mapping) -> None:
    """Under ``dataset.download=true``, prepare CIFAR10/100 into ``dataset.data_dir`` when its
    files are missing; DataError (one line) if that cannot be done. ``dataset.data_dir`` must
    be the dataset's folder of a data directory (``<data_dir>/cifar10``), where prepare puts it."""
    settings = CifarSettings.from_config(cfg)
    if not settings.download:
        return
    fmt, root = CIFAR_FORMATS[settings.name], settings.root
    try:
        check_cifar_files(fmt, root)
        return  # every file is there: nothing to fetch
    except DataError:
        pass
    folder_name = sources()[fmt.name].folder
    if root.name != folder_name:
        found = f"no files, and dataset.download=true unpacks only into <data directory>/{folder_name}"
        raise data_error(fmt.name, cifar_expected(fmt, root), found, prepare_command(fmt.name, root))
    try:
        prepare(fmt.name, root.parent, say=lambda line: print(f"cmrepro.train: {line}", file=sys.stderr))
    except (FetchError, DataError) as error:
        found, how = f"no files, and the download failed ({error})", f"download from {CIFAR_URL} into {root}"
        raise data_error(fmt.name, cifar_expected(fmt, root), found, how) from None
