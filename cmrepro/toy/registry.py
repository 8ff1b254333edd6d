"""The registry of the paper's toy claims, ``conf/toy/claims.yaml``: sentences, claims and measures.

The file is the one place where a claim is declared (the quoted sentence and its place in the
paper, the source CSV, the population, the settings compared, the measures and the rule); this
module reads it into frozen dataclasses and refuses a malformed entry with one line that names it.
``cmrepro.toy.claims`` evaluates what is read here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..claims.registry_file import (
    DIRECTIONS,
    Measure,
    RegistryError,
    Sentence,
    read_measure,
    read_registry_file,
    read_sentences,
)

REGISTRY = Path(__file__).resolve().parents[2] / "conf" / "toy" / "claims.yaml"

POPULATIONS = {
    "uniform": "seeded uniform random starts",
    "grid": "a grid of starts",
    "cells": "fixed (s, x0) cells",
    "computation": "an exact computation",
}
TESTS = ("paired", "trend", "share", "equivalent", "computation")
FIXED = ("grid", "cells")  # populations that are not samples: always the exact test


@dataclass(frozen=True)
class Part:
    """One measure of a claim, with the direction the claim needs (the measure's unless overridden)."""

    column: str
    better: str


@dataclass(frozen=True)
class Claim:
    id: str
    sentence: str  # the id of the sentence it tests
    artefact: str  # "Figure 7 (left)"
    claim: str
    source: str  # results/toy/<source>.csv
    population: str
    parts: tuple[Part, ...]
    test: str = "paired"
    a: str | None = None
    b: str | None = None
    b_source: str | None = None
    pair_on: str = "run"
    where: tuple[tuple[str, tuple], ...] = ()  # (column, accepted values)
    settings: tuple[tuple[str, float], ...] = ()  # trend: (setting, C)
    setting: str | None = None  # share: the one setting
    threshold: float = 0.5  # share: the level the mean must exceed

    @property
    def family(self) -> str:
        """The Holm family: the paper's table or figure ("Figure 7 (left)" -> "Figure 7")."""
        return self.artefact.partition(" (")[0]

    @property
    def exact(self) -> bool:
        return self.population in FIXED

    @property
    def sources(self) -> tuple[str, ...]:
        return (self.source,) + ((self.b_source,) if self.b_source else ())


@dataclass(frozen=True)
class Registry:
    measures: dict[str, Measure]
    sentences: tuple[Sentence, ...]
    claims: tuple[Claim, ...] = field(default=())

    def claim(self, claim_id: str) -> Claim:
        return next(c for c in self.claims if c.id == claim_id)


def _fail(where: str, problem: str) -> RegistryError:
    return RegistryError(f"conf/toy/claims.yaml: {where}: {problem}")


def _parts(raw: dict, measures: dict[str, Measure], where: str) -> tuple[Part, ...]:
    items = raw.get("measures")
    if not items:
        raise _fail(where, "no measures: list the CSV columns the claim tests, e.g. measures: [loss]")
    parts = []
    for item in items:
        column, better = (item, None) if isinstance(item, str) else (item.get("column"), item.get("better"))
        if column not in measures:
            raise _fail(where, f"measure {column!r} is not declared under measures: declare it with its min_effect")
        better = better or measures[column].better
        if better not in DIRECTIONS:
            raise _fail(where, f"better={better!r} must be one of {DIRECTIONS}")
        parts.append(Part(column, better))
    return tuple(parts)


def _where(raw: dict) -> tuple[tuple[str, tuple], ...]:
    return tuple(
        (column, tuple(value) if isinstance(value, list) else (value,))
        for column, value in raw.get("where", {}).items()
    )


def _claim(raw: dict, sentence: str, measures: dict[str, Measure]) -> Claim:
    where = f"claim {raw.get('id', '(no id)')}"
    for key in ("id", "artefact", "claim", "source", "population"):
        if not raw.get(key):
            raise _fail(where, f"missing {key!r}")
    test = raw.get("test", "paired")
    if test not in TESTS:
        raise _fail(where, f"test={test!r} must be one of {TESTS}")
    if raw["population"] not in POPULATIONS:
        raise _fail(where, f"population={raw['population']!r} must be one of {tuple(POPULATIONS)}")
    needed = {"paired": ("a", "b"), "equivalent": ("a", "b"), "trend": ("settings",), "share": ("setting",)}
    for key in needed.get(test, ()):
        if not raw.get(key):
            raise _fail(where, f"a {test} claim needs {key!r}")
    settings = raw.get("settings", {})
    if test == "trend" and len(settings) < 2:
        raise _fail(where, "a trend needs at least two settings {name: C}")
    return Claim(
        id=raw["id"],
        sentence=sentence,
        artefact=raw["artefact"],
        claim=raw["claim"],
        source=raw["source"],
        population=raw["population"],
        parts=_parts(raw, measures, where),
        test=test,
        a=raw.get("a"),
        b=raw.get("b"),
        b_source=raw.get("b_source"),
        pair_on=raw.get("pair_on", "run"),
        where=_where(raw),
        settings=tuple((name, float(c)) for name, c in settings.items()),
        setting=raw.get("setting"),
        threshold=float(raw.get("threshold", 0.5)),
    )


def load(path: Path = REGISTRY) -> Registry:
    """The registry at ``path``, checked: unique ids, declared measures, same_as naming real claims."""
    raw = read_registry_file(path)
    measures = {name: read_measure(name, spec, _fail) for name, spec in raw["measures"].items()}
    for measure in measures.values():
        for other in measure.alternatives:
            if other not in measures:
                raise _fail(f"measure {measure.name}", f"alternative {other!r} is not declared under measures")
    sentences, claims = read_sentences(
        raw["sentences"], lambda sentence, specs: [_claim(c, sentence, measures) for c in specs], _fail
    )
    return Registry(measures, tuple(sentences), tuple(claims))
