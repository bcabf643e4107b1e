"""`python run.py inspect`: a view of a TARS daemon's JSON log, like `top` for its actors.

It reads the JSON lines TARS writes (a file, or ``-`` for stdin). By default it prints one
snapshot: every actor with its mailbox figures and restarts, every live call with its
model connection, recent supervisor events and recent problems. ``--follow`` keeps reading
new lines like ``tail -f`` and refreshes the view. ``--session`` or ``--call`` prints one
call's lines as a story instead.

All times are the log's own. A live call's duration runs from its ``call.started`` line to
the latest timestamp in the log, so a saved log renders the same way every time (and a
live daemon's durations advance as it logs). Lines that are not JSON objects with a string
``event`` are skipped and counted; wrong-typed fields are treated as missing.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import queue
import sys
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TextIO

__all__ = [
    "ActorView",
    "DaemonView",
    "EventView",
    "FileTail",
    "LineSource",
    "LinesSource",
    "LogState",
    "SessionView",
    "StoryError",
    "StoryFilter",
    "StreamLines",
    "dashboard",
    "describe",
    "follow",
    "main",
    "parse_line",
    "render",
    "story",
    "story_line",
    "tell_story",
]

Record = dict[str, Any]

#: Exit code for a usage error or an unreadable source, as argparse uses.
EXIT_USAGE = 2
#: ANSI: cursor home, then clear the screen.
CLEAR_SCREEN = "\x1b[H\x1b[2J"
SEPARATOR = "-" * 100

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

#: Actor states in which the actor still exists.
LIVE_STATES = frozenset({"running", "restarting"})

#: Fields every line of an actor or a call carries: left out of generic descriptions.
_CONTEXT_KEYS = frozenset(
    {
        "timestamp",
        "level",
        "logger",
        "event",
        "actor",
        "actor_id",
        "session",
        "session_id",
        "call_sid",
        "permission",
        "connection_id",
        "supervisor",
    }
)


# -- reading one line -----------------------------------------------------------------


def parse_line(line: str) -> Record | None:
    """The JSON object on ``line``, or None unless it is an object with a string event."""
    try:
        value = json.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    event = value.get("event")
    if not isinstance(event, str) or not event:
        return None
    return value


def _text(record: Record, key: str) -> str | None:
    value = record.get(key)
    return value if isinstance(value, str) and value else None


def _int(record: Record, key: str) -> int | None:
    value = record.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(record: Record, key: str) -> float | None:
    value = record.get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _ident(record: Record, key: str) -> str | None:
    """An id field: a non-empty string, or an integer written as one."""
    number = _int(record, key)
    return str(number) if number is not None else _text(record, key)


def _time(record: Record) -> datetime | None:
    stamp = record.get("timestamp")
    if not isinstance(stamp, str):
        return None
    try:
        parsed = datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _level(record: Record) -> str:
    level = record.get("level")
    return level.lower() if isinstance(level, str) and level else "info"


def _actor_key(record: Record) -> tuple[str, str, str, str | None] | None:
    """(key, kind, actor id, call SID) of the actor that wrote ``record``, if any.

    Per-call actors other than the CallSession (the model connections, ``model-1``...)
    reuse their ids in every call, so their key is qualified by the call SID.
    """
    kind = _text(record, "actor")
    actor_id = _ident(record, "actor_id")
    if kind is None or actor_id is None:
        return None
    call_sid = _text(record, "call_sid")
    if call_sid is not None and call_sid != actor_id and "session" in record:
        return f"{call_sid}/{actor_id}", kind, actor_id, call_sid
    return actor_id, kind, actor_id, None


# -- describing one line in words --------------------------------------------------------


def _value_text(value: Any, limit: int = 120) -> str:
    if value is None:
        text = "-"
    elif isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, float):
        text = f"{value:g}"
    elif isinstance(value, list | tuple) and not any(isinstance(v, list | dict) for v in value):
        text = ", ".join(_value_text(item, limit) for item in value) or "none"
    elif isinstance(value, list | tuple | dict):
        try:
            text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
        except (ValueError, RecursionError):  # nested deeper than Python recurses
            text = "(too deeply nested)"
    else:
        text = str(value)
    return _clip(text.replace("\n", " "), limit)


class _Fields(dict[str, str]):
    """A record's values as text for ``str.format_map``; a missing field reads ``?``."""

    def __missing__(self, key: str) -> str:
        return "?"


def _fields(record: Record) -> _Fields:
    return _Fields({key: _value_text(value) for key, value in record.items()})


def _model_connecting(record: Record) -> str:
    text = f"opening model connection {_value_text(record.get('connection_id'))}"
    return text + (" (resuming)" if record.get("resuming") or record.get("resumed") else "")


def _model_connected(record: Record) -> str:
    text = f"model connection {_value_text(record.get('connection_id'))} ready"
    setup = _number(record, "setup_ms")
    if setup is not None:
        text += f" in {setup:g} ms"
    return text + (" (resumed)" if record.get("resumed") is True else "")


