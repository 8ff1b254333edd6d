"""``make test-quick``: what ``-m "not slow"`` keeps (the unit tests, the optimizer conformance
tests among them) and what tests/slow_marks.py marks slow."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import conftest
import pytest
import slow_marks
from train_helpers import ROOT, run_cli

# Loaded into one `pytest --collect-only`: writes each collected test's node id and whether the
# slow marker is on it, after conftest has marked them (one collection instead of one per -m).
SELECTION_PLUGIN = """
import json, os
import pytest

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    marked = {item.nodeid: item.get_closest_marker("slow") is not None for item in items}
    with open(os.environ["QUICK_SELECTION_OUT"], "w") as out:
        json.dump(marked, out)
"""


@pytest.fixture(scope="module")
def selections(tmp_path_factory) -> dict[str, set[str]]:
    plugin_dir = tmp_path_factory.mktemp("selection")
    (plugin_dir / "quick_selection_plugin.py").write_text(SELECTION_PLUGIN)
    out = plugin_dir / "marked.json"
    environment = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(plugin_dir), os.environ.get("PYTHONPATH")])),
        "QUICK_SELECTION_OUT": str(out),
    }
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider"]
        + ["-p", "quick_selection_plugin", "tests"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=environment,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    marked = json.loads(out.read_text())
    return {
        "quick": {node for node, slow in marked.items() if not slow},
        "slow": {node for node, slow in marked.items() if slow},
    }


def test_quick_is_a_proper_subset_that_keeps_the_optimizer_conformance_tests(selections):
    quick, slow = selections["quick"], selections["slow"]
    assert quick and slow and not quick & slow  # every test is in exactly one of the two
    conformance = {node for node in quick | slow if node.startswith("tests/test_optim_conformance.py::")}
    assert len(conformance) > 100 and conformance <= quick
    assert {node for node in quick | slow if node.startswith("tests/test_optim_oracle.py::")} <= quick
    # The end-to-end tests are left out: the CLI runs, the sweeps, torchrun.
    for node in (
        "tests/test_train.py::test_killed_run_resumes_to_the_metrics_of_an_uninterrupted_run",
        "tests/test_reproduce.py::test_table3_smoke_target_end_to_end_and_idempotent",
        "tests/test_distributed_training.py::test_two_processes_train_as_one_and_resume_after_one_of_them_is_killed",
    ):
        assert node in slow


def test_every_test_marked_by_hand_exists(selections):
    names = {re.sub(r"\[.*\]$", "", node.removeprefix("tests/")) for node in selections["slow"]}
    assert slow_marks.SLOW_BY_HAND <= names


def test_the_makefile_target_selects_not_slow():
    makefile = (ROOT / "Makefile").read_text()
    (recipe,) = re.findall(r"^test-quick:.*\n\t(.*)$", makefile, flags=re.MULTILINE)
    assert recipe == '$(PY) -m pytest $(TEST_FLAGS) -m "not slow"'
    (full,) = re.findall(r"^test:.*\n\t(.*)$", makefile, flags=re.MULTILINE)
    assert full == "$(PY) -m pytest $(TEST_FLAGS)"
    (flags,) = re.findall(r"^TEST_FLAGS := (.*)$", makefile, flags=re.MULTILINE)
    # make test, which CI runs, deselects nothing
    assert "slow" not in flags and " -k " not in flags and " -m " not in flags


# ---------------------------------------------------------------- what makes a test slow


def _helper_that_starts_a_process():
    return subprocess.run(["true"], check=False)


def _helper_of_a_helper():
    return _helper_that_starts_a_process()


def _cli_run():
    return run_cli(["--help"])


def _pure():
    return sum(range(3)) + len(os.sep)


def test_a_process_started_directly_or_through_helpers_is_slow_and_plain_code_is_not():
    assert slow_marks.starts_work(_helper_that_starts_a_process)
    assert slow_marks.starts_work(_helper_of_a_helper)
    assert slow_marks.starts_work(_cli_run)
    assert slow_marks.starts_work(lambda: [_helper_of_a_helper() for _ in range(2)])  # inside a comprehension
    assert not slow_marks.starts_work(_pure)


def test_training_end_to_end_is_slow():
    from cmrepro.training import train as run  # under another name

    def trains(cfg, run_dir):
        return run(cfg, run_dir)

    assert slow_marks.starts_work(trains)


# ---------------------------------------------------------------- each xdist worker's threads


def test_each_xdist_worker_takes_its_share_of_the_cores(monkeypatch):
    monkeypatch.setattr(conftest.os, "cpu_count", lambda: 16)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    assert conftest._threads_per_worker() == 8
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "32")
    assert conftest._threads_per_worker() == 1
    monkeypatch.delenv("PYTEST_XDIST_WORKER_COUNT")
    assert conftest._threads_per_worker() is None  # outside xdist: torch's default


def test_this_worker_and_the_processes_it_starts_use_that_share():
    import torch

    expected = conftest._threads_per_worker()
    if expected is None:
        pytest.skip("runs under pytest-xdist (make test, make test-quick)")
    assert torch.get_num_threads() == expected and os.environ["OMP_NUM_THREADS"] == str(expected)
