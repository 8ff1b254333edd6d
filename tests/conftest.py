"""Shared fixtures: the optimizer tests run every execution mode of the multi-tensor path."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))  # tests/oracle.py, tests/helpers.py

from slow_marks import is_slow  # noqa: E402

import cmrepro.optim._state as state_module  # noqa: E402
import cmrepro.optim.buffer as buffer_module  # noqa: E402


def _threads_per_worker() -> int | None:
    """The cores each xdist worker may use; None outside xdist (torch's default stands).

    With ``-n 2`` on two cores, each worker's OpenMP team of two threads spins on a core the
    other worker holds: a step of a tiny tensor then waits milliseconds at every barrier (the
    optimizer tests ran 2-10x slower). One team per core share avoids that."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if not workers:
        return None
    return max(1, (os.cpu_count() or 1) // int(workers))


def pytest_configure(config):
    threads = _threads_per_worker()
    if threads is not None:
        torch.set_num_threads(threads)
        # And every process a test starts (CLI runs, sweeps, torchrun) inherits the same share,
        # unless the test sets its own.
        os.environ["OMP_NUM_THREADS"] = str(threads)


def pytest_collection_modifyitems(config, items):
    """``slow``: the tests that start processes or train end to end (tests/slow_marks.py), so that
    ``make test-quick`` (``-m "not slow"``) runs the unit tests alone."""
    for item in items:
        if is_slow(item):
            item.add_marker(pytest.mark.slow)


MODES = ["host-decisions", "device-decisions", "tiny-chunks"]


@pytest.fixture(params=MODES)
def mode(request, monkeypatch):
    """host-decisions: the CPU default. device-decisions: the accelerator code path
    (decisions stay tensors), run on CPU. tiny-chunks: chunks of 7 elements, so
    chunks cut through parameters and span several of them, and running sums
    recomputed every 3 steps."""
    if request.param == "device-decisions":
        monkeypatch.setattr(buffer_module, "READ_CPU_DECISIONS_ON_HOST", False)
    if request.param == "tiny-chunks":
        monkeypatch.setattr(state_module, "CPU_CHUNK_ELEMENTS", 7)
        monkeypatch.setattr(state_module, "RESYNC_EVERY", 3)
    return request.param
