"""``python -m cmrepro.toy experiment=table1``: run one toy experiment, then refresh results/toy/README.md."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from ..cli import exit_on_unknown_option
from .experiments import KINDS
from .summary import write_summary

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "toy"


@hydra.main(version_base=None, config_path="../../conf/toy", config_name="config")
def _run(cfg: DictConfig) -> None:
    experiment = OmegaConf.to_container(cfg.experiment, resolve=True)
    experiment["workers"] = cfg.workers
    out, figures = Path(cfg.output_dir), Path(cfg.figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    KINDS[experiment["kind"]](experiment, out, figures)
    print(f"cmrepro.toy: {experiment['name']} done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    write_summary(out, figures)


def main() -> None:
    exit_on_unknown_option("cmrepro.toy", CONF_DIR, ["experiment"])
    _run()


if __name__ == "__main__":
    main()
