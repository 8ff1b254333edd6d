"""Each toy experiment kind, reduced to a few runs and steps, writes its CSV and figure, deterministically."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from cmrepro.toy.experiments import KINDS, escapes, nearer_flat
from cmrepro.toy.summary import write_summary

CONF = Path(__file__).resolve().parents[1] / "conf" / "toy" / "experiment"
# Shrink every experiment: few runs, few steps, two sharpness values.
REDUCE = {"seeds": 2, "runs": 3, "steps": 12, "lr_drop_step": 6, "sharpness": [2, 10], "points": 3}


def _reduced(name: str) -> dict:
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    for key, value in REDUCE.items():
        if key in cfg and cfg[key] is not None:
            cfg[key] = value
    for protocol in cfg.get("protocols", []):
        protocol.update(steps=REDUCE["steps"], lr_drop_step=None)
    if "starts" in cfg:  # a list of 1-D starts, or a number of random 2-D starts
        cfg["starts"] = cfg["starts"][:2] if isinstance(cfg["starts"], list) else 2
    return cfg


def test_escape_means_every_coordinate_at_the_flat_minimum():
    final = torch.tensor([[0.05, -0.09], [0.24, -0.24], [0.26, 0.0], [0.0, 1.0], [0.9, 1.1]])
    assert escapes(final).tolist() == [True, True, False, False, False]
    # In 10-D, four coordinates left at the sharp minimum 1 are not an escape (the looser variant said yes).
    four_sharp = torch.tensor([[1.0] * 4 + [0.0] * 6])
    assert escapes(four_sharp).tolist() == [False] and nearer_flat(four_sharp).tolist() == [True]
    assert escapes(torch.tensor([[0.2], [-0.2], [0.3], [1.0]])).tolist() == [True, True, False, False]


def test_nearer_flat_variant_keeps_the_old_margin():
    final = torch.tensor([[0.05, -0.09], [0.45, 0.45], [1.0, 0.0], [0.2, 0.3], [0.9, 1.1]])
    # distances to 0 / to (1, 1): 0.10/1.49, 0.64/0.78, 1.0/1.0, 0.36/1.06, 1.42/0.14
    assert nearer_flat(final).tolist() == [True, True, False, True, False]


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
        if cfg["kind"] not in ("final_loss_and_sharpness", "protocol_search"):  # tables only
            assert (figures / f"{name}.png").stat().st_size > 1000
        write_summary(out, figures)
        assert "Claims of Section 4" in (out / "README.md").read_text()
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