def _model_disconnected(record: Record) -> str:
    text = (
        f"model connection {_value_text(record.get('connection_id'))} closed: "
        f"{_value_text(record.get('reason'))}"
    )
    return text + (" (unexpected)" if record.get("expected") is False else "")


def _child_started(record: Record) -> str:
    text = f"{_value_text(record.get('supervisor'))}: started {_value_text(record.get('child_id'))}"
    restarts = _int(record, "restart_count")
    return text + (f" (restart {restarts})" if restarts else "")


_DESCRIPTIONS: dict[str, str | Callable[[Record], str]] = {
    "daemon.started": "TARS started (pid {pid}, port {port})",
    "daemon.stopping": "stopping on {signal}",
    "daemon.stopped": "TARS stopped",
    "daemon.root_gave_up": "the root supervisor gave up: {reason}",
    "server.call_admitted": "Twilio's webhook answered: call admitted",
    "server.call_refused": "call refused ({why})",
    "server.call_status": "Twilio reports the call {status}",
    "stream.started": "media stream {stream_sid} started from {remote} (tracks {tracks})",
    "stream.closed": "media stream closed ({reason}) after {seconds} s: "
    "{frames_in} frames in, {frames_out} out, {frames_rejected} rejected",
    "stream.frame_rejected": "media frame rejected: {reason} ({detail})",
    "stream.no_start": "no start message within {waited_seconds} s",
    "stream.session_gone": "the call's session is gone",
    "call.started": "call from {caller} ({direction}) as {permission}, stream {stream_sid}",
    "call.summary": "call ended: {reason}; {duration_seconds} s, {turns} turn(s), "
    "{reconnects} reconnect(s), {tool_calls} tool call(s), {tools_refused} refused",
    "call.instructed": "instruction to the model: {text}",
    "call.note_received": "message {message_id} received for this call",
    "call.note_sent": "message(s) {message_ids} sent to the model",
    "call.note_delivered": "message(s) {message_ids} delivered",
    "call.note_repeat_ignored": "message {message_id} already taken, ignored",
    "call.dtmf": "the caller pressed {digit}",
    "call.end_requested": "the model ended the call ({tool})",
    "call.ending_with_notice": "ending the call with a notice ({reason})",
    "calls.answered_by": "answered by {answered_by}",
    "calls.over_capacity": "over capacity, call refused",
    "model.connecting": _model_connecting,
    "model.connected": _model_connected,
    "model.disconnected": _model_disconnected,
    "model.reconnecting": "reconnecting after connection {connection_id} ended ({reason}): "
    "attempt {attempt} in {delay} s",
    "model.go_away": "the model server is going away, {time_left} left",
    "model.rotating": "rotating model connection {from_connection} to a fresh one",
    "model.unreachable": "model unreachable for {seconds} s: apologising and hanging up",
    "model.input_rejected": "the model connection rejected an input ({item})",
    "model.close_slow": "closing the model connection took over {waited} s",
    "tool.called": "tool {tool} called with {args}",
    "tool.refused": "tool {tool} refused ({kind}): {error}",
    "tool.failed": "tool {tool} failed",
    "tool.result_dropped": "result of tool {tool} dropped: the call is gone",
    "tool.cancelled": "tool call(s) {call_ids} cancelled",
    "router.handed_to_call": "message {message_id} handed to {session}",
    "router.sms_sent": "message {message_id} sent by SMS ({message_sid})",
    "router.sms_failed": "SMS for message {message_id} failed: {error} (code {code})",
    "router.texting_owner": "texting message {message_id} to the owner",
    "router.rejected": "message from {sender} rejected ({why})",
    "reminders.delivered": "reminder {reminder_id} delivered ({how})",
    "reminders.call_placed": "reminder call {call_sid} placed ({correlation_id})",
    "reminders.failed": "reminder {reminder_id} failed: {error}",
    "goal.created": "goal {goal_id} created: call {callee}",
    "goal.dialing": "goal {goal_id}: dialing {to}",
    "goal.ended": "goal {goal_id} ended: {status}",
    "goal.reported": "goal {goal_id} reported to the owner (message {message_id})",
    "telephony.call_placed": "call placed to {to} ({correlation_id}), {attempts} attempt(s)",
    "router.queued": "message {message_id} queued",
    "router.recorded": "message {message_id} recorded for {target}",
    "supervisor.started": "supervisor {supervisor} started",
    "supervisor.child_started": _child_started,
    "supervisor.child_exited": "{supervisor}: {child_id} exited: {reason}",
    "supervisor.restarting": "{supervisor}: restarting {child_id} (restart {restart_count})",
    "supervisor.restart_scheduled": "{supervisor}: restart of {child_id} in {delay} s",
    "supervisor.child_stopped": "{supervisor}: stopped {child_id} ({reason})",
    "supervisor.child_abandoned": "{supervisor}: abandoned {child_id}, it did not stop in time",
    "supervisor.child_start_failed": "{supervisor}: {child_id} failed to start: {reason}",
    "supervisor.shutdown": "supervisor {supervisor} shutting down ({reason})",
    "supervisor.stopped": "supervisor {supervisor} stopped ({reason})",
    "actor.stats": "mailbox {mailbox_depth} (peak {peak_depth}), {handled} handled, "
    "busy {busy_ms} ms ({busy_ratio})",
    "actor.stuck": "stuck on {message} for {busy_seconds} s",
}


