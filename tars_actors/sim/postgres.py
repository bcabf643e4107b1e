"""A throwaway PostgreSQL server, for the tests and for ``python run.py load --workers N``.

pgserver runs it where installed. As root, pgserver runs PostgreSQL (which refuses to run
as root) as a system user named ``pgserver`` that it creates with ``useradd`` if missing, and
it widens the permissions of the data directory's parents and of its own binaries to
``o+rx`` so that user can reach them. It listens on a Unix socket in the data directory
only, never on TCP.

pgserver ships wheels up to CPython 3.12 only; where it is not installed, the same kind of
throwaway server is started from the machine's own PostgreSQL binaries (``pg_config
--bindir``, else ``/usr/lib/postgresql/*/bin``), as the ``postgres`` user when run as root.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

from playhouse import db_url

__all__ = [
    "PostgresServer",
    "SystemPostgres",
    "create_database",
    "drop_database",
    "throwaway_database",
    "throwaway_server",
]


class PostgresServer(Protocol):
    """What pgserver's server and :class:`SystemPostgres` both offer."""

    def get_uri(self, database: str = "postgres") -> str: ...

    def cleanup(self) -> None: ...


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
        subprocess.run([*self.run_as, *command], check=True, capture_output=True, timeout=60)  # noqa: S603 (PostgreSQL's own tools, fixed arguments)

    def get_uri(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@/{database}?host={self.socket_dir}"

    def cleanup(self) -> None:
        self._admin([str(self.bindir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"])


def _system_bindir() -> Path:
    pg_config = shutil.which("pg_config")
    if pg_config is not None:
        found = subprocess.run([pg_config, "--bindir"], check=False, capture_output=True, text=True)  # noqa: S603 (found on PATH, fixed arguments)
        candidate = Path(found.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    for candidate in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError(
        "a throwaway PostgreSQL needs pgserver (pip install pgserver, CPython <= 3.12) or "
        "the PostgreSQL server binaries (apt-get install postgresql)"
    )


@contextlib.contextmanager
def throwaway_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL server in a temporary directory, stopped and deleted after."""
    with warnings.catch_warnings():
        # platformdirs warns at import when XDG_RUNTIME_DIR is unset (as under CI) and
        # falls back to /tmp, which is fine for pgserver's lock file.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        # Imported here so that only what uses PostgreSQL pays for it.
        start_pgserver: Callable[..., PostgresServer] | None
        try:
            from pgserver.postgres_server import get_server as start_pgserver
        except ImportError:
            start_pgserver = None

    with tempfile.TemporaryDirectory(prefix="tars-pg-", ignore_cleanup_errors=True) as root:
        if start_pgserver is None:
            server: PostgresServer = SystemPostgres(Path(root))
        else:
            server = start_pgserver(Path(root) / "pgdata", cleanup_mode="delete")
        try:
            yield server
        finally:
            server.cleanup()


def _run_admin_sql(server: PostgresServer, *statements: str) -> None:
    # peewee runs statements outside a transaction unless asked, which CREATE DATABASE
    # and DROP DATABASE require.
    database: Any = db_url.connect(server.get_uri())
    database.connect()
    try:
        for sql in statements:
            database.execute_sql(sql)
    finally:
        database.close()


def create_database(server: PostgresServer) -> tuple[str, str]:
    """A fresh, empty database on ``server``: its name and its postgresql:// URL."""
    name = f"tars_test_{uuid.uuid4().hex[:12]}"
    _run_admin_sql(server, f'CREATE DATABASE "{name}"')
    return name, server.get_uri(database=name)


def drop_database(server: PostgresServer, name: str) -> None:
    # FORCE ends connections a client failed to close, so the drop cannot hang.
    _run_admin_sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextlib.contextmanager
def throwaway_database() -> Iterator[str]:
    """The URL of an empty database on a throwaway server of its own, gone after."""
    with throwaway_server() as server:
        _, url = create_database(server)
        yield url
