"""The owner's reminder tools: ``create_reminder``, ``list_reminders``, ``cancel_reminder``.

Times are resolved in ``[owner] timezone`` and stored in UTC; the ReminderScheduler is told
of every change so that its timer follows.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from tars_actors.call.caller_words import for_model
from tars_actors.messaging.tools import ToolServices
from tars_actors.reminders.book import ReminderError
from tars_actors.reminders.timing import (
    ReminderTimeError,
    describe_due,
    describe_recurrence,
    next_occurrence,
    parse_due,
    parse_recurrence,
)
from tars_actors.store import ReminderKind
from tars_actors.tools.registry import Param, ToolContext, ToolOutcome, ToolSpec

__all__ = ["reminder_tools"]

log = structlog.get_logger("tars.tools")


def reminder_tools(services: ToolServices) -> list[ToolSpec]:
    tz = ZoneInfo(services.settings.owner.timezone)
    store = services.store

    def create_reminder(context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        now = services.clock()
        try:
            due = parse_due(args["due"], now=now, tz=tz)
            recurrence = parse_recurrence(args.get("recurrence"))
            repeats = recurrence is None or next_occurrence(recurrence, due, tz=tz) is not None
        except ReminderTimeError as error:
            return ToolOutcome(response={"error": str(error)})
        if not repeats:
            when = describe_due(due, now=now, tz=tz)
            return ToolOutcome(
                response={
                    "error": f"the repeat rule {recurrence} has no occurrence after {when}: "
                    "it would never repeat"
                }
            )
        with store.connection():
            try:
                reminder = services.reminder_book().create(
                    title=args["title"],
                    due_at=due,
                    recurrence=recurrence,
                    created_by_session_id=context.session_id,
                )
            except ReminderError as error:
                return ToolOutcome(response={"error": str(error)})
        services.tell_reminders()
        repeat = describe_recurrence(recurrence)
        when = describe_due(due, now=now, tz=tz)
        log.info("tool.reminder_created", reminder_id=reminder.id, due_at=due.isoformat())
        return ToolOutcome(
            response={
                "ok": True,
                "reminder_id": reminder.id,
                "result": f"Reminder set for {when}" + (f", {repeat}" if repeat else ""),
            }
        )

    def list_reminders(_context: ToolContext, _args: Mapping[str, Any]) -> ToolOutcome:
        now = services.clock()
        with store.connection():
            upcoming = services.reminder_book().upcoming(limit=20)
        items = [
            {
                "reminder_id": r.id,
                "title": for_model(r.title),
                "when": describe_due(r.due_at, now=now, tz=tz),
                "repeats": describe_recurrence(r.recurrence),
                "kind": "callback request" if r.kind == ReminderKind.CALLBACK else "reminder",
            }
            for r in upcoming
        ]
        result = f"{len(items)} upcoming" if items else "no upcoming reminders"
        return ToolOutcome(response={"ok": True, "reminders": items, "result": result})

    def cancel_reminder(_context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
        with store.connection():
            try:
                reminder = services.reminder_book().cancel(args["reminder_id"])
            except ReminderError as error:
                return ToolOutcome(response={"error": str(error)})
        services.tell_reminders()
        cancelled = for_model(f'Cancelled "{reminder.title}"')
        return ToolOutcome(response={"ok": True, "result": cancelled})

    return [
        ToolSpec(
            name="create_reminder",
            description=(
                "Remind the owner of something at a time: in their live call if they are on "
                "one, otherwise by a call or a text message."
            ),
            params={
                "title": Param(type="string", description="What to remind about.", max_length=500),
                "due": Param(
                    type="string",
                    description=(
                        "When: ISO 8601 with offset (2026-11-25T09:00:00+01:00), or relative "
                        "such as 'in 20 minutes' or 'tomorrow at 9:30'."
                    ),
                    max_length=100,
                ),
                "recurrence": Param(
                    type="string",
                    description="Optional: daily, weekdays, weekly, or an RFC 5545 RRULE.",
                    required=False,
                    max_length=300,
                ),
            },
            handler=create_reminder,
            slow=True,
        ),
        ToolSpec(
            name="list_reminders",
            description="List the upcoming reminders and callback requests, soonest first.",
            handler=list_reminders,
            slow=True,
        ),
        ToolSpec(
            name="cancel_reminder",
            description="Cancel an upcoming reminder (and its repeats) by its id.",
            params={
                "reminder_id": Param(
                    type="integer", description="The id from list_reminders.", minimum=1
                )
            },
            handler=cancel_reminder,
            slow=True,
        ),
    ]
