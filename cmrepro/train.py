"""``python -m cmrepro.train optimizer=adam_cm dataset=cifar100``: the training entry point.

A thin Hydra shell around :func:`cmrepro.training.train`. Configuration and
data problems end the program with one line on stderr and exit code 2,
before any training; a non-finite loss ends it with status ``diverged`` and
exit code 0, so a sweep goes on. In a sweep (``-m``) a failed job exits
cleanly too, so the others run; its result.json, written by the training
(the one writer of run files), says ``failed`` and why.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from .cli import exit_on_unknown_option
from .data import DataError
from .run_files import RunFileError
from .training import CheckpointError, ConfigError, train

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"
GROUPS = ("dataset", "model", "optimizer", "trainer", "logger")


@hydra.main(version_base=None, config_path="../conf", config_name="config")
def _run(cfg: DictConfig) -> None:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        # check: a refused config is recorded as a failed run, like any failure inside training.
        result = train(OmegaConf.to_container(cfg, resolve=True), run_dir, check=True)
    except (ConfigError, DataError, CheckpointError, RunFileError) as error:
        print(f"cmrepro.train: {error}", file=sys.stderr)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return  # the failure is in the job's result.json; the other jobs of the sweep go on
        sys.exit(2)
    print(f"cmrepro.train: {result['status']}: {run_dir}", file=sys.stderr)


def main() -> None:
    exit_on_unknown_option("cmrepro.train", CONF_DIR, GROUPS)
    _run()


if __name__ == "__main__":
    main()
