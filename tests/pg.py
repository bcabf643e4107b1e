"""pytest fixtures for a throwaway PostgreSQL server: one per run, a database per use.

Load with ``pytest_plugins = ("tests.pg",)`` in a test module. The server
(:mod:`tars_actors.sim.postgres`: pgserver where installed, else the machine's own
PostgreSQL binaries) only starts when a test asks for ``postgres_url`` or
``make_postgres_url``; ``make_url`` runs a test once on SQLite and once on PostgreSQL.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tars_actors.sim.postgres import (
    PostgresServer,
    create_database,
    drop_database,
    throwaway_server,
)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server in a temporary directory, stopped and deleted at the end."""
    with throwaway_server() as server:
        yield server


@pytest.fixture
def make_postgres_url(postgres_server: PostgresServer) -> Iterator[Callable[[], str]]:
    """Create fresh, empty databases on the server; each is dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name, url = create_database(postgres_server)
        created.append(name)
        return url

    yield make
    for name in created:
        drop_database(postgres_server, name)


@pytest.fixture
def postgres_url(make_postgres_url: Callable[[], str]) -> str:
    """A postgresql:// URL (Unix socket) of a fresh, empty database."""
    return make_postgres_url()


@pytest.fixture(params=["sqlite", "postgresql"])
def make_url(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[], str]:
    """Fresh, empty databases of one backend (each test using it runs once per backend)."""
    if request.param == "sqlite":
        numbers = itertools.count()
        return lambda: f"sqlite:///{tmp_path}/tars-{next(numbers)}.db"
    make_postgres_url: Callable[[], str] = request.getfixturevalue("make_postgres_url")
    return make_postgres_url
