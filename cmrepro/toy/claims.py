"""The paper's toy claims, declared in ``conf/toy/claims.yaml`` (``toy.registry``), tested over the
experiments' per-run CSVs in ``results/toy``.

Each claim becomes one vector of paired differences per measure (``_differences``), oriented so
that a positive value supports the paper; ``claims.stats`` turns it into two one-sided p-values. A
joint claim ("flatter solutions with a lower loss") holds only if every part holds: its support
p-value is the largest of its parts' (an intersection-union test), its "too small" p-value the
smallest times the number of parts. Within each family (the paper's figure or table) the p-values
are Holm-adjusted, then ``stats.decide`` gives the verdict.

Escape claims are tested under the primary rule (the final point in the flat basin) and again
under each alternative rule the registry declares (the 0.25 snapshot, the mean of the last 50
iterates), each with its own Holm pass over the family: a claim whose verdict changes with the
rule is "rule-sensitive". A claim whose CSV, column or setting does not exist yet is reported
"not run" with the reason, never an exception.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..claims import stats
from .registry import POPULATIONS, Claim, Registry, load

NOT_RUN = "not run"
TREND_TIE = 1e-12  # per-run slopes smaller than this are rounding, counted as ties


class NotRun(Exception):
    """Why a claim cannot be tested yet (one line)."""


@dataclass(frozen=True)
class Outcome:
    """One claim under one rule, before the family's Holm adjustment."""

    tests: tuple[stats.Test, ...]  # one per part
    columns: tuple[str, ...]
    p_support: float
    p_small: float
    all_tied: bool
    meets_effect: bool

    @property
    def weakest(self) -> stats.Test:
        """The part that decides a joint claim: the one with the largest support p-value."""
        return max(self.tests, key=lambda t: t.p_support)


@dataclass(frozen=True)
class Verdict:
    id: str
    artefact: str
    family: str
    claim: str
    population: str
    verdict: str
    n: int = 0
    estimate: float = float("nan")
    low: float = float("nan")
    high: float = float("nan")
    p: float = float("nan")
    p_holm: float = float("nan")
    method: str = ""
    measure: str = ""
    detail: str = ""
    reason: str = ""
    sensitivity: tuple[tuple[str, str], ...] = field(default=())  # (alternative rule, verdict)

    @property
    def rule_sensitive(self) -> bool:
        return any(verdict != self.verdict for _, verdict in self.sensitivity)

    def line(self) -> str:
        """One line of results/toy/README.md."""
        if self.verdict == NOT_RUN:
            return f"- `{self.id}` {self.claim}: **not run** ({self.reason})."
        sensitive = " **rule-sensitive**" if self.rule_sensitive else ""
        if self.method == "exact computation":
            return f"- `{self.id}` {self.claim}: **{self.verdict}** ({self.measure} {self.estimate:.3g}, exact)."
        return (
            f"- `{self.id}` {self.claim}: **{self.verdict}**{sensitive} ({self.detail}; "
            f"n = {self.n}, {POPULATIONS[self.population]}, {self.method}, "
            f"p = {self.p:.2g}, Holm p = {self.p_holm:.2g})."
        )


# ---- the per-run CSVs -------------------------------------------------------------------------
def _setting_column(frame: pd.DataFrame) -> pd.Series:
    """One name per optimizer setting: the label, with C and decay where the table varies them."""
    if "C" not in frame or "decay" not in frame:
        return frame.optimizer
    with_buffer = frame.C.notna()
    named = frame.optimizer + " C=" + frame.C.fillna(0).astype(int).astype(str) + " decay=" + frame.decay.astype(str)
    return named.where(with_buffer, frame.optimizer)