def describe(record: Record) -> str:
    """The interesting fields of a log record, in words (``key=value`` for unknown events)."""
    event = str(record.get("event"))
    how = _DESCRIPTIONS.get(event)
    if callable(how):
        text = how(record)
    elif how is not None:
        text = how.format_map(_fields(record))
    else:
        text = ", ".join(
            f"{key}={_value_text(value, 60)}"
            for key, value in record.items()
            if key not in _CONTEXT_KEYS and key not in ("exception", "stack")
        )
        text = _clip(text, 200)
    error = _exception_text(record.get("exception"))
    if error:
        text = f"{text} [{error}]" if text else error
    return text


def _exception_text(value: Any) -> str:
    """``Type: message`` of a rendered exception (structlog's dict form or plain text)."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        first = value[0]
        kind, message = first.get("exc_type"), first.get("exc_value")
        return _clip(f"{kind}: {message}" if message else str(kind), 160)
    if isinstance(value, str) and value.strip():
        return _clip(value.strip().splitlines()[-1], 160)
    return ""


def _who(record: Record) -> str:
    """Who wrote a line: the actor (with its id when that says more), else the logger."""
    kind = _text(record, "actor")
    actor_id = _ident(record, "actor_id")
    if kind is not None:
        if actor_id is None or actor_id == record.get("call_sid"):
            return kind
        if actor_id.lower().replace("-", "") in kind.lower():
            return kind
        return f"{kind}[{actor_id}]"
    logger = _text(record, "logger")
    if logger is not None:
        return logger.removeprefix("tars.")
    return "-"


def _short_sid(sid: str) -> str:
    return sid[:14]


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "~"


# -- the state model ---------------------------------------------------------------------


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
            return f"{_short_sid(self.call_sid)}/{self.actor_id}"
        return _short_sid(self.actor_id) if self.kind == "CallSession" else self.actor_id


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
        level = _level(record)
        stamp = _time(record)
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
                actor.stuck_on = _text(record, "message") or "?"
                actor.stuck_handled = actor.handled
        elif event == "monitor.started":
            self.stats_interval = _number(record, "stats_interval")
        elif event.startswith("supervisor."):
            self._on_supervisor(record, event, level, stamp)
        elif event.startswith("daemon."):
            self._on_daemon(record, event, stamp)
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
        found = _actor_key(record)
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
        actor.mailbox_depth = _int(record, "mailbox_depth")
        actor.peak_depth = _int(record, "peak_depth")
        actor.handled = _int(record, "handled")
        actor.busy_ms = _number(record, "busy_ms")
        actor.busy_ratio = _number(record, "busy_ratio")
        actor.current = _text(record, "current")
        actor.current_ms = _number(record, "current_ms") if actor.current else None
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
            EventView(stamp, level, event, _text(record, "supervisor") or "?", describe(record))
        )
        child_id = _ident(record, "child_id")
        if child_id is None:
            return
        actor = self.actors.get(child_id)
        if actor is None:
            if child_id in self._gone and event != "supervisor.child_started":
                return
            actor = self._new_actor(child_id, "", child_id, None)
        actor.parent = _text(record, "supervisor") or actor.parent
        restart_count = _int(record, "restart_count")
        reason = _text(record, "reason")
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
                delay = _number(record, "delay")
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

    # -- the daemon ----------------------------------------------------------------------

    def _on_daemon(self, record: Record, event: str, stamp: datetime | None) -> None:
        daemon = self.daemon
        match event:
            case "daemon.started":
                # A new run in the same file: calls of the previous run are over.
                for session in list(self.sessions.values()):
                    self._end_session(session, stamp, "daemon restarted")
                daemon.state, daemon.detail = "running", None
                daemon.pid, daemon.port = _int(record, "pid"), _int(record, "port")
                daemon.started = stamp
            case "daemon.stopping":
                daemon.state, daemon.detail = "stopping", _text(record, "signal")
            case "daemon.stopped":
                daemon.state, daemon.detail = "stopped", None
                for actor in list(self.actors.values()):
                    if actor.live:
                        self._stop_actor(actor, "stopped", "daemon stopped")
                for session in list(self.sessions.values()):
                    self._end_session(session, stamp, "daemon stopped")
            case "daemon.root_gave_up":
                daemon.state, daemon.detail = "failing", _text(record, "reason")
            case "daemon.start_failed":
                daemon.state, daemon.detail = "failed to start", None
            case _:
                pass

    # -- calls ---------------------------------------------------------------------------

    def _on_call_line(
        self, record: Record, event: str, stamp: datetime | None, actor: ActorView | None
    ) -> None:
        call_sid = _text(record, "call_sid")
        if call_sid is None or event in ("actor.stats", "actor.stuck"):
            return  # the monitor's lines about a call's actors are not the call's events
        session = self.sessions.get(call_sid)
        if session is None:
            ended = self._ended_calls.get(call_sid)
            if ended is not None:
                if event == "call.summary":
                    self._summarise(ended, record)
                return
            if event != "call.started" and (actor is None or actor.kind != "CallSession"):
                return
            session = SessionView(call_sid=call_sid, started=stamp)
            self.sessions[call_sid] = session
        session.name = _text(record, "session") or session.name
        session.session_id = _ident(record, "session_id") or session.session_id
        session.permission = _text(record, "permission") or session.permission
        session.last_event, session.last_time = event, stamp or session.last_time
        self._update_session(session, record, event, stamp)

    def _update_session(
        self, session: SessionView, record: Record, event: str, stamp: datetime | None
    ) -> None:
        connection_id = _int(record, "connection_id")
        match event:
            case "call.started":
                session.started = stamp or session.started
                session.caller = _text(record, "caller")
                session.direction = _text(record, "direction")
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
                self._end_session(session, stamp, f"stream closed ({_text(record, 'reason')})")
            case _:
                pass

    def _summarise(self, session: SessionView, record: Record) -> None:
        session.end_reason = _text(record, "reason") or session.end_reason
        session.duration_seconds = _number(record, "duration_seconds")
        session.turns = _int(record, "turns")
        for name in ("reconnects", "tool_calls", "tools_refused"):
            value = _int(record, name)
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
            who = _who(record)
            session = _text(record, "session")
            if session is not None and session not in who:
                who = f"{who} ({session})"
            self.problems.append(EventView(stamp, level, event, who, describe(record)))
        elif level == "warning":
            self.quiet[event] += 1
        if event.startswith(_ACTIVITY_PREFIXES) and level != "debug":
            self.activity.append(EventView(stamp, level, event, _who(record), describe(record)))


# -- the screen ------------------------------------------------------------------------


def _clock(stamp: datetime | None) -> str:
    return stamp.strftime("%H:%M:%S") if stamp is not None else "--:--:--"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _busy(milliseconds: float | None) -> str:
    if milliseconds is None:
        return "-"
    if milliseconds < 1000:
        return f"{milliseconds:.0f}ms"
    return _seconds(milliseconds / 1000)


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _actor_rows(state: LogState) -> list[list[str]]:
    actors = sorted(state.actors.values(), key=lambda a: (not a.live, a.order))
    rows = []
    for actor in actors:
        status = "STUCK" if actor.stuck_on is not None and actor.live else actor.state
        if actor.detail and not actor.live and actor.detail not in ("shutdown", "normal"):
            status = f"{status}: {actor.detail}"
        elif actor.detail and actor.live:
            status = f"{status} {actor.detail}"
        current = "-"
        if actor.current is not None:
            current = f"{actor.current} {_busy(actor.current_ms)}"
        elif actor.stuck_on is not None:
            current = f"{actor.stuck_on} (stuck)"
        ratio = "-" if actor.busy_ratio is None else f"{actor.busy_ratio * 100:.1f}%"
        rows.append(
            [
                _clip(actor.kind or f"? (child of {actor.parent or '?'})", 22),
                _clip(actor.label, 30),
                _clip(status, 28),
                _count(actor.mailbox_depth),
                _count(actor.peak_depth),
                _count(actor.handled),
                _busy(actor.busy_ms),
                ratio,
                str(actor.restarts),
                _clip(current, 32),
            ]
        )
    return rows


def _session_rows(state: LogState, now: datetime | None) -> list[list[str]]:
    sessions = sorted(
        state.sessions.values(), key=lambda s: s.started or datetime.max.replace(tzinfo=UTC)
    )
    return [
        [
            _clip(s.name or "?", 34),
            _short_sid(s.call_sid),
            s.caller or "?",
            s.permission or "?",
            _seconds(s.duration(now)),
            s.model,
            str(s.reconnects),
            str(s.tool_calls),
            _clip(f"{_clock(s.last_time)} {s.last_event or ''}", 34),
        ]
        for s in sessions
    ]


def _ended_rows(state: LogState) -> list[list[str]]:
    return [
        [
            _clip(s.name or "?", 34),
            _short_sid(s.call_sid),
            s.caller or "?",
            s.permission or "?",
            _seconds(s.duration(None)),
            _count(s.turns),
            str(s.reconnects),
            _clock(s.ended),
            _clip(s.end_reason or "?", 36),
        ]
        for s in reversed(state.ended)
    ]


def _event_lines(
    events: Iterable[EventView], *, show_level: bool = False, show_who: bool = True
) -> list[str]:
    lines = []
    for item in events:
        level = f"{item.level.upper():<8} " if show_level else ""
        who = f"{item.who:<18} " if show_who else ""
        lines.append(_clip(f"  {_clock(item.time)} {level}{item.event:<28} {who}{item.text}", 160))
    return lines or ["  none"]


def _header(state: LogState, now: datetime | None, source: str | None) -> list[str]:
    lines = [f"TARS inspect: {source}" if source else "TARS inspect"]
    if state.first_time is not None and state.last_time is not None:
        span = (state.last_time - state.first_time).total_seconds()
        lines.append(
            f"log {state.first_time:%Y-%m-%d %H:%M:%S} to {state.last_time:%Y-%m-%d %H:%M:%S} UTC"
            f" ({_seconds(span)}); showing as of {_clock(now)}"
        )
    else:
        lines.append("log: no timestamped lines yet")
    counts = f"{state.lines} line(s), {state.malformed} malformed"
    if state.untimed:
        counts += f", {state.untimed} without a timestamp"
    lines.append(counts)
    daemon = state.daemon
    about = [f"pid {daemon.pid}" if daemon.pid is not None else ""]
    about.append(f"port {daemon.port}" if daemon.port is not None else "")
    about.append(daemon.detail or "")
    details = ", ".join(part for part in about if part)
    problems = (
        f"{state.levels['critical'] + state.levels['error']} error(s),"
        f" {state.levels['warning']} warning(s)"
    )
    lines.append(
        f"daemon {daemon.state}{f' ({details})' if details else ''}; calls: "
        f"{len(state.sessions)} live, {state.ended_total} ended; {problems}"
    )
    return lines


def render(state: LogState, *, now: datetime | None = None, source: str | None = None) -> str:
    """The screen for ``state`` as text. ``now`` defaults to the latest timestamp in the log."""
    now = now or state.last_time
    lines = _header(state, now, source)

    live = sum(1 for a in state.actors.values() if a.live)
    if state.last_stats is not None:
        stats = f"latest actor.stats at {_clock(state.last_stats)}"
    elif state.stats_interval is not None:
        stats = f"no actor.stats yet (every {state.stats_interval:g} s)"
    else:
        stats = "no actor.stats yet"
    lines += ["", f"ACTORS: {live} live, {len(state.actors) - live} stopped; {stats}"]
    actor_rows = _actor_rows(state)
    if actor_rows:
        headers = ["ACTOR", "ID", "STATE", "MAILBOX", "PEAK", "HANDLED", "BUSY", "BUSY%"]
        lines += _table([*headers, "RESTARTS", "NOW"], actor_rows, {3, 4, 5, 6, 7, 8})
    else:
        lines.append("  none")

    lines += ["", f"LIVE CALLS: {len(state.sessions)}"]
    rows = _session_rows(state, now)
    if rows:
        headers = ["SESSION", "CALL", "CALLER", "PERMISSION", "DURATION", "MODEL"]
        lines += _table([*headers, "RECONNECTS", "TOOLS", "LAST"], rows, {4, 6, 7})
    else:
        lines.append("  none")
    if state.ended:
        lines += ["", f"RECENTLY ENDED: {len(state.ended)} of {state.ended_total}"]
        headers = ["SESSION", "CALL", "CALLER", "PERMISSION", "DURATION", "TURNS"]
        lines += _table([*headers, "RECONNECTS", "ENDED", "REASON"], _ended_rows(state), {4, 5, 6})

    shown = len(state.supervisor_events)
    lines += ["", f"SUPERVISOR EVENTS: last {shown} of {state.supervisor_total}"]
    lines += _event_lines(state.supervisor_events, show_who=False)
    lines += ["", f"ERRORS AND WARNINGS: last {len(state.problems)} of {state.problem_total}"]
    lines += _event_lines(state.problems, show_level=True)
    if state.quiet:
        quiet = ", ".join(f"{count} {event}" for event, count in sorted(state.quiet.items()))
        lines.append(f"  also: {quiet}")
    if state.activity:
        lines += ["", f"MESSAGES, REMINDERS AND GOALS: last {len(state.activity)}"]
        lines += _event_lines(state.activity)
    return "\n".join(lines) + "\n"


# -- one call's story --------------------------------------------------------------------


class StoryError(Exception):
    """A ``--session`` or ``--call`` that matches several calls."""


class StoryFilter:
    """Picks one call's lines: by call SID, or by session name (or numeric session id).

    A line belongs to a call when its ``call_sid``, its actor id, the ``child_id`` of a
    supervisor line or its ``stream_sid`` is the call's; a line with no call SID belongs
    through its ``session`` name (the Router's lines). :meth:`learn` records which SIDs,
    names and streams go together; :meth:`resolve` then turns a SID prefix or a part of a
    name into the call(s) it names, once the lines seen so far are learnt. Unresolved (when
    following stdin), a SID prefix takes every call it fits and a session needs its exact
    name or id.
    """

    def __init__(self, *, session: str | None = None, call: str | None = None) -> None:
        if (session is None) == (call is None):
            raise ValueError("give exactly one of session and call")
        self.session = session
        self.call = call
        self._names: dict[str, set[str]] = {}
        self._ids: dict[str, set[str]] = {}
        self._calls: set[str] = set()
        self._streams: dict[str, str] = {}
        self.calls: set[str] = {call} if call is not None else set()
        self.names: set[str] = {session} if session is not None else set()
        self.streams: set[str] = set()
        self._resolved = False

    def learn(self, record: Record) -> None:
        """Remember the call, session and stream named together on ``record``."""
        call_sid = _text(record, "call_sid")
        if call_sid is None:
            return
        self._calls.add(call_sid)
        if not self._resolved and self.call is not None and call_sid.startswith(self.call):
            # Unresolved (following stdin): a prefix takes every call it fits.
            self.calls.add(call_sid)
        name = _text(record, "session")
        if name is not None:
            self._names.setdefault(name, set()).add(call_sid)
            if name in self.names:
                self.calls.add(call_sid)
            elif call_sid in self.calls and self.call is not None:
                self.names.add(name)
        session_id = _ident(record, "session_id")
        if session_id is not None:
            self._ids.setdefault(session_id, set()).add(call_sid)
            if session_id == self.session:
                self.calls.add(call_sid)
        stream_sid = _text(record, "stream_sid")
        if stream_sid is not None:
            self._streams[stream_sid] = call_sid
            if call_sid in self.calls:
                self.streams.add(stream_sid)

    def resolve(self) -> None:
        """Settle which calls are meant, from everything learnt so far.

        A call SID matches exactly, else as a unique prefix; a session matches its exact
        name or numeric id, else a unique case-insensitive part of one name.
        """
        if self.call is not None:
            calls = {self.call} if self.call in self._calls else set()
            if not calls:
                calls = {sid for sid in self._calls if sid.startswith(self.call)}
                if len(calls) > 1:
                    raise StoryError(f"call {self.call!r} matches {_listing(calls)}")
            calls = calls or {self.call}
            names = {n for n, sids in self._names.items() if sids & calls}
        else:
            assert self.session is not None
            names = {self.session} if self.session in self._names else set()
            calls = set().union(*(self._names.get(n, set()) for n in names))
            calls |= self._ids.get(self.session, set())
            if not calls:
                wanted = self.session.casefold()
                names = {n for n in self._names if wanted in n.casefold()}
                if len(names) > 1:
                    raise StoryError(f"session {self.session!r} matches {_listing(names)}")
                calls = set().union(*(self._names[n] for n in names))
            names |= {n for n, sids in self._names.items() if sids & calls}
            names = names or {self.session}
        self.calls, self.names = calls, names
        self._resolved = True
        self.streams = {stream for stream, sid in self._streams.items() if sid in calls}

    def matches(self, record: Record) -> bool:
        """Whether ``record`` belongs to the chosen call(s)."""
        call_sid = _text(record, "call_sid")
        if call_sid is not None:
            return call_sid in self.calls
        if _ident(record, "actor_id") in self.calls:
            return True
        event = record.get("event")
        if isinstance(event, str) and event.startswith("supervisor."):
            return _ident(record, "child_id") in self.calls
        stream_sid = _text(record, "stream_sid")
        if stream_sid is not None:
            return stream_sid in self.streams
        return _text(record, "session") in self.names


def _listing(items: Iterable[str]) -> str:
    return ", ".join(repr(item) for item in sorted(items))


def story_line(record: Record) -> str:
    """One record as a story line: time, level (if not info), event, who, what it said."""
    stamp = _time(record)
    when = stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if stamp else "(no time)".ljust(23)
    level = _level(record)
    tag = "" if level in ("info", "debug") else level.upper()
    return f"{when} {tag:<8} {record['event']!s:<24} {_who(record):<25} {describe(record)}".rstrip()


def story(
    lines: Iterable[str], *, session: str | None = None, call: str | None = None
) -> list[str]:
    """The story lines of one call, in log order (raises :class:`StoryError` if ambiguous)."""
    records = [r for r in map(parse_line, lines) if r is not None]
    chooser = StoryFilter(session=session, call=call)
    for record in records:
        chooser.learn(record)
    chooser.resolve()
    return [story_line(r) for r in records if chooser.matches(r)]


# -- sources of lines ------------------------------------------------------------------


class LineSource(Protocol):
    """New lines of a log, poll by poll."""

    @property
    def finished(self) -> bool:
        """No more lines will ever come (end of a stream)."""
        ...

    @property
    def resets(self) -> int:
        """How many times the source started over (a file truncated or replaced)."""
        ...

    def iter_lines(self, *, final: bool = False) -> Iterator[str]:
        """The complete lines available now; with ``final`` an unterminated last one too."""
        ...


def _decode(raw: bytes) -> str:
    return raw.rstrip(b"\r").decode("utf-8", errors="replace")


class FileTail:
    """Reads a file's lines as they are appended, like ``tail -F``.

    When the path names a new file (rotation: the inode changed) the old one is read to
    its end and the new one from its start; when the file shrank (truncation) it is read
    again from the start. A partial last line waits for its newline, unless it already
    parses as a whole JSON object.
    """

    _CHUNK = 1 << 20

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = self.path.open("rb")
        self._identity = self._id(os.fstat(self._file.fileno()))
        self._partial = b""
        self._resets = 0

    @staticmethod
    def _id(stat: os.stat_result) -> tuple[int, int]:
        return stat.st_dev, stat.st_ino

    @property
    def finished(self) -> bool:
        return False

    @property
    def resets(self) -> int:
        return self._resets

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FileTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iter_lines(self, *, final: bool = False) -> Iterator[str]:
        yield from self._drain(final=False)
        try:
            stat = os.stat(self.path)
        except OSError:  # rotated away and not yet recreated: keep the old file
            stat = None
        if stat is not None and self._id(stat) != self._identity:
            yield from self._drain(final=True)
            try:
                replacement = self.path.open("rb")
            except OSError:
                replacement = None
            if replacement is not None:
                self._file.close()
                self._file = replacement
                self._identity = self._id(os.fstat(replacement.fileno()))
                self._resets += 1
                yield from self._drain(final=False)
        elif stat is not None and stat.st_size < self._file.tell():
            self._file.seek(0)
            self._partial = b""
            self._resets += 1
            yield from self._drain(final=False)
        yield from self._rest(final=final)

    def _drain(self, *, final: bool) -> Iterator[str]:
        while chunk := self._file.read(self._CHUNK):
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            for raw in complete:
                yield _decode(raw)
        if final:
            yield from self._rest(final=True)

    def _rest(self, *, final: bool) -> Iterator[str]:
        if not self._partial:
            return
        line = _decode(self._partial)
        if final or parse_line(line) is not None:
            self._partial = b""
            yield line


class StreamLines:
    """The lines of a text stream (stdin), read on a daemon thread so polls never block."""

    def __init__(self, stream: TextIO) -> None:
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._done = False
        self._stream = stream
        threading.Thread(target=self._pump, name="inspect-reader", daemon=True).start()

    def _pump(self) -> None:
        try:
            for line in self._stream:
                self._queue.put(line)
        except (OSError, ValueError):  # closed, or undecodable beyond repair
            pass
        finally:
            self._queue.put(None)

    @property
    def finished(self) -> bool:
        return self._done

    @property
    def resets(self) -> int:
        return 0

    def iter_lines(self, *, final: bool = False) -> Iterator[str]:
        while not self._done:
            try:
                line = self._queue.get(block=final)
            except queue.Empty:
                return
            if line is None:
                self._done = True
                return
            yield line.rstrip("\r\n")


class LinesSource:
    """Lines already in memory, given out on the first poll."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines: list[str] | None = list(lines)

    @property
    def finished(self) -> bool:
        return self._lines is None

    @property
    def resets(self) -> int:
        return 0

    def iter_lines(self, *, final: bool = False) -> Iterator[str]:
        lines, self._lines = self._lines or [], None
        yield from lines


# -- the commands ------------------------------------------------------------------------


def follow(
    source: LineSource,
    on_poll: Callable[[LineSource], None],
    *,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
) -> None:
    """Call ``on_poll`` now and every ``interval`` seconds until the source is finished.

    ``polls`` caps the number of polls (None: until interrupted); tests pass a ``sleep``
    that appends to the file instead of waiting.
    """
    done = 0
    while True:
        on_poll(source)
        done += 1
        if source.finished or (polls is not None and done >= polls):
            return
        sleep(interval)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def dashboard(
    source: LineSource,
    out: TextIO,
    *,
    label: str | None = None,
    keep_following: bool = False,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
    clear: bool | None = None,
) -> LogState:
    """Print snapshots of the log's state: one, or one per poll while following.

    Cleared in place on a terminal (``clear`` defaults to whether ``out`` is one); else a
    new snapshot, after a separator line, only when new lines came.
    """
    state = LogState()
    clear = _is_tty(out) if clear is None else clear
    shown = {"snapshots": 0, "resets": source.resets}

    def on_poll(lines: LineSource) -> None:
        before = state.lines
        state.feed_all(lines.iter_lines(final=not keep_following))
        changed = state.lines != before or lines.resets != shown["resets"]
        shown["resets"] = lines.resets
        if clear and keep_following:
            out.write(CLEAR_SCREEN + render(state, source=label))
        elif changed or shown["snapshots"] == 0:
            if shown["snapshots"]:
                out.write(SEPARATOR + "\n")
            out.write(render(state, source=label))
        else:
            return
        shown["snapshots"] += 1
        out.flush()

    follow(source, on_poll, interval=interval, sleep=sleep, polls=polls if keep_following else 1)
    return state


def tell_story(
    source: LineSource,
    out: TextIO,
    chooser: StoryFilter,
    *,
    keep_following: bool = False,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
) -> tuple[int, int]:
    """Print the chosen call's lines from ``source``; returns (lines printed, malformed)."""
    counts = {"printed": 0, "malformed": 0}

    def on_poll(lines: LineSource) -> None:
        for line in lines.iter_lines(final=not keep_following):
            if not line.strip():
                continue
            record = parse_line(line)
            if record is None:
                counts["malformed"] += 1
                continue
            chooser.learn(record)
            if chooser.matches(record):
                out.write(story_line(record) + "\n")
                counts["printed"] += 1
        out.flush()

    follow(
        source,
        on_poll,
        interval=interval,
        sleep=sleep,
        polls=polls if keep_following else 1,
    )
    return counts["printed"], counts["malformed"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py inspect",
        description="Show what a TARS daemon's JSON log says: actors, live calls, "
        "supervisor events and errors, or one call's story.",
    )
    parser.add_argument("source", help="the JSON log file, or - for stdin")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--follow", "-f", action="store_true", help="keep reading new lines and refresh"
    )
    mode.add_argument(
        "--once", action="store_true", help="print one snapshot and exit (the default)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--session",
        metavar="NAME",
        help="print one call's lines as a story: its session name, id, or part of the name",
    )
    which.add_argument(
        "--call", metavar="SID", help="print one call's lines as a story: its call SID or a prefix"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="refresh period with --follow (default 1.0)",
    )
    return parser


