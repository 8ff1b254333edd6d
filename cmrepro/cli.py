"""What the command-line entry points share: a one-line complaint about an unknown config option,
and a sweep that ends in one line when its launcher's worker pool breaks."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable, Iterable
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from unittest.mock import patch

# Set to 1 for the whole traceback behind a one-line error (the device check sets it): the
# first failure on a machine held for minutes must be diagnosable from its log alone.
TRACEBACK_VARIABLE = "CMREPRO_TRACEBACK"


def print_traceback_if_asked(error: BaseException) -> None:
    """``error``'s full traceback on stderr when CMREPRO_TRACEBACK=1, before its one-line message."""
    if os.environ.get(TRACEBACK_VARIABLE) == "1":
        traceback.print_exception(error, file=sys.stderr)


def unknown_option(argv: list[str], conf_dir: Path, groups: Iterable[str]) -> str | None:
    """The first ``group=option`` in ``argv`` naming no ``conf_dir/group/option.yaml``, as one line; else None.

    Hydra's own message spans several lines; this one lists the valid options on one.
    Flags and sweeps (``a,b``) are left to Hydra.
    """
    groups = set(groups)
    for argument in argv:
        group, sep, option = argument.partition("=")
        group = group.lstrip("+~")
        if argument.startswith("-") or not sep or group not in groups or "," in option:
            continue
        options = sorted(path.stem for path in (conf_dir / group).glob("*.yaml"))
        if option not in options:
            return f"unknown {group} {option!r}; choose one of: {', '.join(options)}"
    return None


def exit_on_unknown_option(program: str, conf_dir: Path, groups: Iterable[str]) -> None:
    """Exit with code 2 and one line when the command line names an unknown option."""
    problem = unknown_option(sys.argv[1:], conf_dir, groups)
    if problem:
        print(f"{program}: {problem}", file=sys.stderr)
        sys.exit(2)


def unwritable_directory(path: Path) -> Path | None:
    """The directory that stops a run from writing under ``path`` (itself or its nearest existing
    parent, if read-only or not ours to write), else None."""
    existing = Path(path).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    return None if os.access(existing, os.W_OK | os.X_OK) else existing


def run_sweep(hydra_main: Callable[[], None]) -> str | None:
    """Run the Hydra multirun ``hydra_main``; None once its launcher has returned, or one line when
    its pool of worker processes broke: a worker died (SIGKILL from the out-of-memory killer, a
    crash), and joblib then ends the whole pool, the jobs running in the other workers with it,
    and starts no more. The sweep's summary then names the jobs left without an outcome.

    Hydra would print the launcher's error as a traceback and exit; HYDRA_FULL_ERROR=1 lets it
    through to here instead (any other error of the sweep, a bug, then shows its whole traceback).
    """
    with patch.dict(os.environ, {"HYDRA_FULL_ERROR": "1"}):  # restored after
        try:
            hydra_main()
        except BrokenProcessPool as error:
            # loky's message: what happened, then the dead workers' exit codes ({SIGKILL(-9)}).
            lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
            codes = [line for line in lines if "exit codes" in line]
            said = " ".join([lines[0].split(". ")[0].rstrip(".") + ".", *codes])
            return f"the sweep stopped: its worker pool broke ({said}); joblib ended the jobs of its other workers"
    return None
