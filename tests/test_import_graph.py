"""The import graph of ``cmrepro/``: no circles, and every import runs down the layers.

The graph is read from the source with :mod:`ast`, so nothing is imported to draw it.
Every ``import`` and ``from ... import`` counts, at module level or inside a function
(a deferred import still ties the two modules together), except those under
``if TYPE_CHECKING:``, which never run. Relative imports are resolved against the
importing module; ``from . import x`` is an edge to the submodule ``x`` when there is one.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "cmrepro"

# Bottom to top (docs/architecture.md). A module may import its own package and anything on a
# lower layer, never a layer above it, nor a different package on its own layer.
LAYERS: tuple[tuple[str, ...], ...] = (
    # Leaves: standard library only (checked below), importable from anywhere.
    ("cmrepro", "cmrepro.validation", "cmrepro.paper_names", "cmrepro.paper_data", "cmrepro.run_files",
     "cmrepro.seeds", "cmrepro.cli", "cmrepro.run_identity", "cmrepro.run_lock", "cmrepro.sweep_ledger",
     "cmrepro.suite_check"),
    # What conf/ defines, and the config groups a command's --help lists (both commands read them).
    ("cmrepro.config_keys", "cmrepro.command_help"),
    ("cmrepro.optim", "cmrepro.models", "cmrepro.data", "cmrepro.claims"),
    ("cmrepro.metrics",),
    ("cmrepro.training", "cmrepro.toy", "cmrepro.report"),
    ("cmrepro.command_checks",),  # a command line checked against it, before Hydra runs
    ("cmrepro.prelaunch",),  # every job of a command composed, its data and run directory, before launching
    ("cmrepro.sweeper",),  # the sweep's Hydra sweeper, built on those
    ("cmrepro.train", "cmrepro.reproduce"),
)  # fmt: skip
LEAVES = LAYERS[0]


def module_files() -> dict[str, Path]:
    """Dotted module name -> source file, for every module of the package."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement below ``node``, skipping the bodies of ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield from _import_nodes(ast.Module(body=[other], type_ignores=[]))
        else:
            yield from _import_nodes(child)


def imported_modules(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The modules of the package that ``module`` names in its imports, resolved to absolute names.

    ``from X import y`` is an edge to the submodule ``X.y`` when there is one, else to ``X``;
    ``import X.y`` is an edge to ``X.y``. The parent packages that Python runs first are not
    edges of their own: the importer's are already running, and another package's ``__init__``
    is reached through the edge to the module it holds.
    """
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    named = set()
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # "from .x import y": counted from the importer's package
            base = ".".join([*package[: len(package) - node.level + 1], *([node.module] if node.module else [])])
        named.update(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names)
    return {name for name in named if name in modules and name != module}


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules of the package it imports."""
    modules = module_files()
    return {module: imported_modules(module, path, modules) for module, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle, as a closed path ``[a, b, ..., a]``, per strongly connected component that has one."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm; the package is small enough to recurse
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                connect(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return [_closed_path(graph, component) for component in components if len(component) > 1]


def _closed_path(graph: dict[str, set[str]], component: set[str]) -> list[str]:
    """The shortest path from the component's first module back to itself, inside the component."""
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph[node] & component):
                if target == start:
                    return [*paths[node], start]
                if target not in paths:
                    paths[target] = [*paths[node], target]
                    following.append(target)
        frontier = following
    raise AssertionError(f"no cycle through {start} in {sorted(component)}")


def layer_of(module: str) -> int | None:
    """The layer of the longest entry of LAYERS that is ``module`` or a package above it."""
    matches = [
        (len(name), rank)
        for rank, names in enumerate(LAYERS)
        for name in names
        if module == name or (name != "cmrepro" and module.startswith(name + "."))
    ]
    return max(matches)[1] if matches else None


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_the_graph_is_read_from_the_source():
    """The reader finds known edges, relative and absolute, and resolves ``from . import``."""
    graph = import_graph()
    assert "cmrepro.validation" in graph["cmrepro.models.registry"]
    assert "cmrepro.report.run_table" in graph["cmrepro.reproduce"]
    assert "cmrepro.optim" in graph["cmrepro.toy.batched_runs"]
    assert "cmrepro.paper_names" in graph["cmrepro.report.tables"]


def test_relative_imports_resolve_against_the_importer(tmp_path):
    path = tmp_path / "mod.py"
    path.write_text(
        "from . import sibling, NAME\nfrom .. import other\nfrom ..other import deep\nimport pkg.top\n"
        "from .sibling import thing\n"
    )
    modules = {
        name: tmp_path / "x.py" for name in ("pkg.top", "pkg.sub", "pkg.sub.sibling", "pkg.other", "pkg.other.deep")
    }
    # NAME is not a module: the edge goes to pkg.sub, the importer's own package.
    assert imported_modules("pkg.sub.mod", path, modules) == {
        "pkg.sub",
        "pkg.sub.sibling",
        "pkg.other",
        "pkg.other.deep",
        "pkg.top",
    }
    package_init = tmp_path / "__init__.py"
    package_init.write_text("from .sibling import thing\nfrom . import mod\n")
    assert imported_modules("pkg.sub", package_init, {**modules, "pkg.sub.mod": path}) == {
        "pkg.sub.sibling",
        "pkg.sub.mod",
    }


def test_cycles_are_found_and_named():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e2"}, "e2": {"e"}}
    assert sorted(cycles(graph)) == [["a", "b", "c", "a"], ["e", "e2", "e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_type_checking_imports_do_not_count():
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a\nelse:\n    import b\n"
    source += "def f():\n    import c\n"
    names = {alias.name for node in _import_nodes(ast.parse(source)) for alias in node.names}
    assert names == {"TYPE_CHECKING", "b", "c"}


def test_the_package_has_no_import_cycle():
    found = cycles(import_graph())
    assert not found, "import cycles (break each by moving the shared piece down a layer):\n" + "\n".join(
        " -> ".join(cycle) for cycle in found
    )


def test_every_import_runs_down_the_layers():
    graph = import_graph()
    unplaced = sorted(module for module in graph if layer_of(module) is None)
    assert not unplaced, f"modules in no layer: {unplaced} (add their package to LAYERS in {Path(__file__).name})"
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if _package(module) != _package(target)
        and layer_of(target) >= layer_of(module)
        and not (module in LEAVES and target in LEAVES)  # leaves may share leaves (no cycles: tested)
    ]
    assert not upward, "imports that do not run down the layers:\n" + "\n".join(upward)


def _top_level_imports(path: Path) -> set[str]:
    """The top-level names of absolute imports (relative ones stay inside cmrepro)."""
    names = set()
    for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif not node.level:
            names.add((node.module or "").split(".")[0])
    return names


def test_the_leaves_use_the_standard_library_only():
    """What every layer may import must pull nothing else in: the standard library and other
    leaves only (run_files writes under run_lock's lock, the sweep ledger as run files)."""
    modules = module_files()
    outside = [
        f"{module} imports {name}"
        for module in LEAVES
        if module in modules
        for name in sorted(_top_level_imports(modules[module]))
        if name not in sys.stdlib_module_names and name != "__future__"
    ]
    outside += [
        f"{module} imports {target}"
        for module in LEAVES
        for target in sorted(import_graph().get(module, ()))
        if target not in LEAVES  # another leaf is standard library only too
    ]
    assert not outside, outside
