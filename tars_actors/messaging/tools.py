"""Tools for messages between calls and to the owner: ``take_message``, ``request_callback``,
``list_active_sessions``, ``send_message_to_session``, ``broadcast_message``,
``decide_broadcast`` and ``read_messages``.

They run on a tool worker thread (``slow``): each asks the Router or the database, never
on the call's audio path.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pykka
import structlog

from tars_actors.call.caller_words import for_model, quote, visible_length
from tars_actors.call.permissions import Permission
from tars_actors.goals.desk import GoalDesk
from tars_actors.messaging.ledger import MAX_BODY_CHARS, OWNER_TARGET
from tars_actors.messaging.routing import (
    BROADCAST_TARGET,
    DecideBroadcast,
    MessageType,
    Route,
    RouteReply,
    RouterUnavailable,
    Switchboard,
)
from tars_actors.reminders.book import ReminderBook, RemindersChanged
from tars_actors.runtime.settings import Settings
from tars_actors.store import E164_PATTERN, ReminderKind, Store, utcnow
from tars_actors.tools.registry import Param, ToolContext, ToolOutcome, ToolSpec

__all__ = ["ToolServices", "messaging_tools", "words_of"]

log = structlog.get_logger("tars.tools")


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolServices:
    """What tool handlers may use besides their session's context."""

    settings: Settings
    switchboard: Switchboard
    #: The live ReminderScheduler, if any (a restarted one is a new actor).
    reminders: Callable[[], Any | None] = lambda: None
    #: Wall time as an aware UTC datetime (the daemon's timers in tests).
    clock: Callable[[], datetime] = utcnow
    #: Goal calls: placing them and reporting on them.
    goals: GoalDesk | None = None
    #: The live Telephony and CallSupervisor actors, if any.
    telephony: Callable[[], Any | None] = lambda: None
    calls: Callable[[], Any | None] = lambda: None

    @property
    def store(self) -> Store:
        return self.switchboard.ledger.store

    def reminder_book(self) -> ReminderBook:
        """The reminders, with times in ``[owner] timezone`` (on the caller's connection)."""
        return ReminderBook(self.store, ZoneInfo(self.settings.owner.timezone), clock=self.clock)

    def tell_reminders(self) -> None:
        """Tell the ReminderScheduler that reminders changed. If it is not running, the
        change is still stored: its successor schedules from the table when it starts."""
        ref = self.reminders()
        if ref is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(RemindersChanged())
                return
        log.warning("tool.scheduler_not_running")


def _outcome(reply: RouteReply) -> ToolOutcome:
    if not reply.ok:
        return ToolOutcome(response={"error": reply.detail})
    response: dict[str, Any] = {"ok": True, "result": reply.detail}
    if reply.approval_id is not None:
        response["approval_id"] = reply.approval_id
    return ToolOutcome(response=response)


def _ask(services: ToolServices, message: Route | DecideBroadcast) -> ToolOutcome:
    try:
        reply = services.switchboard.ask(message)
    except RouterUnavailable as error:
        log.error("tool.router_unavailable", error=str(error))  # noqa: TRY400 (no traceback to add)
        return ToolOutcome(response={"error": str(error)})
    return _outcome(reply)


def words_of(context: ToolContext, text: str) -> str:
    """``text`` as the session's tool passes it on: marked as a caller's words
    (:mod:`~tars_actors.call.caller_words`) unless the session is the owner's own call."""
    return text if context.permission is Permission.OWNER else quote(text)


