"""The other members' live calls, read from the shared database for the Router and tools."""

from __future__ import annotations

import time
from collections.abc import Callable

from tars_actors.call.permissions import Permission
from tars_actors.call.session_info import SessionInfo
from tars_actors.cluster.wakeup import WakeKind, wake
from tars_actors.messaging.routing import LiveSession
from tars_actors.store import (
    LIVE_DAEMON_STATUSES,
    AgentSession,
    Daemon,
    SessionStatus,
    Store,
    utcnow,
)

__all__ = ["remote_sessions", "wake_early_holder"]


def remote_sessions(store: Store) -> Callable[[], list[LiveSession]]:
    """A reader of the calls other live members run (their rows with the stream open)."""

    def read() -> list[LiveSession]:
        members = Daemon.select(Daemon.id).where(
            Daemon.status.in_(LIVE_DAEMON_STATUSES), Daemon.id != store.daemon_id
        )
        with store.connection():
            rows = list(
                AgentSession.select()
                .where(
                    AgentSession.status == SessionStatus.ACTIVE,
                    AgentSession.daemon_id.in_(members),
                )
                .order_by(AgentSession.started_at, AgentSession.id)
            )
        wall, monotonic = utcnow(), time.monotonic()
        return [
            LiveSession(
                info=SessionInfo(
                    session_id=int(row.id),
                    session_name=str(row.name),
                    permission=Permission(row.permission),
                    caller_number=str(row.phone_number),
                    call_sid=str(row.call_sid or ""),
                    stream_sid=str(row.stream_sid or ""),
                    direction=str(row.direction),
                    purpose=row.purpose,
                ),
                ref=None,
                started_at=monotonic - (wall - row.started_at).total_seconds(),
                daemon_id=str(row.daemon_id),
            )
            for row in rows
        ]

    return read


def wake_early_holder(store: Store, call_sid: str) -> None:
    """A call's stream opened here: a session another member started at the call's webhook
    (its row still pending) gives up waiting for it at once, and frees its model connection."""
    if not store.clustered:
        return
    rows = AgentSession.select(AgentSession.daemon_id).where(
        AgentSession.call_sid == call_sid,
        AgentSession.status == SessionStatus.PENDING,
        AgentSession.daemon_id != store.daemon_id,
    )
    for row in rows:
        wake(store, str(row.daemon_id), WakeKind.STREAM, call_sid)