def _lenient_stdin() -> TextIO:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin
    return io.TextIOWrapper(buffer, encoding="utf-8", errors="replace")


def main(
    argv: Sequence[str],
    *,
    stdout: TextIO | None = None,
    stdin: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
) -> int:
    """Run ``inspect``: 0 on success, 1 when a story found no lines, 2 on a usage error.

    ``sleep`` and ``polls`` are for tests of ``--follow``; Ctrl-C exits 0.
    """
    out = stdout or sys.stdout
    parser = _parser()
    args = parser.parse_args(list(argv))
    if not (args.interval > 0 and math.isfinite(args.interval)):
        parser.error(f"--interval must be a positive number of seconds, not {args.interval}")
    try:
        return _run(args, out, stdin, sleep=sleep, polls=polls)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (`| head`); say nothing more on a closed pipe.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0


def _run(
    args: argparse.Namespace,
    out: TextIO,
    stdin: TextIO | None,
    *,
    sleep: Callable[[float], None],
    polls: int | None,
) -> int:
    from_stdin = args.source == "-"
    label = "stdin" if from_stdin else str(args.source)
    stream = (stdin if stdin is not None else _lenient_stdin()) if from_stdin else None
    source: LineSource
    if stream is not None:
        source = StreamLines(stream) if args.follow else LinesSource(stream)
    else:
        try:
            source = FileTail(args.source)
        except OSError as error:
            reason = error.strerror or str(error)
            print(f"inspect: cannot read {args.source}: {reason}", file=sys.stderr)
            return EXIT_USAGE
    try:
        return _show(args, source, out, label, sleep=sleep, polls=polls)
    finally:
        if isinstance(source, FileTail):
            source.close()


