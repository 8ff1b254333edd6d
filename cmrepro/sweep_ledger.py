"""What became of each job of a sweep (``-m``), for the summary the sweep ends with.

Jobs may run in this process, in joblib's worker processes or on Slurm nodes, so each writes its
outcome to a file of its own in a folder the launching process names in the environment
(:data:`LEDGER_ENV`, inherited by every launcher's jobs); the launching process reads them once
the sweep has returned. The folder is the launching process's while the sweep runs (it holds the
folder's lock) and is removed when the sweep ends; one whose sweep was killed is removed by the next
sweep under the same output directory. Standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass
from pathlib import Path

from .run_files import write_text_atomic
from .run_lock import RunLock, is_held

LEDGER_ENV = "CMREPRO_SWEEP_LEDGER"
LEDGERS = ".sweeps"  # under the output directory, one folder per sweep
# A ledger folder nobody holds is a dead sweep's once it is this old (a new sweep's folder is
# locked a moment after it is made).
DEAD_AFTER_S = 60
LAUNCH = "launch.json"  # what the sweeper launched (Launch)

# Job outcomes. "skipped": another process was training its run directory.
FINISHED = ("done", "diverged", "already ended")
NOT_FAILED = (*FINISHED, "skipped")


@dataclass(frozen=True)
class JobOutcome:
    job: int
    run_dir: str
    outcome: str  # done | diverged | already ended | skipped | refused | failed | interrupted
    message: str = ""


@contextmanager
def sweep_ledger(output_dir: Path) -> Iterator[Path]:
    """``with sweep_ledger(output_dir) as folder:`` a new ledger folder under ``output_dir`` (shared
    with the jobs wherever they run), named in the environment for the block; removed after it,
    with ``.sweeps/`` once no other sweep uses it, and ``output_dir`` itself if this made it and
    nothing else was put there (a sweep stopped before its first job leaves nothing behind).
    Dead sweeps' folders are removed first."""
    sweeps = Path(output_dir).absolute() / LEDGERS
    made = _first_missing(sweeps.parent)
    remove_dead_ledgers(sweeps)
    folder = sweeps / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(LEDGER_ENV)
    try:
        with RunLock(folder):
            os.environ[LEDGER_ENV] = str(folder)
            yield folder
    finally:
        if previous is None:
            os.environ.pop(LEDGER_ENV, None)
        else:
            os.environ[LEDGER_ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)
        with suppress(OSError):
            sweeps.rmdir()  # once no other sweep is using it
            _remove_empty(sweeps.parent, made)


def _first_missing(path: Path) -> Path | None:
    """The outermost folder of ``path`` (itself or a parent) that does not exist yet, if any."""
    missing = None
    while not path.exists() and path != path.parent:
        missing, path = path, path.parent
    return missing


def _remove_empty(path: Path, top: Path | None) -> None:
    """Remove ``path`` and its parents up to ``top`` while they are empty (OSError once one is not)."""
    if top is None:
        return
    while True:
        path.rmdir()
        if path == top:
            return
        path = path.parent


def remove_dead_ledgers(sweeps: Path) -> list[Path]:
    """Delete the ledger folders under ``sweeps`` that no live sweep holds (killed before it could
    remove its own); the folders removed."""
    dead = []
    for folder in sweeps.glob("*") if sweeps.is_dir() else []:
        with suppress(OSError):  # removed meanwhile by another sweep
            if folder.is_dir() and not is_held(folder) and time.time() - folder.stat().st_mtime > DEAD_AFTER_S:
                shutil.rmtree(folder)
                dead.append(folder)
    return dead


def record_outcome(outcome: JobOutcome) -> None:
    """Write one job's outcome, if this job belongs to a sweep with a ledger."""
    folder = os.environ.get(LEDGER_ENV)
    if folder:
        write_text_atomic(Path(folder) / f"job{outcome.job:05d}.json", json.dumps(asdict(outcome)))


def read_outcomes(folder: Path) -> list[JobOutcome]:
    return [JobOutcome(**json.loads(path.read_text())) for path in sorted(Path(folder).glob("job*.json"))]


@dataclass(frozen=True)
class Launch:
    """What the sweeper (``cmrepro.sweeper``) launched of a sweep: each launched job's overrides
    by the job number its launcher gave it, and the jobs it did not launch because their runs had
    ended (outcome ``already ended``, numbered in the whole sweep)."""

    launched: list[str]
    not_launched: list[JobOutcome]


def record_launch(launch: Launch) -> None:
    """Write what the sweeper launched, if the sweep has a ledger (it runs in the launching process)."""
    folder = os.environ.get(LEDGER_ENV)
    if folder:
        write_text_atomic(Path(folder) / LAUNCH, json.dumps(asdict(launch)))


def read_launch(folder: Path) -> Launch | None:
    """What the sweeper launched, None where no sweeper said (another sweeper, or none ran)."""
    path = Path(folder) / LAUNCH
    if not path.is_file():
        return None
    saved = json.loads(path.read_text())
    return Launch(saved["launched"], [JobOutcome(**outcome) for outcome in saved["not_launched"]])


def summary(
    outcomes: list[JobOutcome], jobs: list[str] | None = None, not_launched: Sequence[JobOutcome] = ()
) -> tuple[list[str], bool]:
    """The sweep's summary lines, and whether every job finished or was skipped.

    ``jobs``: each launched job's overrides by job number, where known. A job that wrote no
    outcome (killed outright with its worker, its node lost, or never started once the worker
    pool broke) is then named with them; without, it shows only as a gap against the number of
    jobs Hydra listed. ``not_launched``: the jobs the sweeper left out as already ended, counted
    with the others.
    """
    counts: dict[str, int] = {}
    for outcome in [*outcomes, *not_launched]:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    parts = ", ".join(f"{n} {name}" for name, n in sorted(counts.items(), key=lambda item: -item[1]))
    lines = [f"sweep: {len(outcomes) + len(not_launched)} jobs recorded: {parts or 'none'}"]
    unfinished = [o for o in outcomes if o.outcome not in FINISHED]
    lines += [f"  job {o.job} {o.outcome}: {o.run_dir}: {o.message}" for o in unfinished]
    recorded = {o.job for o in outcomes}
    unrecorded = [(n, job) for n, job in enumerate(jobs or []) if n not in recorded]
    missing = [f"  job {n} no outcome (killed, or never started): {job}" for n, job in unrecorded]
    lines += missing
    if missing:
        lines.append("  re-run the same command to finish them (finished runs are skipped, killed ones resume)")
    return lines, not missing and all(o.outcome in NOT_FAILED for o in outcomes)
