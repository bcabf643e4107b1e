"""A log record in words: what each TARS event says, who wrote it, and short text helpers."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tars_actors.ops.inspect.records import Record, field_ident, field_int, field_number, field_text

__all__ = ["author", "clip", "describe", "short_sid"]

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
    return clip(text.replace("\n", " "), limit)


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
    setup = field_number(record, "setup_ms")
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
    restarts = field_int(record, "restart_count")
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
    "call.opening": "call from {caller} ({direction}) as {permission}, greeting before the "
    "stream opens",
    "call.stream_opened": "stream opened; {held_frames} frame(s) of audio had waited for it",
    "call.stream_never_opened": "the stream never opened: {reason}",
    "model.refused": "the model refused the connection: {reason}",
    "call.started": "call from {caller} ({direction}) as {permission}, stream {stream_sid}",
    "call.summary": "call ended: {reason}; {duration_seconds} s, {turns} turn(s), "
    "{reconnects} reconnect(s), {tool_calls} tool call(s), {tools_refused} refused",
    "call.instructed": "instruction to the model: {text}",
    "call.note_received": "message {message_id} received for this call",
    "call.note_sent": "message(s) {message_ids} sent to the model",
    "call.note_delivered": "message(s) {message_ids} delivered",
    "call.note_repeat_ignored": "message {message_id} already taken, ignored",
    "call.dtmf": "the caller pressed {keys} key(s)",
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
        text = clip(text, 200)
    error = _exception_text(record.get("exception"))
    if error:
        text = f"{text} [{error}]" if text else error
    return text


def _exception_text(value: Any) -> str:
    """``Type: message`` of a rendered exception (structlog's dict form or plain text)."""
    if isinstance(value, list) and value and isinstance(value[0], dict):
        first = value[0]
        kind, message = first.get("exc_type"), first.get("exc_value")
        return clip(f"{kind}: {message}" if message else str(kind), 160)
    if isinstance(value, str) and value.strip():
        return clip(value.strip().splitlines()[-1], 160)
    return ""


def author(record: Record) -> str:
    """Who wrote a line: the actor (with its id when that says more), else the logger."""
    kind = field_text(record, "actor")
    actor_id = field_ident(record, "actor_id")
    if kind is not None:
        if actor_id is None or actor_id == record.get("call_sid"):
            return kind
        if actor_id.lower().replace("-", "") in kind.lower():
            return kind
        return f"{kind}[{actor_id}]"
    logger = field_text(record, "logger")
    if logger is not None:
        return logger.removeprefix("tars.")
    return "-"


def short_sid(sid: str) -> str:
    return sid[:14]


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "~"
