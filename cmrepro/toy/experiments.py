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

from ..paper_names import PAPER_NAME_OF_OPTIMIZER  # noqa: E402
from . import plotting  # noqa: E402
from .batched_runs import RunSpec, jittered, run_many, uniform_starts  # noqa: E402
from .buffer_directions import buffer_directions  # noqa: E402
from .cancellation import cancellation_runs, caption  # noqa: E402
from .escape import SNAPSHOT_TOLERANCE, TAIL, escape_rows  # noqa: E402
from .hessian import hessian_top_eigenvalue  # noqa: E402
from .meg_search import meg_grid  # noqa: E402
from .protocols import protocol_search  # noqa: E402
from .reach import check_radius, grid_starts, reached  # noqa: E402
from .surfaces import Surface, surface  # noqa: E402


def _hyper(cfg: dict) -> dict:
    return {key: tuple(value) if isinstance(value, list) else value for key, value in cfg.items()}


def _starts(cfg: dict, f: Surface, count: int) -> torch.Tensor:
    """The experiment's seeded initial points (``box`` overrides the surface's own, for protocol searches)."""
    box = tuple(cfg["box"][f.name]) if cfg.get("box") else None
    return uniform_starts(f, count, seed=cfg["start_seed"], box=box, jitter=cfg.get("start_jitter", 0.0))


def _label(name: str, hyper: dict) -> str:
    label = PAPER_NAME_OF_OPTIMIZER[name]
    return f"{label} C={hyper['topC']}" if "topC" in hyper and name.endswith(("cm", "cg")) else label


def final_loss_and_sharpness(cfg: dict, out: Path) -> pd.DataFrame:
    """Tables 1 and 5: mean final loss and sharpness over seeds, per surface and optimizer setting, and the
    share of runs ending within ``reach.radius`` of the surface's global minimum (``toy.reach``)."""
    cases, specs = [], []
    radius = check_radius(cfg["reach"]["radius"])
    for surface_name in cfg["surfaces"]:
        starts = _starts(cfg, surface(surface_name), cfg["seeds"])
        for setting in cfg["settings"]:
            hyper = _hyper(setting["hyper"])
            cases.append((surface_name, setting["optimizer"], hyper))
            specs.append(
                RunSpec(surface_name, setting["optimizer"], hyper, starts, cfg["steps"], cfg.get("lr_drop_step"))
            )
    rows = []
    for (surface_name, optimizer, hyper), runs in zip(cases, run_many(specs, cfg.get("workers", 1))):
        f = surface(surface_name)
        sharpness = hessian_top_eigenvalue(f.fn, runs.final)
        hits = reached(runs.final, f.minimum, radius)
        setting = dict(
            surface=surface_name,
            optimizer=PAPER_NAME_OF_OPTIMIZER[optimizer],
            C=hyper.get("topC"),
            decay=hyper.get("decay"),
        )
        rows += [
            dict(
                setting,
                run=i,
                x=float(runs.final[i, 0]),
                y=float(runs.final[i, 1]),
                loss=float(runs.losses[-1, i]),
                sharpness=float(sharpness[i]),
                reached_global=int(hits[i]),
            )
            for i in range(len(runs.final))
        ]
    per_run = pd.DataFrame(rows)
    _write_runs(per_run, out, cfg["name"])
    frame = (
        per_run.groupby(["surface", "optimizer", "C", "decay"], dropna=False, sort=False)
        .agg(
            loss=("loss", "mean"),
            loss_std=("loss", "std"),
            sharpness=("sharpness", "mean"),
            sharpness_std=("sharpness", "std"),
            reach_rate=("reached_global", "mean"),
            runs=("run", "size"),
        )
        .reset_index()
    )
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    return frame


def _write_runs(frame: pd.DataFrame, out: Path, name: str) -> None:
    """Every run's outcome, which the claims' intervals are computed from (``toy.claims``)."""
    frame.to_csv(out / f"{name}_runs.csv", index=False, float_format="%.10g")


