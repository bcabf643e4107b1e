"""Calls that talk to each other: who is live (:class:`Presence`), the messages the Router
and the sessions exchange, and the Router's delivery decisions as pure functions.

Semantics (DESIGN.md, "Router semantics"): every message is written to the ledger before
delivery is tried. To the owner ("user"), it goes into the owner's live main call, at a
turn boundary; with no owner call it is texted, or queued for the next call when its type
can wait. To a session, it goes into that live call. Broadcasts from the owner go to every
live session; from anyone else they wait for the owner's approval.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import pykka
import structlog

from tars_actors.call.caller_words import for_model, readable
from tars_actors.call.permissions import Permission
from tars_actors.call.session_info import SessionInfo
from tars_actors.messaging.ledger import (
    BROADCAST_TARGET,
    OWNER_TARGET,
    MessageLedger,
    MessageRecord,
)
from tars_actors.runtime.actor import tell_live
from tars_actors.store import MessageStatus

__all__ = [
    "BROADCAST_TARGET",
    "DEFERRABLE_TYPES",
    "OWNER_TARGET",
    "DecideBroadcast",
    "Deliver",
    "DeliverNote",
    "Dispatch",
    "Fail",
    "LiveSession",
    "MessageType",
    "Presence",
    "Queue",
    "Route",
    "RouteReply",
    "RouterUnavailable",
    "SessionJoined",
    "SessionLeft",
    "Switchboard",
    "Text",
    "UnknownTarget",
    "clip",
    "note_text",
    "plan_delivery",
    "resolve_target",
    "sms_text",
]


log = structlog.get_logger("tars.router")


class MessageType:
    """``inter_session_messages.message_type`` values."""

    #: ``take_message``: someone's message for the owner.
    MESSAGE: Final = "message"
    #: ``send_message_to_session``: from one call to another.
    NOTE: Final = "note"
    #: "Incoming call from …" and other notices to the owner.
    NOTIFICATION: Final = "notification"
    #: One copy of a broadcast, per live session.
    BROADCAST: Final = "broadcast"
    #: A non-owner asks the owner to approve a broadcast.
    APPROVAL_REQUEST: Final = "approval_request"
    #: A non-urgent report (e.g. of a goal call): waits for the owner's next call.
    REPORT: Final = "report"
    #: An urgent report: texted when the owner is not on a call.
    URGENT_REPORT: Final = "urgent_report"
    #: A due reminder or callback request, announced in the owner's live call.
    REMINDER: Final = "reminder"
    #: From TARS about a transfer: asking the owner, or telling the caller the answer.
    TRANSFER: Final = "transfer"


#: Types that wait for the owner's next call instead of being texted.
DEFERRABLE_TYPES: Final = frozenset({MessageType.REPORT})


# --- Who is live ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveSession:
    """One live call as the Router and the tools see it: the session's own
    :class:`SessionInfo`, and where to reach it."""

    info: SessionInfo
    #: The CallSession actor's ref: notes are told to it (None: on another daemon).
    ref: Any
    #: ``time.monotonic()`` when the session started.
    started_at: float = field(default_factory=time.monotonic)
    #: The daemon that runs the call, when it is another one on the same database: a note
    #: for it is recorded here and that daemon is woken to deliver it.
    daemon_id: str | None = None

    # Read through to the session's info: the Router and the tools name these often.

    @property
    def session_id(self) -> int:
        return self.info.session_id

    @property
    def name(self) -> str:
        return self.info.session_name

    @property
    def permission(self) -> Permission:
        return self.info.permission

    @property
    def caller_number(self) -> str:
        return self.info.caller_number

    @property
    def call_sid(self) -> str:
        return self.info.call_sid

    @property
    def direction(self) -> str:
        return self.info.direction

    @property
    def purpose(self) -> str | None:
        return self.info.purpose

    @property
    def is_owner(self) -> bool:
        return self.info.permission is Permission.OWNER

    def seconds(self, now: float | None = None) -> float:
        return (time.monotonic() if now is None else now) - self.started_at


class Presence:
    """Every live session, by id and by name; thread-safe.

    Owned by the runtime, not by the Router actor, so that a restarted Router finds every
    call that is still live. This daemon's sessions join when they start and leave when
    they end; with several daemons on one database, ``remote`` reads the other members'
    live calls from it, and :meth:`get`, :meth:`all` and :meth:`owner_main` see them too
    (the ``local_*`` methods only this daemon's).
    """

    def __init__(self, remote: Callable[[], list[LiveSession]] | None = None) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[int, LiveSession] = {}
        self.remote = remote

    def join(self, session: LiveSession) -> None:
        with self._lock:
            self._sessions[session.session_id] = session

    def leave(self, session_id: int) -> LiveSession | None:
        with self._lock:
            return self._sessions.pop(session_id, None)

    def local_get(self, session_id: int) -> LiveSession | None:
        with self._lock:
            return self._sessions.get(session_id)

    def local_all(self) -> list[LiveSession]:
        """This daemon's live sessions in the order they started."""
        with self._lock:
            return list(self._sessions.values())

    def local_owner_main(self) -> LiveSession | None:
        """The owner's earliest live call on this daemon, if any."""
        with self._lock:
            owners = [s for s in self._sessions.values() if s.is_owner]
        return min(owners, key=lambda s: s.session_id) if owners else None

    def local_view(self) -> Presence:
        """The same sessions, this daemon's only (for what must reach a call's actor)."""
        view = Presence()
        view._lock, view._sessions = self._lock, self._sessions
        return view

    def _remote(self) -> list[LiveSession]:
        if self.remote is None:
            return []
        local = self.local_all()
        known = {s.session_id for s in local}
        return [s for s in self.remote() if s.session_id not in known]

    def get(self, session_id: int) -> LiveSession | None:
        found = self.local_get(session_id)
        if found is not None:
            return found
        return next((s for s in self._remote() if s.session_id == session_id), None)

    def all(self) -> list[LiveSession]:
        """Live sessions (on every member) in the order they started: by their rows' ids,
        which every member reads alike (clocks and join times differ between members)."""
        local = self.local_all()
        remote = self._remote()
        if not remote:
            return local
        return sorted([*local, *remote], key=lambda s: s.session_id)

    def owner_main(self) -> LiveSession | None:
        """The owner's main session: the owner's earliest live call, on whichever member
        (the lowest row id, so that every member names the same one)."""
        owners = [s for s in self.all() if s.is_owner]
        return min(owners, key=lambda s: s.session_id) if owners else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)


