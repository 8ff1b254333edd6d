"""The toy configs carry the paper's settings: each test names the passage of the paper it rests on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from cmrepro.paper_data import PAPER_DATA
from cmrepro.paper_names import PAPER_NAME_OF_OPTIMIZER as LABELS

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf" / "toy" / "experiment"
PAPER = PAPER_DATA


def _settings(name: str) -> dict[str, list[dict]]:
    """The experiment's settings by the paper's optimizer name."""
    cfg = yaml.safe_load((CONF / f"{name}.yaml").read_text())
    by_label: dict[str, list[dict]] = {}
    for setting in cfg["settings"]:
        by_label.setdefault(LABELS[setting["optimizer"]], []).append(setting["hyper"])
    return by_label


def _only(name: str, label: str) -> dict:
    (hyper,) = _settings(name)[label]
    return hyper


def test_table1_buffers_are_the_table5_rows_whose_numbers_they_repeat():
    """Table 1's Levy rows for Adam+CG and Adam+CM equal Table 5 rows: those rows' (C, decay) ran Table 1."""
    toy = pd.read_csv(PAPER / "toy_tables.csv")
    table1 = toy[(toy.table == "table1") & (toy.surface == "levy")].pivot_table(
        index="optimizer", columns="metric", values="value"
    )
    table5 = toy[toy.table == "table5"].pivot_table(index=["optimizer", "C", "decay"], columns="metric", values="value")
    for label in ("Adam+CG", "Adam+CM"):
        same = table5.loc[label]
        same = same[(same.loss == table1.loc[label, "loss"]) & (same.sharpness == table1.loc[label, "sharpness"])]
        assert len(same) == 1, f"Table 1's {label} row matches {len(same)} Table 5 rows"
        c, decay = same.index[0]
        hyper = _only("table1", label)
        assert (hyper["topC"], hyper["decay"]) == (int(c), decay), label
    assert sorted((h["topC"], h["decay"]) for h in _settings("table5")["Adam+CG"]) == [(5, 0.7), (5, 0.99), (20, 0.99)]
    assert _settings("table5")["Adam+CG"] and sorted(
        (h["topC"], h["decay"]) for h in _settings("table5")["Adam+CM"]
    ) == [(5, 0.7), (5, 0.99), (20, 0.99)]


def _table11(surface: str) -> dict[str, dict]:
    best = pd.read_csv(PAPER / "best_hyperparameters.csv")
    rows = best[(best.table == "table11") & (best.dataset == surface)]
    return {row.optimizer: row for row in rows.itertuples()}


@pytest.mark.parametrize(
    ("name", "surface"),
    [
        ("figure4", "ackley"),
        ("figure16", "ackley"),
        ("figure13", "ackley"),
        ("figure14", "goldstein_price"),
        ("table1", "goldstein_price"),  # Table 11 has no Levy column; its GP column serves both
    ],
)
def test_lr_betas_and_rho_are_table11s(name, surface):
    paper = _table11(surface)
    for label, settings in _settings(name).items():
        for hyper in settings:
            row = paper[label]
            assert hyper["lr"] == row.lr and hyper["betas"] == [row.beta1, row.beta2], (name, label)
            if "rho" in hyper:
                assert hyper["rho"] == row.rho, (name, label)


@pytest.mark.parametrize("name", ["figure4", "figure16", "figure13", "figure14"])
def test_table11_buffers_where_the_paper_gives_no_other(name):
    paper = _table11("ackley" if name != "figure14" else "goldstein_price")
    for label in ("Adam+CG", "Adam+CM", "Adam+SAM+CM"):
        for hyper in _settings(name).get(label, []):
            assert (hyper["topC"], hyper["decay"]) == (int(paper[label].topC), paper[label].decay), (name, label)


def test_figures_1_and_6_use_c20_decay_099():
    """Appendix A.2.2: "For the results in Figure 6 and Figure 1, C and lambda are set to 20 and 0.99"."""
    for name in ("figure1", "figure6"):
        for label in ("Adam+CG", "Adam+CM"):
            hyper = _only(name, label)
            assert (hyper["topC"], hyper["decay"]) == (20, 0.99), (name, label)


def test_eq9_experiments_use_lr_005_and_the_defaults():
    """Appendix A.2.2: lr 0.05 for every experiment on eq. 9; defaults beta1 0.9, beta2 0.99, C 5, decay 0.7."""
    for name in ("figure5", "figure6", "figure7_left", "figure7_right", "figure17", "figure18"):
        for settings in _settings(name).values():
            for hyper in settings:
                assert hyper["lr"] == 0.05 and hyper["betas"] == [0.9, 0.99], name
    for label in ("Adam+CG", "Adam+CM"):
        assert (_only("figure5", label)["topC"], _only("figure5", label)["decay"]) == (5, 0.7)


def test_figure7_buffers():
    """Figure 7: left legend "topC=10" (default decay 0.7), right legend C in {5, 10, 20, 40}."""
    for label in ("Adam+CG", "Adam+CM"):
        assert (_only("figure7_left", label)["topC"], _only("figure7_left", label)["decay"]) == (10, 0.7)
    assert [h["topC"] for h in _settings("figure7_right")["Adam+CM"]] == [5, 10, 20, 40]


@pytest.mark.parametrize(("name", "decay"), [("figure17", 0.7), ("figure18", 0.99)])
def test_figures_17_18_sweep_the_buffer_sizes_of_appendix_a3(name, decay):
    """Appendix A.3 varies C over 5, 10 and 20 at a fixed decay (0.7 in Figure 17, 0.99 in Figure 18)."""
    for label in ("Adam+CG", "Adam+CM"):
        settings = _settings(name)[label]
        assert [h["topC"] for h in settings] == [5, 10, 20]
        assert {h["decay"] for h in settings} == {decay}


def test_protocols_for_table1_run_table1s_settings():
    table1 = _settings("table1")
    for label, settings in _settings("table1_protocols").items():
        assert settings == table1[label], label
    assert set(_settings("table1_protocols")) == {"Adam", "Adam+SAM", "Adam+CG", "Adam+CM"}  # the paper's rows
