"""Figures 2, 11 and 12: what the critical buffer holds, step by step, against the new gradient.

The paper explains "gradient cancellation" with pictures: near a sharp
minimum Adam+CG's buffer fills with large gradients pointing in opposite
directions, their mean cancels the new gradient, and the update is small;
Adam+CM's buffer of momenta keeps a consistent direction and moves on.
Here one run per optimizer setting is traced with the real ``cmrepro.optim``
optimizers, and after every step the stored elements are read from the
optimizer's ``state_dict()`` (a tested, stable format) rather than from its
internals. As the official code does, Adam+CM's first step stores the raw
gradient; every later element it stores is a momentum.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from torch import Tensor  # noqa: E402
from torch.optim import Optimizer  # noqa: E402

from ..optim import create_optimizer  # noqa: E402
from ..paper_names import PAPER_NAME_OF_OPTIMIZER  # noqa: E402
from . import plotting  # noqa: E402
from .batched_runs import drop_lr_at, jittered, run  # noqa: E402
from .surfaces import Surface, surface  # noqa: E402

# The paper's colours: buffer quantities as thin lines, their mean as a black
# arrow, the new gradient as a green arrow.
MEAN_COLOR = "black"
GRADIENT_COLOR = "limegreen"
# Trajectories, one colour per optimizer setting, apart from the buffer's blue and white.
TRAJECTORY_COLORS = ("tab:red", "tab:orange", "tab:purple", "tab:brown")
# A panel widens to show the final point when that at most triples its width.
FINAL_GROWTH = 3.0
# The longest vector drawn at a point spans this share of the panel's width.
ARROW_SHARE = 0.2


@dataclass
class BufferTrace:
    """One run of one optimizer, with its buffer after every step.

    Steps are numbered from 1: step ``t`` takes the gradient ``grads[t - 1]``
    at ``points[t - 1]`` and moves to ``points[t]``.
    """

    optimizer: str  # the factory name, e.g. "adam_cg"
    points: Tensor  # [steps + 1, dim]
    losses: Tensor  # [steps + 1]
    grads: Tensor  # [steps, dim]
    stored: list[Tensor]  # per step, [n, dim]: the elements in the buffer after it, in slot order
    keys: list[Tensor]  # per step, [n]: their priority keys (already decayed by that step)

    @property
    def steps(self) -> int:
        return len(self.grads)

    def mean(self, step: int) -> Tensor:
        """Mean of the elements stored after ``step``, as the aggregation divides it (by their number, not C)."""
        return self.stored[step - 1].mean(dim=0)

    def read_by(self, step: int) -> Tensor:
        """The elements that ``step`` aggregated with: those stored after the step before (none for step 1)."""
        return self.stored[step - 2] if step > 1 else self.grads.new_zeros(0, self.grads.shape[1])


def stored_elements(opt: Optimizer) -> tuple[Tensor, Tensor]:
    """``(elements [n, numel], keys [n])`` of the single parameter's critical buffer, from ``state_dict()``.

    Slots fill in order until the buffer is full and are then replaced in
    place, so the first ``count`` slots are the stored ones.
    """
    state = opt.state_dict()["state"]
    if len(state) != 1 or "buffer" not in state[0]:
        raise ValueError(
            f"invalid optimizer {type(opt).__name__} with state for {len(state)} parameter(s): "
            "must hold one critical buffer for one parameter; trace adam_cg or adam_cm on one start"
        )
    entry = state[0]
    n = int(entry["count"])
    elements = entry["buffer"][:n].reshape(n, -1).to(torch.float64).clone()
    return elements, entry["keys"].reshape(-1)[:n].to(torch.float64).clone()


def trace_buffer(
    f: Surface,
    optimizer: str,
    hyper: dict,
    start: Tensor,
    steps: int,
    lr_drop_step: int | None = None,
    lr_drop_factor: float = 0.1,
) -> BufferTrace:
    """``steps`` steps of ``optimizer`` from ``start`` on ``f``, recording the buffer after each.

    The run is built as :func:`cmrepro.toy.batched_runs.run` builds one run (one
    float64 param group), so its trajectory is that run's, step for step.
    """
    theta = start.detach().clone().to(torch.float64).requires_grad_()
    opt = create_optimizer(optimizer, [{"params": [theta]}], **hyper)
    points, losses, grads, stored, keys = [theta.detach().clone()], [], [], [], []
    for step in range(steps):
        drop_lr_at(opt, step, lr_drop_step, lr_drop_factor)
        theta.grad = None
        loss = f(theta)
        loss.backward()
        losses.append(loss.detach())
        grads.append(theta.grad.detach().clone())
        opt.step()
        elements, element_keys = stored_elements(opt)
        stored.append(elements)
        keys.append(element_keys)
        points.append(theta.detach().clone())
    with torch.no_grad():
        losses.append(f(theta))
    return BufferTrace(optimizer, torch.stack(points), torch.stack(losses), torch.stack(grads), stored, keys)


def tidy_frame(traces: list[BufferTrace]) -> pd.DataFrame:
    """One row per optimizer, step and stored element (the buffer after the step)."""
    rows = []
    for trace in traces:
        for step in range(1, trace.steps + 1):
            point, after, grad = trace.points[step - 1], trace.points[step], trace.grads[step - 1]
            mean = trace.mean(step)
            for slot, (element, key) in enumerate(zip(trace.stored[step - 1], trace.keys[step - 1])):
                rows.append(
                    dict(
                        optimizer=PAPER_NAME_OF_OPTIMIZER[trace.optimizer],
                        step=step,
                        x=float(point[0]),
                        y=float(point[1]),
                        loss=float(trace.losses[step - 1]),
                        grad_x=float(grad[0]),
                        grad_y=float(grad[1]),
                        x_next=float(after[0]),
                        y_next=float(after[1]),
                        slot=slot,
                        key=float(key),
                        buffer_x=float(element[0]),
                        buffer_y=float(element[1]),
                        mean_x=float(mean[0]),
                        mean_y=float(mean[1]),
                    )
                )
    return pd.DataFrame(rows)


# ---- drawing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Window:
    """The square region a figure's panels show, so that directions are drawn undistorted."""

    low: tuple[float, float]
    size: float

    @classmethod
    def around(cls, points: Tensor, margin: float = 0.25) -> Window:
        low, high = points.min(dim=0).values, points.max(dim=0).values
        size = float((high - low).max()) * (1 + 2 * margin) + 1e-3
        centre = (low + high) / 2
        return cls((float(centre[0]) - size / 2, float(centre[1]) - size / 2), size)

    def apply(self, axis) -> None:
        axis.set_xlim(self.low[0], self.low[0] + self.size)
        axis.set_ylim(self.low[1], self.low[1] + self.size)
        axis.set_aspect("equal")


