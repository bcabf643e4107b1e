"""Reminder times (interim version until the full parser lands)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

__all__ = [
    "ReminderTimeError",
    "describe_due",
    "describe_recurrence",
    "next_occurrence",
    "parse_due",
    "parse_recurrence",
]


class ReminderTimeError(ValueError):
    pass


_RELATIVE = re.compile(r"in\s+(\d+)\s+(second|minute|hour|day)s?", re.IGNORECASE)


def parse_due(text: str, *, now: datetime, tz: ZoneInfo) -> datetime:
    wanted = text.strip()
    match = _RELATIVE.fullmatch(wanted)
    if match:
        amount, unit = int(match[1]), match[2].lower()
        due = now + timedelta(**{f"{unit}s": amount})
    else:
        try:
            due = datetime.fromisoformat(wanted.replace("Z", "+00:00"))
        except ValueError:
            raise ReminderTimeError(f"'{wanted}' is not a time I understand") from None
        if due.tzinfo is None:
            due = due.replace(tzinfo=tz)
    due = due.astimezone(ZoneInfo("UTC"))
    if due <= now:
        raise ReminderTimeError(f"'{wanted}' is in the past")
    return due


def parse_recurrence(text: str | None) -> str | None:
    if not text:
        return None
    value = text.strip().lower()
    if value in ("daily", "weekdays", "weekly"):
        return value
    raise ReminderTimeError(f"'{text}' is not a recurrence I understand")


def next_occurrence(
    recurrence: str, previous_due: datetime, *, tz: ZoneInfo, after: datetime | None = None
) -> datetime | None:
    local = previous_due.astimezone(tz).replace(tzinfo=None)
    while True:
        local += timedelta(days=7 if recurrence == "weekly" else 1)
        if recurrence == "weekdays" and local.weekday() >= 5:
            continue
        due = local.replace(tzinfo=tz).astimezone(ZoneInfo("UTC"))
        if after is None or due > after:
            return due


def describe_due(due: datetime, *, now: datetime, tz: ZoneInfo) -> str:
    local = due.astimezone(tz)
    return local.strftime("%B %d at %I:%M %p")


def describe_recurrence(recurrence: str | None) -> str:
    return {"daily": "every day", "weekdays": "every weekday", "weekly": "every week"}.get(
        recurrence or "", ""
    )