def _derived(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns a claim tests that follow from the runs' own: ``ended_nearest`` (Figure 5: the run ended
    in the basin of the minimum of f_s nearer its start x0, the flat one at 0 or the sharp one at 1)."""
    if {"x0", "escaped_basin"} <= set(frame.columns) and "ended_nearest" not in frame:
        nearer_flat = frame.x0.abs() < (frame.x0 - 1).abs()
        frame = frame.assign(ended_nearest=(frame.escaped_basin.astype(bool) == nearer_flat).astype(int))
    return frame


def _read(out: Path, source: str) -> pd.DataFrame:
    path = out / f"{source}.csv"
    if not path.is_file():
        raise NotRun(f"results/toy/{source}.csv not written yet")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise NotRun(f"results/toy/{source}.csv is unreadable ({type(error).__name__}); rerun its experiment") from None
    frame = _derived(frame)
    return frame.assign(setting=_setting_column(frame)) if "optimizer" in frame else frame


class Sources:
    """Each CSV read once; a missing or unreadable one remembered as its reason."""

    def __init__(self, out: Path):
        self.out, self._frames, self._digests = out, {}, {}

    def digest(self, source: str) -> str:
        """The CSV's content hash ("" when absent): what a claim's outcome depends on besides the registry."""
        if source not in self._digests:
            path = self.out / f"{source}.csv"
            self._digests[source] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        return self._digests[source]

    def __call__(self, source: str) -> pd.DataFrame:
        if source not in self._frames:
            try:
                self._frames[source] = _read(self.out, source)
            except NotRun as reason:
                self._frames[source] = reason
        found = self._frames[source]
        if isinstance(found, NotRun):
            raise found
        return found


def _values(frame: pd.DataFrame, claim: Claim, source: str, setting: str, column: str) -> pd.Series:
    """``column`` of one setting per run (``claim.pair_on``), averaged over the run's rows (e.g. s)."""
    for needed in ("optimizer", column, claim.pair_on, *(c for c, _ in claim.where)):
        if needed not in frame:
            raise NotRun(f"column {needed} missing from results/toy/{source}.csv")
    rows = frame[frame.setting == setting]
    for key, accepted in claim.where:
        rows = rows[rows[key].isin(accepted)]
    if rows.empty:
        raise NotRun(f"no runs of {setting!r} in results/toy/{source}.csv{_filters(claim)}")
    values = pd.to_numeric(rows[column], errors="coerce").astype(float)
    bad = int((~np.isfinite(values)).sum())
    if bad:
        raise NotRun(f"{bad} runs of {setting!r} have a non-finite {column} in results/toy/{source}.csv")
    return values.groupby(rows[claim.pair_on]).mean()


def _filters(claim: Claim) -> str:
    return "" if not claim.where else " with " + ", ".join(f"{c} in {list(v)}" for c, v in claim.where)