def messaging_tools(services: ToolServices) -> list[ToolSpec]:
    """The messaging tools, bound to ``services``."""
    owner = services.settings.owner.name

    def _route(context: ToolContext, body: str, target: str, message_type: str) -> ToolOutcome:
        # The sender is always the session's own name, from its record.
        return _ask(
            services,
            Route(
                sender_session_id=context.session_id,
                sender_name=context.session_name,
                body=body,
                target=target,
                message_type=message_type,
                sender_permission=context.permission,
            ),
        )

    def take_message(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        body = words_of(context, args["message"])
        name = args.get("caller_name")
        if name:
            # What the caller says their name is: a remark in their words, never the sender.
            body = f"{body} (The caller gave their name as {words_of(context, name)}.)"
        length = visible_length(body)
        if length > MAX_BODY_CHARS:
            return ToolOutcome(
                response={
                    "error": f"the message with the caller's name is {length} characters "
                    f"long; the limit is {MAX_BODY_CHARS}: shorten the message"
                }
            )
        return _route(context, body, OWNER_TARGET, MessageType.MESSAGE)

    def request_callback(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        # The owner calls back the number this call comes from (the session's record);
        # another number the caller asks for is passed on as their remark, never as the
        # number to call.
        own = context.caller_number
        number = own if E164_PATTERN.fullmatch(own) else None
        asked = args.get("phone") or ""
        if number is None and not asked:
            return ToolOutcome(
                response={
                    "error": "this caller's number is withheld; ask for a number to call "
                    "back on and pass it as 'phone' (it is passed on as the caller's word, "
                    "unverified)"
                }
            )
        title = (
            f"Callback request from {context.session_name} about "
            f"{words_of(context, args['reason'])}."
        )
        if name := args.get("caller_name"):
            title += f" The caller gave their name as {words_of(context, name)}."
        if asked and asked != number:
            where = "instead" if number else "(their own number is withheld)"
            title += (
                f" They asked to be called back at {words_of(context, asked)} {where}; "
                "that number is not verified."
            )
        with services.store.connection():
            # Due now: the scheduler delivers it to the owner like any reminder.
            reminder = services.reminder_book().create(
                title=title,
                due_at=services.clock(),
                kind=ReminderKind.CALLBACK,
                caller_phone=number,
                created_by_session_id=context.session_id,
            )
        log.info(
            "tool.callback_requested",
            reminder_id=reminder.id,
            phone=number,
            other_number_asked=bool(asked and asked != number),
        )
        services.tell_reminders()
        if number is None:
            result = (
                f"{owner} has the request; this caller's number is withheld, so {owner} gets "
                "the number they gave as their word, unverified"
            )
        else:
            result = f"{owner} will be asked to call back on {number}, the number this call is from"
            if asked and asked != number:
                result += "; the other number they asked for is passed on as their remark"
        return ToolOutcome(response={"ok": True, "result": result})

    def list_active_sessions(context: ToolContext, _args: Mapping[str, Any]) -> ToolOutcome:
        sessions = [
            {
                "id": session.session_id,
                "name": session.name,
                "caller": session.caller_number,
                "permission": str(session.permission),
                "minutes": round(session.seconds() / 60, 1),
                # A reminder call's purpose holds its title: a callback's, a caller's words.
                "purpose": for_model(session.purpose or ""),
                "this_call": session.session_id == context.session_id,
            }
            for session in services.switchboard.presence.all()
        ]
        return ToolOutcome(response={"ok": True, "sessions": sessions})

    def send_message_to_session(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        body = words_of(context, args["message"])
        return _route(context, body, args["session"], MessageType.NOTE)

    def broadcast_message(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        body = words_of(context, args["message"])
        return _route(context, body, BROADCAST_TARGET, MessageType.BROADCAST)

    def decide_broadcast(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        return _ask(
            services,
            DecideBroadcast(
                approval_id=args["approval_id"],
                approve=args["approve"],
                decider_session_id=context.session_id,
            ),
        )

    def read_messages(_context: ToolContext, _args: Mapping[str, Any]) -> ToolOutcome:
        ledger = services.switchboard.ledger
        with services.store.connection():
            unread = ledger.unread_for_owner(limit=20)
            ledger.mark_read(record.id for record in unread)
        messages = [
            {
                "from": record.sender_name,
                "message": for_model(record.body),
                "received_at": record.created_at.isoformat(timespec="minutes"),
            }
            for record in unread
        ]
        return ToolOutcome(
            response={
                "ok": True,
                "messages": messages,
                "result": f"{len(messages)} unread message(s)" if messages else "no new messages",
            }
        )

    body = Param(
        type="string",
        description="The message, in full sentences.",
        max_length=MAX_BODY_CHARS,
    )
    return [
        ToolSpec(
            name="take_message",
            description=(
                f"Take a message for {owner}. It reaches {owner} at once: in their live call "
                "if they are on one, otherwise by text message."
            ),
            params={
                "message": body,
                "caller_name": Param(
                    type="string",
                    description=(
                        "The caller's name, if they gave it (passed on as their word; the "
                        "message is always shown as from this call)."
                    ),
                    required=False,
                    max_length=100,
                ),
            },
            handler=take_message,
            slow=True,
        ),
        ToolSpec(
            name="request_callback",
            description=f"Ask {owner} to call this caller back, with the reason.",
            params={
                "reason": Param(
                    type="string", description="What the call back is about.", max_length=500
                ),
                "caller_name": Param(
                    type="string",
                    description=(
                        "The caller's name, if they gave it (passed on as their word; the "
                        "request is always shown as from this call)."
                    ),
                    required=False,
                    max_length=100,
                ),
                "phone": Param(
                    type="string",
                    description=(
                        "A different number the caller asks to be called back on. It is "
                        f"passed on as their remark only: {owner} calls back the number this "
                        "call comes from, unless it is withheld."
                    ),
                    required=False,
                    max_length=20,
                ),
            },
            handler=request_callback,
            slow=True,
        ),
        ToolSpec(
            name="list_active_sessions",
            description="List the calls that are live now: name, caller, minutes, purpose.",
            handler=list_active_sessions,
            slow=True,
        ),
        ToolSpec(
            name="send_message_to_session",
            description=(
                "Send a message into another live call, named as list_active_sessions "
                "shows it (or by its id). It is passed on at that call's next pause."
            ),
            params={
                "session": Param(
                    type="string", description="The session's name or id.", max_length=100
                ),
                "message": body,
            },
            handler=send_message_to_session,
            slow=True,
        ),
        ToolSpec(
            name="broadcast_message",
            description="Send a message into every other live call.",
            params={"message": body},
            handler=broadcast_message,
            slow=True,
        ),
        ToolSpec(
            name="decide_broadcast",
            description="Approve or deny a broadcast another call asked for, by approval id.",
            params={
                "approval_id": Param(
                    type="integer", description="The approval id from the request.", minimum=1
                ),
                "approve": Param(type="boolean", description="True to approve, false to deny."),
            },
            handler=decide_broadcast,
            slow=True,
        ),
        ToolSpec(
            name="read_messages",
            description=(
                f"Read the messages that arrived while {owner} was not on a call, "
                "and mark them read."
            ),
            handler=read_messages,
            slow=True,
        ),
    ]
