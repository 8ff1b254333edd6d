"""The config keys a run may set: every key some file under ``conf/`` defines, and the few that
only the code reads (with a default). A key outside both is a typo (``+trainer.epoch=5``), which
Hydra would accept with ``+`` and the run would silently ignore; it is refused with the nearest
known key instead.

Keys are collected per path across all options of a group, so a key of any dataset is accepted
for every dataset (the dataset's own settings then check its value); this catches misspellings,
not keys valid elsewhere.
"""

from __future__ import annotations

import difflib
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
)
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
def known_keys(conf_dir: Path) -> frozenset[str]:
    """Every dotted key (leaves, and the paths to them) that some file under ``conf_dir`` or the code sets."""
    keys: set[str] = set(CODE_ONLY_KEYS)
    for path in conf_dir.rglob("*.yaml"):
        if path.relative_to(conf_dir).parts[0] in _NOT_RUN_GROUPS:
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


def unknown_key_message(key: str, conf_dir: Path) -> str:
    """One line: the unknown ``key``, and the nearest known one."""
    parent = key.rpartition(".")[0]
    siblings = [k for k in known_keys(conf_dir) if k.rpartition(".")[0] == parent]
    nearest = difflib.get_close_matches(key, siblings or known_keys(conf_dir), n=1, cutoff=0.5)
    hint = f"did you mean {nearest[0]}?" if nearest else "no config file or code reads it"
    return f"unknown config key {key!r} ({hint}); remove it from the command line"


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line for a config file that is not valid YAML: the file, the line, what is wrong, the fix."""
    mark = getattr(error, "problem_mark", None)
    if mark is None:
        return f"a config file is not valid YAML ({error}); fix it"
    problem = ": ".join(part for part in (getattr(error, "context", None), getattr(error, "problem", None)) if part)
    return f"{mark.name}, line {mark.line + 1}, column {mark.column + 1}: not valid YAML ({problem}); fix the file"
