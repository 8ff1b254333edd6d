"""Whether the suite is installed: one line naming the extra when a command runs without it.

``pip install cmrepro`` installs the optimizers alone (torch is their only dependency); the
commands (train, toy, data, report, reproduce) need ``pip install 'cmrepro[suite]'``. Each command
calls :func:`require_suite` before its first third-party import, so a missing package ends in one
line that says what to install instead of a traceback from deep inside an import.

Standard library only: this runs before anything that could be missing. Packages are looked up
with ``importlib.util.find_spec``, which finds a module without running it.
"""

from __future__ import annotations

import importlib.util
import sys

EXTRA = "suite"

# The [suite] extra of pyproject.toml: distribution -> the module the code imports from it.
# tests/test_install_extras.py keeps the two lists equal.
SUITE_MODULES = {
    "torchvision": "torchvision",
    "hydra-core": "hydra",
    "hydra-joblib-launcher": "hydra_plugins.hydra_joblib_launcher",
    "omegaconf": "omegaconf",
    "pyyaml": "yaml",
    "numpy": "numpy",
    "pillow": "PIL",
    "pandas": "pandas",
    "matplotlib": "matplotlib",
    "scipy": "scipy",
    "timm": "timm",
    "efficientnet-pytorch": "efficientnet_pytorch",
    "tqdm": "tqdm",
    "wandb": "wandb",
}


def _installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a dotted name whose parent is missing, or a broken parent
        return False


def missing_suite_packages() -> list[str]:
    """The suite's distributions (pip's names) whose module cannot be imported here, in the order of SUITE_MODULES."""
    return [package for package, module in SUITE_MODULES.items() if not _installed(module)]


def suite_missing_line(command: str, missing: list[str], *, named: int = 3) -> str:
    """The one line a command prints when the suite's ``missing`` packages are not installed.

    The first ``named`` are named: without the suite, all fourteen are missing, and the fix is
    the same.
    """
    listed = ", ".join(missing[:named]) + (f" and {len(missing) - named} more" if len(missing) > named else "")
    return f"{command}: this command needs the suite: pip install 'cmrepro[{EXTRA}]' (missing: {listed})"


def require_suite(command: str) -> None:
    """Exit with status 2 and one line on stderr when any of the suite's packages is missing."""
    missing = missing_suite_packages()
    if missing:
        print(suite_missing_line(command, missing), file=sys.stderr)
        sys.exit(2)


def running_as_command(package: str) -> bool:
    """Whether this process is ``python -m <package>`` (or one of its modules).

    ``python -m pkg`` imports ``pkg/__init__.py`` before ``pkg/__main__.py``; a package whose
    ``__init__`` imports a suite package checks there, but only for its command: a library
    import keeps the usual ImportError.
    """
    argv = list(getattr(sys, "orig_argv", []))[1:]
    while argv:
        argument = argv.pop(0)
        if argument in ("-W", "-X"):  # the interpreter's options that take a value
            argv = argv[1:]
        elif argument == "-m" or (argument.startswith("-m") and len(argument) > 2):
            module = argument[2:] or (argv[0] if argv else "")
            return module == package or module.startswith(package + ".")
        elif argument == "-c" or not argument.startswith("-") or argument == "-":
            return False  # a command string, a script or stdin: no module runs as __main__
    return False


def require_suite_when_run(package: str) -> None:
    """:func:`require_suite` when this process runs ``package`` as a command; nothing otherwise."""
    if running_as_command(package):
        require_suite(package)
