"""The per-run measures behind the toy claims (issue 20): escape under three rules, global-minimum reach,
gradient cancellation, and Figure 15's Adam+MEG grid search."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from test_toy_experiments import _reduced

from cmrepro.toy.buffer_directions import BufferTrace
from cmrepro.toy.cancellation import step_cancellation
from cmrepro.toy.escape import ESCAPE_COLUMNS, basin_bound, escape_measures
from cmrepro.toy.experiments import KINDS
from cmrepro.toy.meg_search import chosen_setting, grid_settings, meg_grid
from cmrepro.toy.reach import grid_starts, reached
from cmrepro.toy.surfaces import surface

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "toy" / "experiment"


def _still(final: list[list[float]], steps: int = 60) -> torch.Tensor:
    """Trajectories that sit at ``final`` for every step: ``[steps + 1, runs, D]``."""
    return torch.tensor(final, dtype=torch.float64).expand(steps + 1, -1, -1).clone()


def test_basin_bound_is_where_the_two_quadratics_of_eq9_meet():
    s = torch.tensor([1.0, 4.0, 100.0], dtype=torch.float64)
    bound = basin_bound(s)
    assert bound.tolist() == pytest.approx([0.5, 2 / 3, 10 / 11])
    assert (bound**2).tolist() == pytest.approx((s * (bound - 1) ** 2).tolist())


def test_basin_rule_counts_a_final_point_the_snapshot_rule_misses():
    # x = 0.4 at s = 4 is in the flat basin (edge 2/3) but not within 0.25 of 0; x = 0.7 is past the edge.
    points = _still([[0.4], [0.7], [0.1]])
    measures = escape_measures(points, torch.tensor([4.0, 4.0, 4.0]))
    assert measures["escaped_basin"].tolist() == [1, 0, 1]
    assert measures["escaped_snapshot"].tolist() == [0, 0, 1]
    assert set(measures) == set(ESCAPE_COLUMNS)


def test_the_edge_of_the_basin_moves_with_s():
    points = _still([[0.6], [0.6]])
    assert escape_measures(points, torch.tensor([1.0, 10.0]))["escaped_basin"].tolist() == [0, 1]


def test_mean_of_the_last_50_iterates_judges_a_run_that_still_swings():
    # A run swinging between -0.5 and +0.5 around 0, last step at +0.5: the snapshot says no, the mean says yes.
    swing = torch.tensor([0.5 if t % 2 == 0 else -0.5 for t in range(101)], dtype=torch.float64)
    parked = torch.full((101,), 1.0, dtype=torch.float64)
    parked[-1] = 0.0  # arrived at 0 on the very last step: the snapshot says yes, the tail mean no
    points = torch.stack([swing, parked], dim=1)[:, :, None]
    measures = escape_measures(points, torch.tensor([100.0, 100.0]))
    assert measures["escaped_snapshot"].tolist() == [0, 1]
    assert measures["escaped_mean50"].tolist() == [1, 0]


def test_in_ten_dimensions_the_share_counts_coordinates_and_the_rate_needs_all():
    final = [[0.0] * 10, [1.0] * 4 + [0.0] * 6]
    measures = escape_measures(_still(final), torch.tensor([10.0, 10.0]))
    assert measures["escaped_basin"].tolist() == [1, 0]
    assert measures["basin_share"].tolist() == pytest.approx([1.0, 0.6])


def test_grid_starts_are_cell_centres_and_an_even_grid_avoids_the_centre():
    f = surface("ackley")
    starts = grid_starts(f, 2)
    assert sorted(map(tuple, starts.tolist())) == [(-2.5, -2.5), (-2.5, 2.5), (2.5, -2.5), (2.5, 2.5)]
    assert not (grid_starts(f, 8).norm(dim=1) < 1e-9).any()
    assert grid_starts(f, 3, box=(0.0, 3.0))[:, 0].unique().tolist() == [0.5, 1.5, 2.5]


def test_reached_is_within_the_declared_radius_of_the_minimum():
    final = torch.tensor([[0.0, -0.95], [0.0, -0.85], [-0.6, -0.4]], dtype=torch.float64)
    assert reached(final, (0.0, -1.0), 0.1).tolist() == [1, 0, 0]
    assert reached(final, (0.0, -1.0), 0.2).tolist() == [1, 1, 0]


@pytest.mark.parametrize("radius", [0.0, -1.0, float("nan")])
def test_a_bad_radius_or_grid_is_one_clear_error(radius):
    with pytest.raises(ValueError, match="invalid reach radius .* must be > 0"):
        reached(torch.zeros(1, 2), (0.0, 0.0), radius)
    with pytest.raises(ValueError, match="invalid reach grid 0: must be >= 1"):
        grid_starts(surface("ackley"), 0)


def _trace(grads: list[list[float]], stored: list[list[list[float]]]) -> BufferTrace:
    steps = len(grads)
    return BufferTrace(
        "adam_cg",
        torch.zeros(steps + 1, 2, dtype=torch.float64),
        torch.zeros(steps + 1, dtype=torch.float64),
        torch.tensor(grads, dtype=torch.float64),
        [torch.tensor(s, dtype=torch.float64).reshape(-1, 2) for s in stored],
        [torch.zeros(len(s)) for s in stored],
    )


def test_cancellation_of_a_buffer_pointing_back_and_of_one_pointing_along():
    # Step 2 reads the buffer stored after step 1; step 3 the one stored after step 2.
    trace = _trace(
        grads=[[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]],
        stored=[[[-1.0, 0.0]], [[0.0, 1.0], [0.0, 3.0]], [[0.0, 0.0]]],
    )
    cosine, ratio = step_cancellation(trace)
    # step 2: mean (-1, 0) against g (1, 0): cos -1, |g + b| = 0. step 3: mean (0, 2) along g (0, 2): cos 1, ratio 2.
    assert cosine.tolist() == pytest.approx([-1.0, 1.0])
    assert ratio.tolist() == pytest.approx([0.0, 2.0])


def test_cancellation_at_right_angles():
    cosine, ratio = step_cancellation(_trace(grads=[[3.0, 0.0], [3.0, 0.0]], stored=[[[0.0, 4.0]], [[0.0, 4.0]]]))
    assert cosine.tolist() == pytest.approx([0.0]) and ratio.tolist() == pytest.approx([5.0 / 3.0])


def test_meg_grid_is_every_combination_and_a_missing_axis_is_one_line():
    grid = grid_settings({"lr": [0.1, 0.01], "gamma": [None], "heavy_ball": [0.0, 0.5]})
    assert grid == [
        {"lr": 0.1, "gamma": None, "heavy_ball": 0.0},
        {"lr": 0.1, "gamma": None, "heavy_ball": 0.5},
        {"lr": 0.01, "gamma": None, "heavy_ball": 0.0},
        {"lr": 0.01, "gamma": None, "heavy_ball": 0.5},
    ]
    with pytest.raises(ValueError, match="invalid MEG grid: heavy_ball missing or empty"):
        grid_settings({"lr": [0.1], "gamma": [None], "heavy_ball": []})


def test_meg_grid_chooses_the_lowest_mean_final_loss_per_surface(tmp_path):
    cfg = yaml.safe_load((CONF / "figure15_meg_grid.yaml").read_text())
    cfg.update(seeds=3, steps=20, lr_drop_step=10, grid={"lr": [0.1, 0.001], "gamma": [None], "heavy_ball": [0.0]})
    frame = meg_grid(cfg, tmp_path, tmp_path)
    for _, rows in frame.groupby("surface"):
        assert rows.chosen.sum() == 1
        assert rows[rows.chosen == 1].loss.item() == rows.loss.min()
    written = pd.read_csv(tmp_path / "figure15_meg_grid.csv")
    assert chosen_setting(written, "ackley")["gamma"] is None  # "null" survives the CSV as None


def _meg_hyper(name: str) -> dict:
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    (setting,) = [s for s in cfg["settings"] if s["optimizer"] == "adam_meg"]
    return setting["hyper"]


@pytest.mark.parametrize("surface_name", ["ackley", "goldstein_price"])
def test_figure15_uses_the_setting_its_grid_search_chose(surface_name):
    """The configs carry the chosen rows of the committed grid (rerun the grid, then copy the choice)."""
    grid = pd.read_csv(ROOT / "results" / "toy" / "figure15_meg_grid.csv")
    hyper = _meg_hyper(f"figure15_{surface_name}")
    chosen = chosen_setting(grid, surface_name)
    assert {key: hyper[key] for key in chosen} == chosen


def test_a_bad_reach_radius_is_one_line_and_exit_2_before_any_run(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cmrepro.toy",
            "experiment=figure13",
            "experiment.reach.radius=0",
            f"output_dir={tmp_path}",
            f"figures_dir={tmp_path}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == (
        "cmrepro.toy: figure13: invalid reach radius 0: must be > 0; set the experiment's reach.radius"
    )
    assert not list(tmp_path.glob("*.csv"))  # refused before the runs: nothing written


# The columns the claim registry (conf/toy/claims.yaml) reads from each kind's <name>_runs.csv.
CONTRACT = {
    "figure5": {"s", "x0", "run", "optimizer", "final", "loss", *ESCAPE_COLUMNS},
    "figure6": {"s", "run", "optimizer", "loss", *ESCAPE_COLUMNS},
    "figure1": {"population", "start", "optimizer", "x", "y", "loss", "sharpness", "reached_global"},
    "table1": {"surface", "run", "optimizer", "x", "y", "loss", "sharpness", "reached_global"},
    "figure2": {"population", "start", "optimizer", "cosine_mean_grad", "cancel_ratio", "loss", "reached_global"},
}


@pytest.mark.parametrize("name", sorted(CONTRACT))
def test_runs_csv_carries_the_columns_the_registry_reads(name, tmp_path):
    cfg = _reduced(name)
    KINDS[cfg["kind"]](cfg, tmp_path, tmp_path)
    runs = pd.read_csv(tmp_path / f"{name}_runs.csv")
    assert CONTRACT[name] <= set(runs.columns)
    flags = [
        c for c in CONTRACT[name] if c in ("escaped_basin", "escaped_snapshot", "escaped_mean50", "reached_global")
    ]
    assert runs[sorted(flags)].isin([0, 1]).all().all()
