"""The files a run directory holds, and writing and reading them while runs write them.

The contract between the training loop, which writes them (through :class:`RunRecords`, the
one writer of metrics.jsonl and result.json), and the report, which reads them, perhaps while
a sweep is still appending. Standard library only, so the report does not import torch to
read a directory (the checkpoint's own writer, which needs torch.save, is
``cmrepro.training.checkpoint``; its file name is here).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

METRICS = "metrics.jsonl"  # one JSON row per finished epoch (or task), appended
RESULT = "result.json"  # written atomically: running, then done, diverged, failed or interrupted
CHECKPOINT = "checkpoint.pt"  # the state after the last finished epoch, written atomically

# result.json's "status": "running" from the start (a run killed then is still found, with its
# config, by the report), then one of the others.
RUNNING = "running"
DONE = "done"
DIVERGED = "diverged"  # a non-finite loss: ended, not an error
FAILED = "failed"  # an error escaped; re-running resumes from the checkpoint
INTERRUPTED = "interrupted"  # stopped by a signal (Ctrl-C, Slurm's SIGTERM) after checkpointing; re-run to resume
ENDED = (DONE, DIVERGED)  # never trained again: a sweep re-run skips them


class RunFileError(ValueError):
    """A run file that cannot be read; the message is one line naming the file and the remedy."""


def read_jsonl(path: Path) -> list[dict]:
    """The rows of the JSON-lines file ``path`` (none if it does not exist).

    A last line without its newline that is not JSON is a torn append: a run
    killed, or its disk filled, in the middle of writing it, or a reader that
    caught a writer half-way. It is dropped; the epoch it belonged to is
    trained again on resume. Any other line that is not JSON is an error.
    """
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if number == len(lines) and not text.endswith("\n"):
                break
            raise RunFileError(
                f"{path} line {number} is not JSON; delete that line, or the run directory to start over"
            ) from None
    return rows


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` beside ``path`` and rename it into place: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class RunRecords:
    """A run directory's metrics.jsonl (appended per epoch) and result.json, both safe to re-write on resume.

    ``writer=False``: the records as a process that only reads them sees them (the ranks other
    than 0 of a distributed run); its writes do nothing.
    """

    def __init__(self, run_dir: Path, writer: bool = True) -> None:
        self.run_dir = run_dir
        self.metrics_path = run_dir / METRICS
        self.result_path = run_dir / RESULT
        self.writer = writer

    def read_metrics(self) -> list[dict]:
        return read_jsonl(self.metrics_path)

    def keep_epochs(self, epochs_done: int) -> None:
        """Drop rows of epochs after the checkpoint: a killed run may have logged an epoch it did not save."""
        if not self.writer:
            return
        rows = [row for row in self.read_metrics() if row["epoch"] <= epochs_done]
        write_text_atomic(self.metrics_path, "".join(json.dumps(row) + "\n" for row in rows))

    def append_metrics(self, row: dict) -> None:
        if not self.writer:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with self.metrics_path.open("a") as file:
            file.write(json.dumps(row) + "\n")
            file.flush()
            os.fsync(file.fileno())

    def read_result(self) -> dict | None:
        if not self.result_path.exists():
            return None
        try:
            return json.loads(self.result_path.read_text())
        except json.JSONDecodeError:
            return None  # a torn or hand-edited result: the run is simply redone

    def write_result(self, result: dict) -> None:
        if not self.writer:
            return
        write_text_atomic(self.result_path, json.dumps(result, indent=2) + "\n")

    def finished(self) -> bool:
        """Whether the directory holds a run that ended (done or diverged)."""
        previous = self.read_result()
        return previous is not None and previous.get("status") in ENDED
