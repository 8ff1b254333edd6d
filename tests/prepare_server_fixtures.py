"""The pytest fixtures of the ``prepare`` tests, loaded with ``pytest_plugins``: the fixture
archives, a local server of them, and the source table pointed at it."""

from __future__ import annotations

import prepare_fixtures as pf
import pytest


@pytest.fixture(scope="module")
def archives():
    return pf.build_archives()


@pytest.fixture
def server(archives):
    with pf.Server(pf.served(archives)) as running:
        yield running


@pytest.fixture
def served_table(monkeypatch, archives, server):
    table = pf.fixture_table(archives, server.base)
    pf.use_table(monkeypatch, table)
    return table
