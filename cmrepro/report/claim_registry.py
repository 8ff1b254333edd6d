"""The registry of the paper's full-scale claims, ``conf/claims/section5.yaml``: sentences and claims.

The toy registry (``cmrepro.toy.registry``) declares claims over per-run CSVs of the toy
experiments; this one declares claims over run directories of training runs: which runs
(``benchmark.table``, dataset, an optimizer or a mapping of run columns) are compared on which
per-run measure. It reads and checks the file, its measures (direction and minimum effect) and its
sentences with the toy registry's own functions, so both registries read alike; this module adds
the claim shape and the expansion of a list of ``a`` or ``b`` entries into one claim each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..claims.registry_file import Measure, RegistryError, Sentence, read_measure, read_registry_file, read_sentences
from ..paper_names import PAPER_NAME_OF_OPTIMIZER

REGISTRY = Path(__file__).resolve().parents[2] / "conf" / "claims" / "section5.yaml"
TESTS = ("paired", "equivalent")
PICKS = (None, "best_setting")


@dataclass(frozen=True)
class Side:
    """The runs of one side of a comparison: run columns and the values they must have."""

    name: str  # a short name: "adam_cm", "topC_20", "lr_0.001"
    label: str  # what the claim's words append: "Adam+CM", "20", "0.001"
    columns: tuple[tuple[str, object], ...]


@dataclass(frozen=True)
class Claim:
    id: str
    sentence: str
    artefact: str
    claim: str
    table: str  # benchmark.table of the runs
    dataset: str
    measure: str
    a: Side
    b: Side
    test: str = "paired"
    pick: str | None = None

    @property
    def family(self) -> str:
        """The Holm family: the paper's table or figure ("Figure 10 (left)" -> "Figure 10")."""
        return self.artefact.partition(" (")[0]


@dataclass(frozen=True)
class Registry:
    measures: dict[str, Measure]
    sentences: tuple[Sentence, ...]
    claims: tuple[Claim, ...]

    def claim(self, claim_id: str) -> Claim:
        return next(c for c in self.claims if c.id == claim_id)


def _fail(where: str, problem: str) -> RegistryError:
    return RegistryError(f"conf/claims/section5.yaml: {where}: {problem}")


def side(raw: object, where: str) -> Side:
    """An optimizer name, or a mapping of run columns to values."""
    if isinstance(raw, str):
        return Side(raw, PAPER_NAME_OF_OPTIMIZER.get(raw, raw), (("optimizer", raw),))
    if not isinstance(raw, dict) or not raw:
        raise _fail(where, f"a side must be an optimizer name or a mapping of run columns, got {raw!r}")
    named = {key: value for key, value in raw.items() if key != "optimizer"} or raw
    name = "_".join(f"{key}_{value}" for key, value in named.items())
    label = ", ".join(str(value) for value in named.values())
    return Side(name, label, tuple(sorted(raw.items())))


def _claims(raw: dict, sentence: str, measures: dict[str, Measure]) -> list[Claim]:
    """One claim, or one per entry of a list ``a`` or ``b`` (id ``<id>.<entry>``, words ``<claim> <entry>``)."""
    where = f"claim {raw.get('id', '(no id)')}"
    for key in ("id", "artefact", "claim", "table", "dataset", "measure", "a", "b"):
        if raw.get(key) in (None, ""):
            raise _fail(where, f"missing {key!r}")
    if raw["measure"] not in measures:
        raise _fail(where, f"measure {raw['measure']!r} is not declared under measures: declare it with its min_effect")
    test, pick = raw.get("test", "paired"), raw.get("pick")
    if test not in TESTS:
        raise _fail(where, f"test={test!r} must be one of {TESTS}")
    if pick not in PICKS:
        raise _fail(where, f"pick={pick!r} must be one of {PICKS[1:]} or absent")
    listed = [key for key in ("a", "b") if isinstance(raw[key], list)]
    if len(listed) > 1:
        raise _fail(where, "only one of a and b may be a list")
    entries = raw[listed[0]] if listed else [None]
    claims = []
    for entry in entries:
        sides = {key: side(entry if key in listed else raw[key], where) for key in ("a", "b")}
        suffix = sides[listed[0]] if listed else None
        claims.append(
            Claim(
                id=f"{raw['id']}.{suffix.name}" if suffix else raw["id"],
                sentence=sentence,
                artefact=raw["artefact"],
                claim=f"{raw['claim']} {suffix.label}" if suffix else raw["claim"],
                table=raw["table"],
                dataset=raw["dataset"],
                measure=raw["measure"],
                a=sides["a"],
                b=sides["b"],
                test=test,
                pick=pick,
            )
        )
    return claims


def load(path: Path = REGISTRY) -> Registry:
    """The registry at ``path``, checked as the toy registry is (``toy.registry.read_sentences``)."""
    raw = read_registry_file(path)
    measures = {name: read_measure(name, spec, _fail) for name, spec in raw["measures"].items()}
    sentences, claims = read_sentences(
        raw["sentences"],
        lambda sentence, specs: [claim for spec in specs for claim in _claims(spec, sentence, measures)],
        _fail,
    )
    return Registry(measures, tuple(sentences), tuple(claims))
