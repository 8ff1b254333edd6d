"""Each toy experiment kind, reduced to a few runs and steps, writes its CSV and figure, deterministically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cmrepro.toy.experiments import KINDS
from cmrepro.toy.summary import write_summary

CONF = Path(__file__).resolve().parents[1] / "conf" / "toy" / "experiment"
# Shrink every experiment: few runs, few steps, two sharpness values, tiny grids of starts and settings.
REDUCE = {"seeds": 2, "runs": 3, "steps": 12, "lr_drop_step": 6, "sharpness": [2, 10], "points": 3}
SMALL_GRIDS = {"reach": {"grid": 2, "uniform": 3}, "cancellation": {"grid": 2}}


def _reduced(name: str) -> dict:
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    for key, value in REDUCE.items():
        if key in cfg and cfg[key] is not None:
            cfg[key] = value
    for protocol in cfg.get("protocols", []):
        protocol.update(steps=REDUCE["steps"], lr_drop_step=None)
    if "starts" in cfg:  # a list of 1-D starts, or a number of random 2-D starts
        cfg["starts"] = cfg["starts"][:2] if isinstance(cfg["starts"], list) else 2
    for key, small in SMALL_GRIDS.items():
        if key in cfg:
            cfg[key].update(small)
    if "grid" in cfg:  # the MEG search: the first two values of each hyperparameter
        cfg["grid"] = {key: values[:2] for key, values in cfg["grid"].items()}
    return cfg


@pytest.mark.parametrize("name", sorted(path.stem for path in CONF.glob("*.yaml")))
def test_reduced_experiment_writes_csv_and_figure_deterministically(name, tmp_path):
    cfg = _reduced(name)
    outputs = []
    for attempt in ("a", "b"):
        out, figures = tmp_path / attempt / "toy", tmp_path / attempt / "figures"
        out.mkdir(parents=True)
        figures.mkdir(parents=True)
        KINDS[cfg["kind"]](cfg, out, figures)
        outputs.append((out / f"{name}.csv").read_text())
        if cfg["kind"] not in ("final_loss_and_sharpness", "protocol_search", "meg_grid"):  # tables only
            assert (figures / f"{name}.png").stat().st_size > 1000
        write_summary(out, figures)
        assert "## Claims, sentence by sentence" in (out / "README.md").read_text()
    assert outputs[0] == outputs[1] and outputs[0].count("\n") >= 2


def test_unknown_experiment_is_one_line_and_exit_2():
    done = subprocess.run(
        [sys.executable, "-m", "cmrepro.toy", "experiment=table9"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "cmrepro.toy: unknown experiment 'table9'; choose one of: "
        + ", ".join(sorted(p.stem for p in CONF.glob("*.yaml")))
    ]
