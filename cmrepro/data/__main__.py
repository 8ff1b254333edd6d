"""``python -m cmrepro.data prepare|verify <dataset|all>``: fetch and check the datasets.

Each dataset gets one line: its summary, or what went wrong and the command that fixes it; a
failure stops only its own dataset. With several datasets a last line counts the failed ones.
``verify`` tells a dataset not prepared yet (no folder: the line gives the prepare command) from
one that failed (files there but unreadable or short: the reader's message), and ends with a
tally; its ``all`` includes imagenet, which ``prepare all`` leaves out (its archives are copied
by hand).

Exit status: 0 when every dataset named is ready (prepared, or verified); 1 when any is not
(failed, or for verify also not prepared: a script can run ``verify ... && train``); 2 for an
unknown dataset name.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from ..cli import print_traceback_if_asked
from .base import DataError
from .download import LIMITS
from .fetch import FetchError
from .sources import GROUPS, IMAGENET, dataset_names, expand, sources

DEFAULT_DATA_DIR = os.environ.get("CMREPRO_DATA", "data")  # as conf/config.yaml's paths.data_dir


def _at_least(low: float, unit: str):
    """An argparse type: a number of ``unit`` not below ``low``, else one line saying so."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not value >= low:  # also refuses nan
            raise argparse.ArgumentTypeError(f"{text!r} (must be a number of {unit}, at least {low:g})")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cmrepro.data", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    names = ", ".join(dataset_names())
    groups = "; ".join(f"{g} = {' + '.join(parts)}" for g, parts in GROUPS.items())
    prepare = commands.add_parser(
        "prepare",
        help="download, check and unpack datasets",
        description=f"Datasets: {names}; all = every one but imagenet ({groups}). "
        "imagenet needs --from-archive ILSVRC2012_img_train.tar ILSVRC2012_img_val.tar ILSVRC2012_devkit_t12.tar.gz.",
    )
    verify = commands.add_parser(
        "verify",
        help="check what is on disk",
        description=f"Datasets: {names}; all = every one, imagenet included. Each gets a line: ok, not prepared "
        "(with the command that prepares it) or failed (files there but unreadable); then a tally. "
        "Exit status 0 when all named are ready, 1 when any is not prepared or failed, 2 for an unknown name.",
    )
    for command in (prepare, verify):
        command.add_argument("dataset", nargs="+", help=f"one or more of: all, {names}")
        command.add_argument("--data-dir", type=Path, default=Path(DEFAULT_DATA_DIR), help="paths.data_dir")
    prepare.add_argument("--url", help="download from this URL instead (a base URL ending in / for several files)")
    prepare.add_argument(
        "--from-archive", "--from", nargs="+", type=Path, dest="archives", help="archives copied by hand (or folders)"
    )
    prepare.add_argument("--devkit", type=Path, help="imagenet: ILSVRC2012_devkit_t12.tar.gz (or give it in --from)")
    prepare.add_argument("--quiet", action="store_true", help="no progress bars or notes, only the summary lines")
    prepare.add_argument(
        "--min-rate",
        type=_at_least(0.0, "bytes a second"),
        default=LIMITS.min_rate,
        help=f"leave a server slower than this many bytes a second over --rate-window, keeping the bytes "
        f"for a later resume; 0: never (default {LIMITS.min_rate:.0f})",
    )
    prepare.add_argument(
        "--rate-window",
        type=_at_least(1.0, "seconds"),
        default=LIMITS.window_s,
        help=f"seconds over which --min-rate is measured (default {LIMITS.window_s:.0f})",
    )
    return parser


def _prepare(args: argparse.Namespace, name: str, say) -> str:
    data_dir = args.data_dir.resolve()
    if name == IMAGENET:
        from .imagenet_prepare import prepare_imagenet

        archives = [*(args.archives or []), *([args.devkit] if args.devkit else [])]
        return prepare_imagenet(data_dir, archives, quiet=args.quiet, say=say)
    from .prepare import prepare

    limits = replace(LIMITS, min_rate=args.min_rate, window_s=args.rate_window)
    return prepare(name, data_dir, url=args.url, archives=args.archives, quiet=args.quiet, say=say, limits=limits)


def _failure(error: Exception) -> str:
    """One line for a failed dataset. The errors prepare and verify raise say what to do; an
    error of another kind is named by its type, so that it still stops only its own dataset."""
    if isinstance(error, (DataError, FetchError, ValueError, OSError)):
        return " ".join(str(error).splitlines())
    return f"{type(error).__name__}: {' '.join(str(error).splitlines())}"


def _expand(given: str, command: str) -> list[str]:
    """``given`` as dataset names; ``verify all`` also checks imagenet (``prepare all`` cannot make it)."""
    return [*expand(given), IMAGENET] if given == "all" and command == "verify" else expand(given)


def _verify_all(args: argparse.Namespace, names: list[str]) -> int:
    """One line per dataset (ready, not prepared, failed), then a tally when there are several."""
    from .verify import FAILED, READY, Check, check, tally

    data_dir = args.data_dir.resolve()
    option = "" if args.data_dir == Path(DEFAULT_DATA_DIR) else f"--data-dir {data_dir}"
    checks = []
    for name in names:
        try:
            found = check(name, data_dir, sources()[name].counts if name in sources() else None, option)
        except Exception as error:  # a reader's unexpected error stops only its own dataset
            print_traceback_if_asked(error)
            found = Check(name, FAILED, f"verify {name} failed: {_failure(error)}")
        checks.append(found)
        print(found.line, flush=True)
    if len(checks) > 1:
        print(tally(checks, option), flush=True)
    return 0 if all(c.state == READY for c in checks) else 1


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        names = list(dict.fromkeys(n for given in args.dataset for n in _expand(given, args.command)))
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    if args.command == "verify":
        return _verify_all(args, names)
    say = (lambda line: None) if getattr(args, "quiet", False) else (lambda line: print(line, file=sys.stderr))
    failed = []
    for name in names:
        try:
            print(_prepare(args, name, say), flush=True)
        except Exception as error:  # one dataset's failure must not stop the others
            print_traceback_if_asked(error)
            failed.append(name)
            print(f"{args.command} {name} failed: {_failure(error)}", flush=True)
    if failed and len(names) > 1:
        print(f"{args.command}: {len(failed)} of {len(names)} datasets failed ({', '.join(failed)})", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
