"""ImageNet from the official archives (they need an account, so they are never downloaded):
the train tar of per-class tars, the flat val tar, and the devkit whose ground truth sorts the
val images into class folders. torchvision's ImageNet parsers do the work, in a temporary
directory beside ``<data_dir>/imagenet`` that replaces it in one rename once complete."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from .fetch import MARKER, FetchError, Say
from .verify import verify

FOLDER = "imagenet"


def _archive_names() -> dict[str, str]:
    from torchvision.datasets.imagenet import ARCHIVE_META

    return {part: meta[0] for part, meta in ARCHIVE_META.items()}


def find_archives(archives: list[Path]) -> dict[str, Path]:
    """``train``/``val``/``devkit`` -> the given file of that official name (or in a given folder)."""
    found = {}
    for part, filename in _archive_names().items():
        for path in archives:
            candidate = path / filename if path.is_dir() else path
            if candidate.name == filename and candidate.is_file():
                found[part] = candidate.resolve()
                break
        else:
            names = ", ".join(_archive_names().values())
            raise FetchError(f"imagenet: no {filename} among the given archives (need {names}; give them with --from)")
    return found


def prepare_imagenet(data_dir: Path, archives: list[Path], *, quiet: bool = False, say: Say = print) -> str:
    """``<data_dir>/imagenet/{train,val}/<wnid>/`` built from the official archives; verify's summary."""
    from torchvision.datasets import imagenet as tv

    files = find_archives(archives)
    target = data_dir / FOLDER
    data_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{FOLDER}.", dir=data_dir))
    try:
        for path in files.values():  # the parsers read archives from their root folder
            os.symlink(path, staging / path.name)
        say("imagenet: checking the archives' MD5s and unpacking (the train tar takes hours)")
        try:
            tv.parse_devkit_archive(str(staging), files["devkit"].name)
            tv.parse_val_archive(str(staging), files["val"].name)
            tv.parse_train_archive(str(staging), files["train"].name)
        except RuntimeError as error:  # torchvision's "not present ... or is corrupted"
            raise FetchError(f"imagenet: {' '.join(str(error).split())}") from None
        tree = staging / "tree"
        tree.mkdir()
        for split in ("train", "val"):
            os.replace(staging / split, tree / split)
        (tree / MARKER).write_text(json.dumps({"dataset": FOLDER, "files": [p.name for p in files.values()]}) + "\n")
        if target.exists():
            os.replace(target, staging / "old")
        os.replace(tree, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return verify(FOLDER, data_dir)
