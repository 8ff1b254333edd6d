"""The toy experiments of Sections 3.2 and 4, each writing a CSV and a PNG.

One function per experiment kind; the Hydra configs in ``conf/toy/experiment``
choose the kind and its settings. Runs are seeded: the same config gives
the same CSV.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from .runs import LABELS, RunSpec, run, run_many, uniform_starts  # noqa: E402
from .sharpness import hessian_top_eigenvalue  # noqa: E402
from .surfaces import Surface, surface  # noqa: E402

# A run "escaped" when its final point is nearer (Euclidean) to the flat
# minimum of f_s at 0 than to the sharp one at (1, ..., 1), by more than this
# margin: points left on the ridge between the two basins count as neither.
ESCAPE_MARGIN = 0.1


def _hyper(cfg: dict) -> dict:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in cfg.items()}


def _label(name: str, hyper: dict) -> str:
    label = LABELS[name]
    return f"{label} C={hyper['topC']}" if "topC" in hyper and name.endswith(("cm", "cg")) else label


def final_loss_and_sharpness(cfg: dict, out: Path) -> pd.DataFrame:
    """Tables 1 and 5: mean final loss and sharpness over seeds, per surface and optimizer setting."""
    cases, specs = [], []
    for surface_name in cfg["surfaces"]:
        starts = uniform_starts(surface(surface_name), cfg["seeds"], seed=cfg["start_seed"])
        for setting in cfg["settings"]:
            hyper = _hyper(setting["hyper"])
            cases.append((surface_name, setting["optimizer"], hyper))
            specs.append(
                RunSpec(surface_name, setting["optimizer"], hyper, starts, cfg["steps"], cfg.get("lr_drop_step"))
            )
    rows = []
    for (surface_name, optimizer, hyper), runs in zip(cases, run_many(specs, cfg.get("workers", 1))):
        sharpness = hessian_top_eigenvalue(surface(surface_name).fn, runs.final)
        rows.append(
            dict(
                surface=surface_name,
                optimizer=LABELS[optimizer],
                C=hyper.get("topC"),
                decay=hyper.get("decay"),
                loss=float(runs.losses[-1].mean()),
                loss_std=float(runs.losses[-1].std()),
                sharpness=float(sharpness.mean()),
                sharpness_std=float(sharpness.std()),
                runs=len(runs.final),
            )
        )
    frame = pd.DataFrame(rows)
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    return frame


def loss_curves(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figures 4 and 16: mean training loss per step over seeds; trajectories of one seed on the contour."""
    f = surface(cfg["surface"])
    starts = uniform_starts(f, cfg["seeds"], seed=cfg["start_seed"])
    curves, paths = {}, {}
    for setting in cfg["settings"]:
        label = LABELS[setting["optimizer"]]
        runs = run(f, setting["optimizer"], _hyper(setting["hyper"]), starts, cfg["steps"], cfg.get("lr_drop_step"))
        curves[label] = runs.losses.mean(dim=1).numpy()
        paths[label] = runs.points[:, 0].numpy()
    frame = pd.DataFrame(curves).rename_axis("step").reset_index()
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for label, curve in curves.items():
        left.plot(curve, label=label)
    left.set(xlabel="step", ylabel="train loss (mean over seeds)", title=f"{f.name}, {cfg['seeds']} seeds")
    left.legend()
    _contour(right, f, list(paths.values()))
    for label, path in paths.items():
        right.plot(path[:, 0], path[:, 1], label=label, linewidth=1)
    right.plot(*starts[0].numpy(), "ks", label="start")
    right.plot(*f.minimum, "kD", label="global minimum")
    right.set(title="trajectories of seed 0")
    figure.tight_layout()
    figure.savefig(figures / f"{cfg['name']}.png", dpi=110)
    plt.close(figure)
    return frame