@dataclass(frozen=True, slots=True)
class UnknownTarget:
    """A target that names no live session; ``live_names`` is what the model can pick from."""

    target: str
    live_names: tuple[str, ...]

    @property
    def message(self) -> str:
        names = ", ".join(f'"{name}"' for name in self.live_names) or "none"
        return f'there is no live session named "{self.target}"; live sessions: {names}'


def resolve_target(presence: Presence, target: str) -> LiveSession | UnknownTarget:
    """A session by id (digits, optionally ``#``-prefixed) or by name (case-insensitive)."""
    wanted = target.strip()
    sessions = presence.all()
    digits = wanted.removeprefix("#")
    if digits.isdigit():
        for session in sessions:
            if session.session_id == int(digits):
                return session
    folded = wanted.casefold()
    for session in sessions:
        if session.name.casefold() == folded:
            return session
    return UnknownTarget(target=wanted, live_names=tuple(s.name for s in sessions))


# --- Messages between the Router, the sessions and the tools ---------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """Tool → Router (``ask``): record a message and start delivering it.

    ``target``: "user" (the owner), "broadcast", or a session's id or name.
    """

    sender_session_id: int | None
    sender_name: str
    body: str
    target: str
    message_type: str
    #: The sender's permission level: broadcasts from anyone but the owner need approval.
    sender_permission: Permission = Permission.UNKNOWN


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteReply:
    """Router → tool: what happened, in words the model can relay."""

    ok: bool
    detail: str
    message_ids: tuple[int, ...] = ()
    status: str = ""
    approval_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    """→ Router: deliver a message already written to the ledger (a goal call's report).

    If the Router is restarting, it finds the message pending at its start instead."""

    message_id: int
    #: Sent by another member's wake-up: it is not passed on again (members that disagree
    #: on where a call is would pass it back and forth); the sweep looks at it later.
    woken: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class DecideBroadcast:
    """Tool → Router (``ask``): the owner's decision on a broadcast approval."""

    approval_id: int
    approve: bool
    decider_session_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class DeliverNote:
    """Router → CallSession: say this to the call's model at the next turn boundary.

    Once the model connection accepted it, the session settles the message as delivered;
    a session may get the same note twice (after a Router restart) and shows it once.
    """

    message_id: int
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionJoined:
    """CallSession → Router: a session started (it is already in the Presence)."""

    session_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionLeft:
    """CallSession → Router: a session ended; ``undelivered`` notes it never passed on."""

    session_id: int
    undelivered: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Switchboard:
    """What sessions and tools use to reach each other: the Presence, the ledger, and
    a lookup of the live Router (a restarted Router is a new actor)."""

    presence: Presence
    ledger: MessageLedger
    router: Callable[[], Any | None]
    #: How long a tool waits for the Router's answer: longer than a database write may
    #: wait for its lock (SQLite's busy timeout), so a slow write is not taken for a loss.
    ask_timeout: float = 15.0

    def tell(self, message: object) -> bool:
        """Tell the Router; False (logged by the caller) when it is not running."""
        return tell_live(self.router, message)

    def notify_owner(self, *, sender_session_id: int | None, sender_name: str, body: str) -> bool:
        """A notice for the owner, recorded, then handed to the Router (a Router restarting
        finds it at its start). False when it could not be recorded (logged)."""
        try:
            record = self.ledger.record(
                sender_session_id=sender_session_id,
                sender_name=sender_name,
                target=OWNER_TARGET,
                message_type=MessageType.NOTIFICATION,
                body=body,
            )
        except Exception:
            log.exception("router.notice_not_recorded", sender=sender_name)
            return False
        self.tell(Dispatch(message_id=record.id))
        return True

    def delivered(self, info: SessionInfo, message_ids: tuple[int, ...]) -> None:
        """A call's model connection accepted these routed messages: they are delivered
        (and read, when the call is the owner's: they heard them live)."""
        for message_id in message_ids:
            self.ledger.settle(
                message_id, MessageStatus.DELIVERED, target_session_id=info.session_id
            )
        if info.permission is Permission.OWNER:
            self.ledger.mark_read(message_ids)
        log.info("call.note_delivered", message_ids=list(message_ids))

    def ask(self, message: object) -> Any:
        """Ask the Router, bounded by :attr:`ask_timeout`; raises RouterUnavailable."""
        ref = self.router()
        if ref is None:
            raise RouterUnavailable("the message router is not running; try again in a moment")
        try:
            return ref.ask(message, timeout=self.ask_timeout)
        except pykka.ActorDeadError as error:
            raise RouterUnavailable(
                "the message router is restarting; try again in a moment"
            ) from error
        except pykka.Timeout as error:
            raise RouterUnavailable(
                "the message router did not answer in time; the message may still go out, "
                "so do not send it again"
            ) from error


class RouterUnavailable(RuntimeError):
    """The Router cannot be reached right now; the tool says so to the model."""


# --- Delivery decisions --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Deliver:
    """Into a live call."""

    session: LiveSession


@dataclass(frozen=True, slots=True)
class Text:
    """By SMS to the owner's phone."""


@dataclass(frozen=True, slots=True)
class Queue:
    """Kept for the owner's next call."""


@dataclass(frozen=True, slots=True)
class Fail:
    error: str


Plan = Deliver | Text | Queue | Fail


def plan_delivery(record: MessageRecord, presence: Presence) -> Plan:
    """Where a recorded message goes now, given who is live."""
    if record.target == OWNER_TARGET:
        owner = presence.owner_main()
        if owner is not None and owner.session_id != record.sender_session_id:
            return Deliver(owner)
        if record.message_type in DEFERRABLE_TYPES:
            return Queue()
        return Text()
    if record.target_session_id is None:
        return Fail("the message has no target session")
    session = presence.get(record.target_session_id)
    if session is None:
        return Fail("the session ended before the message could be delivered")
    return Deliver(session)


def note_text(record: MessageRecord) -> str:
    """The system note a live call's model gets: clearly marked, with the sender's name
    from its session's record, and every caller's words fenced (:mod:`caller_words`)."""
    match record.message_type:
        case MessageType.NOTIFICATION:
            what = f"Notice: {record.body}"
        case MessageType.BROADCAST:
            what = f"Broadcast from {record.sender_name}: {record.body}"
        case MessageType.APPROVAL_REQUEST | MessageType.REMINDER | MessageType.TRANSFER:
            what = record.body
        case _:
            what = f"Message from {record.sender_name}: {record.body}"
    return (
        for_model(f"[System note, not spoken by the caller] {what}")
        + "\nPass this on to the caller now, briefly and in your own words."
    )


#: Twilio concatenates up to 1600 characters into one message.
SMS_MAX_CHARS: Final = 1600


def sms_text(record: MessageRecord, assistant_name: str = "TARS") -> str:
    """The owner's SMS: the sender's name from its session's record, a caller's words
    in quotation marks."""
    if record.message_type in (MessageType.NOTIFICATION, MessageType.REMINDER):
        text = f"{assistant_name}: {record.body}"
    else:
        text = f"{assistant_name}: message from {record.sender_name}: {record.body}"
    return clip(readable(text), SMS_MAX_CHARS)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, an ellipsis marking the cut."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
