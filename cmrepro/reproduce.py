"""``python -m cmrepro.reproduce table2``: run a paper table's experiments, then its report.

Each experiment of the table (``conf/experiment/<table>/<kind>/*.yaml``) is a Hydra
multirun that can be run on its own, as the README shows:

    python -m cmrepro.train -m experiment=table2/best/cifar100_adam_cm [scale=smoke] [launcher ...]

This runs the best-settings experiments of a table together, as one multirun over all of
them and their seeds (one job array on a cluster), and the grids one after another.

``best`` runs the paper's best settings over five seeds; ``--grid`` runs the hyperparameter
grids instead. ``appendix`` is Appendix A.2.1's Adam+MEG on CIFAR10 (``make reproduce-meg``),
best settings only. Runs are idempotent (a finished run is skipped, a killed one resumes, a
diverged one is not retried), so interrupting this and starting it again continues where
it stopped. An experiment whose multirun fails does not stop the others; the report is
written anyway (with the missing cells) and the exit code says something failed.

Before the first command, every run of every command is composed here (as ``cmrepro.train``
would compose it) and the data they need is checked once per dataset: missing data stops the
table with one line per dataset and its ``prepare`` command, exit code 2, having launched and
written nothing. A command whose runs all ended is not started (one line says so); the sweep
of a command started leaves out its ended runs itself.

``--scale smoke`` shrinks every run (see conf/scale/smoke.yaml) and every grid to its first
two learning rates and the first value of each other hyperparameter, so a whole table
target runs in minutes on a CPU.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path

from .suite_check import require_suite

require_suite("cmrepro.reproduce")  # before the first third-party import: one line, not a traceback

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from .command_checks import CommandLineError
from .config_keys import yaml_problem
from .prelaunch import PlannedJob, ended_line, ended_runs, missing_data_lines, planned_jobs
from .report.__main__ import main as report_main
from .report.run_table import load_runs
from .report.table_report import TABLES

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
EXPERIMENTS = CONF_DIR / "experiment"
LAUNCHERS = ("local", "joblib", "slurm")
EXIT_REFUSED = 2  # a config file that cannot be read, a command that cannot run, data that is not there
# A smoke grid keeps this many values of the learning rate and one of everything else.
SMOKE_GRID_LRS = 2


def experiments(table: str, kind: str) -> list[str]:
    """The experiment names of ``table``/``kind``, e.g. ``table2/best/cifar100_adam_cm``."""
    folder = EXPERIMENTS / table / kind
    return [f"{table}/{kind}/{path.stem}" for path in sorted(folder.glob("*.yaml"))]


def sweep_choices(experiment: str) -> dict[str, list[str]]:
    """Each swept key of the experiment and its values as command-line strings, parsed by
    Hydra's own override parser (so ``[0.9,0.99],[0.9,0.999]`` is two pairs)."""
    lines = [f"{key}={value}" for key, value in sweep_params(experiment).items()]
    choices = {}
    for override in OverridesParser.create().parse_overrides(lines):
        sweep = override.is_sweep_override()
        choices[override.key_or_group] = (
            list(override.sweep_string_iterator()) if sweep else [override.get_value_element_as_str()]
        )
    return choices


def sweep_size(experiment: str) -> int:
    """How many runs the experiment's multirun makes."""
    return math.prod(len(values) for values in sweep_choices(experiment).values())


def smoke_grid_overrides(experiment: str) -> list[str]:
    """Command-line values that narrow the experiment's grid (its ``hydra.sweeper.params``);
    a command-line value replaces the swept one for the same key."""
    overrides = []
    for key, choices in sweep_choices(experiment).items():
        keep = SMOKE_GRID_LRS if key == "optimizer.lr" else 1
        overrides.append(f"{key}={','.join(choices[:keep])}")
    return overrides


def launcher_overrides(launcher: str, jobs: int) -> list[str]:
    if launcher == "joblib":
        return ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs}"]
    if launcher == "slurm":
        return ["hydra/launcher=slurm"]
    return []


def sweep_params(experiment: str) -> dict[str, str]:
    """The experiment's ``hydra.sweeper.params`` as strings."""
    params = OmegaConf.load(EXPERIMENTS / f"{experiment}.yaml").hydra.sweeper.params
    return {key: str(value) for key, value in params.items()}