def start_trajectories(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figures 1, 13 and 14: trajectories from several initial points, one panel per start."""
    f = surface(cfg["surface"])
    starts = uniform_starts(f, cfg["starts"], seed=cfg["start_seed"])
    specs = [
        RunSpec(
            cfg["surface"],
            setting["optimizer"],
            _hyper(setting["hyper"]),
            starts,
            cfg["steps"],
            cfg.get("lr_drop_step"),
        )
        for setting in cfg["settings"]
    ]
    results = run_many(specs, cfg.get("workers", 1))
    labels = [LABELS[setting["optimizer"]] for setting in cfg["settings"]]
    rows = [
        dict(
            start=i,
            optimizer=label,
            x0=float(starts[i, 0]),
            y0=float(starts[i, 1]),
            x=float(runs.final[i, 0]),
            y=float(runs.final[i, 1]),
            loss=float(runs.losses[-1, i]),
        )
        for label, runs in zip(labels, results)
        for i in range(len(starts))
    ]
    frame = pd.DataFrame(rows)
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    figure, axes = plt.subplots(1, len(starts), figsize=(4.2 * len(starts), 4), squeeze=False)
    for i, axis in enumerate(axes[0]):
        paths = {label: runs.points[:, i].numpy() for label, runs in zip(labels, results)}
        _contour(axis, f, list(paths.values()))
        for label, path in paths.items():
            axis.plot(path[:, 0], path[:, 1], label=label, linewidth=1)
        axis.plot(*starts[i].numpy(), "ks")
        axis.plot(*f.minimum, "kD")
        axis.set(title=f"start {i}")
    axes[0][0].legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(figures / f"{cfg['name']}.png", dpi=100)
    plt.close(figure)
    return frame


def _contour(axis, f: Surface, paths=(), points: int = 200) -> None:
    """Filled contours over the surface's box, widened to hold every path."""
    low = min([f.low, *(float(p.min()) for p in paths)])
    high = max([f.high, *(float(p.max()) for p in paths)])
    grid = torch.linspace(low, high, points, dtype=torch.float64)
    x, y = torch.meshgrid(grid, grid, indexing="xy")
    axis.contourf(x.numpy(), y.numpy(), f(torch.stack([x, y], dim=-1)).numpy(), levels=30, cmap="viridis")


def escapes(final: torch.Tensor) -> torch.Tensor:
    """Whether each final point ``[runs, D]`` ended at the flat minimum of f_s (see ESCAPE_MARGIN)."""
    to_flat = final.norm(dim=-1)
    to_sharp = (final - 1).norm(dim=-1)
    return to_sharp - to_flat > ESCAPE_MARGIN


def escape_ratio(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figures 6 and 7: share of runs from uniform starts in [-5, 5]^D that end at the flat minimum."""
    cases, specs = [], []
    for s in cfg["sharpness"]:
        starts = uniform_starts(surface("two_minima", s=s, dim=cfg["dim"]), cfg["runs"], seed=cfg["start_seed"])
        for setting in cfg["settings"]:
            hyper = _hyper(setting["hyper"])
            cases.append((s, _label(setting["optimizer"], hyper)))
            specs.append(RunSpec("two_minima", setting["optimizer"], hyper, starts, cfg["steps"], s=s, dim=cfg["dim"]))
    rows = [
        dict(s=s, optimizer=label, escape_ratio=float(escapes(runs.final).double().mean()))
        for (s, label), runs in zip(cases, run_many(specs, cfg.get("workers", 1)))
    ]
    frame = pd.DataFrame(rows)
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    figure, axis = plt.subplots(figsize=(6, 4))
    table = frame.pivot(index="s", columns="optimizer", values="escape_ratio")
    table.plot(ax=axis, marker="o", logx=True)
    axis.set(
        xlabel="sharpness coefficient s", ylabel="escape ratio", title=f"f_s, D = {cfg['dim']}, {cfg['runs']} runs"
    )
    figure.tight_layout()
    figure.savefig(figures / f"{cfg['name']}.png", dpi=110)
    plt.close(figure)
    return frame


def one_d_trajectories(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figure 5: 1-D trajectories on f_s from x0 in {-2, 2, 3}, marking whether each run escaped."""
    rows, settings = [], cfg["settings"]
    figure, axes = plt.subplots(
        len(cfg["starts"]), len(cfg["sharpness"]) * len(settings), figsize=(14, 6), sharey=True, squeeze=False
    )
    for j, s in enumerate(cfg["sharpness"]):
        f = surface("two_minima", s=s, dim=1)
        starts = torch.tensor(cfg["starts"], dtype=torch.float64)[:, None]
        for k, setting in enumerate(settings):
            hyper = _hyper(setting["hyper"])
            label = _label(setting["optimizer"], hyper)
            runs = run(f, setting["optimizer"], hyper, starts, cfg["steps"])
            escaped = escapes(runs.final)
            for i, x0 in enumerate(cfg["starts"]):
                rows.append(dict(s=s, optimizer=label, x0=x0, final=float(runs.final[i, 0]), escaped=bool(escaped[i])))
                axis = axes[i][j * len(settings) + k]
                axis.plot(runs.points[:, i, 0].numpy(), range(cfg["steps"] + 1), linewidth=0.8)
                axis.set_facecolor("#d8f0d8" if escaped[i] else "#f5d5d5")
                axis.set_title(f"{label} s={s:g} x0={x0:g}", fontsize=7)
    frame = pd.DataFrame(rows)
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    figure.supxlabel("x (green: ended at the flat minimum 0)")
    figure.supylabel("step")
    figure.tight_layout()
    figure.savefig(figures / f"{cfg['name']}.png", dpi=100)
    plt.close(figure)
    return frame


def convergence_rates(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figure 3: 1 - rho* against the condition number, classical momentum vs critical momenta."""
    import numpy as np

    from .convergence import plot_rate_curves, rate_curves

    kappas = np.logspace(cfg["log10_kappa_min"], cfg["log10_kappa_max"], cfg["points"])
    frame = rate_curves(kappas, C=cfg["C"])
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    plot_rate_curves(frame, figures / f"{cfg['name']}.png")
    return frame


KINDS = {
    "start_trajectories": start_trajectories,
    "final_loss_and_sharpness": lambda cfg, out, figures: final_loss_and_sharpness(cfg, out),
    "loss_curves": loss_curves,
    "escape_ratio": escape_ratio,
    "one_d_trajectories": one_d_trajectories,
    "convergence_rates": convergence_rates,
}
