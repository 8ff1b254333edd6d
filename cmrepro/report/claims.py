"""The paper's full-scale claims (``conf/claims/section5.yaml``) tested over run directories.

``python -m cmrepro.report.claims [--runs results/runs] [--out results]`` reads every run under
``--runs``, computes each run's measures (:data:`RUN_MEASURES`), and for every claim compares
the runs of its two sides seed by seed.

Pairing: two runs of one seed start from the same initial parameters and draw the same batches in
the same order, whatever their optimizers (``tests/test_same_seed_pairing.py`` checks it on image,
text and stream runs): :data:`PAIRED_BY_SEED`. So a claim's differences are paired by seed and
tested with the toy claims' exact sign-flip test over all 2^n sign patterns; a claim whose sides
share no seed (a grid's best settings may come from other seeds) gets the exact relabeling test of
two independent groups (``claim_stats.unpaired_test``) instead, and says so. Holm's adjustment runs
within each table or figure, and the verdict words and rule are the toy claims'
(``cmrepro.claims.stats.decide``). With five seeds a paired exact test cannot give a p-value below
1/32 = 3.1%, above the one-sided 2.5% level: such a claim is "inconclusive" whatever its runs say,
and its row says it is undecidable with these runs (``min_p_holm`` above the level).

Smoke runs (stand-in data) are judged like full-scale ones so the whole path is exercised, but
every line and row says "smoke: stand-in data, not evidence"; the results index reads only the
full-scale file (:func:`claims_path`). Their table cells are not compared with the paper at all
(:func:`cell_lines` counts them as not comparable).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..claims.registry_file import RegistryError
from ..claims.stats import LEVEL, decide, equivalence_test, holm, paired_test
from .claim_registry import Claim, Registry, Side, load
from .claim_stats import DIFFERS, MATCHES, SMOKE_NOTE, TOO_FEW, smallest_p, unpaired_equivalence, unpaired_test
from .run_table import ReportError, load_metrics, load_runs
from .speedup import WINDOW, first_epoch_reaching, mean_curve

PAIRED_BY_SEED = True  # see the module's docstring and tests/test_same_seed_pairing.py
NOT_RUN = "not run"
CLAIMS_FILE = Path("claims") / "section5.csv"
# The per-run measures a claim may test: the monitored best (result.json) or a logged curve's value.
MONITORED = ("val_accuracy", "val_perplexity", "learning_accuracy")
FROM_CURVES = {  # measure -> (metrics.jsonl column, how the curve is summarised, log10)
    "log10_final_sharpness": ("sharpness", "last", True),
    "log10_final_distance": ("distance", "last", True),
    "log10_final_m_sharpness": ("m_sharpness", "last", True),
    "log10_mean_buffer_variance": ("buffer_variance", "mean", True),
    "mean_buffer_cosine": ("buffer_cosine", "mean", False),
}
RUN_MEASURES = (*MONITORED, *FROM_CURVES, "epochs_to_sgd_best")


class NotRun(Exception):
    """Why a claim cannot be tested yet (one line)."""


@dataclass(frozen=True)
class Outcome:
    claim: Claim
    test: object  # claims.stats.Test
    paired: bool
    n_a: int
    n_b: int
    scale: str


@dataclass(frozen=True)
class Verdict:
    id: str
    artefact: str
    family: str
    claim: str
    measure: str
    verdict: str
    scale: str = ""
    method: str = ""
    n: int = 0
    estimate: float = float("nan")
    p: float = float("nan")
    p_holm: float = float("nan")
    min_p_holm: float = float("nan")  # the smallest Holm p these runs could give: above LEVEL, undecidable
    detail: str = ""
    reason: str = ""

    @property
    def smoke(self) -> bool:
        return self.scale == "smoke"

    def line(self) -> str:
        """One printed line; a smoke verdict says it is no evidence."""
        mark = f"[{SMOKE_NOTE}] " if self.smoke else ""
        if self.verdict == NOT_RUN:
            return f"{mark}{self.id}: not run ({self.reason})"
        undecidable = "; undecidable with these runs" if self.min_p_holm > LEVEL else ""
        sense = "a - b: the paper says near 0" if "equivalence" in self.method else "> 0: the paper's direction"
        return (
            f"{mark}{self.id}: {self.verdict} ({self.claim}; {self.measure} gap {self.estimate:+.3g} ({sense}), "
            f"{self.detail}, "
            f"{self.method}, p = {self.p:.2g}, Holm p = {self.p_holm:.2g}{undecidable})"
        )


# ---- the runs and their measures --------------------------------------------------------------
def run_measures(runs_root: Path) -> pd.DataFrame:
    """One row per finished run under ``runs_root`` with every measure of :data:`RUN_MEASURES` it has."""
    runs = load_runs(runs_root)
    runs = runs[runs["status"] == "done"].copy()
    if runs.empty:
        return runs.assign(**{measure: pd.Series(dtype=float) for measure in RUN_MEASURES})
    for measure in MONITORED:
        runs[measure] = pd.to_numeric(runs["best"].where(runs["monitor"] == measure), errors="coerce")
    metrics = load_metrics(runs_root, runs)
    for measure, (column, summary, log) in FROM_CURVES.items():
        runs[measure] = runs["run_dir"].map(_curve_summary(metrics, column, summary, log))
    runs["epochs_to_sgd_best"] = runs["run_dir"].map(_epochs_to_sgd_best(metrics))
    return runs


def _curve_summary(metrics: pd.DataFrame, column: str, summary: str, log: bool) -> pd.Series:
    """Per run: the last logged value of ``column`` or its mean over logged epochs (log10 if asked)."""
    if column not in metrics or "epoch" not in metrics:
        return pd.Series(dtype=float)
    logged = metrics.dropna(subset=[column]).sort_values("epoch")
    values = logged.groupby("run_dir")[column].agg(summary).astype(float)
    if log:
        values = np.log10(values.where(values > 0))  # a zero or negative value has no log: not a measure
    return values


def _epochs_to_sgd_best(metrics: pd.DataFrame, baseline: str = "sgd") -> pd.Series:
    """Per run of a table with SGD runs: the first epoch its own validation accuracy reaches SGD's best
    seed-averaged accuracy of the first ``WINDOW`` epochs (Table 3's speed-up target, ``speedup``),
    or ``WINDOW + 1`` when it does not within the window (it got there later, if at all)."""
    if "val_accuracy" not in metrics or "epoch" not in metrics:
        return pd.Series(dtype=float)
    rows = metrics[(metrics["epoch"] <= WINDOW) & metrics["val_accuracy"].notna()]
    found = {}
    for _, group in rows.groupby(["table", "dataset", "scale"], sort=False):
        sgd = group[group["optimizer"] == baseline]
        if sgd.empty:
            continue
        target = mean_curve(sgd, "val_accuracy").max()
        for run_dir, curve in group.groupby("run_dir"):
            epoch = first_epoch_reaching(curve.set_index("epoch")["val_accuracy"].sort_index(), target)
            found[run_dir] = WINDOW + 1 if math.isnan(epoch) else epoch
    return pd.Series(found, dtype=float)


# ---- one claim -------------------------------------------------------------------------------
def _matching(runs: pd.DataFrame, side: Side) -> pd.DataFrame:
    keep = pd.Series(True, index=runs.index)
    for column, value in side.columns:
        if column not in runs:
            return runs.iloc[0:0]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            keep &= np.isclose(pd.to_numeric(runs[column], errors="coerce"), float(value))
        else:
            keep &= runs[column] == value
    return runs[keep]


def _side_values(runs: pd.DataFrame, claim: Claim, side: Side, sign: float) -> pd.Series:
    """The claim's measure on ``side``'s runs, one per seed, oriented so that higher is better."""
    mine = _matching(runs, side).dropna(subset=[claim.measure])
    if mine.empty:
        raise NotRun(f"no finished {side.name} runs of {claim.table} on {claim.dataset} with {claim.measure}")
    if claim.pick == "best_setting":
        means = (sign * mine[claim.measure]).groupby(mine["setting"]).mean()
        mine = mine[mine["setting"] == means.idxmax()]
    repeated = mine["seed"][mine["seed"].duplicated()].tolist()
    if repeated:
        raise NotRun(f"{side.name} has several runs of seed {repeated[0]} (several settings pooled); pick one")
    return (sign * mine.set_index("seed")[claim.measure]).astype(float)


def _scale(runs: pd.DataFrame) -> str:
    scales = set(runs["scale"].dropna())
    if len(scales) > 1:
        raise NotRun("its runs mix smoke and full scale: keep smoke runs under results/smoke/runs")
    return scales.pop() if scales else ""


def outcome(claim: Claim, runs: pd.DataFrame, registry: Registry) -> Outcome:
    """The claim's test on ``runs`` (every finished run, with measures); :class:`NotRun` when it cannot be tested."""
    if claim.measure not in runs:
        raise NotRun(f"no run has the measure {claim.measure}")
    mine = runs[(runs["table"] == claim.table) & (runs["dataset"] == claim.dataset)]
    measure = registry.measures[claim.measure]
    sign = 1.0 if measure.better == "higher" else -1.0
    a, b = _side_values(mine, claim, claim.a, sign), _side_values(mine, claim, claim.b, sign)
    scale = _scale(pd.concat([_matching(mine, claim.a), _matching(mine, claim.b)]))
    shared = a.index.intersection(b.index)
    paired = PAIRED_BY_SEED and len(shared) > 0
    if claim.test == "equivalent":  # symmetric: the difference a - b in the measure's own units
        test = (
            equivalence_test(sign * (a[shared] - b[shared]).to_numpy(), measure.min_effect, exact=True)
            if paired
            else unpaired_equivalence(sign * a.to_numpy(), sign * b.to_numpy(), measure.min_effect)
        )
    else:
        test = (
            paired_test((a[shared] - b[shared]).to_numpy(), measure.min_effect, exact=True)
            if paired
            else unpaired_test(a.to_numpy(), b.to_numpy(), measure.min_effect)
        )
    n_a, n_b = (len(shared), len(shared)) if paired else (len(a), len(b))
    return Outcome(claim, test, paired, n_a, n_b, scale)


def _decide(outcome: Outcome, registry: Registry, p_support: float, p_small: float) -> str:
    test, claim = outcome.test, outcome.claim
    if claim.test == "equivalent":
        return "supported" if test.all_tied else decide(False, p_support, p_small, True)
    return decide(test.all_tied, p_support, p_small, test.estimate >= registry.measures[claim.measure].min_effect)


def _detail(outcome: Outcome) -> str:
    test = outcome.test
    if outcome.paired:
        return f"{outcome.n_a} seeds paired ({test.wins} wins, {test.losses} losses, {test.ties} ties)"
    return f"unpaired, {outcome.n_a} against {outcome.n_b} runs (no seed in common)"


# ---- every claim -------------------------------------------------------------------------------
def evaluate(runs_root: Path, registry: Registry | None = None) -> list[Verdict]:
    """Every claim of the registry, in its order: tested, or "not run" with the reason."""
    registry = registry or load()
    runs = run_measures(runs_root)
    outcomes: dict[str, Outcome | NotRun] = {}
    for claim in registry.claims:
        try:
            outcomes[claim.id] = outcome(claim, runs, registry)
        except NotRun as reason:
            outcomes[claim.id] = reason
    decided: dict[str, tuple[str, float, float]] = {}
    for family in dict.fromkeys(c.family for c in registry.claims):
        ran = [o for c in registry.claims if c.family == family and isinstance(o := outcomes[c.id], Outcome)]
        support = holm([o.test.p_support for o in ran])
        small = holm([o.test.p_small for o in ran])
        for o, s, m in zip(ran, support, small):
            floor = min(1.0, len(ran) * smallest_p(o.paired, o.n_a, o.n_b))
            decided[o.claim.id] = (_decide(o, registry, s, m), s, floor)
    return [_verdict(claim, outcomes[claim.id], decided, registry) for claim in registry.claims]


def _verdict(claim: Claim, found: Outcome | NotRun, decided: dict, registry: Registry) -> Verdict:
    base = dict(id=claim.id, artefact=claim.artefact, family=claim.family, claim=claim.claim, measure=claim.measure)
    if isinstance(found, NotRun):
        return Verdict(**base, verdict=NOT_RUN, reason=str(found))
    verdict, p_holm, floor = decided[claim.id]
    test = found.test
    kind = ("paired" if found.paired else "unpaired") + (", equivalence" if claim.test == "equivalent" else "")
    return Verdict(
        **base, verdict=verdict, scale=found.scale, method=f"{test.method} ({kind})", n=test.n,
        estimate=test.estimate, p=test.p_support, p_holm=p_holm, min_p_holm=floor, detail=_detail(found),
    )  # fmt: skip


COLUMNS = ["id", "artefact", "family", "claim", "measure", "verdict", "scale", "method", "n", "estimate", "p",
           "p_holm", "min_p_holm", "detail", "reason"]  # fmt: skip


def claims_frame(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per claim; a smoke row's ``note`` says it is no evidence."""
    frame = pd.DataFrame([{column: getattr(v, column) for column in COLUMNS} for v in verdicts], columns=COLUMNS)
    return frame.assign(note=np.where(frame["scale"] == "smoke", SMOKE_NOTE, ""))


def claims_path(out: Path) -> Path:
    """``<out>/claims/section5.csv``: results/ for full-scale runs, results/smoke/ for smoke runs."""
    return out / CLAIMS_FILE


def write_claims(runs_root: Path, out: Path) -> tuple[Path, list[Verdict]]:
    """Evaluate every claim over ``runs_root`` and write ``claims_path(out)``."""
    verdicts = evaluate(runs_root)
    path = claims_path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    claims_frame(verdicts).to_csv(path, index=False, float_format="%.6g")
    return path, verdicts


def cell_lines(out: Path) -> list[str]:
    """One line per table report under ``<out>/tables``: how many of its cells match the paper, differ,
    or have too few runs (``claim_stats.cell_verdict``); smoke cells are counted as not comparable,
    never judged (the table report gives them no verdict), and a line with any is marked."""
    lines = []
    for path in sorted((out / "tables").glob("*.csv")):
        try:
            cells = pd.read_csv(path, keep_default_na=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
            lines.append(f"{path}: unreadable ({type(error).__name__}); write it again with python -m cmrepro.report")
            continue
        smoke = int((cells["scale"] == "smoke").sum()) if "scale" in cells else 0
        if "paper_verdict" not in cells:  # a grid report, or a table of smoke runs alone
            if smoke:
                lines.append(f"[{SMOKE_NOTE}] {path.stem} cells: {smoke} of smoke runs, not comparable to the paper")
            continue
        verdicts = cells["paper_verdict"].str.partition(" (")[0]
        counts = [(int((verdicts == v).sum()), v) for v in (MATCHES, DIFFERS, TOO_FEW)]
        listed = [f"{count} {verdict}" for count, verdict in counts if count]
        listed += [f"{smoke} of smoke runs not comparable"] if smoke else []
        mark = f"[{SMOKE_NOTE}] " if smoke else ""
        lines.append(f"{mark}{path.stem} cells against the paper: {', '.join(listed) or 'no cell to judge'}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cmrepro.report.claims", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--runs", type=Path, default=Path("results/runs"), help="root of the run directories")
    parser.add_argument("--out", type=Path, default=Path("results"), help="writes <out>/claims/section5.csv")
    args = parser.parse_args(argv)
    if not args.runs.is_dir():
        print(f"cmrepro.report.claims: no run directory at {args.runs}; run the experiments first", file=sys.stderr)
        return 2
    try:
        path, verdicts = write_claims(args.runs, args.out)
    except (RegistryError, ReportError) as error:
        print(f"cmrepro.report.claims: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"cmrepro.report.claims: cannot write under {args.out}: {error.strerror}: {error.filename}",
              file=sys.stderr)  # fmt: skip
        return 2
    for verdict in verdicts:
        print(verdict.line())
    ran = [v for v in verdicts if v.verdict != NOT_RUN]
    smoke = " (smoke: stand-in data, not evidence)" if any(v.smoke for v in ran) else ""
    print(f"{len(ran)} of {len(verdicts)} claims tested{smoke}; written to {path}")
    print("\n".join(cell_lines(args.out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
