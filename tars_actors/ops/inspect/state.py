"""The log's state, built line by line: actors, calls, the daemon and recent events."""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from datetime import datetime

from tars_actors.ops.inspect.descriptions import author, describe
from tars_actors.ops.inspect.records import (
    Record,
    actor_key,
    field_ident,
    field_int,
    field_number,
    field_text,
    parse_line,
    record_level,
    record_time,
)
from tars_actors.ops.inspect.views import (
    ActorView,
    DaemonView,
    EventView,
    SessionView,
    TransferView,
)

__all__ = [
    "ENDED_SESSIONS_SHOWN",
    "QUIET_WARNINGS",
    "RECENT_EVENTS",
    "STOPPED_ACTORS_KEPT",
    "TRANSFERS_SHOWN",
    "LogState",
]

#: Recent supervisor events, problems and messaging events kept for the view.
RECENT_EVENTS = 8
#: Stopped actors kept in the table (the most recently stopped); older ones are dropped.
STOPPED_ACTORS_KEPT = 20
#: Ended calls listed under "recently ended".
ENDED_SESSIONS_SHOWN = 5
#: Ended calls remembered, so late lines of theirs neither revive them nor get lost.
_ENDED_REMEMBERED = 2000
_GONE_REMEMBERED = 5000

#: Warnings that can come in floods: counted per event, not listed one by one.
QUIET_WARNINGS = frozenset({"stream.frame_rejected", "stream.frame_rejections_suppressed"})
#: Event prefixes listed under "messages, reminders and goals".
_ACTIVITY_PREFIXES = ("router.", "reminders.", "goal.")
#: Transfers listed, the most recent.
TRANSFERS_SHOWN = 8
#: What each ``transfer.*`` line makes of a transfer's status.
_TRANSFER_STATUS = {
    "transfer.requested": "asking",
    "transfer.screening_call": "ringing owner",
    "transfer.accepted": "accepted",
    "transfer.declined": "declined",
    "transfer.no_answer": "no answer",
    "transfer.canceled": "canceled",
    "transfer.bridged": "bridged",
    "transfer.connecting": "connecting",
    "transfer.connected": "connected",
    "transfer.failed": "failed",
    "transfer.caller_not_redirected": "failed",
    "transfer.connect_failed": "failed",
}


