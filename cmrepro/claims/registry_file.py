"""What every claims registry shares (the toy one, ``conf/toy/claims.yaml``, and the full-scale one,
``conf/claims/section5.yaml``): reading the file, its measures and its quoted sentences, each
refused in one line when malformed. Each registry adds its own claim shape on top
(``cmrepro.toy.registry``, ``cmrepro.report.claim_registry``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

# libyaml's safe loader where PyYAML was built with it (ten times faster: the README is rewritten
# after every toy experiment); the pure-Python safe loader otherwise. Neither constructs objects.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DIRECTIONS = ("higher", "lower")


class RegistryError(ValueError):
    """A malformed registry entry (one line: the entry, what is wrong, the fix)."""


@dataclass(frozen=True)
class Measure:
    name: str  # the CSV column
    better: str  # "higher" or "lower"
    min_effect: float  # below this (in the column's units) a certain difference is "negligible"
    what: str
    alternatives: tuple[str, ...] = ()  # other rules for the same outcome (the sensitivity table)


@dataclass(frozen=True)
class Sentence:
    id: str
    place: str
    quote: str
    claims: tuple[str, ...] = ()  # ids of the claims declared under it
    same_as: tuple[str, ...] = ()  # ids of claims of other sentences that test it
    not_testable: str | None = None


def _fail(where: str, problem: str) -> RegistryError:
    return RegistryError(f"claims registry: {where}: {problem}")


def read_measure(name: str, raw: dict, fail: Callable[[str, str], RegistryError] = _fail) -> Measure:
    if raw.get("better") not in DIRECTIONS:
        raise fail(f"measure {name}", f"better={raw.get('better')!r} must be one of {DIRECTIONS}")
    effect = raw.get("min_effect")
    if not isinstance(effect, (int, float)) or effect < 0:
        raise fail(f"measure {name}", f"min_effect={effect!r} must be a number >= 0 (the smallest gap that matters)")
    return Measure(name, raw["better"], float(effect), str(raw.get("what", name)), tuple(raw.get("alternatives", ())))


def read_registry_file(path: Path) -> dict:
    """A claims registry file's content: a mapping with ``measures`` and ``sentences`` (this registry's,
    or the full-scale one of ``cmrepro.report.claim_registry``); one line when it is not one."""
    try:
        raw = yaml.load(Path(path).read_text(), Loader=SAFE_LOADER)
    except (OSError, yaml.YAMLError) as error:
        problem = " ".join(str(error).split())  # YAML errors span lines: one line here
        raise RegistryError(f"{path}: cannot read the claims registry ({problem}); restore it from git") from None
    if not isinstance(raw, dict) or "measures" not in raw or "sentences" not in raw:
        raise RegistryError(f"{path}: not a claims registry: it needs 'measures' and 'sentences'")
    return raw


def read_sentences(
    entries: list, build: Callable[[str, list], list], fail: Callable[[str, str], RegistryError] = _fail
) -> tuple[list[Sentence], list]:
    """The sentences of a registry and their claims, ``build(sentence id, its raw claims)`` making the
    claims; checked: every sentence quoted, placed and tested (or said untestable), unique claim ids,
    ``same_as`` naming declared claims. ``fail(where, problem)``: the registry's one-line error."""
    sentences, claims = [], []
    for entry in entries:
        where = f"sentence {entry.get('id', '(no id)')}"
        if not entry.get("id") or not entry.get("quote") or not entry.get("place"):
            raise fail(where, "a sentence needs an id, its quote and its place in the paper")
        mine = build(entry["id"], entry.get("claims", ()))
        if not (mine or entry.get("same_as") or entry.get("not_testable")):
            raise fail(where, "neither claims, same_as nor not_testable: say how the sentence is tested")
        claims += mine
        sentences.append(
            Sentence(
                entry["id"],
                entry["place"],
                " ".join(entry["quote"].split()),
                tuple(c.id for c in mine),
                tuple(entry.get("same_as", ())),
                entry.get("not_testable"),
            )
        )
    ids = [c.id for c in claims]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise fail(f"claims {duplicates}", "ids must be unique")
    for sentence in sentences:
        unknown = [i for i in sentence.same_as if i not in ids]
        if unknown:
            raise fail(f"sentence {sentence.id}", f"same_as names no declared claim: {unknown}")
    return sentences, claims
