"""``python -m cmrepro.toy experiment=table1``: run one toy experiment, then refresh results/toy/README.md."""

from __future__ import annotations

import os

# torch picks SIMD kernels for the CPU it runs on (AVX2, AVX-512, ...), whose exp/log/cos differ
# in the last bits, and these toy dynamics amplify last bits into different basins. The
# portable kernels give the same bits on every x86 CPU; the toy tensors are too small for
# SIMD to matter. Must be set before torch is imported (here and in the spawned workers).
os.environ.setdefault("ATEN_CPU_CAPABILITY", "default")

import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

from ..suite_check import require_suite  # noqa: E402

require_suite("cmrepro.toy")  # before the first third-party import: one line, not a traceback

import hydra  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402

from .. import command_help  # noqa: E402, F401  (the resolver of conf/toy/hydra/help/toy.yaml)
from ..cli import exit_on_unknown_option  # noqa: E402
from ..config_keys import exit_on_option_instead_of_override  # noqa: E402
from .experiments import KINDS  # noqa: E402
from .summary import write_summary  # noqa: E402

CONF_DIR = Path(__file__).resolve().parents[2] / "conf" / "toy"


@hydra.main(version_base=None, config_path="../../conf/toy", config_name="config")
def _run(cfg: DictConfig) -> None:
    experiment = OmegaConf.to_container(cfg.experiment, resolve=True)
    experiment["workers"] = cfg.workers
    experiment["start_jitter"] = cfg.start_jitter
    out, figures = Path(cfg.output_dir), Path(cfg.figures_dir)
    out.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        KINDS[experiment["kind"]](experiment, out, figures)
    except ValueError as error:  # a config value out of range: one line, as for an unknown option
        print(f"cmrepro.toy: {experiment['name']}: {error}", file=sys.stderr)
        sys.exit(2)
    print(f"cmrepro.toy: {experiment['name']} done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    write_summary(out, figures)


def main() -> None:
    exit_on_option_instead_of_override("cmrepro.toy", CONF_DIR, code_keys=())  # its keys are all in conf/toy
    exit_on_unknown_option("cmrepro.toy", CONF_DIR, ["experiment"])
    _run()


if __name__ == "__main__":
    main()
