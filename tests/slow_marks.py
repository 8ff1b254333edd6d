"""Which tests are ``slow``: found from their code, so that the marking cannot go stale.

``make test-quick`` runs ``-m "not slow"``: the unit tests, for the inner loop. A test is slow
when it, a fixture it uses, or a helper of the test files it calls (followed through any depth)
names something that starts a process (``subprocess``, ``run_cli``, ``torchrun``...) or trains
a model end to end (``cmrepro.training.train``). A new end-to-end test is slow the day it is
written, with no decorator to forget; ``@pytest.mark.slow`` or SLOW_BY_HAND marks the rest
(tests slow for what they compute). tests/test_quick_selection.py checks the outcome.
"""

from __future__ import annotations

import inspect
import subprocess
import types
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent

# Names that start a process, or run a training/sweep entry point, wherever they appear.
SLOW_NAMES = frozenset(
    {
        "subprocess",
        "Popen",
        "run_cli",
        "warm_python",  # tests/warm_python.py: commands in children of a warm interpreter
        "torchrun",
        "multiprocessing",
        "run_supervised",
        "run_stream",
    }
)


# Tests that are slow for what they compute, not for what they start: by node name (the part before
# any parameters), checked to exist by tests/test_quick_selection.py.
SLOW_BY_HAND = frozenset(
    {
        "test_experiments.py::test_every_experiment_file_composes",  # composes every experiment file
        "test_toy_claims.py::test_a_grid_of_outcomes_is_still_tested_exactly_beyond_twenty_cells",  # 2^22 sums
    }
)


def _slow_objects() -> tuple[object, ...]:
    """Objects whose use is slow under any name: the process starters, the training entry point,
    and the toy experiments' runners (a toy experiment end to end, with its figure)."""
    from cmrepro.toy.experiments import KINDS
    from cmrepro.training import train

    return (subprocess, subprocess.run, subprocess.Popen, subprocess.check_output, subprocess.call, train, KINDS)


def _codes(code: types.CodeType):
    """``code`` and every function, lambda and comprehension defined inside it."""
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _is_test_helper(obj) -> bool:
    """A function (or class) defined in a file under tests/: its body is followed too."""
    target = obj if inspect.isfunction(obj) else None
    if target is None:
        return False
    try:
        return Path(inspect.getfile(target)).resolve().is_relative_to(TESTS_DIR)
    except (TypeError, OSError):
        return False


def starts_work(function, seen: set | None = None) -> bool:
    """Whether ``function`` (followed through the test files' helpers it names) starts a
    process or trains end to end."""
    seen = set() if seen is None else seen
    function = inspect.unwrap(function)
    if not inspect.isfunction(function) or function in seen:
        return False
    seen.add(function)
    slow_objects = _slow_objects()
    for name, value in _references(function):
        if name in SLOW_NAMES or any(value is slow for slow in slow_objects):
            return True
        if _is_test_helper(value) and starts_work(value, seen):
            return True
    return False


def _references(function):
    """(name, value) for each global and each closure variable ``function``'s code names
    (value None for a name that is neither: an attribute, a builtin, a local)."""
    closure = dict(zip(function.__code__.co_freevars, function.__closure__ or (), strict=True))
    for code in _codes(function.__code__):
        for name in (*code.co_names, *code.co_freevars):
            if name in closure:
                try:
                    yield name, closure[name].cell_contents
                except ValueError:  # a cell not filled yet
                    yield name, None
            else:
                yield name, function.__globals__.get(name)


def node_name(item) -> str:
    """``test_file.py::test_name``: the item's node id relative to tests/, without parameters."""
    return f"{Path(item.path).name}::{item.originalname}"


def is_slow(item) -> bool:
    """A collected pytest item: marked slow by hand, or its test or one of its fixtures starts work."""
    if item.get_closest_marker("slow") is not None or node_name(item) in SLOW_BY_HAND:
        return True
    function = getattr(item, "function", None)
    if function is not None and starts_work(function):
        return True
    fixture_info = getattr(item, "_fixtureinfo", None)
    if fixture_info is None:
        return False
    for definitions in fixture_info.name2fixturedefs.values():
        for definition in definitions:
            if _is_test_helper(definition.func) and starts_work(definition.func):
                return True
    return False