def _aligned(first: pd.Series, second: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    first, second = first.align(second, join="inner")
    if first.empty:
        raise NotRun("the settings compared share no run")
    return first.to_numpy(), second.to_numpy()


def _differences(claim: Claim, column: str, better: str, sources: Sources) -> np.ndarray:
    """The per-run differences of one part of ``claim``, positive where the paper is right."""
    sign = 1.0 if better == "higher" else -1.0
    frame = sources(claim.source)
    if claim.test in ("paired", "equivalent"):
        b_source = claim.b_source or claim.source
        first, second = _aligned(
            _values(frame, claim, claim.source, claim.a, column),
            _values(sources(b_source), claim, b_source, claim.b, column),
        )
        return first - second if claim.test == "equivalent" else sign * (first - second)
    if claim.test == "share":
        return sign * (_values(frame, claim, claim.source, claim.setting, column).to_numpy() - claim.threshold)
    if claim.test == "trend":
        return sign * _trend(frame, claim, column)
    raise NotRun(f"test {claim.test!r} has no per-run differences")


def _trend(frame: pd.DataFrame, claim: Claim, column: str) -> np.ndarray:
    """Per run, the least-squares slope of ``column`` against log2 C, times the log2 C range: the
    change across all the C compared that the run's trend implies (a monotone test over every C)."""
    table = pd.concat({c: _values(frame, claim, claim.source, name, column) for name, c in claim.settings}, axis=1)
    table = table.dropna()
    if table.empty:
        raise NotRun("the settings compared share no run")
    x = np.log2(np.asarray(table.columns, dtype=float))
    centred = x - x.mean()
    slopes = (table.to_numpy() - table.to_numpy().mean(axis=1, keepdims=True)) @ centred / (centred @ centred)
    # A run with no linear trend (1, 0, 1 over C = 5, 10, 20) sums to 0 only up to rounding: a tie, not a loss.
    slopes[np.abs(slopes) < TREND_TIE] = 0.0
    return slopes * (x.max() - x.min())


# ---- one claim under one rule ------------------------------------------------------------------
def _outcome(claim: Claim, columns: tuple[str, ...], registry: Registry, sources: Sources) -> Outcome:
    tests = []
    for part, column in zip(claim.parts, columns):
        d = _differences(claim, column, part.better, sources)
        effect = registry.measures[column].min_effect
        exact = claim.exact or len(d) < stats.EXACT_BELOW
        test = (
            stats.equivalence_test(d, effect, exact)
            if claim.test == "equivalent"
            else stats.paired_test(d, effect, exact)
        )
        tests.append(test)
    equivalent = claim.test == "equivalent"
    return Outcome(
        tuple(tests),
        columns,
        p_support=max(t.p_support for t in tests),
        p_small=min(1.0, len(tests) * min(t.p_small for t in tests)),
        all_tied=all(t.all_tied for t in tests) and not equivalent,
        meets_effect=equivalent or all(t.estimate >= registry.measures[c].min_effect for t, c in zip(tests, columns)),
    )


def rules(registry: Registry) -> list[tuple[str, dict[str, str]]]:
    """The primary rule (no substitution) and each alternative: (name, {column: replacement})."""
    with_alternatives = [m for m in registry.measures.values() if m.alternatives]
    count = max((len(m.alternatives) for m in with_alternatives), default=0)
    alternatives = [
        {m.name: m.alternatives[i] for m in with_alternatives if i < len(m.alternatives)} for i in range(count)
    ]
    return [("primary", {})] + [(next(iter(sub.values())), sub) for sub in alternatives]


def _columns(claim: Claim, substitution: dict[str, str]) -> tuple[str, ...]:
    return tuple(substitution.get(part.column, part.column) for part in claim.parts)


def _decide(claim: Claim, outcome: Outcome, p_support: float, p_small: float) -> str:
    if claim.test == "equivalent" and all(t.all_tied for t in outcome.tests):
        return "supported"  # every run ended alike: equal, as the claim says
    return stats.decide(outcome.all_tied, p_support, p_small, outcome.meets_effect)


def _family_verdicts(claims: list[Claim], outcomes: dict[str, Outcome]) -> dict[str, tuple[str, float]]:
    """Holm within the family, separately for the support and the too-small p-values."""
    ran = [c for c in claims if c.id in outcomes]
    support = stats.holm([outcomes[c.id].p_support for c in ran])
    small = stats.holm([outcomes[c.id].p_small for c in ran])
    return {c.id: (_decide(c, outcomes[c.id], s, m), s) for c, s, m in zip(ran, support, small)}


def _detail(outcome: Outcome) -> str:
    """Each part's estimate, interval (bootstrap only) and wins, losses and ties."""
    parts = []
    for test, column in zip(outcome.tests, outcome.columns):
        interval = "" if math.isnan(test.low) else f", 95% CI [{test.low:+.3g}, {test.high:+.3g}]"
        parts.append(
            f"{column} {test.estimate:+.3g}{interval} ({test.wins} wins, {test.losses} losses, {test.ties} ties)"
        )
    return "; ".join(parts)


def _computation(claim: Claim, sources: Sources) -> Verdict:
    """Figure 3 is a computation, not a sample: the worst rho* of critical momenta, exactly."""
    frame = sources(claim.source)
    if "method" not in frame or "rho" not in frame:
        raise NotRun(f"results/toy/{claim.source}.csv lacks the method and rho columns")
    margin = 1 - float(frame[frame.method.str.startswith("critical")].rho.max())
    return Verdict(
        claim.id, claim.artefact, claim.family, claim.claim, claim.population,
        "supported" if margin > 0 else "not supported", n=1, estimate=margin, method="exact computation",
        measure="1 - max rho*",
    )  # fmt: skip


# Outcomes by claim, columns, minimum effects and the content of the CSVs read: `make reproduce-toy`
# rewrites results/toy/README.md after each of its experiments, in one process, and only the claims
# whose CSVs changed are tested again (the tests are deterministic, so a kept outcome is the same).
_OUTCOMES: dict[tuple, Outcome | NotRun] = {}


def evaluate(out: Path, registry: Registry | None = None) -> list[Verdict]:
    """Every claim of the registry, in its order: tested, or "not run" with the reason."""
    registry = registry or load()
    sources = Sources(out)
    all_rules = rules(registry)

    def outcome(claim: Claim, columns: tuple[str, ...]) -> Outcome | NotRun:
        effects = tuple(registry.measures[c].min_effect if c in registry.measures else None for c in columns)
        key = (claim, columns, effects, tuple(sources.digest(s) for s in claim.sources))
        if key not in _OUTCOMES:
            try:
                _OUTCOMES[key] = _outcome(claim, columns, registry, sources)
            except NotRun as reason:
                _OUTCOMES[key] = reason
        return _OUTCOMES[key]

    tested = [c for c in registry.claims if c.test != "computation"]
    families = {c.family: [d for d in tested if d.family == c.family] for c in tested}
    decided: dict[str, dict[str, tuple[str, float]]] = {}  # rule -> claim id -> (verdict, Holm p)
    for name, substitution in all_rules:
        decided[name] = {}
        for members in families.values():
            ran = {c.id: o for c in members if isinstance(o := outcome(c, _columns(c, substitution)), Outcome)}
            decided[name].update(_family_verdicts(members, ran))
    verdicts = []
    for claim in registry.claims:
        verdicts.append(_verdict(claim, registry, outcome, decided, all_rules, sources))
    return verdicts


def _verdict(claim, registry, outcome, decided, all_rules, sources) -> Verdict:
    base = dict(
        id=claim.id, artefact=claim.artefact, family=claim.family, claim=claim.claim, population=claim.population
    )
    if claim.test == "computation":
        try:
            return _computation(claim, sources)
        except NotRun as reason:
            return Verdict(**base, verdict=NOT_RUN, reason=str(reason))
    primary = outcome(claim, _columns(claim, {}))
    if isinstance(primary, NotRun):
        return Verdict(**base, verdict=NOT_RUN, reason=str(primary))
    verdict, p_holm = decided["primary"][claim.id]
    sensitivity = tuple(
        (name, decided[name].get(claim.id, (NOT_RUN, 0.0))[0])
        for name, substitution in all_rules[1:]
        if _columns(claim, substitution) != primary.columns
    )
    weakest = primary.weakest
    return Verdict(
        **base,
        verdict=verdict,
        n=weakest.n,
        estimate=weakest.estimate,
        low=weakest.low,
        high=weakest.high,
        p=primary.p_support,
        p_holm=p_holm,
        method=weakest.method,
        measure=" & ".join(registry.measures[c].what for c in primary.columns),
        detail=_detail(primary),
        sensitivity=sensitivity,
    )


COLUMNS = ["id", "artefact", "family", "claim", "population", "method", "n", "estimate", "low", "high", "p", "p_holm"]


def claims_frame(verdicts: list[Verdict], registry: Registry | None = None) -> pd.DataFrame:
    """``claims.csv``'s rows: one per claim, with its verdict under each escape rule."""
    names = [name for name, _ in rules(registry or load())[1:]]
    rows = []
    for v in verdicts:
        row = {column: getattr(v, column) for column in COLUMNS}
        row["verdict"] = v.verdict
        found = dict(v.sensitivity)
        for name in names:
            row[f"verdict_{name}"] = found.get(name, "")
        row.update(rule_sensitive=v.rule_sensitive, measure=v.measure, detail=v.detail, reason=v.reason)
        rows.append(row)
    return pd.DataFrame(rows)


def write_claims(out: Path, registry: Registry | None = None) -> list[Verdict]:
    """``claims.csv`` beside the experiments' CSVs: one row per claim, for the results index."""
    registry = registry or load()
    verdicts = evaluate(out, registry)
    claims_frame(verdicts, registry).to_csv(out / "claims.csv", index=False, float_format="%.6g")
    return verdicts
