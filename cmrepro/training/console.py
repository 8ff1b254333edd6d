"""What a training run tells the person at the terminal: a start line (two), one short line per
epoch, an end summary, and a notice before the fused optimizer step compiles.

Every line goes to stderr with one prefix (:data:`PREFIX`), and is written to the run's log
(``train.log`` under Hydra, through the ``cmrepro.train`` logger, with timestamps;
conf/hydra/job_logging/cmrepro.yaml) together with each epoch's full row: the terminal shows what
a person reads at 100 columns, the log and ``metrics.jsonl`` keep everything. In a distributed
run the callers speak on rank 0 only.

The formatting functions return strings (tested on their own); :func:`say` is the one writer.
"""

from __future__ import annotations

import logging
import math
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from ..optim import fused
from ..run_files import CHECKPOINT, METRICS

# The one prefix of everything ``python -m cmrepro.train`` prints, errors included (cmrepro/train.py).
PREFIX = "cmrepro.train: "
# The terminal width the lines are written for (a line holding a long path may exceed it).
WIDTH = 100
# The log of a run: Hydra's job logging sends this logger to train.log alone (the terminal gets
# the lines from say(), printed); outside Hydra it has no handler and records nothing.
RECORD = logging.getLogger("cmrepro.train")
# Said once per run, before the first fused step compiles (20 s to a minute of silence on a CPU).
COMPILE_NOTICE = "compiling the fused optimizer step (once per run; up to a minute)..."


# Whether this process runs one job of a sweep (``-m``). A single run prints every line; a sweep's
# job prints its end alone, as one line naming its run directory, and its errors: two workers
# running a table's 100 jobs would otherwise interleave 700 lines. train.log keeps every line.
_in_sweep = False


def speak_as_sweep_job(in_sweep: bool) -> None:
    """Set by cmrepro/train.py for each job, from Hydra's run mode."""
    global _in_sweep
    _in_sweep = in_sweep


def say(line: str, record: str | None = None, *, detail: bool = False) -> None:
    """Print ``line`` with the prefix on stderr (a ``detail`` line only outside a sweep), and log
    ``record`` (``line`` when None) to train.log."""
    if not (detail and _in_sweep):
        # One write of the whole line: the jobs of a sweep share the terminal, and print()'s
        # separate write of the newline lets another process's line in between.
        sys.stderr.write(f"{PREFIX}{line}\n")
        sys.stderr.flush()
    RECORD.info(record if record is not None else line)


