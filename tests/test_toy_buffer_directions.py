"""Figures 2, 11 and 12: the recorded buffers are what the optimizers hold, and the configs are the paper's."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from cmrepro.toy.batched_runs import run
from cmrepro.toy.buffer_directions import buffer_directions, stored_elements, tidy_frame, trace_buffer
from cmrepro.toy.experiments import KINDS, buffer_cancellation
from cmrepro.toy.summary import FIGURES
from cmrepro.toy.surfaces import surface

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "toy" / "experiment"
NAMES = ("figure2", "figure11", "figure12")
# Table 11 (toy examples, GP and Ackley columns alike): {lr, beta1, beta2, C, lambda}.
TABLE11 = {
    "adam_cg": {"lr": 0.1, "betas": [0.9, 0.99], "topC": 5, "decay": 0.7},
    "adam_cm": {"lr": 0.1, "betas": [0.9, 0.999], "topC": 20, "decay": 0.99},
}
CG = dict(lr=0.1, betas=(0.9, 0.99), topC=3, decay=0.7)
CM = dict(lr=0.1, betas=(0.9, 0.999), topC=20, decay=0.99)
START = torch.tensor([2.2, 1.6], dtype=torch.float64)


def _config(name: str) -> dict:
    return yaml.safe_load((CONF / f"{name}.yaml").read_text())


def test_cg_buffer_after_step_one_is_exactly_the_first_gradient():
    trace = trace_buffer(surface("ackley"), "adam_cg", CG, START, steps=1)
    assert torch.equal(trace.stored[0], trace.grads[0].reshape(1, -1))
    # the key is the gradient's norm, decayed once by lambda after the insertion
    assert trace.keys[0].item() == pytest.approx(trace.grads[0].norm().item() * CG["decay"], rel=1e-12)
    assert trace.read_by(1).shape == (0, 2)  # step 1 aggregates with nothing


def test_cg_buffer_follows_the_official_insertion_rule_from_the_recorded_gradients():
    """An independent model of the buffer, fed the recorded gradients: append until C are
    stored, then replace the smallest key when the new norm is strictly larger; keys decay."""
    trace = trace_buffer(surface("ackley"), "adam_cg", CG, START, steps=25)
    elements, keys = [], []
    for step, grad in enumerate(trace.grads, start=1):
        norm = grad.norm().item()
        if len(elements) < CG["topC"]:
            elements.append(grad)
            keys.append(norm)
        elif norm > min(keys):
            slot = keys.index(min(keys))
            elements[slot], keys[slot] = grad, norm
        keys = [k * CG["decay"] for k in keys]
        assert torch.equal(trace.stored[step - 1], torch.stack(elements)), f"step {step}"
        assert trace.keys[step - 1].tolist() == pytest.approx(keys, rel=1e-12)
        assert len(trace.stored[step - 1]) <= CG["topC"]
    # the rule did replace elements: the run is long enough to test more than appending
    assert any(not torch.equal(trace.stored[t][0], trace.grads[0]) for t in range(trace.steps))


def test_read_by_is_the_buffer_each_step_aggregated_with():
    """Adam+CG by hand (eq. 3): a_t = g_t + mean(read_by(t)) (a_1 = g_1) fed to Adam reproduces the trajectory."""
    trace = trace_buffer(surface("ackley"), "adam_cg", CG, START, steps=6)
    (beta1, beta2), lr, eps = CG["betas"], CG["lr"], 1e-8
    theta, m, v = START.clone(), torch.zeros(2, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)
    for t in range(1, trace.steps + 1):
        read = trace.read_by(t)
        aggregate = trace.grads[t - 1] + (read.mean(dim=0) if len(read) else 0)
        m = beta1 * m + (1 - beta1) * aggregate
        v = beta2 * v + (1 - beta2) * aggregate**2
        theta = theta - lr * (m / (1 - beta1**t)) / ((v / (1 - beta2**t)).sqrt() + eps)
        torch.testing.assert_close(trace.points[t], theta, rtol=1e-10, atol=1e-12)
        if t > 1:
            assert torch.equal(read, trace.stored[t - 2])


def test_cm_buffer_holds_momenta_not_gradients():
    """By hand: step 1 stores the raw g_1 (official Adam_CM), then m_t = 0.9 m_{t-1} + 0.1 g_t with m_1 = 0."""
    trace = trace_buffer(surface("ackley"), "adam_cm", CM, START, steps=3)
    g1, g2, g3 = trace.grads
    m2 = 0.1 * g2
    m3 = 0.9 * m2 + 0.1 * g3
    assert torch.equal(trace.stored[0], g1.reshape(1, -1))
    torch.testing.assert_close(trace.stored[1], torch.stack([g1, m2]), rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(trace.stored[2], torch.stack([g1, m2, m3]), rtol=1e-12, atol=1e-14)
    assert not torch.allclose(trace.stored[2][2], g3)
    # Adam+CM does not move on its first step; it does on the next
    assert torch.equal(trace.points[1], trace.points[0]) and not torch.equal(trace.points[2], trace.points[1])


def test_recorded_mean_is_the_mean_of_the_recorded_elements():
    traces = [
        trace_buffer(surface("goldstein_price"), name, hyper, START / 2, steps=8)
        for name, hyper in (("adam_cg", CG), ("adam_cm", CM))
    ]
    frame = tidy_frame(traces)
    for (optimizer, step), rows in frame.groupby(["optimizer", "step"]):
        assert rows[["mean_x", "mean_y"]].nunique().max() == 1
        assert rows.mean_x.iloc[0] == pytest.approx(rows.buffer_x.mean(), rel=1e-12, abs=1e-15)
        assert rows.mean_y.iloc[0] == pytest.approx(rows.buffer_y.mean(), rel=1e-12, abs=1e-15)
        assert list(rows.slot) == list(range(min(step, 3 if optimizer == "Adam+CG" else 20)))


def test_trace_is_the_toy_run_step_for_step():
    f = surface("goldstein_price")
    trace = trace_buffer(f, "adam_cg", CG, START / 2, steps=30, lr_drop_step=15)
    runs = run(f, "adam_cg", CG, (START / 2)[None], 30, lr_drop_step=15)
    assert torch.equal(trace.points, runs.points[:, 0])
    assert torch.equal(trace.losses, runs.losses[:, 0])


def test_reading_an_optimizer_without_a_buffer_is_a_clear_error():
    with pytest.raises(ValueError, match="must hold one critical buffer"):
        trace_buffer(surface("ackley"), "adam", {"lr": 0.1}, START, steps=1)
    theta = [torch.zeros(2, requires_grad=True), torch.zeros(2, requires_grad=True)]
    with pytest.raises(ValueError, match=r"state for 0 parameter\(s\)"):
        stored_elements(torch.optim.Adam(theta))


@pytest.mark.parametrize("name", NAMES)
def test_figure_config_writes_png_and_csv(name, tmp_path):
    cfg = _config(name) | {"final_steps": 20}  # the full 500 steps only move the diamonds
    assert KINDS[cfg["kind"]] is buffer_cancellation  # the pictures, and the measures over a grid of starts
    buffer_directions(cfg, tmp_path, tmp_path)
    assert (tmp_path / f"{name}.png").stat().st_size > 20_000
    frame = pd.read_csv(tmp_path / f"{name}.csv")
    for setting in cfg["settings"]:
        rows = frame[frame.optimizer == {"adam_cg": "Adam+CG", "adam_cm": "Adam+CM"}[setting["optimizer"]]]
        assert sorted(rows.step.unique()) == list(range(1, cfg["steps"] + 1))
        # the buffer appends every step until it holds C elements
        capacity = setting["hyper"]["topC"]
        assert len(rows) == sum(min(step, capacity) for step in range(1, cfg["steps"] + 1))


def test_figure_configs_carry_the_papers_settings():
    for name in NAMES:
        cfg = _config(name)
        assert cfg["name"] == name and cfg["kind"] == "buffer_directions"
        for setting in cfg["settings"]:
            assert setting["hyper"] == TABLE11[setting["optimizer"]], (name, setting)
    figure2, figure11, figure12 = (_config(name) for name in NAMES)
    # Figure 2: Ackley, the first 10 steps, Adam+CG and Adam+CM
    assert (figure2["surface"], figure2["steps"], figure2["panels"]) == ("ackley", 10, 10)
    assert [s["optimizer"] for s in figure2["settings"]] == ["adam_cg", "adam_cm"]
    # Figure 11: Ackley+Rosenbrock, three consecutive steps of Adam+CG with C = 5
    assert (figure11["surface"], figure11["panels"]) == ("ackley_rosenbrock", 3)
    assert [(s["optimizer"], s["hyper"]["topC"]) for s in figure11["settings"]] == [("adam_cg", 5)]
    # Figure 12: Goldstein-Price, six consecutive steps of Adam+CG and Adam+CM
    assert (figure12["surface"], figure12["panels"]) == ("goldstein_price", 6)
    assert [s["optimizer"] for s in figure12["settings"]] == ["adam_cg", "adam_cm"]


@pytest.mark.parametrize("name", ["figure2", "figure12"])
def test_chosen_start_shows_adam_cg_stuck_and_adam_cm_at_the_global_minimum(name):
    """What each config's comment says of its start (checked also under 1e-12 jitter when chosen)."""
    cfg = _config(name)
    f = surface(cfg["surface"])
    start = torch.tensor([cfg["start"]], dtype=torch.float64)
    final = {
        s["optimizer"]: run(f, s["optimizer"], s["hyper"], start, cfg["final_steps"], cfg["lr_drop_step"]).final[0]
        for s in cfg["settings"]
    }
    to_minimum = {key: (point - torch.tensor(f.minimum, dtype=torch.float64)).norm() for key, point in final.items()}
    assert to_minimum["adam_cm"] < 0.05 < 0.5 < to_minimum["adam_cg"]


def test_figures_are_in_reproduce_toy_and_the_summary():
    toy = re.search(r"TOY_EXPERIMENTS :=((?:.*\\\n)*.*)", (ROOT / "Makefile").read_text()).group(1).split()
    for name in NAMES:
        assert name in toy and name in FIGURES


@pytest.mark.parametrize("name", NAMES)
def test_cancellation_is_measured_over_the_grid_of_starts_for_every_setting(name, tmp_path):
    cfg = _config(name) | {"final_steps": 20}
    cfg["cancellation"] = cfg["cancellation"] | {"grid": 2}
    buffer_cancellation(cfg, tmp_path, tmp_path)
    runs = pd.read_csv(tmp_path / f"{name}_runs.csv")
    measured = [*cfg["settings"], *cfg["cancellation"].get("compare", [])]
    assert len(runs) == 4 * len(measured) and set(runs.population) == {"grid"}
    assert {"cosine_mean_grad", "cancel_ratio", "reached_global", "loss"} <= set(runs.columns)
    assert runs.cosine_mean_grad.between(-1, 1).all() and (runs.cancel_ratio >= 0).all()
    # every setting, including the measured-only comparison of Figure 11, has its own rows
    assert runs.optimizer.nunique() == len(measured)
