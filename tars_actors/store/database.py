"""The :class:`Store`: a database opened from ``[database] url``, per-thread connections,
write transactions that are safe under concurrency, and migrations at boot.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import peewee
from playhouse import db_url

from tars_actors.store.migrations import SchemaVersion, apply_migrations, read_schema_version
from tars_actors.store.models import LIVE_DAEMON_STATUSES, MODELS, Daemon

__all__ = [
    "SQLITE_BUSY_TIMEOUT_SECONDS",
    "SQLITE_PRAGMAS",
    "Store",
    "StoreError",
    "build_database",
    "redact_url",
]

#: How long a SQLite writer waits for another's transaction before "database is locked".
SQLITE_BUSY_TIMEOUT_SECONDS = 10

#: Set on every SQLite connection. WAL lets readers run beside the one writer;
#: synchronous=NORMAL is durable in WAL mode except for the last commits on power loss.
SQLITE_PRAGMAS: tuple[tuple[str, str | int], ...] = (
    ("journal_mode", "wal"),
    ("synchronous", "normal"),
    ("foreign_keys", 1),
)


class StoreError(RuntimeError):
    """The database URL cannot be used, or the store is used in a way it does not support.

    ``reason`` is the problem alone, without the URL (for messages that name it already).
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message


def redact_url(url: str) -> str:
    """``url`` with its password replaced, fit for logs and error messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:  # an unparsable URL has no password to find
        return url
    userinfo, _, host = parts.netloc.rpartition("@")
    user = userinfo.split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _unusable(url: str, why: str) -> StoreError:
    return StoreError(
        f"[database] url {redact_url(url)!r} cannot be opened: {why} "
        "(expected e.g. sqlite:///tars.db or postgresql://user@host/dbname)",
        reason=why,
    )


def build_database(url: str) -> peewee.Database:
    """The peewee database for ``url``, configured as TARS uses it; no connection yet.

    Raises :class:`StoreError` (with ``reason``) for a URL the store cannot use. The
    settings validate ``[database] url`` with this, so the two never disagree.
    """
    parts = urlsplit(url)
    scheme = parts.scheme
    if scheme.startswith("sqlite"):
        if parts.netloc:
            # playhouse.db_url reads "sqlite://tars.db" as an in-memory database.
            raise _unusable(
                url,
                f"{parts.netloc!r} reads as a host; a SQLite file takes three slashes: "
                f"{scheme}:///{parts.netloc}{parts.path}",
            )
        if parts.path in ("", "/", "/:memory:"):
            raise _unusable(
                url,
                "an in-memory SQLite database is private to one connection, and every "
                "thread has its own; use a file",
            )
    params: dict[str, Any] = {
        # Connections are per thread and opened on purpose (an actor's on_start): a query
        # on a thread that never connected is a bug to report, not a connection to leak.
        "autoconnect": False,
    }
    if scheme.startswith("sqlite"):
        given = db_url.parse(url)
        params["pragmas"] = SQLITE_PRAGMAS
        # A deferred transaction that reads and then writes cannot wait for the write
        # lock (SQLite would risk a deadlock) and fails with "database is locked" at once,
        # WAL or not. Taking the lock at BEGIN makes writers queue on the busy timeout.
        params["lock_type"] = "IMMEDIATE"
        if "timeout" not in given:
            params["timeout"] = SQLITE_BUSY_TIMEOUT_SECONDS
    try:
        database: peewee.Database = db_url.connect(url, **params)
    except (RuntimeError, ValueError, TypeError) as error:
        # peewee quotes the URL it was given, password included (hence also "from None").
        why = str(error).replace(url, redact_url(url))
        password = urlsplit(url).password
        if password and password in why:
            why = f"{type(error).__name__} from playhouse.db_url"
        raise _unusable(url, why) from None
    return database


class Store:
    """The TARS database: models bound to it, connections per thread, migrations.

    Binding is the one process-wide state: :meth:`open` binds the models of
    :mod:`tars_actors.store.models` to the new database, so one Store is in use per
    process at a time (opening another rebinds the models to it).

    Every thread that queries opens its own connection: actors call :meth:`connect` in
    ``on_start`` and :meth:`close` in ``on_stop``/``on_failure``; short-lived threads use
    ``with store.connection():``.
    """

    def __init__(self, database: peewee.Database, *, url: str) -> None:
        self._database = database
        self._url = redact_url(url)
        #: This daemon on the database (its ``daemons`` row, once it registers): what it
        #: holds (calls, messages in hand, claims) is marked with it.
        self.daemon_id = uuid.uuid4().hex[:12]

    @classmethod
    def open(cls, url: str) -> Store:
        """Create the database object for ``url`` and bind the models to it (no I/O yet)."""
        store = cls(build_database(url), url=url)
        store._database.bind([*MODELS, SchemaVersion])
        return store

    @property
    def database(self) -> peewee.Database:
        """The peewee database, for what the Store does not wrap (``execute_sql``...)."""
        return self._database

    @property
    def url(self) -> str:
        """The database URL with any password redacted."""
        return self._url

    @property
    def is_sqlite(self) -> bool:
        return isinstance(self._database, peewee.SqliteDatabase)

    @property
    def clustered(self) -> bool:
        """Several daemons may share this database (PostgreSQL); SQLite has one."""
        return not self.is_sqlite

    def live_daemons(self) -> frozenset[str]:
        """The daemons whose records are still their own: this one, and on PostgreSQL every
        member serving or draining. What any other daemon holds is free to take up."""
        if not self.clustered:
            return frozenset((self.daemon_id,))
        rows = Daemon.select(Daemon.id).where(Daemon.status.in_(LIVE_DAEMON_STATUSES))
        return frozenset((self.daemon_id, *(str(row.id) for row in rows)))

    def connect(self) -> bool:
        """Open the calling thread's connection; False if it was already open."""
        return bool(self._database.connect(reuse_if_open=True))

    def close(self) -> bool:
        """Close the calling thread's connection; False if it had none."""
        return bool(self._database.close())

    @contextlib.contextmanager
    def connection(self) -> Iterator[None]:
        """Hold a connection for the block, closing it after if this block opened it."""
        opened = self.connect()
        try:
            yield
        finally:
            if opened:
                self.close()

    def transaction(self) -> AbstractContextManager[Any]:
        """A transaction for the block: committed on success, rolled back on an exception.

        On SQLite it starts with ``BEGIN IMMEDIATE``, so writers queue for the write lock
        instead of failing when a read-then-write races another writer. On PostgreSQL it
        is a plain ``BEGIN`` (read committed): read rows you are about to change through
        :meth:`for_update` to get the same guarantee. Nested, it becomes a savepoint.
        """
        return self._database.atomic()

    def for_update(self, query: Any, *, skip_locked: bool = False) -> Any:
        """``query`` with ``FOR UPDATE`` where the database has it (PostgreSQL).

        ``skip_locked``: rows another transaction holds are left out instead of waited
        for, so that several daemons each claim different rows at once.

        SQLite has no row locks and needs none here: the whole database is locked for
        writing from ``BEGIN IMMEDIATE`` on.
        """
        if self._database.for_update:
            return query.for_update(skip_locked=skip_locked or None)
        return query

    def migrate(self, *, target: int | None = None) -> list[int]:
        """Apply pending migrations (up to ``target``, default the latest); return them.

        Raises :class:`~tars_actors.store.migrations.SchemaTooNewError` for a database
        migrated by a newer TARS. Running it again is a no-op that returns ``[]``.
        """
        with self.connection():
            return apply_migrations(self._database, target=target)

    def schema_version(self) -> int:
        """The version recorded in the database; 0 if it was never migrated."""
        with self.connection():
            return read_schema_version(self._database)

    def shutdown(self) -> None:
        """Close the calling thread's connection, after letting SQLite refresh its statistics.

        The models stay bound: actors still stopping may be writing their last rows on
        their own connections, which are theirs to close (peewee keeps them per thread).
        """
        with self.connection():
            if self.is_sqlite:
                # What SQLite's documentation advises before closing a long-lived connection.
                untyped: Any = self._database  # peewee's stub leaves execute_sql unannotated
                untyped.execute_sql("PRAGMA optimize")
        self.close()
