#!/usr/bin/env python
"""Unpack the results.tgz of a device check (scripts/device_checks.py) into results/bench/device/,
where the results index (``python -m cmrepro.report index``) reads the measured GPU-hours
(``hours_cuda.json``) and the GPU benchmarks' JSON. Regular files only (tarfile's "data"
filter: no links, nothing outside the folder); the folder's earlier contents are replaced.

    python scripts/unpack_device_results.py /path/to/results.tgz
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEVICE_RESULTS = ROOT / "results" / "bench" / "device"


def unpack(archive: Path, into: Path = DEVICE_RESULTS) -> list[str]:
    """The archive's files, extracted into ``into`` (emptied first); their names."""
    staging = into.with_name(into.name + ".unpacking")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile()]
        tar.extractall(staging, members=members, filter="data")
    shutil.rmtree(into, ignore_errors=True)
    staging.rename(into)
    return sorted(m.name for m in members)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("archive", type=Path)
    parser.add_argument("--into", type=Path, default=DEVICE_RESULTS)
    args = parser.parse_args()
    try:
        names = unpack(args.archive, args.into)
    except (OSError, tarfile.TarError) as error:
        sys.exit(f"unpack_device_results: cannot unpack {args.archive}: {error}")
    print(f"{len(names)} files into {args.into}")


if __name__ == "__main__":
    main()
