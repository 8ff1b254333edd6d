"""What a training command will launch, known before it launches anything: each job of a sweep
(``python -m cmrepro.train -m ...``) composed as Hydra will compose it, with the run directory
Hydra will give it, the data it reads and the state of that directory.

Two questions are asked of it before any job starts (and before anything is created on disk):

- is the data there? (:func:`missing_data_lines`): one line per missing dataset, however many
  jobs need it, so that a table without its data launches nothing instead of failing each job;
- which runs already ended? (:func:`ended_runs`): a finished run is not launched again only to
  say so (``cmrepro.sweeper`` drops them from the sweep; a command whose runs all ended launches
  nothing).

Each job is composed with Hydra's compose API (the config the launcher will build, and the
``hydra`` node with the job's ``override_dirname``), and its directory is Hydra's
``hydra.sweep.dir``/``hydra.sweep.subdir`` resolved the way Hydra's ``run_job`` resolves it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf, open_dict

from .command_checks import composer, hydra_overrides, job_overrides, parse_overrides, prints_only, sweep_params
from .data.presence import missing_data
from .run_files import CHECKPOINT, ENDED, RunRecords


class MissingData(Exception):
    """Data that jobs of a command need is not there: one line per dataset (:attr:`lines`)."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("; ".join(lines))
        self.lines = lines


@dataclass(frozen=True)
class PlannedJob:
    """One job of a command: its overrides (as its launcher gets them), where it runs, the
    resolved config it will train (None where it cannot be resolved: the job reports that)."""

    overrides: tuple[str, ...]
    run_dir: Path
    config: Mapping | None

    @property
    def dataset(self) -> Mapping:
        return (self.config or {}).get("dataset") or {}


def run_directory(cfg: DictConfig, sweep: bool) -> Path:
    """The run directory of the composed job ``cfg`` (with its ``hydra`` node), as Hydra's
    ``run_job`` makes it: ``hydra.sweep.dir/hydra.sweep.subdir`` in a sweep, ``hydra.run.dir``
    otherwise; both may read the job's Hydra settings (``${hydra:job.override_dirname}``)."""
    from hydra.core.hydra_config import HydraConfig

    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        if sweep:
            return Path(str(cfg.hydra.sweep.dir), str(cfg.hydra.sweep.subdir)).absolute()
        return Path(str(cfg.hydra.run.dir)).absolute()
    finally:
        HydraConfig.instance().cfg = previous


def job_config(cfg: DictConfig) -> Mapping | None:
    """The resolved config the job trains (its ``hydra`` node left out), None if a value cannot
    be resolved; call it with Hydra's settings of the job set (:func:`run_directory` does)."""
    from hydra.core.hydra_config import HydraConfig

    previous = HydraConfig.instance().cfg
    HydraConfig.instance().set_config(cfg)
    try:
        task = OmegaConf.masked_copy(cfg, [key for key in cfg if key != "hydra"])
        return OmegaConf.to_container(task, resolve=True)
    except Exception:  # an unset ${oc.env:...}, a bad interpolation: the run itself says which
        return None
    finally:
        HydraConfig.instance().cfg = previous


def planned_jobs(argv: Sequence[str], conf_dir: Path) -> list[PlannedJob] | None:
    """Every job of the training command ``argv`` (a sweep with ``-m``/``--multirun``, else the one
    run), composed; None where flags leave the command to Hydra or run no job (``--help``,
    ``--cfg job``). CommandLineError (one line) where a job does not compose."""
    argv = list(argv)
    parsed = parse_overrides(argv)
    if parsed is None or prints_only(argv):
        return None
    hydra = hydra_overrides(argv)
    sweep = bool({"-m", "--multirun"} & set(argv))
    lines = [override.input_line for override in parsed]
    planned = []
    with composer(conf_dir) as compose:
        jobs = job_overrides(sweep_params(argv, conf_dir, compose), lines) if sweep else [lines]
        for number, overrides in enumerate(jobs):
            cfg = compose([*hydra, *overrides], True)
            with open_dict(cfg):
                cfg.hydra.job.num = cfg.hydra.job.id = number  # as the launcher numbers it
            planned.append(PlannedJob(tuple(overrides), run_directory(cfg, sweep), job_config(cfg)))
    return planned


# ---------------------------------------------------------------- the data


def missing_data_lines(jobs: Sequence[PlannedJob]) -> list[str]:
    """One line per dataset (in a folder) that some of ``jobs`` need and that is not there, each
    checked once (:func:`cmrepro.data.presence.missing_data`)."""
    return missing_data([job.dataset for job in jobs])


# ---------------------------------------------------------------- runs that ended


def ended_status(job: PlannedJob) -> str | None:
    """``done`` or ``diverged`` if the job's directory holds this very run, ended, with nothing
    left to do; else None: the job is launched (to resume it, to run it, or to refuse it with
    its own line where the directory holds a run of another config). An ended run whose
    checkpoint the job asks to drop (``trainer.keep_checkpoint=false``) is launched too: the run
    drops it."""
    from .training.checks import ConfigError
    from .training.run_setup import check_same_run

    previous = RunRecords(job.run_dir, writer=False).read_result()
    if previous is None or previous.get("status") not in ENDED or job.config is None:
        return None
    try:
        check_same_run(previous.get("config") or {}, dict(job.config), job.run_dir)
    except ConfigError:
        return None
    keep = (job.config.get("trainer") or {}).get("keep_checkpoint", True)
    if not keep and (job.run_dir / CHECKPOINT).exists():
        return None
    return previous["status"]


def ended_runs(jobs: Sequence[PlannedJob]) -> dict[int, str]:
    """The jobs (by position) whose runs ended, with their status (:func:`ended_status`)."""
    statuses = {number: ended_status(job) for number, job in enumerate(jobs)}
    return {number: status for number, status in statuses.items() if status is not None}


def ended_line(ended: Mapping[int, str], total: int) -> str:
    """``96 of 100 runs already ended (done 94, diverged 2); launching 4``."""
    counts = Counter(ended.values())
    each = ", ".join(f"{status} {counts[status]}" for status in ENDED if counts[status])
    left = total - len(ended)
    return f"{len(ended)} of {total} runs already ended ({each}); launching {left or 'none'}"
