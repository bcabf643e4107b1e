"""The wake-up channel between daemons on one PostgreSQL database: ``LISTEN``/``NOTIFY``.

Rows stay the truth; a notification only says "look now". PostgreSQL delivers a
notification when the sending transaction commits and never replays one a listener missed,
so the :class:`Listener` calls ``on_connected`` each time it (re)connects: the daemon then
re-reads what is pending for it. Each daemon listens on its own channel (messages for its
calls, a stream it should give up) and on the cluster's (a member left).

Payloads are ``kind:value``; anything else is logged once per kind and dropped.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from tars_actors.store import Store

__all__ = [
    "CLUSTER_CHANNEL",
    "Listener",
    "Wake",
    "WakeKind",
    "announce",
    "daemon_channel",
    "parse_status",
    "parse_wake",
    "status_value",
    "wake",
]

log = structlog.get_logger("tars.cluster")

#: Every member listens here: members leaving.
CLUSTER_CHANNEL = "tars_cluster"
#: How long the listener waits on its socket before looking at its stop flag.
_POLL_SECONDS = 0.5
#: Reconnection backoff after the listening connection is lost.
_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)


class WakeKind:
    #: A message (``inter_session_messages.id``) for one of the daemon's calls.
    MESSAGE = "message"
    #: A call's stream opened on another daemon (value: the call SID).
    STREAM = "stream"
    #: A member stopped and handed back what it held (value: its daemon id).
    LEFT = "left"
    #: A status callback for a call the member runs or placed, received by another
    #: (value: :func:`status_value`).
    STATUS = "status"


_KINDS = frozenset({WakeKind.MESSAGE, WakeKind.STREAM, WakeKind.LEFT, WakeKind.STATUS})


@dataclass(frozen=True, slots=True)
class Wake:
    kind: str
    value: str


def status_value(call_sid: str, status: str, duration: int | None, answered_by: str | None) -> str:
    """A status callback as a wake-up's value: ``CallSid|status|duration|AnsweredBy``."""
    return "|".join(
        (call_sid, status, "" if duration is None else str(duration), answered_by or "")
    )


def parse_status(value: str) -> tuple[str, str, int | None, str | None] | None:
    parts = value.split("|")
    if len(parts) != 4 or not parts[0] or not parts[1]:
        return None
    call_sid, status, duration, answered_by = parts
    if duration and not duration.isdigit():
        return None
    return call_sid, status, int(duration) if duration else None, answered_by or None


def daemon_channel(daemon_id: str) -> str:
    """The channel one daemon listens on."""
    return f"tars_{daemon_id}"


def parse_wake(payload: str) -> Wake | None:
    kind, sep, value = payload.partition(":")
    if not sep or kind not in _KINDS or not value or len(value) > 100:
        return None
    return Wake(kind, value)


def _notify(store: Store, channel: str, kind: str, value: str) -> None:
    untyped: Any = store.database  # peewee's stub leaves execute_sql unannotated
    untyped.execute_sql("SELECT pg_notify(%s, %s)", (channel, f"{kind}:{value}"))


def wake(store: Store, daemon_id: str, kind: str, value: str) -> None:
    """Tell one daemon to look at something now (delivered at commit; on the calling
    thread's connection, so inside a transaction it goes out with it)."""
    _notify(store, daemon_channel(daemon_id), kind, value)


def announce(store: Store, kind: str, value: str) -> None:
    """Tell every member (this one too)."""
    _notify(store, CLUSTER_CHANNEL, kind, value)


class Listener:
    """A thread that holds one PostgreSQL connection listening on this daemon's channels
    and hands each notification to ``on_wake``; reconnects with backoff when it is lost."""

    def __init__(
        self,
        store: Store,
        *,
        on_wake: Callable[[Wake], None],
        on_connected: Callable[[], None],
    ) -> None:
        self._store = store
        self._channels = (daemon_channel(store.daemon_id), CLUSTER_CHANNEL)
        self._on_wake = on_wake
        self._on_connected = on_connected
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tars-cluster-listen", daemon=True)
        self._bad_payloads: set[str] = set()
        #: Set once the channels are listened to (for tests and start-up ordering).
        self.listening = threading.Event()

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening: the thread sees the flag within a poll and closes its connection
        itself (closed from here, its socket could be reused under the thread's select)."""
        self._stopping.set()
        self._thread.join(timeout)

    def _connect(self) -> Any:
        import psycopg2  # only clusters (PostgreSQL) get here

        database: Any = self._store.database
        connection = psycopg2.connect(database=database.database, **database.connect_params)
        connection.autocommit = True
        with connection.cursor() as cursor:
            for channel in self._channels:
                cursor.execute(f'LISTEN "{channel}"')
        return connection

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                connection = self._connect()
            except Exception as error:  # noqa: BLE001 (the database is down or unreachable: retry)
                failures += 1
                if failures == 1:
                    log.warning("cluster.listen_failed", error=str(error).strip())
                delay = _BACKOFF_SECONDS[min(failures, len(_BACKOFF_SECONDS)) - 1]
                self._stopping.wait(delay)
                continue
            if failures:
                log.info("cluster.listening_again", after_failures=failures)
            failures = 0
            self.listening.set()
            try:
                # Notifications missed while not listening are not replayed: look now.
                self._on_connected()
                self._listen(connection)
            except Exception as error:  # noqa: BLE001 (a lost connection is retried)
                if not self._stopping.is_set():
                    failures = 1
                    log.warning("cluster.listen_lost", error=str(error).strip())
                    self._stopping.wait(_BACKOFF_SECONDS[0])
            finally:
                self.listening.clear()
                with contextlib.suppress(Exception):
                    connection.close()

    def _listen(self, connection: Any) -> None:
        while not self._stopping.is_set():
            ready, _, _ = select.select([connection], [], [], _POLL_SECONDS)
            if not ready:
                continue
            connection.poll()
            while connection.notifies:
                notification = connection.notifies.pop(0)
                found = parse_wake(notification.payload)
                if found is None:
                    kind = notification.payload.partition(":")[0][:32]
                    if kind not in self._bad_payloads:
                        self._bad_payloads.add(kind)
                        log.warning("cluster.bad_wake", channel=notification.channel, kind=kind)
                    continue
                try:
                    self._on_wake(found)
                except Exception:  # one bad hand-off must not stop the channel
                    log.exception("cluster.wake_failed", kind=found.kind, value=found.value)