def _surface_grid(f: Surface, window: Window, points: int = 160) -> tuple:
    """``(x, y, f(x, y))`` on a grid over ``window``, computed once per row of panels."""
    x = torch.linspace(window.low[0], window.low[0] + window.size, points, dtype=torch.float64)
    y = torch.linspace(window.low[1], window.low[1] + window.size, points, dtype=torch.float64)
    gx, gy = torch.meshgrid(x, y, indexing="xy")
    return gx.numpy(), gy.numpy(), f(torch.stack([gx, gy], dim=-1)).numpy()


def _draw_vectors(axis, at: Tensor, read: Tensor, grad: Tensor, window: Window, buffer_color: str) -> None:
    """The buffer a step read (thin lines), its mean and the new gradient (arrows), drawn from ``at``.

    Buffer elements and the gradient share one scale, so that a small mean
    beside long elements shows as it is; the longest spans ARROW_SHARE of the panel.
    """
    longest = float(torch.cat([read.norm(dim=1), grad.norm().reshape(1)]).max())
    scale = ARROW_SHARE * window.size / max(longest, 1e-12)
    x, y = float(at[0]), float(at[1])
    for element in read * scale:
        axis.plot([x, x + float(element[0])], [y, y + float(element[1])], color=buffer_color, linewidth=0.9)
    arrows = [(grad * scale, GRADIENT_COLOR)]
    if len(read):
        arrows.append((read.mean(dim=0) * scale, MEAN_COLOR))
    for vector, color in arrows:
        axis.annotate(
            "",
            xy=(x + float(vector[0]), y + float(vector[1])),
            xytext=(x, y),
            arrowprops=dict(arrowstyle="-|>", color=color, linewidth=1.6, mutation_scale=10),
        )


