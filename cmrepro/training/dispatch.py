"""``train(cfg, run_dir)``: run one configured job to completion, resuming it if it was started before.

The one place that decides which loop trains a run (:mod:`.supervised`, or :mod:`.streams` for
the task streams) and the one writer of a failed run's result.json. A run directory holds
``checkpoint.pt`` (written atomically after every epoch), ``metrics.jsonl`` (one row per
finished epoch, or task) and ``result.json``: ``running`` from the start, then ``done``,
``diverged`` or ``failed`` (:mod:`cmrepro.run_files`). Re-running an ended run does nothing;
re-running a killed or failed one continues from its last checkpoint and ends with the metrics
an uninterrupted run would have had.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..data import is_task_stream
from ..run_files import CHECKPOINT, FAILED, RunFileError, RunRecords
from .checks import check_config
from .run_setup import base_result, check_same_run
from .streams import run_stream, stream_summary
from .supervised import run_supervised, summarize_epochs


@dataclass(frozen=True)
class Loop:
    """A training loop: what trains a run, and how its metrics.jsonl rows are summarised."""

    run: Callable[[DictConfig, Path, RunRecords], dict]
    summarize: Callable[[list[dict]], dict]


SUPERVISED = Loop(run_supervised, summarize_epochs)
STREAM = Loop(run_stream, stream_summary)  # online learning (Table 4): tasks one after another


def loop_for(cfg: DictConfig) -> Loop:
    return STREAM if is_task_stream(cfg.dataset.name) else SUPERVISED


def train(cfg: Mapping, run_dir: Path, *, check: bool = False) -> dict:
    """Run (or resume, or skip) the training described by the resolved config ``cfg``; return result.json's content.

    ``check``: first :func:`~.checks.check_config` the config (the entry point does), so that a
    refused config is recorded in result.json like any other failure.
    """
    cfg = OmegaConf.create(OmegaConf.to_container(OmegaConf.create(cfg), resolve=True))
    config = OmegaConf.to_container(cfg)
    records = RunRecords(run_dir)
    loop = loop_for(cfg)
    try:
        if check:
            check_config(config)
        if records.finished():
            return _skip_ended(cfg, run_dir, records)
        result = loop.run(cfg, run_dir, records)
    except Exception as error:
        # Recorded so that a sweep can see what happened; the checkpoint and metrics of finished
        # epochs stay, and re-running resumes from them. An ended run's result is never replaced.
        if not records.finished():
            records.write_result(_failed_result(cfg, config, error, records, loop))
        raise
    _drop_checkpoint_if_asked(cfg, run_dir)
    return result


def _skip_ended(cfg: DictConfig, run_dir: Path, records: RunRecords) -> dict:
    previous = records.read_result()
    # Skipped only if it is this very run; an edited experiment must not hide behind it.
    check_same_run(previous.get("config") or {}, OmegaConf.to_container(cfg), run_dir)
    print(f"cmrepro: {run_dir} is already {previous['status']}; nothing to do", file=sys.stderr)
    _drop_checkpoint_if_asked(cfg, run_dir)  # so a finished sweep re-run with it off frees its disk
    return previous


def _failed_result(cfg: DictConfig, config: dict, error: Exception, records: RunRecords, loop: Loop) -> dict:
    """result.json of a run an error stopped: what every result says, the error, and the epochs done."""
    failed = base_result(cfg, config)
    failed.update(status=FAILED, error=f"{type(error).__name__}: {error}")
    if not isinstance(error, RunFileError):  # else the metrics are what cannot be read
        failed.update(loop.summarize(records.read_metrics()))
    return failed


def _drop_checkpoint_if_asked(cfg: DictConfig, run_dir: Path) -> None:
    """Delete an ended run's checkpoint under ``trainer.keep_checkpoint=false``.

    An ended run is never resumed, so its checkpoint only costs disk: up to
    0.7 GB a run, times the hundreds of runs of a grid cell.
    """
    if not cfg.trainer.keep_checkpoint:
        (run_dir / CHECKPOINT).unlink(missing_ok=True)
