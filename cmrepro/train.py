"""``python -m cmrepro.train optimizer=adam_cm dataset=cifar100``: the training entry point.

A thin Hydra shell around :func:`cmrepro.training.train`. Before Hydra creates any directory, the
command line is composed and checked (:func:`check_command_line`): a misspelt key or group, a value
that cannot run, or an output directory that cannot be written ends the program with one line on
stderr and exit code 2; so does a batch that cannot split across the processes of a distributed
run. Data problems end it the same way before any training, and leave no run directory (the run
had not started). Nothing refused changes a run directory: Hydra's record of the command
(``.hydra/``) is written into it only once the run starts (locked, and the same run as any it
resumes), and replaced by each command that resumes it. A non-finite loss
ends a run with status ``diverged`` and exit code 0. Another process training the same run
directory: one line, exit code 3. SIGTERM, SIGINT or SIGUSR1: the run checkpoints, says
``interrupted`` and exits with 128 + the signal number (143, 130, 138).

Under torchrun (``torchrun --nproc-per-node=8 -m cmrepro.train ...``) or Slurm with a task per
GPU, each process is one rank of a data-parallel run (:mod:`cmrepro.training.distributed`); a
rank that fails ends with one line naming it.

In a sweep (``-m``), before any job is launched or anything written, the sweeper
(:mod:`cmrepro.sweeper`) checks the data of every job, once per dataset (one line each for what is
missing, exit code 2), and leaves out the jobs whose runs already ended (one line; none left: exit
code 0). A failed job ends cleanly so the others run; its result.json (written by the
training, the one writer of run files) says ``failed`` and why. The sweep ends with a summary of
its jobs and exits 1 if any failed or was refused.
"""

from __future__ import annotations

import sys
from pathlib import Path

from .suite_check import require_suite

