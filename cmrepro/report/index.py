"""``python -m cmrepro.report index``: ``results/README.md``, one row for every table and figure of the paper.

A row says what the artefact is, the commands that regenerate it (full scale and smoke), the
files they write, and a status read from committed inputs only, so that the committed README is
exactly what this command writes (``tests/test_results_index.py`` checks it):

- toy experiments (Sections 3.2, 4 and their appendix figures): the verdicts of
  ``results/toy/claims.csv`` (written by ``python -m cmrepro.toy``): "reproduced" when every claim
  of the artefact is supported, else the count of each verdict and the worst claim with its
  estimate (the long lists are in ``results/toy/README.md``), and how many are rule-sensitive;
  an artefact without a claim to test is "drawn, no claim to test" when its files exist; "not
  run" without ``claims.csv`` or without its files. The README opens with the tally of verdicts
  per artefact kind (:func:`tally`);
- training artefacts: "needs GPUs" with the GPU-hours ``scripts/estimate_hours.py`` wrote from a
  GPU benchmark (``results/bench/**/hours_*.json`` whose sources ran on CUDA) for the make target
  that regenerates it, else "GPU-hours not estimated" (and the CPU-hour estimate, if one exists);
- tables of datasets, models, grids and best settings: "descriptive, encoded in configs".

The list of artefacts is :data:`ARTEFACTS`, one line each.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .full_scale_status import full_scale_status
from .render import markdown_table

ROOT = Path(__file__).resolve().parents[2]
INDEX = Path("results") / "README.md"
CLAIMS = Path("results") / "toy" / "claims.csv"
BENCH = Path("results") / "bench"
TOY_SMOKE = "= full (seconds on a CPU)"


@dataclass(frozen=True)
class Artefact:
    name: str  # "Table 1", "Figure 7"
    what: str
    full: tuple[str, ...]  # the commands that regenerate it at full scale
    smoke: tuple[str, ...]  # ... and their smoke versions
    outputs: tuple[str, ...]
    experiments: tuple[str, ...] = ()  # toy experiments (python -m cmrepro.toy experiment=...)
    gpu: str | None = None  # the make target of its training runs, e.g. "reproduce-table2"
    where: str | None = None  # descriptive: where the paper's values are encoded


def toy(name: str, what: str, *experiments: str, also: Artefact | None = None) -> Artefact:
    """A toy artefact; ``also``: a training part (Figure 15's Adam+MEG on CIFAR10)."""
    listed = ",".join(experiments)
    full = f"python -m cmrepro.toy {'-m ' if len(experiments) > 1 else ''}experiment={listed}"
    toy_part = Artefact(name, what, (full,), (TOY_SMOKE,), toy_outputs(experiments), experiments)
    if also is None:
        return toy_part
    return Artefact(
        name, what, toy_part.full + also.full, toy_part.smoke + also.smoke, toy_part.outputs + also.outputs,
        experiments, also.gpu,
    )  # fmt: skip


def toy_outputs(experiments: tuple[str, ...]) -> tuple[str, ...]:
    """Each toy experiment writes ``results/toy/<name>.csv``; a figure also ``results/figures/<name>.png``."""
    csvs = tuple(f"results/toy/{e}.csv" for e in experiments)
    return csvs + tuple(f"results/figures/{e}.png" for e in experiments if not e.startswith("table"))


def training(name: str, what: str, target: str, outputs: tuple[str, ...], smoke: str | None = None) -> Artefact:
    """An artefact of training runs: ``make <target>``, and its smoke version."""
    return Artefact(name, what, (f"make {target}",), (smoke or f"make {target} SCALE=smoke",), outputs, gpu=target)


def table(name: str, what: str, table_name: str) -> Artefact:
    """A table of ``make reproduce-<table>``: the report beside the paper's cells, and curves."""
    outputs = (f"results/tables/{table_name}.{{md,csv,tex}}", f"results/figures/{table_name}_*_curves.png")
    return training(name, what, f"reproduce-{table_name}", outputs)


def analysis(name: str, what: str, figure: str, *files: str) -> Artefact:
    """A training-time analysis figure (docs/analysis.md): ``make figureN``, ``make figureN-smoke``."""
    return training(name, what, figure, tuple(f"results/figures/{f}" for f in files), smoke=f"make {figure}-smoke")


def descriptive(name: str, what: str, where: str, command: str | None = None) -> Artefact:
    """Settings the paper lists; ``where``: the configs (and ``cmrepro/paper_data`` files) that hold them."""
    return Artefact(name, what, (command,) if command else (), (), (), where=where)


WRITE = "python scripts/write_experiments.py"  # conf/experiment from cmrepro/paper_data/*.csv
BEST, GRIDS = "cmrepro/paper_data/best_hyperparameters.csv", "cmrepro/paper_data/grids.csv"
EXPERIMENTS = "conf/experiment"
FIGURE15 = ("figure15_ackley", "figure15_goldstein_price")  # and Adam+MEG on CIFAR10 (Appendix A.2.1):
MEG = training("Figure 15", "Adam+MEG on CIFAR10", "reproduce-meg", ("results/tables/appendix.{md,csv,tex}",))
ARTEFACTS: tuple[Artefact, ...] = (
    toy("Table 1", "Loss and sharpness of the solutions on Goldstein-Price and Levy", "table1"),
    table("Table 2", "Best validation perplexity / accuracy: PTB, CIFAR10/100, ImageNet", "table2"),
    table("Table 3", "SGD, SGD+CG, SGD+CM on CIFAR10/100, with speed-up", "table3"),
    table("Table 4", "Learning accuracy on the online streams (TinyImageNet, 5-dataset)", "table4"),
    toy("Table 5", "Adam+CG and Adam+CM on Levy for several C and decay", "table5"),
    descriptive("Table 6", "Dataset details (splits)", "conf/dataset/*.yaml"),
    descriptive("Table 7", "Model details", "conf/model/*.yaml (the model of each conf/dataset/*.yaml)"),
    descriptive("Table 8", "Grid search, supervised benchmarks", f"{GRIDS} → {EXPERIMENTS}/table{{2,3}}/grid/", WRITE),
    descriptive("Table 9", "Best settings on PTB", f"{BEST} → {EXPERIMENTS}/table2/best/ptb_*", WRITE),
    descriptive("Table 10", "Best settings on image classification", f"{BEST} → {EXPERIMENTS}/table2/best/", WRITE),
    descriptive("Table 11", "Best settings on the toy examples", "conf/toy/experiment/*.yaml"),
    descriptive("Table 12", "Grid search, online learning", f"{GRIDS} → {EXPERIMENTS}/table4/grid/", WRITE),
    descriptive("Table 13", "Best settings, online learning", f"{BEST} → {EXPERIMENTS}/table4/best/", WRITE),
    analysis("Table 14", "Adam's validation accuracy at three learning rates, CIFAR10", "figure20", "table14.{csv,md}"),
    toy("Figure 1", "Trajectories on Goldstein-Price", "figure1"),
    toy("Figure 2", "Ackley, first 10 steps: buffer quantities against the new gradient", "figure2"),
    toy("Figure 3", "Convergence rate of critical momenta on quadratics", "figure3"),
    toy("Figure 4", "Ackley loss curves and trajectories", "figure4"),
    toy("Figure 5", "1-D trajectories on f_s (flat and sharp minima)", "figure5"),
    toy("Figure 6", "Escape ratio, D = 10", "figure6"),
    toy("Figure 7", "Escape ratio, D = 1: optimizers (left) and C (right)", "figure7_left", "figure7_right"),
    analysis("Figure 8", "Sharpness, distance, buffer variance, cosine; CIFAR100", "figure8", "figure8_cifar100.png"),
    analysis("Figure 9", "Final sharpness for two buffer sizes", "figure9", "figure9.{png,csv}"),
    analysis("Figure 10", "Accuracy against batch size and buffer size", "figure10", "figure10.{png,csv}"),
    toy("Figure 11", "Ackley+Rosenbrock: buffer directions of Adam+CG", "figure11"),
    toy("Figure 12", "Goldstein-Price, six steps: buffer directions of Adam+CG and Adam+CM", "figure12"),
    toy("Figure 13", "Trajectories on Ackley from several starts", "figure13"),
    toy("Figure 14", "Trajectories on Goldstein-Price from several starts", "figure14"),
    toy("Figure 15", "Adam+MEG beside Adam, Adam+SAM, Adam+CM", *FIGURE15, also=MEG),
    toy("Figure 16", "Ackley loss curves with a constant learning rate", "figure16"),
    toy("Figure 17", "1-D trajectories, decay 0.7, several C", "figure17"),
    toy("Figure 18", "1-D trajectories, decay 0.99, several C", "figure18"),
    analysis("Figure 19", "m-sharpness, CIFAR10/100", "figure19", "figure19.png"),
    analysis("Figure 20", "Adam's sharpness at three learning rates, CIFAR10", "figure20", "figure20.png"),
)  # fmt: skip


# ---- statuses -------------------------------------------------------------------------------
def read_claims(root: Path) -> pd.DataFrame | None:
    """``results/toy/claims.csv`` with a ``key`` column ("Table 1", "Figure 7"), None when absent."""
    path = root / CLAIMS
    if not path.is_file():
        return None
    claims = pd.read_csv(path)
    return claims.assign(key=claims["artefact"].map(artefact_key))


def artefact_key(label: str) -> str | None:
    """``"Figure 7 (left)"`` -> ``"Figure 7"``: the paper's table or figure a claim belongs to."""
    match = re.match(r"\s*(table|figure)\s*(\d+)", str(label), re.IGNORECASE)
    return f"{match.group(1).capitalize()} {int(match.group(2))}" if match else None


# Verdict words (``cmrepro/claims/stats.py``), worst first: the status cell names the worst claim.
SEVERITY = ("not supported", "negligible", "inconclusive", "no difference", "supported")
NOT_RUN = "not run"
ORDER = ("supported", "not supported", "no difference", "negligible", "inconclusive", NOT_RUN)  # as counted


def toy_status(artefact: Artefact, claims: pd.DataFrame | None, root: Path) -> str:
    """Counts of verdicts, the worst claim (with its estimate), and how many are rule-sensitive."""
    mine = claims[claims["key"] == artefact.name] if claims is not None else None
    if mine is None:
        return "not run (no results/toy/claims.csv: make reproduce-toy)"
    if mine.empty:
        drawn = all((root / path).is_file() for path in toy_outputs(artefact.experiments))
        return "drawn, no claim to test" if drawn else "not run"
    verdicts = mine["verdict"].str.lower().str.strip()
    ran = mine[verdicts != NOT_RUN]
    if ran.empty:
        return f"not run ({len(mine)} claims declared: make reproduce-toy)"
    counts = _counts(verdicts)
    sensitive = int(_flag(mine, "rule_sensitive").sum())
    extra = f"; {sensitive} rule-sensitive" if sensitive else ""
    if (verdicts[verdicts != NOT_RUN] == "supported").all():
        return f"reproduced ({counts}){extra}"
    worst = next(v for v in SEVERITY if (verdicts == v).any())
    row = ran[verdicts[verdicts != NOT_RUN] == worst].sort_values("estimate", kind="stable").iloc[0]
    return f"{counts}; worst: {worst}: {_claim_label(row)} ({_interval(row)}){extra}"


def _counts(verdicts: pd.Series) -> str:
    present = [v for v in ORDER if (verdicts == v).any()]
    return ", ".join(f"{int((verdicts == v).sum())} {v}" for v in present)


def _flag(frame: pd.DataFrame, column: str) -> pd.Series:
    if column not in frame:
        return pd.Series(False, index=frame.index)
    return frame[column].astype(str).str.lower().isin(("true", "1"))


def _claim_label(row) -> str:
    detail = row.artefact.partition(" (")[2].rstrip(")")  # "Figure 7 (left)" -> "left"
    return f"{detail}, {row.claim}" if detail else str(row.claim)


def _interval(row) -> str:
    n = "" if pd.isna(row.get("n")) else f", n = {int(row['n'])}"
    if pd.isna(row.get("low")) or pd.isna(row.get("high")):
        p = "" if pd.isna(row.get("p_holm")) else f", Holm p = {row['p_holm']:.2g}"
        return f"estimate {row.estimate:+.3g}, exact{p}{n}"
    return f"estimate {row.estimate:+.3g}, 95% interval [{row.low:+.3g}, {row.high:+.3g}]{n}"


def tally(claims: pd.DataFrame | None) -> str:
    """The line at the top of results/README.md: verdicts per artefact kind, rule-sensitive, not run."""
    if claims is None:
        return "Toy claims: not run (no results/toy/claims.csv: make reproduce-toy)."
    verdicts = claims["verdict"].str.lower().str.strip()
    kinds = claims["key"].str.split().str[0].map({"Table": "tables", "Figure": "figures"})
    parts = [f"{kind}: {_counts(verdicts[kinds == kind])}" for kind in ("tables", "figures") if (kinds == kind).any()]
    return (
        f"**Toy claims** ({len(claims)} in `results/toy/claims.csv`, listed with their quotes in "
        f"`results/toy/README.md`): {'; '.join(parts)}; {int(_flag(claims, 'rule_sensitive').sum())} rule-sensitive."
    )


@dataclass(frozen=True)
class HourEstimate:
    """Hours per make target from one estimate_hours.py JSON."""

    path: str
    device: str  # "NVIDIA H200", "cpu", ...
    on_gpu: bool
    hours: dict[str, dict[str, float]]  # target -> dataset -> hours (NaN: not measured)
    reference: bool = False  # estimate_hours.py --reference: from a reference step time, not measured


def read_hour_estimates(root: Path) -> list[HourEstimate]:
    """Every ``results/bench/**/hours_*.json``, GPU ones first, then by path."""
    estimates = []
    for path in sorted((root / BENCH).rglob("hours_*.json")):
        data = json.loads(path.read_text())
        sources = data["meta"]["sources"]
        on_gpu = bool(sources) and all(str(s.get("device", "")).startswith("cuda") for s in sources)
        device = ", ".join(sorted({str(s.get("gpu") or s.get("device")) for s in sources}))
        hours = {row["target"]: row["hours"] for row in data["rows"]}
        reference = data["meta"].get("method") == "reference"
        estimates.append(HourEstimate(path.relative_to(root).as_posix(), device, on_gpu, hours, reference))
    return sorted(estimates, key=lambda e: not e.on_gpu)


REFERENCE_WORDS = "estimated: the H200 CIFAR ResNet34 step `make device-checks` timed, scaled to each run's work"


def gpu_status(target: str, estimates: list[HourEstimate]) -> str:
    """Measured GPU hours (datasets the GPU bench lacks taken from the reference estimate), else the
    reference estimate, else CPU-hours."""
    gpu = next((e for e in estimates if e.on_gpu and target in e.hours), None)
    reference = next((e for e in estimates if e.reference and target in e.hours), None)
    if gpu is not None:
        hours, filled = with_reference(gpu.hours[target], reference.hours[target] if reference else {})
        note = f"; {', '.join(filled)} from the reference estimate, {reference.path}" if filled else ""
        return f"needs GPUs (about {_hours(hours)} GPU-hours on {gpu.device}, {gpu.path}{note})"
    if reference is not None:
        return f"needs GPUs (~{_hours(reference.hours[target])} H200-hours ({REFERENCE_WORDS}), {reference.path})"
    cpu = next((e for e in estimates if target in e.hours), None)
    if cpu is None:
        return "needs GPUs (GPU-hours not estimated)"
    return (
        f"needs GPUs (GPU-hours not estimated; from CPU step times {_hours(cpu.hours[target])} CPU-hours, {cpu.path})"
    )


def with_reference(measured: dict[str, float], reference: dict[str, float]) -> tuple[dict[str, float], list[str]]:
    """``measured`` with the datasets it lacks (absent or NaN) taken from ``reference``; and their names."""
    filled = sorted(d for d, v in reference.items() if math.isnan(measured.get(d, math.nan)) and not math.isnan(v))
    return {**measured, **{d: reference[d] for d in filled}}, filled


def _hours(by_dataset: dict[str, float]) -> str:
    known = {name: value for name, value in by_dataset.items() if not math.isnan(value)}
    total = f"{sum(known.values()):,.0f}" if sum(known.values()) >= 10 else f"{sum(known.values()):.1f}"
    missing = sorted(set(by_dataset) - set(known))
    return f"{total} (+ {', '.join(missing)}: not measured)" if missing else total


def status(artefact: Artefact, claims: pd.DataFrame | None, estimates: list[HourEstimate], root: Path) -> str:
    parts = []
    if artefact.experiments:
        parts.append(toy_status(artefact, claims, root))
    if artefact.gpu:
        parts += full_scale_status(artefact.name, root)  # full-scale verdicts only, never smoke ones
        parts.append(gpu_status(artefact.gpu, estimates))
    if artefact.where:
        parts.append("descriptive, encoded in configs")
    return " · ".join(parts)


# ---- the README ------------------------------------------------------------------------------
HEADER = """# Results: every table and figure of the paper

{tally}

Written by `python -m cmrepro.report index` ({module}); do not edit by hand: `tests/test_results_index.py`
fails when this file differs from what the command writes. `make reproduce-all SCALE=smoke` runs every
artefact's smoke version and rewrites it; `make reproduce-all` does the same at full scale (GPUs needed).

Status: **reproduced** (every toy claim the artefact carries is supported), else the counts of each verdict
(**supported**, **negligible**: certain but below the declared minimum effect, **no difference**: every run
tied, **not supported**: an effect of the declared size ruled out or contradicted, **inconclusive**, **not run**)
and the worst claim with its estimate; **rule-sensitive**: escape claims whose verdict changes with the escape
rule. Every claim, its quote from the paper, test and interval: `results/toy/README.md` (and
`results/toy/claims.csv`). **drawn** (a figure with no claim to test), **needs GPUs** (GPU-hours from
`scripts/estimate_hours.py`: measured where a GPU benchmark exists, else estimated from a reference step time,
`docs/gpu_hours.md`), **descriptive** (settings the paper lists, encoded in configs and `cmrepro/paper_data/`).
Training artefacts with full-scale runs also show their Section 5 claims' verdicts (`results/claims/section5.csv`,
`python -m cmrepro.report.claims`) and their table cells against the paper; smoke verdicts are never shown here.
Smoke runs write under `results/smoke/`.

"""


def index_frame(root: Path = ROOT) -> pd.DataFrame:
    claims, estimates = read_claims(root), read_hour_estimates(root)
    rows = [
        {
            "artefact": a.name,
            "what": a.what,
            "command (full)": _commands(a.full),
            "command (smoke)": _commands(a.smoke),
            "outputs": ", ".join(f"`{path}`" for path in a.outputs) or a.where,
            "status": status(a, claims, estimates, root),
        }
        for a in ARTEFACTS
    ]
    return pd.DataFrame(rows)


def _commands(commands: tuple[str, ...]) -> str:
    """Commands in backticks, remarks (``TOY_SMOKE``) as they are; "—" for none."""
    return "; ".join(c if c == TOY_SMOKE else f"`{c}`" for c in commands) or "—"


def render_index(root: Path = ROOT) -> str:
    head = HEADER.format(module="cmrepro/report/index.py", tally=tally(read_claims(root)))
    return head + markdown_table(index_frame(root), index=False)


def write_index(root: Path = ROOT, out: Path | None = None) -> Path:
    """Write the index (``<root>/results/README.md`` unless ``out``); returns its path."""
    path = out or root / INDEX
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_index(root))
    return path
