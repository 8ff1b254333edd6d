"""The README and docs/ stand alone and say nothing the repository cannot back: every link and
every file, make target, module and script they name exists here, and none points outside the
repository."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
# `make X` in code (a `...` span or a fenced block): prose ("make sure") is not a command, and
# `make reproduce-*` names a family of targets.
MAKE_COMMAND = re.compile(r"(?:^|\s|&&)make ([a-z][a-z0-9-]*[a-z0-9])(?![*%\w-])", re.M)
CODE = re.compile(r"```.*?```|`[^`\n]+`", re.S)
MODULE_COMMAND = re.compile(r"python3? -m (cmrepro[\w.]*)")
# Scripts run as commands (another project's scripts may be named in prose).
SCRIPT = re.compile(r"(?:python3?|bash) scripts/([\w-]+\.(?:py|sh))")
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


def makefile_targets() -> set[str]:
    text = (ROOT / "Makefile").read_text()
    targets = set()
    for line in text.splitlines():
        match = re.match(r"^([A-Za-z0-9_ %$().:-]+?):(?!=)", line)
        if match and not line.startswith("\t"):
            targets.update(t for t in match.group(1).split() if "$" not in t and "%" not in t)
    # Targets made by pattern rules over a variable (figure8, figure8-smoke, ...).
    figures = re.search(r"^ANALYSIS_FIGURES := (.+)$", text, re.M)
    if figures:
        names = figures.group(1).split()
        targets.update(names)
        targets.update(f"{name}-smoke" for name in names)
    return targets


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_no_document_cites_a_file_outside_the_repository(path):
    text = path.read_text()
    assert "../shared" not in text and "shared/DESIGN" not in text and "reference-semantics" not in text


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_every_relative_link_resolves(path):
    for target in LINK.findall(path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{path.name} links to {target}, which does not exist"


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_every_make_target_named_exists(path):
    spans = (span.strip("`") for span in CODE.findall(path.read_text()))
    code = "\n".join(line.split(" #")[0] for span in spans for line in span.splitlines())  # not the comments
    missing = sorted(set(MAKE_COMMAND.findall(code)) - makefile_targets())
    assert not missing, f"{path.name} names make targets that do not exist: {missing}"


@pytest.mark.parametrize("path", DOCS, ids=_ids(DOCS))
def test_every_module_and_script_named_exists(path):
    text = path.read_text()
    for module in set(MODULE_COMMAND.findall(text)):
        assert importlib.util.find_spec(module.rstrip(".")) is not None, f"{path.name}: no module {module}"
    for script in set(SCRIPT.findall(text)):
        assert (ROOT / "scripts" / script).exists(), f"{path.name}: no scripts/{script}"


def test_the_readme_says_which_python_and_uses_one_spelling():
    readme = (ROOT / "README.md").read_text()
    assert "source .venv/bin/activate" in readme
    assert ".venv/bin/python" not in readme  # after activating, `python` is the environment's


def test_the_makefile_targets_include_install_and_test():
    # The guard for the parser above: if it found nothing, every "exists" test would pass vacuously.
    assert {"install", "test", "reproduce-table2", "figure8-smoke", "reproduce-toy"} <= makefile_targets()