require_suite("cmrepro.train")  # before the first third-party import: one line, not a traceback

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from . import command_help  # noqa: F401  (the resolver of conf/hydra/help/train.yaml)
from .cli import exit_on_unknown_option, print_traceback_if_asked, run_sweep
from .command_checks import CommandLineError, check_command_line, sweep_jobs
from .config_keys import exit_on_option_instead_of_override
from .data import DataError
from .data.base import Shard, check_shardable
from .data.presence import missing_data
from .prelaunch import MissingData
from .run_files import RunFileError, remove_if_unstarted
from .run_lock import RunLocked
from .sweep_ledger import JobOutcome, read_launch, read_outcomes, record_outcome, summary, sweep_ledger
from .training import CheckpointError, ConfigError, Interrupted, process_env, train
from .training.checks import resolved_config
from .training.console import speak_as_sweep_job
from .training.distributed import DistEnv, exit_on_failure

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("dataset", "model", "optimizer", "trainer", "logger")
# Hydra's record of the command, written by the run itself (hydra.output_subdir is null in
# conf/config.yaml): the folder in the run directory and the files Hydra would write there.
HYDRA_RECORD = ".hydra"
EXIT_REFUSED = 2  # a config, command line or data problem
EXIT_BUSY = 3  # another process trains the run directory
# What _run ends the program on itself, with one line and its own exit code.
HANDLED = (ConfigError, DataError, CheckpointError, RunFileError, RunLocked, Interrupted, KeyboardInterrupt)


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def _run(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    sweep = hydra_cfg.mode == RunMode.MULTIRUN
    job = hydra_cfg.job.num if sweep else 0
    speak_as_sweep_job(sweep)  # a sweep's job prints one line as it ends; train.log keeps the rest

    def end(outcome: str, message: str, exit_code: int) -> None:
        print(f"cmrepro.train: {message}", file=sys.stderr)
        record_outcome(JobOutcome(job, str(run_dir), outcome, message))
        if exit_code and not sweep:
            sys.exit(exit_code)

    try:
        # In a distributed run an unexpected error is one line naming the rank, and an exit that
        # does not wait for collectives the other ranks will never join.
        env = process_env()
        with exit_on_failure(env, expected=HANDLED):
            config = resolved_config(cfg)  # ConfigError for a value that cannot resolve (${oc.env:UNSET})
            result = train(config, run_dir, check=True, env=env, launch_record=hydra_record(cfg, hydra_cfg))
    except ConfigError as error:
        print_traceback_if_asked(error)
        remove_if_unstarted(run_dir, (HYDRA_RECORD, "train.log"))  # a refused config leaves no run directory behind
        return end("refused", str(error), EXIT_REFUSED)
    except (DataError, CheckpointError, RunFileError) as error:
        print_traceback_if_asked(error)
        return end("failed", str(error), EXIT_REFUSED)
    except RunLocked as error:
        return end("skipped", str(error), EXIT_BUSY)
    except Interrupted as error:
        end("interrupted", f"{run_dir}: {error}", 0)
        sys.exit(error.exit_code)  # a sweep stops too: the signal was meant for all of it
    except KeyboardInterrupt:
        end("interrupted", f"{run_dir}: stopped at once by a second Ctrl-C", 0)
        sys.exit(130)
    status = result["status"]
    record_outcome(JobOutcome(job, str(run_dir), status if not result.get("skipped") else "already ended"))


def hydra_record(cfg: DictConfig, hydra_cfg: DictConfig) -> dict[str, str]:
    """The files Hydra writes in a job's ``.hydra/`` (the job's config, Hydra's, the overrides),
    for the run to write once it starts."""
    return {
        f"{HYDRA_RECORD}/config.yaml": OmegaConf.to_yaml(cfg),
        f"{HYDRA_RECORD}/hydra.yaml": OmegaConf.to_yaml(OmegaConf.create({"hydra": hydra_cfg})),
        f"{HYDRA_RECORD}/overrides.yaml": OmegaConf.to_yaml(hydra_cfg.overrides.task),
    }


def check_process_split(cfg: DictConfig | None, env: DistEnv) -> None:
    """ConfigError (one line) if ``dataset.batch_size`` (the global batch) does not split across
    the processes of this distributed run: checked before any run directory is made. (The last
    batch's split needs the data's size, known once the run has loaded it.)"""
    batch_size = OmegaConf.select(cfg, "dataset.batch_size") if cfg is not None else None
    if env.enabled and isinstance(batch_size, int):
        try:
            check_shardable(batch_size, batch_size, Shard(env.rank, env.world_size))  # one full batch
        except ValueError as error:
            raise ConfigError(str(error)) from None


# Hydra's flags that print the config, help or environment and run nothing.
PRINT_ONLY_FLAGS = {"--cfg", "-c", "--info", "-i", "--help", "-h", "--hydra-help", "--shell-completion", "-sc"}


def main() -> None:
    argv = sys.argv[1:]
    exit_on_option_instead_of_override("cmrepro.train", CONF_DIR)  # --epochs 3: did you mean trainer.epochs=3?
    exit_on_unknown_option("cmrepro.train", CONF_DIR, GROUPS)
    try:
        cfg = check_command_line(argv, CONF_DIR)
        check_process_split(cfg, process_env())
    except (CommandLineError, ConfigError) as error:
        print(f"cmrepro.train: {error}", file=sys.stderr)
        sys.exit(EXIT_REFUSED)
    if not ({"-m", "--multirun"} & set(argv)):
        # Refused here, before Hydra makes the run directory: a run without its data leaves none.
        # A command that only prints (--cfg job, --info) reads no data and runs without it.
        if cfg is not None and not PRINT_ONLY_FLAGS & set(argv):
            exit_on_missing_data(missing_data([dataset_config(cfg)]))
        _run()
        return
    output_dir = Path(OmegaConf.select(cfg, "paths.output_dir")) if cfg is not None else Path("results/runs")
    # The sweeper (cmrepro/sweeper.py) checks the data of every job and leaves out the ended runs
    # before launching any: what it left out, and the jobs it launched, are in the ledger.
    try:
        with sweep_ledger(output_dir) as ledger:
            stopped = run_sweep(_run)
            outcomes, launch = read_outcomes(ledger), read_launch(ledger)
    except MissingData as error:
        exit_on_missing_data(error.lines)
    if launch is not None and not launch.launched and not stopped:
        return  # every run had ended: the sweeper said so in one line
    jobs = launch.launched if launch is not None else sweep_jobs(argv, CONF_DIR)
    lines, all_finished = summary(outcomes, jobs, launch.not_launched if launch is not None else ())
    if stopped:
        print(f"cmrepro.train: {stopped}", file=sys.stderr)
    print("cmrepro.train: " + "\n".join(lines), file=sys.stderr)
    if stopped or not all_finished:
        sys.exit(1)


def dataset_config(cfg: DictConfig) -> dict:
    """The resolved ``dataset`` node of a composed run config (checked resolvable already)."""
    return OmegaConf.to_container(cfg.dataset, resolve=True)


def exit_on_missing_data(lines: list[str]) -> None:
    """Exit 2 with one line per missing dataset (each names the command that prepares it), if any."""
    for line in lines:
        print(f"cmrepro.train: {line}", file=sys.stderr)
    if lines:
        sys.exit(EXIT_REFUSED)


if __name__ == "__main__":
    main()
