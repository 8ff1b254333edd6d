"""The files a run directory holds, and reading them while runs write them.

Shared by the training loop, which writes them, and the report, which reads
them, perhaps while a sweep is still appending. Standard library only, so the
report does not import torch to read a directory.
"""

from __future__ import annotations

import json
from pathlib import Path

METRICS = "metrics.jsonl"  # one JSON row per finished epoch (or task), appended
RESULT = "result.json"  # written atomically: running, then done, diverged or failed


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
