"""What became of each job of a sweep (``-m``), for the summary the sweep ends with.

Jobs may run in this process, in joblib's worker processes or on Slurm nodes, so each writes its
outcome to a file of its own in a folder the launching process names in the environment
(:data:`LEDGER_ENV`, inherited by every launcher's jobs); the launching process reads them once
the sweep has returned. Standard library only.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

LEDGER_ENV = "CMREPRO_SWEEP_LEDGER"

# Job outcomes. "skipped": another process was training its run directory.
FINISHED = ("done", "diverged", "already ended")
NOT_FAILED = (*FINISHED, "skipped")


@dataclass(frozen=True)
class JobOutcome:
    job: int
    run_dir: str
    outcome: str  # done | diverged | already ended | skipped | refused | failed | interrupted
    message: str = ""


def start_ledger(output_dir: Path) -> Path:
    """A new ledger folder under ``output_dir`` (shared with the jobs wherever they run), named in the environment."""
    folder = Path(output_dir).absolute() / ".sweeps" / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[LEDGER_ENV] = str(folder)
    return folder


def record_outcome(outcome: JobOutcome) -> None:
    """Write one job's outcome, if this job belongs to a sweep with a ledger."""
    folder = os.environ.get(LEDGER_ENV)
    if folder:
        path = Path(folder) / f"job{outcome.job:05d}.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(outcome)))
        os.replace(temporary, path)


def read_outcomes(folder: Path) -> list[JobOutcome]:
    return [JobOutcome(**json.loads(path.read_text())) for path in sorted(Path(folder).glob("job*.json"))]


def summary(outcomes: list[JobOutcome], jobs: list[str] | None = None) -> tuple[list[str], bool]:
    """The sweep's summary lines, and whether every job finished or was skipped.

    ``jobs``: each job's overrides by job number, where the command line tells them. A job that
    wrote no outcome (killed outright with its worker, its node lost, or never started once the
    worker pool broke) is then named with them; without, it shows only as a gap against the number
    of jobs Hydra listed.
    """
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.outcome] = counts.get(outcome.outcome, 0) + 1
    parts = ", ".join(f"{n} {name}" for name, n in sorted(counts.items(), key=lambda item: -item[1]))
    lines = [f"sweep: {len(outcomes)} jobs recorded: {parts or 'none'}"]
    unfinished = [o for o in outcomes if o.outcome not in FINISHED]
    lines += [f"  job {o.job} {o.outcome}: {o.run_dir}: {o.message}" for o in unfinished]
    recorded = {o.job for o in outcomes}
    missing = [f"  job {n} no outcome (killed, or never started): {job}" for n, job in enumerate(jobs or []) if n not in recorded]
    lines += missing
    if missing:
        lines.append("  re-run the same command to finish them (finished runs are skipped, killed ones resume)")
    return lines, not missing and all(o.outcome in NOT_FAILED for o in outcomes)


def close_ledger(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()  # .sweeps/, once no other sweep is using it
    except OSError:
        pass
