"""pytest fixtures for a throwaway PostgreSQL server: one per run, a database per use.

Load with ``pytest_plugins = ("tests.pg",)`` in a test module. The server only starts when a
test asks for ``postgres_url`` or ``make_postgres_url``; ``make_url`` runs a test once on
SQLite and once on PostgreSQL.

As root, pgserver runs PostgreSQL (which refuses to run as root) as a system user named
``pgserver`` that it creates with ``useradd`` if missing, and it widens the permissions of the
data directory's parents and of its own binaries to ``o+rx`` so that user can reach them. It
listens on a Unix socket in the data directory only, never on TCP.

pgserver ships wheels up to CPython 3.12 only; where it is not installed, the same kind of
throwaway server is started from the machine's own PostgreSQL binaries (``pg_config
--bindir``, else ``/usr/lib/postgresql/*/bin``), as the ``postgres`` user when run as root.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playhouse import db_url


def _run_admin_sql(server: Any, *statements: str) -> None:
    # peewee runs statements outside a transaction unless asked, which CREATE DATABASE
    # and DROP DATABASE require.
    database = db_url.connect(server.get_uri())
    database.connect()
    try:
        for sql in statements:
            database.execute_sql(sql)
    finally:
        database.close()


class SystemPostgres:
    """A throwaway PostgreSQL cluster run from the machine's binaries; pgserver's interface."""

    def __init__(self, root: Path) -> None:
        self.bindir = _system_bindir()
        self.data = root / "pgdata"
        self.socket_dir = root
        # PostgreSQL refuses to run as root; the distribution's package creates "postgres".
        self.run_as = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.run_as:
            shutil.chown(root, user="postgres")
        self._admin(
            [
                str(self.bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ]
        )
        options = f"-c listen_addresses='' -k {self.socket_dir} -c fsync=off"
        self._admin(
            [
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.data),
                "-o",
                options,
                "-l",
                str(root / "server.log"),
                "-w",
                "start",
            ]
        )

    def _admin(self, command: list[str]) -> None:
        subprocess.run([*self.run_as, *command], check=True, capture_output=True, timeout=60)

    def get_uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def cleanup(self) -> None:
        self._admin([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"])


def _system_bindir() -> Path:
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], check=False, capture_output=True, text=True)
        candidate = Path(found.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError(
        "PostgreSQL tests need pgserver (pip install pgserver, CPython <= 3.12) or the "
        "PostgreSQL server binaries (apt-get install postgresql)"
    )


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[Any]:
    """A running PostgreSQL server in a temporary directory, stopped and deleted at the end."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (as under CI) and
        # falls back to /tmp, which is fine for pgserver's lock file.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        # Imported here so that only runs with PostgreSQL tests pay for it.
        try:
            from pgserver.postgres_server import get_server
        except ImportError:
            get_server = None

    with tempfile.TemporaryDirectory(prefix="tars-pg-", ignore_cleanup_errors=True) as root:
        if get_server is None:
            server: Any = SystemPostgres(Path(root))
        else:
            server = get_server(Path(root) / "pgdata", cleanup_mode="delete")
        try:
            yield server
        finally:
            server.cleanup()


@pytest.fixture
def make_postgres_url(postgres_server: Any) -> Iterator[Callable[[], str]]:
    """Create fresh, empty databases on the server; each is dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name = f"tars_test_{uuid.uuid4().hex[:12]}"
        _run_admin_sql(postgres_server, f'CREATE DATABASE "{name}"')
        created.append(name)
        url: str = postgres_server.get_uri(database=name)
        return url

    yield make
    for name in created:
        # FORCE ends connections a test thread failed to close, so the drop cannot hang.
        _run_admin_sql(postgres_server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


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