def draw_panels(
    traces: list[BufferTrace],
    f: Surface,
    panel_steps: list[int],
    finals: list[Tensor],
    title: str,
    style: dict,
    path: Path,
) -> None:
    """One row of panels per optimizer, one panel per step of ``panel_steps``.

    A panel shows the trajectory so far and, at the point where the step took
    its gradient, the buffer that step read, its mean and the new gradient.
    Each optimizer gets its own window around the drawn steps (and its final
    point, if near): Adam+CG circles inside one basin while Adam+CM travels
    far, and a shared window would shrink the first to a dot. The last panel
    of a row marks that optimizer's final point with a diamond and prints it.
    ``style`` may set ``buffer_color`` and ``contour_cmap``.
    """
    buffer_color = style.get("buffer_color", "tab:blue")
    columns = len(panel_steps) if len(panel_steps) <= 6 else -(-len(panel_steps) // 2)
    rows_each = -(-len(panel_steps) // columns)
    rows = rows_each * len(traces)
    # Fixed margins in inches (title above, legend below): a layout engine measures every tick
    # label of every panel and took longer than the runs themselves.
    width, height = 3.4 * columns, 3.4 * rows + 1.7
    figure, axes = plt.subplots(rows, columns, figsize=(width, height), squeeze=False)
    figure.subplots_adjust(
        left=0.7 / width, right=1 - 0.2 / width, top=1 - 0.85 / height, bottom=1.0 / height, wspace=0.35, hspace=0.35
    )
    for index, (trace, final) in enumerate(zip(traces, finals)):
        color, label = TRAJECTORY_COLORS[index % len(TRAJECTORY_COLORS)], PAPER_NAME_OF_OPTIMIZER[trace.optimizer]
        # Earlier steps may leave the frame, and so may a far final point (the last panel prints it).
        drawn = trace.points[panel_steps[0] - 1 : panel_steps[-1] + 1]
        window = Window.around(drawn)
        with_final = Window.around(torch.cat([drawn, final.reshape(1, -1)]))
        if with_final.size <= FINAL_GROWTH * window.size:
            window = with_final
        grid = _surface_grid(f, window)  # zoomed in: the buffer pictures live near one basin
        row = list(axes[index * rows_each : (index + 1) * rows_each].flat)
        for axis in row[len(panel_steps) :]:
            axis.set_visible(False)
        for axis, step in zip(row, panel_steps):
            axis.contourf(*grid, levels=30, cmap=style.get("contour_cmap", "viridis"))
            so_far = trace.points[: step + 1]
            axis.plot(so_far[:, 0], so_far[:, 1], "-o", color=color, markersize=2.5, linewidth=1.2)
            _draw_vectors(
                axis, trace.points[step - 1], trace.read_by(step), trace.grads[step - 1], window, buffer_color
            )
            if step == panel_steps[-1]:
                axis.plot(float(final[0]), float(final[1]), "D", color=color, markeredgecolor="white", markersize=8)
                axis.text(
                    0.03,
                    0.03,
                    f"final point ({float(final[0]):.2f}, {float(final[1]):.2f})",
                    transform=axis.transAxes,
                    fontsize=7,
                    bbox=dict(facecolor="white", alpha=0.8, linewidth=0),
                )
            window.apply(axis)
            axis.set_title(f"{label}, step {step}", fontsize=9)
            axis.set(xlabel="x", ylabel="y")
    handles = [
        Line2D(
            [],
            [],
            color=TRAJECTORY_COLORS[i % len(TRAJECTORY_COLORS)],
            marker="o",
            label=PAPER_NAME_OF_OPTIMIZER[t.optimizer],
        )
        for i, t in enumerate(traces)
    ]
    handles += [
        Line2D([], [], color=buffer_color, linewidth=0.9, label="buffer quantities (read by the step)"),
        Line2D([], [], color=MEAN_COLOR, linewidth=1.6, marker=">", label="buffer mean"),
        Line2D([], [], color=GRADIENT_COLOR, linewidth=1.6, marker=">", label="new gradient"),
        Line2D([], [], color="grey", marker="D", linestyle="", label="final point (last panel of a row)"),
    ]
    figure.suptitle(title, fontsize=10)
    figure.legend(handles=handles, loc="lower center", ncol=min(len(handles), 4), fontsize=8, facecolor="0.8")
    plotting.save(figure, path, dpi=100)


# ---- the experiment kind -----------------------------------------------------------------


def buffer_directions(cfg: dict, out: Path, figures: Path, note: str = "") -> pd.DataFrame:
    """Figures 2, 11 and 12: trace each setting from ``start`` for ``steps`` steps, draw the last ``panels``.

    Writes ``<name>.csv`` (tidy: one row per optimizer, step and stored
    element) and ``<name>.png``. The diamonds mark where each optimizer is
    after ``final_steps`` steps (the same run, continued; default ``steps``).
    ``note`` is a line added to the title (what the grid of starts showed).
    """
    f = surface(cfg["surface"])
    if f.dim != 2:
        raise ValueError(f"invalid surface {cfg['surface']!r} of dimension {f.dim}: must be 2-D; pick a 2-D surface")
    steps, panels = cfg["steps"], cfg["panels"]
    if not 1 <= panels <= steps:
        raise ValueError(f"invalid panels={panels}: must be in [1, steps={steps}]; lower panels or raise steps")
    start = jittered(torch.tensor([cfg["start"]], dtype=torch.float64), cfg.get("start_jitter", 0.0))[0]
    lr_drop_step = cfg.get("lr_drop_step")
    final_steps = cfg.get("final_steps") or steps
    traces, finals = [], []
    for setting in cfg["settings"]:
        hyper = dict(setting["hyper"])  # the optimizers take betas as a list or a tuple
        traces.append(trace_buffer(f, setting["optimizer"], hyper, start, steps, lr_drop_step))
        finals.append(run(f, setting["optimizer"], hyper, start[None], final_steps, lr_drop_step).final[0])
    frame = tidy_frame(traces)
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    panel_steps = list(range(steps - panels + 1, steps + 1))
    where = f"{plotting.SURFACE_TITLES.get(f.name, f.name)}, start {tuple(cfg['start'])}"
    title = f"{cfg['title']}\n{where}; diamonds: points after {final_steps} steps"
    if note:
        title += f"\n{note}"
    style = {key: cfg[key] for key in ("buffer_color", "contour_cmap") if key in cfg}
    draw_panels(traces, f, panel_steps, finals, title, style, figures / f"{cfg['name']}.png")
    return frame
