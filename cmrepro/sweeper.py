"""The sweeper of ``python -m cmrepro.train -m`` (``conf/hydra/sweeper/skip_ended.yaml``): Hydra's
basic sweeper, which first checks the sweep's data and leaves out the jobs whose runs ended.

Each job is composed once, as the basic sweeper does anyway to check a batch before launching
it, and that composition also gives the job's data and run directory (``cmrepro.prelaunch``).
Then, before anything is launched or written:

- data that some job needs and that is not there stops the sweep (:class:`MissingData`, one line
  per dataset, however many jobs need it): not a hundred jobs failing one by one;
- the jobs whose runs ended are left out, with one line: a finished sweep run again would
  otherwise launch every job only for each to say "already done" (a table's 100 jobs: a
  minute, 300 lines, and on Slurm a job array).

The others are launched as the basic sweeper would launch them. Hydra takes sweepers only from
its ``hydra_plugins`` namespace, and imports all of it at every start: the config names
``hydra_plugins.cmrepro_sweeper.SkipEndedSweeper``, this class under that name, and what the
sweep needs is imported when it runs.

Why a sweeper: it is the one place that sees every job before any launcher does, in the
launching process, whichever launcher runs them (the basic one in this process, joblib's
workers, submitit's Slurm array), and it hands the launcher a plain list of jobs; filtering in
``train.py``'s ``main()`` could not shrink the product Hydra makes from the command line.
The launcher numbers the jobs it is given from 0; the ledger (``cmrepro.sweep_ledger``) is told
which those are, and which ended ones were left out, so that the sweep's summary counts all.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf, open_dict


class SkipEndedSweeper(BasicSweeper):
    """Hydra's :class:`BasicSweeper`, launching only the jobs whose runs have not ended."""

    def plan(self, number: int, overrides: Sequence[str]):
        """Job ``number`` composed as its launcher will compose it (which also checks that it
        composes, as the basic sweeper does before launching), with its run directory."""
        from .prelaunch import PlannedJob, job_config, run_directory

        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.num = cfg.hydra.job.id = number
        return PlannedJob(tuple(overrides), run_directory(cfg, sweep=True), job_config(cfg))

    def sweep(self, arguments: list[str]) -> Any:
        from .command_checks import distinguishing
        from .prelaunch import MissingData, ended_line, ended_runs, missing_data_lines
        from .sweep_ledger import JobOutcome, Launch, record_launch

        assert self.config is not None and self.launcher is not None and self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        (jobs,) = self.split_arguments(parser.parse_overrides([*self._parse_config(), *arguments]), None)
        planned = [self.plan(number, job) for number, job in enumerate(jobs)]
        missing = missing_data_lines(planned)
        if missing:
            raise MissingData(missing)
        ended = ended_runs(planned)
        launch = [job for number, job in enumerate(jobs) if number not in ended]
        shown = distinguishing(jobs)
        not_launched = [JobOutcome(n, str(planned[n].run_dir), "already ended", status) for n, status in ended.items()]
        record_launch(Launch([shown[n] for n in range(len(jobs)) if n not in ended], not_launched))
        if ended:
            print(f"cmrepro.train: {ended_line(ended, len(jobs))}", file=sys.stderr, flush=True)
        if not launch:
            return []
        print(f"cmrepro.train: {launch_line(len(launch), self.config.hydra)}", file=sys.stderr, flush=True)
        # As the basic sweeper: the sweep's config beside its runs, then the jobs in batches.
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        returns, first = [], 0
        for batch in self.split_overrides_to_chunks(launch, self.max_batch_size):
            results = self.launcher.launch(batch, initial_job_idx=first)
            for result in results:
                _ = result.return_value  # raises a job's error, as the basic sweeper does
            first += len(batch)
            returns.append(results)
        return returns


def launch_line(jobs: int, hydra: Any) -> str:
    """The one line said before launching (Hydra's launchers list every job, at INFO level, which
    conf/hydra/hydra_logging/cmrepro.yaml keeps off the terminal): how many, how, and where."""
    launcher = OmegaConf.select(hydra, "runtime.choices.hydra/launcher", default=None) or "basic"
    parallel = OmegaConf.select(hydra, "launcher.n_jobs", default=None)
    how = f"{launcher}, {parallel} at a time" if launcher == "joblib" and parallel else launcher
    runs = "run" if jobs == 1 else "runs"
    return f"launching {jobs} {runs} ({how}) under {hydra.sweep.dir}; each says one line as it ends"