class LogState:
    """What a TARS log says about the actor system, built line by line with :meth:`feed`.

    It tracks actors (from every line naming an ``actor``, ``actor.stats``, ``actor.stuck``
    and the ``supervisor.*`` lines about their ids), calls (``call.started`` to
    ``call.summary``, ``stream.closed`` or the calls supervisor's ``child_exited``, with the
    ``model.*`` lines), the daemon (``daemon.*``), and the last few supervisor events,
    problems (error and critical lines, and warnings) and messaging events. Memory stays
    bounded however long the log.
    """

    def __init__(self, *, keep: int = RECENT_EVENTS) -> None:
        self.lines = 0
        self.malformed = 0
        #: Usable lines without a valid timestamp.
        self.untimed = 0
        self.first_time: datetime | None = None
        self.last_time: datetime | None = None
        self.levels: Counter[str] = Counter()
        self.actors: dict[str, ActorView] = {}
        self.sessions: dict[str, SessionView] = {}
        self.ended: deque[SessionView] = deque(maxlen=ENDED_SESSIONS_SHOWN)
        self.ended_total = 0
        self.supervisor_events: deque[EventView] = deque(maxlen=keep)
        self.supervisor_total = 0
        self.problems: deque[EventView] = deque(maxlen=keep)
        self.problem_total = 0
        #: Flood-prone warnings (QUIET_WARNINGS), counted per event.
        self.quiet: Counter[str] = Counter()
        self.activity: deque[EventView] = deque(maxlen=keep)
        #: The latest transfers by id, oldest first (``transfer.*``).
        self.transfers: OrderedDict[int, TransferView] = OrderedDict()
        self.daemon = DaemonView()
        self.stats_interval: float | None = None
        self.last_stats: datetime | None = None
        self._ended_calls: OrderedDict[str, SessionView] = OrderedDict()
        self._gone: OrderedDict[str, None] = OrderedDict()
        self._order = 0
        self._stopped_seq = 0

    # -- input ---------------------------------------------------------------------------

    def feed(self, line: str) -> None:
        """Take one log line; blank lines are ignored, unusable ones counted as malformed."""
        if not line.strip():
            return
        self.lines += 1
        record = parse_line(line)
        if record is None:
            self.malformed += 1
            return
        self.feed_record(record)

    def feed_all(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.feed(line)

    def feed_record(self, record: Record) -> None:
        """Take one parsed record (a JSON object with a string ``event``)."""
        event = str(record["event"])
        level = record_level(record)
        stamp = record_time(record)
        if stamp is None:
            self.untimed += 1
        else:
            if self.first_time is None or stamp < self.first_time:
                self.first_time = stamp
            if self.last_time is None or stamp > self.last_time:
                self.last_time = stamp
        self.levels[level] += 1

        actor = self._touch_actor(record, stamp)
        if event == "actor.stats":
            self._on_stats(record, actor, stamp)
        elif event == "actor.stuck":
            if actor is not None:
                actor.stuck_on = field_text(record, "message") or "?"
                actor.stuck_handled = actor.handled
        elif event == "monitor.started":
            self.stats_interval = field_number(record, "stats_interval")
        elif event.startswith("supervisor."):
            self._on_supervisor(record, event, level, stamp)
        elif event.startswith("daemon."):
            self._on_daemon(record, event, stamp)
        elif event.startswith("transfer."):
            self._on_transfer(record, event, stamp)
        if actor is not None and actor.live:
            if event.endswith(".stopped"):
                self._stop_actor(actor, "stopped", None)
            elif event == "model.disconnected" and actor.call_sid is not None:
                # A model connection's own last line (the session logs one too).
                self._stop_actor(actor, "stopped", None)
        self._on_call_line(record, event, stamp, actor)
        self._note(record, event, level, stamp)

    # -- actors --------------------------------------------------------------------------

    def _touch_actor(self, record: Record, stamp: datetime | None) -> ActorView | None:
        found = actor_key(record)
        if found is None:
            return None
        key, kind, actor_id, call_sid = found
        actor = self.actors.get(key)
        if actor is None:
            if key in self._gone:
                return None
            actor = self._new_actor(key, kind, actor_id, call_sid)
        elif not actor.kind:
            actor.kind = kind
        actor.last_seen = stamp or actor.last_seen
        return actor

    def _new_actor(self, key: str, kind: str, actor_id: str, call_sid: str | None) -> ActorView:
        self._order += 1
        actor = ActorView(
            key=key, kind=kind, actor_id=actor_id, call_sid=call_sid, order=self._order
        )
        self.actors[key] = actor
        self._gone.pop(key, None)
        return actor

    def _stop_actor(self, actor: ActorView, state: str, detail: str | None) -> None:
        actor.state = state
        actor.detail = detail
        actor.current = None
        actor.current_ms = None
        actor.stuck_on = None
        self._stopped_seq += 1
        actor.stopped_seq = self._stopped_seq
        stopped = [a for a in self.actors.values() if not a.live]
        for old in sorted(stopped, key=lambda a: a.stopped_seq)[:-STOPPED_ACTORS_KEPT]:
            del self.actors[old.key]
            self._gone[old.key] = None
        while len(self._gone) > _GONE_REMEMBERED:
            self._gone.popitem(last=False)

    def _on_stats(self, record: Record, actor: ActorView | None, stamp: datetime | None) -> None:
        if actor is None:
            return
        actor.mailbox_depth = field_int(record, "mailbox_depth")
        actor.peak_depth = field_int(record, "peak_depth")
        actor.handled = field_int(record, "handled")
        actor.busy_ms = field_number(record, "busy_ms")
        actor.busy_ratio = field_number(record, "busy_ratio")
        actor.current = field_text(record, "current")
        actor.current_ms = field_number(record, "current_ms") if actor.current else None
        actor.stats_at = stamp
        if stamp is not None and (self.last_stats is None or stamp > self.last_stats):
            self.last_stats = stamp
        if actor.stuck_on is not None and (
            actor.current != actor.stuck_on or actor.handled != actor.stuck_handled
        ):
            actor.stuck_on = None

    def _on_supervisor(
        self, record: Record, event: str, level: str, stamp: datetime | None
    ) -> None:
        self.supervisor_total += 1
        self.supervisor_events.append(
            EventView(
                stamp, level, event, field_text(record, "supervisor") or "?", describe(record)
            )
        )
        child_id = field_ident(record, "child_id")
        if child_id is None:
            return
        actor = self.actors.get(child_id)
        if actor is None:
            if child_id in self._gone and event != "supervisor.child_started":
                return
            actor = self._new_actor(child_id, "", child_id, None)
        actor.parent = field_text(record, "supervisor") or actor.parent
        restart_count = field_int(record, "restart_count")
        reason = field_text(record, "reason")
        match event:
            case "supervisor.child_started":
                if restart_count is not None:
                    actor.restarts = max(actor.restarts, restart_count)
                elif actor.exited and not actor.restart_counted:
                    actor.restarts += 1
                actor.state, actor.detail = "running", None
                actor.exited = actor.restart_counted = False
            case "supervisor.restarting":
                if restart_count is not None:
                    actor.restarts = max(actor.restarts, restart_count)
                else:
                    actor.restarts += 1
                actor.state, actor.detail = "restarting", None
                actor.restart_counted = True
            case "supervisor.restart_scheduled":
                delay = field_number(record, "delay")
                actor.state = "restarting"
                actor.detail = f"in {delay:g} s" if delay is not None else None
            case "supervisor.child_exited":
                actor.exited, actor.restart_counted = True, False
                self._stop_actor(actor, "crashed" if level == "error" else "exited", reason)
                session = self.sessions.get(child_id)
                if session is not None:
                    self._end_session(session, stamp, f"actor exited: {reason or '?'}")
            case "supervisor.child_stopped":
                self._stop_actor(actor, "stopped", reason)
            case "supervisor.child_abandoned":
                self._stop_actor(actor, "abandoned", reason)
            case "supervisor.child_start_failed":
                self._stop_actor(actor, "start failed", reason)
            case _:
                pass

    # -- transfers -----------------------------------------------------------------------

    def _on_transfer(self, record: Record, event: str, stamp: datetime | None) -> None:
        transfer_id = field_int(record, "transfer_id")
        status = _TRANSFER_STATUS.get(event)
        if transfer_id is None or status is None:
            return
        view = self.transfers.get(transfer_id)
        if view is None:
            view = self.transfers[transfer_id] = TransferView(transfer_id, started=stamp)
            while len(self.transfers) > TRANSFERS_SHOWN:
                self.transfers.popitem(last=False)
        view.status, view.updated = status, stamp or view.updated
        match event:
            case "transfer.requested":
                view.party = field_text(record, "caller") or view.party
                view.asked_by = "in the owner's call"
            case "transfer.screening_call":
                view.asked_by = "by phone"
            case "transfer.connecting":
                view.kind, view.party = "connect", field_text(record, "to") or view.party
                view.asked_by = "the owner"
            case "transfer.no_answer" | "transfer.failed":
                view.detail = field_text(record, "status") or field_text(record, "why")
            case _:
                pass

    # -- the daemon ----------------------------------------------------------------------

    def _on_daemon(self, record: Record, event: str, stamp: datetime | None) -> None:
        daemon = self.daemon
        match event:
            case "daemon.started":
                # A new run in the same file: calls of the previous run are over.
                for session in list(self.sessions.values()):
                    self._end_session(session, stamp, "daemon restarted")
                daemon.state, daemon.detail = "running", None
                daemon.pid, daemon.port = field_int(record, "pid"), field_int(record, "port")
                daemon.started = stamp
            case "daemon.stopping":
                daemon.state, daemon.detail = "stopping", field_text(record, "signal")
            case "daemon.stopped":
                daemon.state, daemon.detail = "stopped", None
                for actor in list(self.actors.values()):
                    if actor.live:
                        self._stop_actor(actor, "stopped", "daemon stopped")
                for session in list(self.sessions.values()):
                    self._end_session(session, stamp, "daemon stopped")
            case "daemon.root_gave_up":
                daemon.state, daemon.detail = "failing", field_text(record, "reason")
            case "daemon.start_failed":
                daemon.state, daemon.detail = "failed to start", None
            case _:
                pass

    # -- calls ---------------------------------------------------------------------------

    def _on_call_line(
        self, record: Record, event: str, stamp: datetime | None, actor: ActorView | None
    ) -> None:
        call_sid = field_text(record, "call_sid")
        if call_sid is None or event in ("actor.stats", "actor.stuck"):
            return  # the monitor's lines about a call's actors are not the call's events
        session = self.sessions.get(call_sid)
        if session is None:
            ended = self._ended_calls.get(call_sid)
            if ended is not None:
                if event == "call.summary":
                    self._summarise(ended, record)
                return
            if event not in ("call.opening", "call.started") and (
                actor is None or actor.kind != "CallSession"
            ):
                return
            session = SessionView(call_sid=call_sid, started=stamp)
            self.sessions[call_sid] = session
        session.name = field_text(record, "session") or session.name
        session.session_id = field_ident(record, "session_id") or session.session_id
        session.permission = field_text(record, "permission") or session.permission
        session.last_event, session.last_time = event, stamp or session.last_time
        self._update_session(session, record, event, stamp)

    def _update_session(
        self, session: SessionView, record: Record, event: str, stamp: datetime | None
    ) -> None:
        connection_id = field_int(record, "connection_id")
        match event:
            case "call.opening" | "call.started":  # at the webhook, or at the stream
                session.started = session.started or stamp
                session.caller = field_text(record, "caller")
                session.direction = field_text(record, "direction")
            case "model.connecting":
                if session.model != "connected":
                    session.model = "reconnecting" if session.ever_connected else "connecting"
            case "model.connected":
                session.model, session.connection_id = "connected", connection_id
                session.ever_connected = True
            case "model.disconnected":
                if connection_id is None or connection_id == session.connection_id:
                    session.model = "disconnected"
            case "model.reconnecting":
                session.model = "reconnecting"
                session.reconnects += 1
            case "model.rotating":
                session.reconnects += 1
            case "model.unreachable":
                session.model = "unreachable"
            case "tool.called":
                session.tool_calls += 1
            case "tool.refused":
                session.tools_refused += 1
            case "call.note_delivered":
                ids = record.get("message_ids")
                session.notes += len(ids) if isinstance(ids, list) else 1
            case "call.summary":
                self._summarise(session, record)
                self._end_session(session, stamp, session.end_reason or "?")
            case "stream.closed":
                self._end_session(session, stamp, f"stream closed ({field_text(record, 'reason')})")
            case _:
                pass

    def _summarise(self, session: SessionView, record: Record) -> None:
        session.end_reason = field_text(record, "reason") or session.end_reason
        session.duration_seconds = field_number(record, "duration_seconds")
        session.turns = field_int(record, "turns")
        session.first_audio_ms = field_number(record, "first_audio_ms")
        for name in ("reconnects", "tool_calls", "tools_refused"):
            value = field_int(record, name)
            if value is not None:
                setattr(session, name, value)

    def _end_session(self, session: SessionView, stamp: datetime | None, reason: str) -> None:
        if self.sessions.pop(session.call_sid, None) is None:
            return
        session.ended = stamp or self.last_time
        session.end_reason = session.end_reason or reason
        self.ended.append(session)
        self.ended_total += 1
        self._ended_calls[session.call_sid] = session
        while len(self._ended_calls) > _ENDED_REMEMBERED:
            self._ended_calls.popitem(last=False)

    # -- recent events -------------------------------------------------------------------

    def _note(self, record: Record, event: str, level: str, stamp: datetime | None) -> None:
        if level in ("error", "critical") or (level == "warning" and event not in QUIET_WARNINGS):
            self.problem_total += 1
            who = author(record)
            session = field_text(record, "session")
            if session is not None and session not in who:
                who = f"{who} ({session})"
            self.problems.append(EventView(stamp, level, event, who, describe(record)))
        elif level == "warning":
            self.quiet[event] += 1
        if event.startswith(_ACTIVITY_PREFIXES) and level != "debug":
            self.activity.append(EventView(stamp, level, event, author(record), describe(record)))