def loss_curves(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figures 4 and 16: mean training loss per step over seeds; trajectories of one seed on the contour."""
    f = surface(cfg["surface"])
    starts = _starts(cfg, f, cfg["seeds"])
    specs = [
        RunSpec(cfg["surface"], s["optimizer"], _hyper(s["hyper"]), starts, cfg["steps"], cfg.get("lr_drop_step"))
        for s in cfg["settings"]
    ]
    curves, paths, finals = {}, {}, []
    for setting, runs in zip(cfg["settings"], run_many(specs, cfg.get("workers", 1))):
        label = PAPER_NAME_OF_OPTIMIZER[setting["optimizer"]]
        curves[label] = runs.losses.mean(dim=1).numpy()
        paths[label] = runs.points[:, 0].numpy()
        finals += [dict(optimizer=label, run=i, loss=float(loss)) for i, loss in enumerate(runs.losses[-1])]
    _write_runs(pd.DataFrame(finals), out, cfg["name"])
    frame = pd.DataFrame(curves).rename_axis("step").reset_index()
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 5))
    plotting.plot_curves(left, range(cfg["steps"] + 1), curves, markevery=50)
    name = plotting.SURFACE_TITLES.get(f.name, f.name)
    left.set(xlabel="step", ylabel="train loss (mean over seeds)", title=f"{name}, {cfg['seeds']} seeds")
    left.legend(fontsize=8)
    _contour(right, f, list(paths.values()))
    for n, (label, path) in enumerate(paths.items()):
        right.plot(path[:, 0], path[:, 1], label=label, **{**plotting.style(n), "markevery": 50})
    right.plot(*starts[0].numpy(), "ks", label="start")
    right.plot(*f.minimum, "kD", label="global minimum")
    right.set(title=f"{name}, trajectories from the first seed's start", xlabel="x", ylabel="y")
    right.legend(fontsize=7, loc="lower left")
    schedule = f"lr / 10 at step {cfg['lr_drop_step']}" if cfg.get("lr_drop_step") else "constant lr"
    figure.suptitle(f"{name}: {cfg['steps']} steps, {schedule}, starts uniform in [{f.low:g}, {f.high:g}]^2")
    figure.tight_layout()
    plotting.save(figure, figures / f"{cfg['name']}.png")
    return frame


def start_trajectories(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figures 1, 13, 14 and 15: trajectories from several initial points, one panel per start, and
    each optimizer's rate of reaching the global minimum over many starts (``toy.reach``) and the
    sharpness (top Hessian eigenvalue) of each final point.

    The runs start from ``reach.uniform`` seeded uniform points (the panels draw the first ``starts``
    of them) and a ``reach.grid`` x ``reach.grid`` grid, all in one batch per setting. Writes
    ``<name>_runs.csv`` (one row per start and setting) and ``<name>.csv`` (rates per setting).
    """
    f, reach = surface(cfg["surface"]), cfg["reach"]
    check_radius(reach["radius"])
    uniform = _starts(cfg, f, max(reach["uniform"], cfg["starts"]))
    grid = grid_starts(f, reach["grid"])
    populations = ["uniform"] * len(uniform) + ["grid"] * len(grid)
    index = list(range(len(uniform))) + list(range(len(grid)))
    starts = torch.cat([uniform, grid])
    specs = [
        RunSpec(cfg["surface"], s["optimizer"], _hyper(s["hyper"]), starts, cfg["steps"], cfg.get("lr_drop_step"))
        for s in cfg["settings"]
    ]
    results = run_many(specs, cfg.get("workers", 1))
    labels = [PAPER_NAME_OF_OPTIMIZER[setting["optimizer"]] for setting in cfg["settings"]]
    per_run = pd.DataFrame(
        [
            dict(
                population=populations[k],
                start=index[k],
                optimizer=label,
                x0=float(starts[k, 0]),
                y0=float(starts[k, 1]),
                x=float(runs.final[k, 0]),
                y=float(runs.final[k, 1]),
                loss=float(runs.losses[-1, k]),
                sharpness=float(sharp),
                reached_global=int(hit),
            )
            for label, runs in zip(labels, results)
            for k, (hit, sharp) in enumerate(
                zip(reached(runs.final, f.minimum, reach["radius"]), hessian_top_eigenvalue(f.fn, runs.final))
            )
        ]
    )
    _write_runs(per_run, out, cfg["name"])
    frame = (
        per_run.groupby(["optimizer", "population"], sort=False)
        .agg(reach_rate=("reached_global", "mean"), loss=("loss", "mean"), starts=("start", "size"))
        .reset_index()
    )
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    _draw_starts(cfg, f, labels, results, frame, figures / f"{cfg['name']}.png")
    return frame


def _draw_starts(cfg: dict, f: Surface, labels: list[str], results, rates: pd.DataFrame, path: Path) -> None:
    """One panel per drawn start; each optimizer's legend entry carries its reach rates."""
    reach, shown = cfg["reach"], cfg["starts"]
    rate = rates.set_index(["optimizer", "population"]).reach_rate
    names = {
        label: f"{label} (reaches: grid {rate[label, 'grid']:.0%}, uniform {rate[label, 'uniform']:.0%})"
        for label in labels
    }
    figure, axes = plt.subplots(1, shown, figsize=(4.4 * shown, 4.9), squeeze=False)
    for i, axis in enumerate(axes[0]):
        paths = {label: runs.points[:, i].numpy() for label, runs in zip(labels, results)}
        _contour(axis, f, list(paths.values()))
        for n, (label, path_i) in enumerate(paths.items()):
            axis.plot(path_i[:, 0], path_i[:, 1], label=names[label], **{**plotting.style(n), "markevery": 50})
        axis.plot(*path_i[0], "ks", label="start")
        axis.plot(*f.minimum, "kD", label="global minimum")
        axis.set(title=f"uniform start {i}", xlabel="x", ylabel="y")
        axis.legend(fontsize=6, loc="lower left")
    figure.suptitle(
        f"{plotting.SURFACE_TITLES.get(f.name, f.name)}, {cfg['steps']} steps from the first {shown} of "
        f"{reach['uniform']} uniform starts; reach rate: final point within {reach['radius']:g} of the global "
        f"minimum, over a {reach['grid']} x {reach['grid']} grid of starts and the {reach['uniform']} uniform starts",
        fontsize=9,
    )
    figure.tight_layout()
    plotting.save(figure, path, dpi=100)


def _contour(axis, f: Surface, paths=(), points: int = 200) -> None:
    """Filled contours over the surface's box, widened to hold every path."""
    low = min([f.low, *(float(p.min()) for p in paths)])
    high = max([f.high, *(float(p.max()) for p in paths)])
    grid = torch.linspace(low, high, points, dtype=torch.float64)
    x, y = torch.meshgrid(grid, grid, indexing="xy")
    axis.contourf(x.numpy(), y.numpy(), f(torch.stack([x, y], dim=-1)).numpy(), levels=30, cmap="viridis")


def _escape_runs(labels: list[str], results, per_s: list[float], extra) -> pd.DataFrame:
    """One row per run: its setting, ``extra(k)`` (its place: s, start), its final point when 1-D,
    final loss and the escape columns."""
    s = torch.tensor(per_s, dtype=torch.float64)

    def final(runs, k: int) -> dict:
        return dict(final=float(runs.final[k, 0])) if runs.final.shape[1] == 1 else {}

    return pd.DataFrame(
        [
            dict(optimizer=label, **extra(k), **final(runs, k), loss=float(runs.losses[-1, k]), **measures)
            for label, runs in zip(labels, results)
            for k, measures in enumerate(escape_rows(runs.points, s))
        ]
    )


def _escape_rates(per_run: pd.DataFrame) -> pd.DataFrame:
    """Per s and setting, the share of runs escaped under each rule (and the mean basin share)."""
    return (
        per_run.groupby(["s", "optimizer"], sort=False)
        .agg(
            escape_ratio=("escaped_basin", "mean"),
            basin_share=("basin_share", "mean"),
            escape_ratio_snapshot=("escaped_snapshot", "mean"),
            escape_ratio_mean50=("escaped_mean50", "mean"),
            runs=("run", "size"),
        )
        .reset_index()
    )


# Figure 6/7 panels: the primary rule first, then the alternatives (the share of coordinates only in D > 1).
RATE_PANELS = {
    "escape_ratio": "final point in the flat basin (primary)",
    "basin_share": "share of coordinates in the flat basin",
    "escape_ratio_snapshot": f"final point within {SNAPSHOT_TOLERANCE:g} of 0",
    "escape_ratio_mean50": f"mean of the last {TAIL} iterates within {SNAPSHOT_TOLERANCE:g} of 0",
}


def escape_ratio(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figures 6 and 7: share of runs from uniform starts in [-5, 5]^D that end at the flat minimum.

    Every ``s`` starts from the same points; the runs of all ``s`` of one setting are one batch.
    """
    sharpness = cfg["sharpness"]
    starts = _starts(cfg, surface("two_minima", s=sharpness[0], dim=cfg["dim"]), cfg["runs"])
    per_s = [float(s) for s in sharpness for _ in range(len(starts))]
    labels, specs = [], []
    for setting in cfg["settings"]:
        hyper = _hyper(setting["hyper"])
        labels.append(_label(setting["optimizer"], hyper))
        batch = starts.repeat(len(sharpness), 1)
        specs.append(
            RunSpec("two_minima", setting["optimizer"], hyper, batch, cfg["steps"], s=tuple(per_s), dim=cfg["dim"])
        )
    results = run_many(specs, cfg.get("workers", 1))
    per_run = _escape_runs(labels, results, per_s, lambda k: dict(s=per_s[k], run=k % len(starts)))
    per_run = per_run.sort_values(["s", "optimizer", "run"], kind="stable", key=_setting_order(labels))
    _write_runs(per_run, out, cfg["name"])
    frame = _escape_rates(per_run)
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    panels = [column for column in RATE_PANELS if column != "basin_share" or cfg["dim"] > 1]
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.2), squeeze=False, sharey=True)
    positions = list(range(len(sharpness)))  # categorical, as the paper's axis: one step per s
    for axis, column in zip(axes[0], panels):
        table = frame.pivot(index="s", columns="optimizer", values=column)[labels]
        plotting.plot_curves(axis, positions, {label: table[label].to_numpy() for label in labels})
        axis.set_xticks(positions, [f"{s:g}" for s in sharpness])
        axis.set(xlabel="sharpness coefficient s", ylabel="escape ratio", title=RATE_PANELS[column], ylim=(-0.05, 1.05))
        axis.legend(fontsize=7, loc="center right")
    figure.suptitle(f"Escape ratio on f_s, D = {cfg['dim']}, {cfg['runs']} runs from uniform starts in [-5, 5]^D")
    figure.tight_layout()
    plotting.save(figure, figures / f"{cfg['name']}.png")
    return frame


def _setting_order(labels: list[str]):
    """Sort key that keeps the config's order of settings (and sorts other columns as they are)."""
    rank = {label: i for i, label in enumerate(labels)}
    return lambda column: column.map(rank) if column.name == "optimizer" else column


def one_d_trajectories(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figures 5, 17 and 18: 1-D trajectories on f_s from x0 in {-2, 2, 3}, marking whether each run escaped.

    The runs (one per ``s`` and start, ``run`` numbers them) of one setting are one batch. Writes
    ``<name>_runs.csv`` (one row per run) and ``<name>.csv`` (escape counts per s and setting).
    """
    settings, sharpness, x0s = cfg["settings"], cfg["sharpness"], cfg["starts"]
    cases = [(s, x0) for s in sharpness for x0 in x0s]
    starts = jittered(torch.tensor([[x0] for _, x0 in cases], dtype=torch.float64), cfg.get("start_jitter", 0.0))
    per_s = [float(s) for s, _ in cases]
    labels = [_label(setting["optimizer"], _hyper(setting["hyper"])) for setting in settings]
    specs = [
        RunSpec(
            "two_minima", setting["optimizer"], _hyper(setting["hyper"]), starts, cfg["steps"], s=tuple(per_s), dim=1
        )
        for setting in settings
    ]
    results = run_many(specs, cfg.get("workers", 1))
    per_run = _escape_runs(labels, results, per_s, lambda k: dict(s=per_s[k], x0=cases[k][1], run=k))
    per_run = per_run.sort_values(["s", "optimizer", "run"], kind="stable", key=_setting_order(labels))
    _write_runs(per_run, out, cfg["name"])
    frame = _escape_rates(per_run)
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    _draw_one_d(cfg, labels, results, per_run, figures / f"{cfg['name']}.png")
    return frame


def _draw_one_d(cfg: dict, labels: list[str], results, per_run: pd.DataFrame, path: Path) -> None:
    """The paper's layout: rows are starts, columns s x setting; green where the run escaped (basin rule)."""
    sharpness, x0s = cfg["sharpness"], cfg["starts"]
    columns = len(sharpness) * len(labels)
    width, height = 1.9 * columns, 2.1 * len(x0s) + 0.8
    figure, axes = plt.subplots(len(x0s), columns, figsize=(width, height), sharey=True, squeeze=False)
    # Fixed margins in inches: tight_layout measures every label of up to 54 panels, a third of the runs' time.
    figure.subplots_adjust(
        left=0.5 / width, right=1 - 0.1 / width, bottom=0.4 / height, top=1 - 0.6 / height, wspace=0.45, hspace=0.6
    )
    escaped = per_run.set_index(["optimizer", "run"]).escaped_basin
    for k, (label, runs) in enumerate(zip(labels, results)):
        for case in range(runs.final.shape[0]):
            j, i = divmod(case, len(x0s))
            axis = axes[i][j * len(labels) + k]
            axis.plot(runs.points[:, case, 0].numpy(), range(cfg["steps"] + 1), linewidth=0.9, label=label)
            axis.set_facecolor("#d8f0d8" if escaped[label, case] else "#f5d5d5")
            ends = "ends in the flat basin" if escaped[label, case] else "ends outside the flat basin"
            axis.set_title(f"s = {sharpness[j]:g}, start {x0s[i]:g}\n{ends}", fontsize=6)
            axis.set_xlabel("x", fontsize=6)
            axis.set_ylabel("step", fontsize=6)
            axis.tick_params(labelsize=5)
            axis.legend(fontsize=5, loc="upper right")
    figure.suptitle(
        f"One-dimensional f_s, {cfg['steps']} steps: green where the final point is in the flat basin of 0 "
        "(|x| < sqrt(s) / (1 + sqrt(s))), red where not",
        fontsize=9,
    )
    plotting.save(figure, path, dpi=90)


def convergence_rates(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figure 3: 1 - rho* against the condition number, classical momentum vs critical momenta."""
    import numpy as np

    from .convergence import plot_rate_curves, rate_curves

    kappas = np.logspace(cfg["log10_kappa_min"], cfg["log10_kappa_max"], cfg["points"])
    frame = rate_curves(kappas, C=cfg["C"])
    frame.to_csv(out / f"{cfg['name']}.csv", index=False, float_format="%.6g")
    plot_rate_curves(frame, figures / f"{cfg['name']}.png")
    return frame


def buffer_cancellation(cfg: dict, out: Path, figures: Path) -> pd.DataFrame:
    """Figures 2, 11 and 12: the drawn buffer pictures from the chosen start, and gradient cancellation
    with the global-minimum reach rate over a grid of starts (``toy.cancellation``) in ``<name>_runs.csv``;
    ``cancellation.compare`` adds settings that are measured but not drawn."""
    f = surface(cfg["surface"])
    settings = cfg["settings"] + cfg["cancellation"].get("compare", [])
    per_run = cancellation_runs(cfg, f, settings)
    _write_runs(per_run, out, cfg["name"])
    return buffer_directions(cfg, out, figures, note=caption(per_run, cfg))


KINDS = {
    "start_trajectories": start_trajectories,
    "final_loss_and_sharpness": lambda cfg, out, figures: final_loss_and_sharpness(cfg, out),
    "loss_curves": loss_curves,
    "escape_ratio": escape_ratio,
    "one_d_trajectories": one_d_trajectories,
    "convergence_rates": convergence_rates,
    "buffer_directions": buffer_cancellation,
    "protocol_search": protocol_search,
    "meg_grid": meg_grid,
}
