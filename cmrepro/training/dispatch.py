"""``train(cfg, run_dir)``: run one configured job to completion, resuming it if it was started before.

The one place that decides which loop trains a run (:mod:`.supervised`, or :mod:`.streams` for
the task streams) and the one writer of a failed run's result.json. A run directory holds
``checkpoint.pt`` (written atomically after every epoch), ``metrics.jsonl`` (one row per
finished epoch, or task) and ``result.json``: ``running`` from the start, then ``done``,
``diverged``, ``failed`` or ``interrupted`` (:mod:`cmrepro.run_files`). Re-running an ended run
does nothing; re-running a killed, failed or interrupted one continues from its last checkpoint
and ends with the metrics an uninterrupted run would have had. One process at a time trains a
run directory (:mod:`cmrepro.run_lock`); a signal stops the run cleanly (:mod:`.interrupts`).

Taking the lock, a process first removes the temporaries a killed writer left. A run that stops
before it starts (its data missing, its batch not splitting across the processes) leaves no run
directory behind, only the one line of its error: nothing of a run was made to keep.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..data import is_task_stream
from ..data.bad_files import RECORD_FILE
from ..run_files import (
    CHECKPOINT,
    FAILED,
    INTERRUPTED,
    RunFileError,
    RunRecords,
    remove_if_unstarted,
    remove_temporaries,
)
from ..run_lock import LOCK, RunLock
from .checks import ConfigError, check_config
from .distributed import DistEnv, shutdown_distributed
from .interrupts import Interrupted, StopRequest, stop_on_signals
from .run_setup import base_result, check_same_run
from .streams import run_stream, stream_summary
from .supervised import run_supervised, summarize_epochs


@dataclass(frozen=True)
class Loop:
    """A training loop: what trains a run, and how its metrics.jsonl rows are summarised."""

    run: Callable[[DictConfig, Path, RunRecords, StopRequest, DistEnv], dict]
    summarize: Callable[[list[dict]], dict]


SUPERVISED = Loop(run_supervised, summarize_epochs)
STREAM = Loop(run_stream, stream_summary)  # online learning (Table 4): tasks one after another
# What a run directory may hold before its run starts: the launcher's log (Hydra's train.log, and
# its .hydra/ where a command asks Hydra to write it there), the lock, the data's skipped files.
BEFORE_START = (".hydra", "train.log", LOCK, RECORD_FILE)


def loop_for(cfg: DictConfig) -> Loop:
    return STREAM if is_task_stream(cfg.dataset.name) else SUPERVISED


def train(
    cfg: Mapping,
    run_dir: Path,
    *,
    check: bool = False,
    env: DistEnv | None = None,
    launch_record: Mapping[str, str] | None = None,
) -> dict:
    """Run (or resume, or skip) the training described by the resolved config ``cfg``; return result.json's content.

    ``check``: first :func:`~.checks.check_config` the config (the entry point checks it before
    the run directory exists, so that a refused config leaves nothing behind).
    Raises :class:`~cmrepro.run_lock.RunLocked` at once if another process trains ``run_dir``,
    and :class:`~.interrupts.Interrupted` after checkpointing when a signal stopped the run.

    Under torchrun (or Slurm with several tasks) this process is one rank of a distributed run
    (:mod:`.distributed`): every rank trains, rank 0 alone locks the directory and writes its files.
    ``env``: this process's place, when the caller has read it already (:func:`process_env`).
    ``launch_record``: files describing the launch (Hydra's ``.hydra/``), written into ``run_dir``
    only once the run starts (:class:`~cmrepro.run_files.RunRecords`): a refused command changes nothing.
    """
    cfg = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(cfg), resolve=True))
    config = OmegaConf.to_container(cfg)
    if check:
        check_config(config)
    env = env or process_env()
    records = RunRecords(run_dir, writer=env.is_main, launch_record=launch_record)
    loop = loop_for(cfg)
    with RunLock(run_dir) if env.is_main else nullcontext(), stop_on_signals() as stop:
        try:
            if env.is_main:
                remove_temporaries(run_dir)
            if records.finished():
                return _skip_ended(cfg, run_dir, records)
            result = loop.run(cfg, run_dir, records, stop, env)
        except (Exception, KeyboardInterrupt) as error:
            if env.is_main:
                _record_unfinished(cfg, config, error, records, loop)
            raise
        finally:
            if stop.requested:
                stop.hand_over()  # to submitit's requeue, after the checkpoint is on disk
            shutdown_distributed()
    if env.is_main:
        _drop_checkpoint_if_asked(cfg, run_dir)
    return result


def process_env() -> DistEnv:
    """This process's place in a distributed run (one process without torchrun's or Slurm's
    variables); a ConfigError of one line where those variables are inconsistent."""
    try:
        return DistEnv.from_environ()
    except ValueError as error:
        raise ConfigError(str(error)) from None


def _skip_ended(cfg: DictConfig, run_dir: Path, records: RunRecords) -> dict:
    previous = records.read_result()
    # Skipped only if it is this very run; an edited experiment must not hide behind it.
    check_same_run(previous.get("config") or {}, OmegaConf.to_container(cfg), run_dir)
    print(f"cmrepro.train: {run_dir} is already {previous['status']}; nothing to do", file=sys.stderr)
    _drop_checkpoint_if_asked(cfg, run_dir)  # so a finished sweep re-run with it off frees its disk
    return {**previous, "skipped": True}  # "skipped" only in what is returned, for the sweep's summary


def _record_unfinished(cfg: DictConfig, config: dict, error: BaseException, records: RunRecords, loop: Loop) -> None:
    """After ``error`` (or a signal), in the process holding the lock: record the unfinished
    result (:func:`_unfinished_result`; so that a sweep and the report see what happened; the checkpoint and metrics of
    finished epochs stay, and re-running resumes from them) of the run this process started, or,
    for an error before it started, of the run the directory already held (unless its record is of
    another config). Nothing else changes a directory: an ended run's record, a refused command (a
    ConfigError: another run's directory, other data). The directory of a run that never started
    is deleted."""
    if records.finished():
        return
    if not records.started_here():
        if not records.hold_a_run():
            remove_if_unstarted(records.run_dir, BEFORE_START)
            return
        previous = records.read_result()
        if isinstance(error, ConfigError) or (previous is not None and not _same_run(previous.get("config"), config)):
            return
    try:
        records.write_result(_unfinished_result(cfg, config, error, records, loop))
    except RunFileError:
        # The disk that stopped the run refuses this too: result.json keeps the progress of the
        # last finished epoch, and readers, finding no process holding the run, call it stopped.
        pass


def _same_run(saved: dict | None, current: dict) -> bool:
    try:
        check_same_run(saved or {}, current, Path())
    except ConfigError:
        return False
    return True


def _unfinished_result(cfg: DictConfig, config: dict, error: BaseException, records: RunRecords, loop: Loop) -> dict:
    """result.json of a run an error or a signal stopped: what every result says, why it stopped,
    and the epochs done."""
    result = base_result(cfg, config)
    if isinstance(error, Interrupted):
        result.update(status=INTERRUPTED, error=str(error))
    elif isinstance(error, KeyboardInterrupt):  # a second Ctrl-C: no checkpoint of the epoch under way
        result.update(
            status=INTERRUPTED, error="stopped at once by a second Ctrl-C; a re-run resumes from the last checkpoint"
        )
    else:
        result.update(status=FAILED, error=f"{type(error).__name__}: {error}")
    try:
        result.update(loop.summarize(records.read_metrics()))
    except RunFileError:  # the metrics are what cannot be read
        pass
    return result


def _drop_checkpoint_if_asked(cfg: DictConfig, run_dir: Path) -> None:
    """Delete an ended run's checkpoint under ``trainer.keep_checkpoint=false``.

    An ended run is never resumed, so its checkpoint only costs disk: up to
    0.7 GB a run, times the hundreds of runs of a grid cell.
    """
    if not cfg.trainer.keep_checkpoint:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