def shown_path(path: Path) -> str:
    """``path`` as a person types it here: relative to the working directory when under it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------- the start


def start_line(run_dir: Path, device: str, resuming: bool, processes: int = 1) -> str:
    """The first line, before the data is loaded and the model built: where, on what, and
    whether a checkpoint is there to resume from."""
    where = f"{device} ({processes} processes)" if processes > 1 else device
    if resuming:
        return f"resuming {shown_path(run_dir)} on {where} from its checkpoint"
    return f"starting {shown_path(run_dir)} on {where}"


def setup_line(
    model: Mapping,
    parameters: int,
    optimizer: Mapping,
    epochs: int,
    steps: int | None,
    tasks: int | None = None,
) -> str:
    """The second line, once the model is built: the model and its size, the optimizer, and how
    long the run is (``tasks`` for a task stream, ``epochs`` per task)."""
    width = model.get("width")
    name = model.get("name", "model") + (f" x{width:g}" if isinstance(width, int | float) and width != 1 else "")
    length = plural(epochs, "epoch") + (f" x {plural(steps, 'step')}" if steps else "")
    if tasks:
        length = f"{plural(tasks, 'task')} x {length}"
    lr = optimizer.get("lr")
    opt = optimizer.get("name", "optimizer")
    with_lr = f"{opt} lr {lr:g}" if isinstance(lr, int | float) else opt
    return first_fitting(f"{name} ({count(parameters)} parameters); {o}; {length}" for o in (with_lr, opt))


def resume_line(after_epoch: int, at_step: int = 0) -> str:
    """A third line when the run resumes, once its checkpoint is loaded: ``after_epoch`` epochs
    done, and ``at_step`` steps of the next when a signal stopped it there."""
    if at_step:
        return f"resuming at step {at_step} of epoch {after_epoch + 1}"
    return f"resuming after epoch {after_epoch}"


def first_fitting(lines: Iterable[str]) -> str:
    """The first of ``lines`` (the fullest first) that fits :data:`WIDTH` with the prefix, else the last."""
    line = ""
    for line in lines:
        if len(PREFIX) + len(line) <= WIDTH:
            break
    return line


def plural(number: int, noun: str) -> str:
    return f"{number} {noun}" + ("" if number == 1 else "s")


def count(number: int) -> str:
    """A parameter count as a person reads it: 182.6k, 11.17M."""
    if number < 1000:
        return str(number)
    if number < 1_000_000:
        return f"{number / 1e3:.1f}k"
    return f"{number / 1e6:.2f}M"


# ---------------------------------------------------------------- the epochs


def epoch_summary(row: Mapping, total_epochs: int, monitor: str, tasks: int | None = None) -> str:
    """One metrics.jsonl row as a line of at most :data:`WIDTH` columns with the prefix: the
    epoch (and task), the training loss, the monitored metric (and its best so far, when this
    epoch's is not the best and the line has room), the learning rate and the epoch's seconds.
    The full row is in train.log and metrics.jsonl."""
    where = f"epoch {row['epoch']}/{total_epochs}"
    if tasks and "task" in row:
        where = f"task {row['task']}/{tasks}  {where}"
    head = [where]
    if isinstance(row.get("train_loss"), int | float):
        head.append(f"train_loss {number(row['train_loss'], 4)}")
    tail = []
    if isinstance(row.get("lr"), int | float):
        tail.append(f"lr {row['lr']:.3g}")
    seconds = row.get("epoch_time_s", row.get("task_time_s"))
    if isinstance(seconds, int | float):
        tail.append(duration(seconds))
    value, best = row.get(monitor), row.get(f"best_{monitor}")
    if not isinstance(value, int | float):
        return "  ".join(head + tail)
    metric = f"{monitor} {number(value, 2)}"
    with_best = f"{metric} (best {number(best, 2)})" if isinstance(best, int | float) and best != value else metric
    return first_fitting("  ".join([*head, shown, *tail]) for shown in (with_best, metric))


def number(value: float, decimals: int) -> str:
    """``value`` with ``decimals`` decimals; very large or small values in scientific form."""
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 10**-decimals):
        return f"{value:.3g}"
    return f"{value:.{decimals}f}"


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: 9.4s, 2 min 05 s, 3 h 20 min."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


# ---------------------------------------------------------------- the end


def end_lines(result: Mapping, run_dir: Path, checkpoint: bool, keep_checkpoint: bool) -> list[str]:
    """The end summary of a run that ended (``result``: its result.json): its status, best metric
    and epoch, training time; then where its checkpoint is, its size and how to delete it, or
    that none is kept (``checkpoint``, ``keep_checkpoint``: the trainer's settings)."""
    lines = [status_line(result)]
    path = Path(run_dir) / CHECKPOINT
    if not checkpoint:
        lines.append(f"no checkpoint (trainer.checkpoint=false); metrics: {shown_path(Path(run_dir) / METRICS)}")
    elif not keep_checkpoint:
        lines.append(f"checkpoint removed (trainer.keep_checkpoint=false); metrics in {shown_path(run_dir)}")
    elif path.exists():
        lines.append(f"checkpoint {shown_path(path)} ({size(path)}) kept; the run has ended")
        lines.append(f"to free it: rm {shown_path(path)}")
    return lines


def status_line(result: Mapping) -> str:
    """``done: best val_accuracy 90.62 at epoch 4 of 4; trained in 41.3s``."""
    status = result.get("status", "?")
    best, monitor = result.get("best"), result.get("monitor")
    epochs = result.get("epochs_completed", 0)
    if not best or monitor not in best:
        what = f"no epoch finished ({epochs} completed)"
    elif "epoch" in best:
        what = f"best {monitor} {number(best[monitor], 2)} at epoch {best['epoch']} of {epochs}"
    else:  # a task stream's monitor is a measure of the whole run
        what = f"{monitor} {number(best[monitor], 2)} after {epochs} epochs"
    trained = result.get("wall_time_s")
    took = f"; trained in {duration(trained)}" if isinstance(trained, int | float) else ""
    return f"{status}: {what}{took}"


def stopped_lines(run_dir: Path) -> list[str]:
    """After a signal stopped the run: the checkpoint it resumes from (cmrepro/train.py's line that
    follows says the same command resumes it), and how to start over instead."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        return [f"no checkpoint yet: the same command starts over; rm -r {shown_path(run_dir)} to drop the run"]
    return [f"checkpoint {shown_path(path)} ({size(path)})", f"to start over instead: rm -r {shown_path(run_dir)}"]


def size(path: Path) -> str:
    """The size of the file ``path``: 2.9 MiB, 731 MiB, 1.2 GiB."""
    mib = os.path.getsize(path) / 2**20
    if mib >= 1024:
        return f"{mib / 1024:.1f} GiB"
    return f"{mib:.1f} MiB" if mib < 100 else f"{mib:.0f} MiB"


def say_ended(result: Mapping, run_dir: Path, trainer: Mapping) -> None:
    """Say :func:`end_lines` of ``result`` (a run ended ``done`` or ``diverged``); in a sweep, its
    status line alone reaches the terminal, after the run directory it is of."""
    checkpoint, keep = bool(trainer.get("checkpoint", True)), bool(trainer.get("keep_checkpoint", True))
    status, *rest = end_lines(result, run_dir, checkpoint, keep)
    say(f"{shown_path(run_dir)}: {status}" if _in_sweep else status, record=status)
    for line in rest:
        say(line, detail=True)


def say_stopped(run_dir: Path) -> None:
    for line in stopped_lines(run_dir):
        say(line)


# ---------------------------------------------------------------- the fused step's compilation


@contextmanager
def compile_notice(enabled: bool = True) -> Iterator[None]:
    """While inside: say :data:`COMPILE_NOTICE` once, before the first fused optimizer step of
    the run compiles (``enabled``: this process speaks)."""
    said: list[str] = []

    def notice(_variant: str) -> None:
        if not said:
            said.append(_variant)
            say(COMPILE_NOTICE, detail=True)

    remove: Callable[[], None] = fused.on_compile(notice) if enabled else (lambda: None)
    try:
        yield
    finally:
        remove()