def commands(args: argparse.Namespace) -> list[list[str]]:
    """The multirun commands of the table: the best settings as one sweep over all its
    experiments x seeds (one job array on Slurm, one worker pool with joblib); each grid as
    its own sweep, since the grids differ. A run's directory is the same either way."""
    kind = "grid" if args.grid else "best"
    names = experiments(args.table, kind)
    if not names:
        raise SystemExit(f"cmrepro.reproduce: no experiments under conf/experiment/{args.table}/{kind}")
    train = [sys.executable, "-m", "cmrepro.train", "-m"]
    common = [f"scale={args.scale}", *launcher_overrides(args.launcher, args.jobs), *args.overrides]
    if not args.grid:
        seeds = {sweep_params(name)["seed"] for name in names}
        if len(seeds) != 1:
            raise SystemExit(f"cmrepro.reproduce: the {args.table} best-settings experiments sweep different seeds")
        return [[*train, f"experiment={','.join(names)}", f"seed={seeds.pop()}", *common]]
    narrow = smoke_grid_overrides if args.scale == "smoke" else lambda name: []
    return [[*train, f"experiment={name}", *common, *narrow(name)] for name in names]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cmrepro.reproduce", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("table", choices=TABLES)
    parser.add_argument("--grid", action="store_true", help="run the hyperparameter grids, not the best settings")
    parser.add_argument("--scale", choices=("full", "smoke"), default="full")
    parser.add_argument("--launcher", choices=LAUNCHERS, default="local")
    parser.add_argument("--jobs", type=int, default=2, help="parallel runs with --launcher joblib")
    parser.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    parser.add_argument("overrides", nargs="*", help="more Hydra overrides for every run, e.g. trainer.device=cuda")
    args = parser.parse_intermixed_args(argv)  # options may follow the overrides

    try:
        planned = commands(args)
    except yaml.YAMLError as error:  # an experiment file of the table is not valid YAML
        print(f"cmrepro.reproduce: {yaml_problem(error)}", file=sys.stderr)
        return EXIT_REFUSED
    if args.dry_run:
        for command in planned:
            print("+ " + shlex.join(["python", *command[1:]]), flush=True)
        return 0
    try:
        jobs = plan_commands(planned)
    except CommandLineError as error:
        print(f"cmrepro.reproduce: {error}", file=sys.stderr)
        return EXIT_REFUSED
    missing = missing_data_lines([job for command_jobs in jobs for job in command_jobs])
    if missing:  # before the first command: a table launches all of its runs or none
        print("\n".join(f"cmrepro.reproduce: {line}" for line in missing), file=sys.stderr)
        return EXIT_REFUSED
    failed = []
    for command, command_jobs in zip(planned, jobs):
        print("+ " + shlex.join(["python", *command[1:]]), flush=True)
        ended = ended_runs(command_jobs)
        if command_jobs and len(ended) == len(command_jobs):  # nothing to launch: not even the command
            print(f"cmrepro.reproduce: {ended_line(ended, len(command_jobs))}", file=sys.stderr, flush=True)
        elif subprocess.run(command, cwd=ROOT).returncode != 0:
            failed.append(command[4][:200])
    if failed:
        print(f"cmrepro.reproduce: {len(failed)} multiruns failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if report_and_count(args) or failed else 0


def plan_commands(planned: list[list[str]]) -> list[list[PlannedJob]]:
    """Every job of each ``python -m cmrepro.train -m ...`` command, composed in this process as
    the command would compose it from the repository root (:mod:`cmrepro.prelaunch`)."""
    here = Path.cwd()
    os.chdir(ROOT)  # where the commands run: relative data and output directories are read from there
    try:
        return [planned_jobs(command[3:], CONF_DIR) or [] for command in planned]
    finally:
        os.chdir(here)


def report_and_count(args: argparse.Namespace) -> int:
    """Write the table's report beside its runs; the number of its runs that did not end (neither
    done nor diverged), said in one line, so that a target exits non-zero when cells are missing."""
    # Where the runs went (conf/config.yaml, conf/scale/smoke.yaml, or the command line).
    default = ROOT / "results" / ("smoke/runs" if args.scale == "smoke" else "runs")
    runs_root = Path(next((o.split("=", 1)[1] for o in args.overrides if o.startswith("paths.output_dir=")), default))
    report = ["--runs", str(runs_root), "--out", str(runs_root.parent), *(["--grid"] if args.grid else [])]
    print("+ " + shlex.join(["python", "-m", "cmrepro.report", args.table, *report]), flush=True)
    if report_main([args.table, *report]) != 0:
        return 1
    runs = load_runs(runs_root)
    runs = runs[(runs["table"] == args.table) & (runs["kind"] == ("grid" if args.grid else "best"))]
    unfinished = runs[~runs["status"].isin(["done", "diverged"])]
    if len(unfinished):
        print(
            f"cmrepro.reproduce: {len(unfinished)} of {len(runs)} {args.table} runs did not finish "
            f"({', '.join(f'{n} {s}' for s, n in unfinished['status'].value_counts().items())}); "
            f"see the report in {runs_root.parent / 'tables'}",
            file=sys.stderr,
        )
    return len(unfinished)


if __name__ == "__main__":
    sys.exit(main())
