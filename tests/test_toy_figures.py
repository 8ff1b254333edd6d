"""Figures people can read (issue 20), checked on the matplotlib figure objects, not by eye: every panel
has axis labels and a legend, every optimizer a visible line, no two curves drawn identically on top of
each other, and a note on the panel when two optimizers' curves coincide."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.lines import Line2D
from test_toy_experiments import _reduced

from cmrepro.paper_names import PAPER_NAME_OF_OPTIMIZER
from cmrepro.toy import plotting
from cmrepro.toy.experiments import KINDS

# A config or factory name in a title (goldstein_price, two_minima_s2_d1, adam_cm); the paper's f_s is a word.
IDENTIFIER = re.compile(r"\b[a-z0-9]+(?:_[a-z0-9]{2,})+\b")
# One experiment of each kind that draws optimizers' curves or trajectories.
DRAWN = ["figure1", "figure4", "figure5", "figure6", "figure7_right", "figure12", "figure15_goldstein_price"]


def _drawn_figures(name, tmp_path, monkeypatch) -> list:
    figures = []
    monkeypatch.setattr(plotting, "save", lambda figure, path, dpi=110: figures.append(figure))
    cfg = _reduced(name)
    KINDS[cfg["kind"]](cfg, tmp_path, tmp_path)
    assert figures, f"{name} drew nothing through plotting.save"
    return figures


def _style(line: Line2D) -> tuple:
    return (line.get_color(), line.get_linestyle(), line.get_marker(), line.get_linewidth())


def _visible(line: Line2D) -> bool:
    drawn = line.get_linestyle() not in ("None", "", " ") or line.get_marker() not in ("None", "", " ", None)
    return line.get_visible() and (line.get_alpha() is None or line.get_alpha() > 0) and drawn


def _setting_labels(name: str) -> set[str]:
    """The paper names of the optimizers an experiment runs (a legend entry may add C or rates to them)."""
    return {PAPER_NAME_OF_OPTIMIZER[s["optimizer"]] for s in _reduced(name)["settings"]}


@pytest.mark.parametrize("name", DRAWN)
def test_every_panel_is_labelled_and_every_optimizer_has_a_visible_line(name, tmp_path, monkeypatch):
    for figure in _drawn_figures(name, tmp_path, monkeypatch):
        axes = [axis for axis in figure.axes if axis.get_visible()]
        labelled = []
        for axis in axes:
            assert axis.get_xlabel() and axis.get_ylabel(), f"{name}: a panel without axis labels"
            assert axis.get_legend() is not None or figure.legends, f"{name}: a panel without a legend"
            lines = [line for line in axis.get_lines() if not line.get_label().startswith("_")]
            labelled += lines
            drawn = {}
            for line in lines:
                key = (
                    _style(line),
                    np.asarray(line.get_xdata(), float).tobytes(),
                    np.asarray(line.get_ydata(), float).tobytes(),
                )
                assert key not in drawn, f"{name}: {line.get_label()} is drawn exactly over {drawn.get(key)}"
                drawn[key] = line.get_label()
        legend_text = [handle.get_label() for handle in labelled if _visible(handle)]
        legend_text += [text.get_text() for legend in figure.legends for text in legend.get_texts()]
        for optimizer in _setting_labels(name):
            assert any(text.startswith(optimizer) for text in legend_text), f"{name}: no visible line for {optimizer}"
        titles = [axis.get_title() for axis in axes] + [figure._suptitle.get_text() if figure._suptitle else ""]
        identifiers = [word for title in titles for word in IDENTIFIER.findall(title)]
        assert not identifiers, f"{name}: titles in identifiers, not words: {identifiers}"


def test_coinciding_curves_are_named_in_a_note_and_styled_apart():
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    plotting.plot_curves(
        axis, [0, 1, 2], {"Adam": [0.5, 0.5, 0.6], "Adam+SAM": [0.5, 0.5, 0.6], "Adam+CM": [0.9, 1, 1]}
    )
    notes = [text.get_text() for text in axis.texts]
    assert notes == ["identical: Adam = Adam+SAM"]
    adam, sam, _ = axis.get_lines()
    assert _style(adam) != _style(sam) and adam.get_linewidth() > sam.get_linewidth()
    plt.close(figure)


def test_no_note_when_no_curves_coincide():
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots()
    plotting.plot_curves(axis, [0, 1], {"Adam": [0.5, float("nan")], "Adam+CM": [0.5, 0.7]})
    assert len(axis.texts) == 0
    assert plotting.identical_groups({"a": [1.0, float("nan")], "b": [1.0, float("nan")]}) == [["a", "b"]]
    plt.close(figure)