def _show(
    args: argparse.Namespace,
    source: LineSource,
    out: TextIO,
    label: str,
    *,
    sleep: Callable[[float], None],
    polls: int | None,
) -> int:
    if args.session is None and args.call is None:
        dashboard(
            source,
            out,
            label=label,
            keep_following=args.follow,
            interval=args.interval,
            sleep=sleep,
            polls=polls,
        )
        return 0

    chooser = StoryFilter(session=args.session, call=args.call)
    # Learn the whole log first, so lines before the one naming the session (the
    # webhook's, the stream's) are told too, and a prefix or part of a name resolves.
    # Stdin being followed cannot be read twice: its lines are learnt as they come.
    if isinstance(source, LinesSource | FileTail):
        if isinstance(source, LinesSource):
            lines = list(source.iter_lines())
            source = LinesSource(lines)  # read again by the second pass
            _learn(chooser, lines)
        else:
            with FileTail(source.path) as first_pass:
                _learn(chooser, first_pass.iter_lines(final=True))
        try:
            chooser.resolve()
        except StoryError as error:
            print(f"inspect: {error}; give more of it", file=sys.stderr)
            return EXIT_USAGE
    printed, malformed = tell_story(
        source,
        out,
        chooser,
        keep_following=args.follow,
        interval=args.interval,
        sleep=sleep,
        polls=polls,
    )
    if malformed:
        print(f"inspect: skipped {malformed} malformed line(s)", file=sys.stderr)
    if printed == 0 and not args.follow:
        wanted = f"session {args.session!r}" if args.session is not None else f"call {args.call!r}"
        print(f"inspect: no lines for {wanted} in {label}", file=sys.stderr)
        return 1
    return 0


def _learn(chooser: StoryFilter, lines: Iterable[str]) -> None:
    for line in lines:
        record = parse_line(line)
        if record is not None:
            chooser.learn(record)
