"""Line styles that keep every optimizer's curve visible, and the one way the toy figures are saved.

Several toy curves coincide (Adam and Adam+SAM often end at the same escape
ratio at every s; Adam+CM with C = 20 and C = 40 can agree step for step), and
in a plain ``plot`` the later curve hides the earlier. Each curve here gets its
own colour, line style and marker, drawn thinner and with smaller markers
the later it comes, so a curve under another still shows around it; curves
with identical values are named in a note on the panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LINE_STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "v", "D", "x")
COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")
# Surface names in words, for titles.
SURFACE_TITLES = {
    "ackley": "Ackley",
    "goldstein_price": "Goldstein-Price",
    "levy": "Levy",
    "ackley_rosenbrock": "Ackley+Rosenbrock",
}


def style(index: int) -> dict:
    """Keyword arguments for ``plot`` of the ``index``-th curve: distinct colour, dashes and marker;
    later curves are thinner with smaller markers, so that the one underneath stays visible."""
    return dict(
        color=COLORS[index % len(COLORS)],
        linestyle=LINE_STYLES[index % len(LINE_STYLES)],
        marker=MARKERS[index % len(MARKERS)],
        linewidth=max(2.6 - 0.45 * index, 0.8),
        markersize=max(8.0 - 1.2 * index, 3.0),
        markevery=None,
    )


def identical_groups(curves: dict[str, Sequence[float]]) -> list[list[str]]:
    """Labels whose curves are equal at every point (NaN equal to NaN), in groups of two or more."""
    groups: list[list[str]] = []
    for label, values in curves.items():
        values = np.asarray(values, dtype=np.float64)
        for group in groups:
            if np.array_equal(np.asarray(curves[group[0]], dtype=np.float64), values, equal_nan=True):
                group.append(label)
                break
        else:
            groups.append([label])
    return [group for group in groups if len(group) > 1]


def plot_curves(axis, x, curves: dict[str, Sequence[float]], markevery: int | None = None) -> None:
    """One styled line per label; a note on the panel names the labels whose curves coincide."""
    for index, (label, values) in enumerate(curves.items()):
        axis.plot(x, values, label=label, **{**style(index), "markevery": markevery})
    notes = [" = ".join(group) for group in identical_groups(curves)]
    if notes:
        axis.text(
            0.01,
            0.99,
            "identical: " + "; ".join(notes),
            transform=axis.transAxes,
            fontsize=7,
            va="top",
            bbox=dict(facecolor="white", alpha=0.8, linewidth=0),
        )


def save(figure, path: Path, dpi: int = 110) -> None:
    """Write ``figure`` to ``path`` and free it. Every toy figure goes through here, so a test can
    replace this function and inspect the figure objects instead of their pixels."""
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
