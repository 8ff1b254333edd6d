"""The config groups a command's ``--help`` lists, read from its conf directory at each call.

``conf/hydra/help/train.yaml`` and ``conf/toy/hydra/help/toy.yaml`` write ``${cmrepro_groups:train}``
(or ``toy``) where the groups go, and ``${cmrepro_value:${key}}`` for a key's value as one would
type it; Hydra resolves them when it prints the help. The lists are the
files under ``conf/`` as they are, so a config file added there is in the help at once. Importing
this module registers the resolver (``cmrepro.cli`` does, for both commands).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from omegaconf import OmegaConf

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
RESOLVER = "cmrepro_groups"
VALUE_RESOLVER = "cmrepro_value"  # ${cmrepro_value:${trainer.compile}}: false, as one types it
WIDTH = 100

# Each command's conf directory, and the folders in it that are no config group of the command:
# the toy command's own tree, the claims registry the report reads, Hydra's settings (the
# launchers are named in the help's text: joblib is a plugin, with no file here).
COMMANDS: dict[str, tuple[Path, tuple[str, ...]]] = {
    "train": (CONF_DIR, ("toy", "claims", "hydra")),
    "toy": (CONF_DIR / "toy", ("hydra",)),
}


def command_groups(command: str) -> dict[str, list[str]]:
    """Each config group of ``command`` (``train``, ``toy``) and its options: the stems of the
    files in the group's folder, then each subfolder as ``name/`` (options chosen by their path
    under it, ``experiment=table2/best/cifar100_adam_cm``)."""
    conf_dir, not_groups = COMMANDS[command]
    folders = sorted(p.name for p in conf_dir.iterdir() if p.is_dir() and p.name not in not_groups)
    return {group: group_options(conf_dir / group) for group in folders}


def group_options(folder: Path) -> list[str]:
    files = sorted(p.stem for p in folder.glob("*.yaml"))
    subfolders = sorted(f"{p.name}/" for p in folder.iterdir() if p.is_dir() and any(p.rglob("*.yaml")))
    return files + subfolders


def format_groups(command: str) -> str:
    """One entry per group, ``  group  option, option, ...``, wrapped at :data:`WIDTH` columns."""
    groups = command_groups(command)
    indent = max(len(group) for group in groups) + 4
    lines = []
    for group, options in groups.items():
        first = f"  {group}".ljust(indent)
        lines += textwrap.wrap(
            ", ".join(options),
            WIDTH,
            initial_indent=first,
            subsequent_indent=" " * indent,
            break_long_words=False,
            break_on_hyphens=False,
        )
    return "\n".join(lines)


def as_override(value) -> str:
    """A config value as one would type it on the command line (``null``, ``true``, not Python's ``None``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


for _name, _resolver in ((RESOLVER, format_groups), (VALUE_RESOLVER, as_override)):
    if not OmegaConf.has_resolver(_name):
        OmegaConf.register_new_resolver(_name, _resolver)
