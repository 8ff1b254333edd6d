"""Checking a training command line before Hydra runs it: compose its (first) job with Hydra's
API and refuse, in one line, what Hydra would refuse in several (a misspelt key or group) or
accept though it cannot run (a key nothing reads, a value the training refuses, an output
directory it cannot write). Nothing is created on disk until the command line passes.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from omegaconf import DictConfig, OmegaConf

from .cli import unwritable_directory
from .config_keys import unknown_key_message, unknown_keys, yaml_problem
from .training import check_config
from .training.checks import resolved_config

# Flags after which the command line is left to Hydra alone (help, another config, shell completion).
_HYDRA_ONLY_FLAGS = (
    "-h",
    "--help",
    "--hydra-help",
    "--info",
    "-i",
    "--shell-completion",
    "-sc",
    "--config-path",
    "-cp",
    "--config-name",
    "-cn",
    "--config-dir",
    "-cd",
    "--experimental-rerun",
)


_FLAGS_WITH_VALUE = ("-c", "--cfg", "-p", "--package")
# Flags with which Hydra prints the config instead of running the jobs.
_PRINT_ONLY_FLAGS = ("-c", "--cfg")


class CommandLineError(ValueError):
    """A command line Hydra would refuse with several lines, or accept though it cannot run; one line."""


def parse_overrides(argv: list[str]) -> list | None:
    """The overrides of ``argv`` (Hydra's parsed ``Override``s), without Hydra's own settings;
    None when a flag leaves the command line to Hydra."""
    if any(arg.split("=")[0] in _HYDRA_ONLY_FLAGS for arg in argv):
        return None
    arguments, skip_next = [], False
    for arg in argv:
        if skip_next or arg.startswith("-"):
            # --cfg job, --package X: the flag's value is not an override
            skip_next = arg in _FLAGS_WITH_VALUE
        elif not arg.lstrip("+~").startswith("hydra"):
            arguments.append(arg)
    return _parse(arguments)


def _parse(lines: list[str]) -> list:
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import HydraException

    try:
        return OverridesParser.create().parse_overrides(lines)
    except HydraException as error:
        raise CommandLineError(_first_line(error)) from None


def job_lines(override) -> list[str]:
    """``override`` as each job of a sweep gets it (``key=value``, one line per swept value)."""
    if not override.is_sweep_override():
        return [override.input_line]
    return [f"{override.get_key_element()}={value}" for value in override.sweep_string_iterator()]


def first_job(overrides: list) -> list[str]:
    """The overrides of a sweep's first job: the first value of each swept key."""
    return [next(iter(job_lines(override)), "") for override in overrides]


def prints_only(argv: list[str]) -> bool:
    """Whether flags in ``argv`` make Hydra print the config instead of running the jobs (``--cfg job``)."""
    return any(arg.split("=")[0] in _PRINT_ONLY_FLAGS for arg in argv)


def hydra_overrides(argv: list[str]) -> list[str]:
    """The command line's overrides of Hydra's own settings (``hydra/launcher=joblib``, ...), with
    which Hydra composes the sweep's config and each job's."""
    return [arg for arg in argv if not arg.startswith("-") and arg.lstrip("+~").startswith("hydra")]


def sweep_params(argv: list[str], conf_dir: Path, compose: Compose | None = None) -> dict[str, str]:
    """The ``hydra.sweeper.params`` of the sweep ``argv`` describes: those of its config composed
    without the swept values (an experiment's seeds), as Hydra composes the sweep's own config.
    ``compose``: a :func:`composer`'s, where the caller holds one."""
    parsed = parse_overrides(argv) or []
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    overrides = [*hydra_overrides(argv), *fixed]
    primary = compose(overrides, True) if compose else compose_config(conf_dir, overrides, hydra=True)
    params = OmegaConf.select(primary, "hydra.sweeper.params") or {}
    return {key: str(value) for key, value in params.items()}


def job_overrides(params: dict[str, str], arguments: list[str]) -> list[list[str]]:
    """Each job's overrides, in Hydra's job-number order: Hydra's basic sweeper's own product of
    the sweep's ``params`` and the command line's ``arguments`` (which take the place of a param
    of the same key)."""
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

    lines = [*(f"{key}={value}" for key, value in params.items()), *arguments]
    (batch,) = BasicSweeper.split_arguments(_parse(lines), None)
    return batch


def distinguishing(jobs: list[list[str]]) -> list[str]:
    """Each job as the overrides that tell it from the other jobs (those of a key whose value
    varies across the sweep), on one line; all its overrides where nothing varies."""
    values: dict[str, set[str]] = {}
    for job in jobs:
        for line in job:
            key, _, value = line.partition("=")
            values.setdefault(key, set()).add(value)
    varying = {key for key, seen in values.items() if len(seen) > 1}
    return [" ".join(line for line in job if line.partition("=")[0] in varying) or " ".join(job) for job in jobs]


def sweep_jobs(argv: list[str], conf_dir: Path) -> list[str] | None:
    """The jobs of the sweep ``argv`` describes, in Hydra's job-number order, each as the values
    that tell it from the others on one line (``seed=1 optimizer.lr=0.1``; all its overrides if
    nothing is swept). None where flags leave the command line to Hydra or run no job (``--cfg job``
    prints the config)."""
    parsed = parse_overrides(argv)
    if parsed is None or prints_only(argv):
        return None
    return distinguishing(job_overrides(sweep_params(argv, conf_dir), [o.input_line for o in parsed]))


def check_path_components(overrides: list, conf_dir: Path) -> None:
    """CommandLineError unless every override that names the run directory (Hydra's
    ``override_dirname``: each ``key=value`` not in its ``exclude_keys``, as typed) stays one
    component of it: a ``/`` in a value would make subdirectories, and ``..`` climb out of
    ``paths.output_dir`` (``benchmark.table=../../x``). A config group's option (``experiment=
    table2/best/cifar100_adam``) names a file under ``conf/``: its ``/`` are kept, its ``..`` are not."""
    naming = OmegaConf.load(conf_dir / "config.yaml").hydra.job.config.override_dirname
    for override in overrides:
        if override.key_or_group in naming.exclude_keys:
            continue
        is_group = (conf_dir / override.key_or_group).is_dir()
        for line in job_lines(override):
            value = line.partition("=")[2]
            parts = value.split("/")
            if (len(parts) > 1 and not is_group) or any(part in ("..", ".") for part in parts):
                must = "an option under conf/ without '..'" if is_group else "free of '/' and '..'"
                raise CommandLineError(
                    f"invalid {override.key_or_group}: {value!r} (must be {must}: it becomes part of "
                    "the run directory's name under paths.output_dir); choose another value"
                )


def compose_config(conf_dir: Path, overrides: list[str], hydra: bool = False):
    """The config ``overrides`` compose to (with Hydra's own node under ``hydra``); CommandLineError
    with one line where Hydra refuses them."""
    with composer(conf_dir) as compose:
        return compose(overrides, hydra)


Compose = Callable[[list[str], bool], DictConfig]


@contextmanager
def composer(conf_dir: Path) -> Iterator[Compose]:
    """``with composer(conf_dir) as compose:`` :func:`compose_config` for many command lines under
    one initialisation of Hydra (a third of the time of each composition, for a sweep's jobs)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    def compose(overrides: list[str], hydra: bool = False) -> DictConfig:
        try:
            return hydra_compose(config_name="config", overrides=overrides, return_hydra_config=hydra)
        except (HydraException, OmegaConfBaseException) as error:
            raise CommandLineError(_composition_problem(error, conf_dir)) from None
        except yaml.YAMLError as error:  # a config file the command uses is not valid YAML
            raise CommandLineError(yaml_problem(error)) from None

    try:
        with initialize_config_dir(config_dir=str(conf_dir), version_base=None):
            yield compose
    except HydraException as error:  # the config directory itself
        raise CommandLineError(_composition_problem(error, conf_dir)) from None


def _composition_problem(error: Exception, conf_dir: Path) -> str:
    """Hydra's several-line composition error as one line with the fix."""
    bad = re.search(r"Could not override '([^']+)'", str(error))
    if bad:  # a key or group no config has: a typo, most likely
        return unknown_key_message(bad.group(1), conf_dir)
    return _first_line(error)


def _first_line(error: Exception) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def check_command_line(argv: list[str], conf_dir: Path) -> DictConfig | None:
    """Compose the first job of ``argv`` and check it, and the first job with each other option of
    a swept config group in its place (``-m experiment=a,b,c``: every experiment file the sweep
    reads, before any job starts); CommandLineError or ConfigError with one line where one cannot
    run. The first job's composed config, or None where flags leave it to Hydra."""
    parsed = parse_overrides(argv)
    if parsed is None:
        return None
    check_path_components(parsed, conf_dir)
    first = first_job(parsed)
    for position, override in enumerate(parsed):
        if override.is_sweep_override() and (conf_dir / override.key_or_group).is_dir():
            for option in job_lines(override)[1:]:
                _check_job([*first[:position], option, *first[position + 1 :]], conf_dir)
    return _check_job(first, conf_dir)


def _check_job(overrides: list[str], conf_dir: Path) -> DictConfig:
    cfg = compose_config(conf_dir, overrides)
    config = OmegaConf.to_container(cfg, resolve=False)
    unknown = unknown_keys(config, conf_dir)
    if unknown:
        raise CommandLineError(unknown_key_message(unknown[0], conf_dir))
    output_dir = Path(OmegaConf.select(cfg, "paths.output_dir"))
    blocked = unwritable_directory(output_dir)
    if blocked is not None:
        raise CommandLineError(
            f"cannot write run directories under {output_dir}: {blocked} is not writable; "
            "set paths.output_dir to a writable directory"
        )
    resolvable = {key: value for key, value in config.items() if key != "run_dir"}  # run_dir needs Hydra's runtime
    check_config(resolved_config(OmegaConf.create(resolvable)))
    return cfg
