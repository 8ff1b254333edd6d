"""Shared fixtures: the optimizer tests run every execution mode of the multi-tensor path."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/oracle.py, tests/helpers.py

import cmrepro.optim._state as state_module  # noqa: E402
import cmrepro.optim.buffer as buffer_module  # noqa: E402

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
