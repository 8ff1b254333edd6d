"""The config keys a run may set: every key some file under ``conf/`` defines, and the few that
only the code reads (with a default). A key outside both is a typo (``+trainer.epoch=5``), which
Hydra would accept with ``+`` and the run would silently ignore; it is refused with the nearest
known key instead.

Keys are collected per path across all options of a group, so a key of any dataset is accepted
for every dataset (the dataset's own settings then check its value); this catches misspellings,
not keys valid elsewhere. A key typed as an option (``--epochs 3``) is refused the same way, with
the override it most likely means (``trainer.epochs=3``).
"""

from __future__ import annotations

import difflib
import sys
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

import yaml

# Groups of conf/ whose files hold no run keys (Hydra's own settings, the toy experiments' tree).
_NOT_RUN_GROUPS = ("hydra", "toy")
# Read by the code with a default, set by no file under conf/.
CODE_ONLY_KEYS = (
    "online.reset_optimizer",
    "dataset.pin_memory",
    "model.implementation",
    "model.dropout",
    "model.tie_weights",
    "optimizer.module",  # where a user's optimizer class is registered (cmrepro/optim/from_config.py)
    # torch.optim's implementation switches, passed to the optimizer class as they are (unset: its
    # default, the for-each step): +optimizer.fused=true runs cmrepro's compiled step.
    "optimizer.fused",
    "optimizer.foreach",
)
PRIMARY_CONFIG = "config.yaml"
# Keys whose value is a mapping of free-form entries (e.g. dataset.stand_in: {train: 4, ...}).
OPEN_KEYS = ("dataset.stand_in", "dataset.roots")


def _leaf_keys(node, prefix: str) -> Iterator[str]:
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            if key == "defaults":
                continue
            yield from _leaf_keys(value, f"{prefix}{key}.")
    elif prefix:
        yield prefix.rstrip(".")


def _package(path: Path, conf_dir: Path) -> str:
    """The key prefix a config file's content lands under: its group, unless it says ``_global_``."""
    first_lines = path.read_text().splitlines()[:3]
    if any(line.strip().startswith("# @package _global_") for line in first_lines):
        return ""
    group = path.parent.relative_to(conf_dir).parts
    return ".".join(group) + "." if group else ""


@cache
def known_keys(conf_dir: Path, code_keys: tuple[str, ...] = CODE_ONLY_KEYS) -> frozenset[str]:
    """Every dotted key (leaves, and the paths to them) that some file under ``conf_dir`` or the
    code (``code_keys``) sets. Of the files directly in ``conf_dir``, only the primary config
    (``config.yaml``) is part of a run's config (``conf/toy/claims.yaml`` is read by other code)."""
    keys: set[str] = set(code_keys)
    for path in conf_dir.rglob("*.yaml"):
        parts = path.relative_to(conf_dir).parts
        if parts[0] in _NOT_RUN_GROUPS or (len(parts) == 1 and path.name != PRIMARY_CONFIG):
            continue
        try:
            content = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError:  # no keys from it; a command that uses it is refused when Hydra composes it
            continue
        keys.update(_leaf_keys(content, _package(path, conf_dir)))
    return frozenset(keys | {k.rsplit(".", i)[0] for k in keys for i in range(1, k.count(".") + 1)})


def unknown_keys(config: Mapping, conf_dir: Path) -> list[str]:
    """The dotted keys of the composed ``config`` that no file and no code knows."""
    known = known_keys(conf_dir)

    def walk(node, prefix: str) -> Iterator[str]:
        for key, value in node.items():
            path = f"{prefix}{key}"
            if path in OPEN_KEYS:
                continue
            if path not in known:
                yield path
            elif isinstance(value, Mapping):
                yield from walk(value, path + ".")

    return list(walk(config, ""))


def suggested_keys(key: str, conf_dir: Path, code_keys: tuple[str, ...] = CODE_ONLY_KEYS) -> list[str]:
    """The known keys ``key`` most likely means: itself if known; else every key whose last part
    is ``key``'s (``epochs`` -> ``trainer.epochs``; ``-`` read as ``_``); else the nearest
    spelling among its siblings (or all keys); else none. Hydra's own settings are never offered."""
    known = known_keys(conf_dir, code_keys)
    key = key.replace("-", "_")
    if key in known:
        return [key]
    offered = sorted((k for k in known if not k.startswith("hydra")), key=lambda k: (k.count("."), k))
    last = key.rpartition(".")[2]
    same_last = [k for k in offered if k.rpartition(".")[2] == last]
    if same_last:
        return same_last
    parent = key.rpartition(".")[0]
    siblings = [k for k in offered if k.rpartition(".")[0] == parent]
    return difflib.get_close_matches(key, siblings or offered, n=1, cutoff=0.5)


def unknown_key_message(key: str, conf_dir: Path) -> str:
    """One line: the unknown ``key``, and the known ones it most likely means."""
    nearest = suggested_keys(key, conf_dir)
    hint = f"did you mean {' or '.join(nearest)}?" if nearest else "no config file or code reads it"
    return f"unknown config key {key!r} ({hint}); remove it from the command line"


# Hydra's own command-line flags (its parser: hydra/_internal/utils.py's get_args_parser; tests/test_help.py
# keeps the two equal): anything else that starts with "-" is a config key typed as an option.
HYDRA_FLAGS = frozenset(
    ("--cfg", "--config-dir", "--config-name", "--config-path", "--experimental-rerun", "--help", "--hydra-help")
    + ("--info", "--multirun", "--package", "--resolve", "--run", "--shell-completion", "--version")
    + ("-c", "-cd", "-cn", "-cp", "-h", "-i", "-m", "-p", "-r", "-sc")
)


def option_instead_of_override(
    argv: list[str], conf_dir: Path, code_keys: tuple[str, ...] = CODE_ONLY_KEYS
) -> str | None:
    """One line for the first ``--key value`` (or ``--key=value``) in ``argv`` that is none of
    Hydra's flags, naming the ``key=value`` override it most likely means; else None.

    Hydra would read ``--epochs 3`` as the override ``3`` and fail in its parser's terms."""
    for position, argument in enumerate(argv):
        flag, has_value, value = argument.partition("=")
        if not flag.startswith("-") or flag in HYDRA_FLAGS or _is_number(flag):
            continue
        following = argv[position + 1] if position + 1 < len(argv) else ""
        if not has_value and following and not following.startswith("-") and "=" not in following:
            value = following
        keys = suggested_keys(flag.lstrip("-"), conf_dir, code_keys)
        said = "this command takes key=value overrides, not --options"
        if not keys:
            return f"{said} ({flag} is none of its config keys or Hydra's flags); see --help"
        overrides = [f"{key}={value or '<value>'}" for key in keys]
        return f"{said}; did you mean {' or '.join(overrides)}?"
    return None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def exit_on_option_instead_of_override(
    program: str, conf_dir: Path, code_keys: tuple[str, ...] = CODE_ONLY_KEYS
) -> None:
    """Exit with code 2 and :func:`option_instead_of_override`'s line, if the command line has one.
    ``code_keys``: the keys only the command's code reads (none for the toy command)."""
    problem = option_instead_of_override(sys.argv[1:], conf_dir, code_keys)
    if problem:
        print(f"{program}: {problem}", file=sys.stderr)
        sys.exit(2)


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a config file that is not valid YAML: the file, the line, what is wrong, the fix."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return f"a config file is not valid YAML ({error}); fix it"
    problem = ": ".join(part for part in (getattr(error, "context", None), getattr(error, "problem", None)) if part)
    return f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML ({problem}); fix the file"
