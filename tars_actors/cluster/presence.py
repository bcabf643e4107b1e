"""The other members' live calls, read from the shared database for the Router and tools."""

from __future__ import annotations

import time
from collections.abc import Callable

from tars_actors.call.permissions import Permission
from tars_actors.call.session_info import SessionInfo
from tars_actors.cluster.wakeup import WakeKind, status_value, wake
from tars_actors.messaging.routing import LiveSession
from tars_actors.store import (
    LIVE_DAEMON_STATUSES,
    AgentSession,
    Daemon,
    RestIntent,
    SessionStatus,
    Store,
    utcnow,
)

__all__ = ["forward_status", "remote_sessions", "wake_early_holder"]


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


def forward_status(
    store: Store, call_sid: str, status: str, duration: int | None, answered_by: str | None
) -> str | None:
    """A status callback for a call this daemon neither runs nor placed goes to the live
    member that does (its session's row, else the request that placed it): that member
    settles its reminder, goal or transfer. Returns the member it went to, if any."""
    if not store.clustered:
        return None
    live = store.live_daemons() - {store.daemon_id}
    if not live:
        return None
    session = (
        AgentSession.select(AgentSession.daemon_id)
        .where(AgentSession.call_sid == call_sid, AgentSession.daemon_id.is_null(False))
        .order_by(AgentSession.id.desc())
        .first()
    )
    placed = (
        RestIntent.select(RestIntent.attempted_by)
        .where(RestIntent.kind == "call", RestIntent.sid == call_sid)
        .first()
    )
    holder = session.daemon_id if session is not None else None
    if holder is None and placed is not None:
        holder = placed.attempted_by
    if holder is None or holder not in live:
        return None
    wake(store, str(holder), WakeKind.STATUS, status_value(call_sid, status, duration, answered_by))
    return str(holder)
