"""``python -m cmrepro.toy experiment=table1``: run one toy experiment, then refresh results/toy/README.md."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from .experiments import KINDS
from .summary import write_summary

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "toy"


def unknown_experiment(argv: list[str]) -> str | None:
    names = sorted(path.stem for path in (CONF_DIR / "experiment").glob("*.yaml"))
    for arg in argv:
        key, _, value = arg.partition("=")
        if key == "experiment" and value not in names:
            return f"unknown experiment {value!r}; choose one of: {', '.join(names)}"
    return None


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
    problem = unknown_experiment(sys.argv[1:])
    if problem:
        print(f"cmrepro.toy: {problem}", file=sys.stderr)
        sys.exit(2)
    _run()


if __name__ == "__main__":
    main()
