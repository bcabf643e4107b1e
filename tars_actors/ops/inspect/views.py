"""What the log tells about one actor, one call, one listed event and the daemon."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from tars_actors.ops.inspect.descriptions import short_sid

__all__ = ["LIVE_STATES", "ActorView", "DaemonView", "EventView", "SessionView", "TransferView"]

#: Actor states in which the actor still exists.
LIVE_STATES = frozenset({"running", "restarting"})


@dataclass(slots=True)
class ActorView:
    """One actor as the log tells it: its latest ``actor.stats`` figures and its fate."""

    key: str
    kind: str
    actor_id: str
    call_sid: str | None
    order: int
    state: str = "running"
    #: Why it is in that state (an exit reason...), if the log said.
    detail: str | None = None
    last_seen: datetime | None = None
    mailbox_depth: int | None = None
    peak_depth: int | None = None
    handled: int | None = None
    busy_ms: float | None = None
    busy_ratio: float | None = None
    current: str | None = None
    current_ms: float | None = None
    stats_at: datetime | None = None
    restarts: int = 0
    #: The supervisor that started it, if the log said.
    parent: str | None = None
    #: The message it was reported stuck on (``actor.stuck``), until stats show it moved on.
    stuck_on: str | None = None
    stuck_handled: int | None = None
    stopped_seq: int = 0
    exited: bool = False
    restart_counted: bool = False

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES

    @property
    def label(self) -> str:
        """The id as shown: call SIDs shortened to 14 characters (``--call`` takes a prefix)."""
        if self.call_sid is not None:
            return f"{short_sid(self.call_sid)}/{self.actor_id}"
        return short_sid(self.actor_id) if self.kind == "CallSession" else self.actor_id


@dataclass(slots=True)
class SessionView:
    """One call (a CallSession), keyed by its call SID."""

    call_sid: str
    name: str | None = None
    session_id: str | None = None
    caller: str | None = None
    direction: str | None = None
    permission: str | None = None
    started: datetime | None = None
    ended: datetime | None = None
    end_reason: str | None = None
    #: Model connection: waiting, connecting, connected, reconnecting, disconnected...
    model: str = "waiting"
    connection_id: int | None = None
    ever_connected: bool = False
    reconnects: int = 0
    tool_calls: int = 0
    tools_refused: int = 0
    notes: int = 0
    turns: int | None = None
    duration_seconds: float | None = None
    #: From the stream's ``start`` to the model's first audio written to Twilio.
    first_audio_ms: float | None = None
    last_event: str | None = None
    last_time: datetime | None = None

    def duration(self, now: datetime | None) -> float | None:
        """Seconds from the start to the end, or to ``now`` while the call is live."""
        if self.duration_seconds is not None:
            return self.duration_seconds
        end = self.ended or now
        if self.started is None or end is None:
            return None
        return max(0.0, (end - self.started).total_seconds())


@dataclass(slots=True)
class TransferView:
    """One transfer as the ``transfer.*`` lines tell it: who asked, how the owner was asked,
    and how it ended."""

    transfer_id: int
    kind: str = "screened"
    #: The asking call's session name, or for ``connect_call`` the number connected to.
    party: str = "?"
    asked_by: str = ""
    status: str = "asking"
    started: datetime | None = None
    updated: datetime | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class EventView:
    """One line worth listing: when, how bad, what, who, and what it said."""

    time: datetime | None
    level: str
    event: str
    who: str
    text: str


@dataclass(slots=True)
class DaemonView:
    """The daemon process, from its ``daemon.*`` lines."""

    state: str = "unknown"
    pid: int | None = None
    port: int | None = None
    started: datetime | None = None
    detail: str | None = None
