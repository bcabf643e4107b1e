"""Reminder times: parse what the owner asked for, compute repeats, and say times aloud.

Rules:

* Every instant is stored and returned as an aware UTC ``datetime``; it is only spoken in
  the owner's IANA zone (``tz``). Nothing here reads the clock: callers pass ``now``.
* ``parse_due`` accepts ISO 8601 with an offset or ``Z``; ISO 8601 without an offset
  (``2026-11-25T09:00`` or ``2026-11-25 09:00``), read as wall-clock time in ``tz``;
  relative times (``in 20 minutes``, ``in 2 hours and 30 minutes``, ``in half an hour``,
  ``in 3 days``, ``in 2 weeks``); and a time of day (``tomorrow at 9:30``,
  ``today at 18:00``, ``at 7pm``, ``7:15 am tomorrow``). The result must be after ``now`` and
  at most five years ahead.
* Days and weeks, in relative times and in repeats, are calendar days in ``tz``: the
  wall-clock time is kept across a DST change, so the UTC time shifts by the DST step.
* A wall time the owner names explicitly that does not exist (it falls in a DST gap) is
  refused; a computed one (a repeat, ``in 1 day``) moves forward to the first valid local
  time after the gap, i.e. the instant of the change. An ambiguous wall time (DST fold)
  is the first of its two instants (``fold=0``).
* A repeat is ``daily``, ``weekdays`` (Mon-Fri), ``weekly``, or one RFC 5545 RRULE
  (at most hourly, no ``DTSTART``, no ``COUNT``). Each next occurrence is derived from
  the previous due time alone, expanded in local wall time with the previous due time
  as ``DTSTART``; ``UNTIL`` in UTC (``Z``) is absolute, without ``Z`` it is local wall
  time, and a date alone includes that whole day.
* A wall time moved out of a DST gap is the one the next repeat follows: a daily 02:30
  moved to 03:00 on the spring-forward day stays at 03:00. An RRULE with ``BYHOUR`` and
  ``BYMINUTE`` does not drift.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

from dateutil.relativedelta import relativedelta
from dateutil.rrule import rrule, rrulestr

__all__ = [
    "ReminderTimeError",
    "describe_due",
    "describe_recurrence",
    "next_occurrence",
    "parse_due",
    "parse_recurrence",
]

#: How far ahead a reminder may be set.
MAX_AHEAD = relativedelta(years=5)
#: Occurrences of a repeat closer together than this are refused as too frequent.
MIN_REPEAT_GAP = timedelta(minutes=15)
#: Largest INTERVAL accepted in an RRULE.
MAX_INTERVAL = 1000

_HINT = "use ISO 8601 like 2026-11-25T09:00:00+01:00, 'in 20 minutes', or 'tomorrow at 9:30'"
_REPEAT_HINT = (
    "use daily, weekdays, weekly, or an RFC 5545 RRULE such as RRULE:FREQ=MONTHLY;BYMONTHDAY=1"
)

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class ReminderTimeError(ValueError):
    """A time or repeat that cannot be used, in words the model can read back to the owner."""


# --------------------------------------------------------------------------- wall time


def _require_aware(value: datetime, name: str) -> None:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime, got {value!r}")


def _local_naive(instant: datetime, tz: ZoneInfo) -> datetime:
    return instant.astimezone(tz).replace(tzinfo=None)


def _wall_to_utc(wall: datetime, tz: ZoneInfo) -> tuple[datetime, bool]:
    """The UTC instant of naive local ``wall`` and whether it fell in a DST gap.

    A fold gives the first instant; a gap gives the instant of the change, which is the
    first valid local time after the gap.
    """
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    if _local_naive(first, tz) == wall:
        return first, False
    # In a gap fold=0 uses the offset before the change and fold=1 the one after, so the
    # change lies between the two readings; find the first second whose local time is
    # past the wall time.
    low = int(wall.replace(tzinfo=tz, fold=1).astimezone(UTC).timestamp()) - 1
    high = int(first.timestamp()) + 1
    while high - low > 1:
        middle = (low + high) // 2
        if _local_naive(datetime.fromtimestamp(middle, UTC), tz) > wall:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC), True


def _named_wall_to_utc(wall: datetime, tz: ZoneInfo) -> datetime:
    """Like ``_wall_to_utc`` for a time the owner named: a time in a DST gap is refused."""
    instant, shifted = _wall_to_utc(wall, tz)
    if shifted:
        raise ReminderTimeError(
            f"{_clock(wall)} on {_long_date(wall.date())} does not exist in {tz.key}: the "
            f"clocks jump forward then; choose another time such as "
            f"{_clock(_local_naive(instant, tz))}"
        )
    return instant


# --------------------------------------------------------------------------- parse_due

_NUMBER_WORDS = {
    "a": 1.0,
    "an": 1.0,
    "one": 1.0,
    "two": 2.0,
    "three": 3.0,
    "four": 4.0,
    "five": 5.0,
    "six": 6.0,
    "seven": 7.0,
    "eight": 8.0,
    "nine": 9.0,
    "ten": 10.0,
    "half a": 0.5,
    "half an": 0.5,
}
_UNIT_SECONDS = {"second": 1, "minute": 60, "hour": 3600}
_UNITS = {
    "seconds": "second",
    "second": "second",
    "secs": "second",
    "sec": "second",
    "minutes": "minute",
    "minute": "minute",
    "mins": "minute",
    "min": "minute",
    "hours": "hour",
    "hour": "hour",
    "hrs": "hour",
    "hr": "hour",
    "days": "day",
    "day": "day",
    "weeks": "week",
    "week": "week",
}
_NUMBER = r"\d+(?:\.\d+)?|half an?|an?|one|two|three|four|five|six|seven|eight|nine|ten"
_UNIT = "|".join(sorted(_UNITS, key=len, reverse=True))
_AMOUNT = re.compile(rf"(?P<n>{_NUMBER})(?P<h1> and a half)? (?P<u>{_UNIT})\b(?P<h2> and a half)?")
_SEPARATOR = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+|\s+")
_TIME = (
    r"(?P<h>\d{1,2})(?::(?P<m>\d{2}))?(?:\s*(?P<ampm>[ap])\.?m\.?)?(?:\s*o'?clock)?|(?P<noon>noon)"
)
_DAY_THEN_TIME = re.compile(rf"(?P<day>today|tomorrow)(?: at)? (?:{_TIME})")
_TIME_THEN_DAY = re.compile(rf"(?:at )?(?:{_TIME}) (?P<day>today|tomorrow)")
_AT_TIME = re.compile(rf"(?P<at>at )?(?:{_TIME})")
_DATE_ONLY = re.compile(r"[^T ]*")


def _quote(text: str) -> str:
    shown = text if len(text) <= 60 else text[:57] + "..."
    return f"'{shown}'"


def _parse_iso(text: str, tz: ZoneInfo) -> datetime | None:
    candidate = text.upper()
    if candidate.endswith("Z"):
        candidate = candidate[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(candidate)
    except ValueError:
        return None
    if _DATE_ONLY.fullmatch(candidate):
        raise ReminderTimeError(
            f"{_quote(text)} is a date without a time of day; add the time, like {text}T09:00"
        )
    if parsed.tzinfo is not None:
        return parsed.astimezone(UTC)
    return _named_wall_to_utc(parsed, tz)


def _parse_relative(text: str, *, now: datetime, tz: ZoneInfo) -> datetime | None:
    if not text.startswith("in "):
        return None
    body = text[3:]
    days = 0.0
    seconds = 0.0
    position = 0
    while True:
        match = _AMOUNT.match(body, position)
        if match is None:
            return None
        number = match["n"]
        amount = _NUMBER_WORDS[number] if number in _NUMBER_WORDS else float(number)
        if match["h1"] or match["h2"]:
            amount += 0.5
        unit = _UNITS[match["u"]]
        if unit == "day":
            days += amount
        elif unit == "week":
            days += 7 * amount
        else:
            seconds += amount * _UNIT_SECONDS[unit]
        position = match.end()
        if position == len(body):
            break
        separator = _SEPARATOR.match(body, position)
        if separator is None:
            return None
        position = separator.end()
    if days + seconds / 86400 > 366 * 6:
        raise ReminderTimeError(f"{_quote(text)} is more than 5 years ahead; choose a nearer time")
    whole_days = int(days)
    seconds += (days - whole_days) * 86400
    if whole_days:
        wall = _local_naive(now, tz) + timedelta(days=whole_days)
        start, _ = _wall_to_utc(wall, tz)
    else:
        start = now.astimezone(UTC)
    return start + timedelta(seconds=seconds)


def _time_of_day(match: re.Match[str], text: str) -> time:
    if match["noon"]:
        return time(12, 0)
    hour, minute = int(match["h"]), int(match["m"] or 0)
    ampm = match["ampm"]
    if minute > 59 or (ampm and not 1 <= hour <= 12) or hour > 23:
        raise ReminderTimeError(f"{_quote(text)} is not a valid time of day; {_HINT}")
    if ampm == "a" and hour == 12:
        hour = 0
    elif ampm == "p" and hour != 12:
        hour += 12
    return time(hour, minute)


def _parse_time_of_day(text: str, *, now: datetime, tz: ZoneInfo) -> datetime | None:
    today = _local_naive(now, tz).date()
    match = _DAY_THEN_TIME.fullmatch(text) or _TIME_THEN_DAY.fullmatch(text)
    if match is not None:
        wanted = _time_of_day(match, text)
        if match["day"] == "tomorrow":
            return _named_wall_to_utc(datetime.combine(today + timedelta(days=1), wanted), tz)
        due = _named_wall_to_utc(datetime.combine(today, wanted), tz)
        if due <= now:
            raise ReminderTimeError(
                f"{_quote(text)}: that time has already passed today "
                f"(it is now {_clock(_local_naive(now, tz))})"
            )
        return due
    match = _AT_TIME.fullmatch(text)
    # A bare number ("9") is too vague; "at 9", "9:30" and "9pm" are times of day.
    if match is None or not (match["at"] or match["m"] or match["ampm"] or match["noon"]):
        return None
    wanted = _time_of_day(match, text)
    # Today if that is still ahead (a time in today's DST gap is refused), else tomorrow.
    wall = datetime.combine(today, wanted)
    due, _ = _wall_to_utc(wall, tz)
    if due > now:
        return _named_wall_to_utc(wall, tz)
    return _named_wall_to_utc(wall + timedelta(days=1), tz)


def parse_due(text: str, *, now: datetime, tz: ZoneInfo) -> datetime:
    """The aware UTC instant ``text`` names, which must be after ``now`` and at most five
    years ahead; ``ReminderTimeError`` otherwise. See the module docstring for the forms."""
    _require_aware(now, "now")
    if not isinstance(text, str) or not text.strip():
        raise ReminderTimeError(f"a due time is needed; {_HINT}")
    stripped = text.strip()
    spoken = " ".join(stripped.lower().split())
    due = (
        _parse_iso(stripped, tz)
        or _parse_relative(spoken, now=now, tz=tz)
        or _parse_time_of_day(spoken, now=now, tz=tz)
    )
    if due is None:
        raise ReminderTimeError(f"{_quote(stripped)} is not a time I understand; {_HINT}")
    if due <= now:
        raise ReminderTimeError(
            f"{_quote(stripped)} is in the past ({describe_due(due, now=now, tz=tz)})"
        )
    if due > now + MAX_AHEAD:
        raise ReminderTimeError(
            f"{_quote(stripped)} is more than 5 years ahead; choose a nearer time"
        )
    return due


# --------------------------------------------------------------------------- repeats

_NAMED_REPEATS = {
    "daily": "daily",
    "every day": "daily",
    "weekdays": "weekdays",
    "every weekday": "weekdays",
    "weekly": "weekly",
    "every week": "weekly",
}
_NO_REPEAT = frozenset({"none", "once", "never"})
_NAMED_RULES = {
    "daily": "FREQ=DAILY",
    "weekdays": "FREQ=WEEKLY;BYDAY=MO,TU,WE,TH,FR",
    "weekly": "FREQ=WEEKLY",
}
_RULE_KEYS = frozenset(
    {
        "FREQ",
        "INTERVAL",
        "UNTIL",
        "COUNT",
        "BYSECOND",
        "BYMINUTE",
        "BYHOUR",
        "BYDAY",
        "BYMONTHDAY",
        "BYYEARDAY",
        "BYWEEKNO",
        "BYMONTH",
        "BYSETPOS",
        "WKST",
    }
)
_FREQUENCIES = frozenset({"YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY"})
#: Allowed absolute values of numeric BY parts dateutil would silently accept.
_BY_RANGES = {"BYMONTH": (1, 12), "BYMONTHDAY": (1, 31), "BYYEARDAY": (1, 366), "BYWEEKNO": (1, 53)}
_UNTIL = re.compile(r"(?P<date>\d{8})(?:T(?P<time>\d{6})(?P<utc>Z)?)?")
#: Validation expands from here to datetime.MAXYEAR: one whole 400-year Gregorian cycle,
#: so a rule that never matches a calendar day is found out in bounded time.
_CYCLE_START = datetime(9599, 1, 1)


@dataclass(frozen=True, slots=True)
class _Rule:
    normalised: str  # "RRULE:FREQ=...;..."
    body: str  # what dateutil expands: no UNTIL, WKST always given
    until: str | None  # the UNTIL value, applied in local wall time


def _split_rule(text: str, *, allow_count: bool = False) -> _Rule:
    raw = re.sub(r"\s+", "", text).upper()
    shown = _quote(text.strip())
    if "DTSTART" in raw:
        raise ReminderTimeError(
            f"{shown}: DTSTART is not allowed in the repeat; it starts at the reminder's due time"
        )
    raw = raw.removeprefix("RRULE:")
    if ":" in raw:
        raise ReminderTimeError(f"{shown}: give a single RRULE and nothing else; {_REPEAT_HINT}")
    parts: dict[str, str] = {}
    for part in filter(None, raw.split(";")):
        key, equals, value = part.partition("=")
        if not equals or not value:
            raise ReminderTimeError(f"{shown} is not a valid RRULE ({part!r}); {_REPEAT_HINT}")
        if key not in _RULE_KEYS:
            raise ReminderTimeError(f"{shown}: {key} is not supported in a reminder's RRULE")
        if key in parts:
            raise ReminderTimeError(f"{shown}: {key} is given twice")
        parts[key] = value
    frequency = parts.get("FREQ")
    if frequency is None:
        raise ReminderTimeError(f"{shown}: an RRULE needs FREQ; {_REPEAT_HINT}")
    if frequency in ("MINUTELY", "SECONDLY"):
        raise ReminderTimeError(
            f"{shown}: FREQ={frequency} is too frequent for a reminder; the most frequent is "
            "FREQ=HOURLY"
        )
    if frequency not in _FREQUENCIES:
        raise ReminderTimeError(f"{shown}: FREQ={frequency} is not a valid frequency")
    if "COUNT" in parts and not allow_count:
        raise ReminderTimeError(
            f"{shown}: COUNT is not supported, because each reminder remembers only its next "
            "time; end the repeat with UNTIL=YYYYMMDD instead"
        )
    if "COUNT" in parts and ("UNTIL" in parts or not parts["COUNT"].isdigit()):
        raise ReminderTimeError(f"{shown}: COUNT must be a whole number and without UNTIL")
    interval = parts.get("INTERVAL", "1")
    if not interval.isdigit() or not 1 <= int(interval) <= MAX_INTERVAL:
        raise ReminderTimeError(f"{shown}: INTERVAL must be a whole number from 1 to 1000")
    for key, (low, high) in _BY_RANGES.items():
        for item in parts.get(key, "").split(",") if key in parts else ():
            if not re.fullmatch(r"[+-]?\d+", item) or not low <= abs(int(item)) <= high:
                raise ReminderTimeError(
                    f"{shown}: {key} values must be from {low} to {high} (or -{high} to -{low})"
                )
    until = parts.pop("UNTIL", None)
    if until is not None and not _UNTIL.fullmatch(until):
        raise ReminderTimeError(
            f"{shown}: UNTIL must look like 20261231, 20261231T170000 or 20261231T170000Z"
        )
    ordered = {"FREQ": frequency, **parts}
    normalised = dict(ordered)
    if until is not None:
        normalised["UNTIL"] = until
    body = dict(ordered)
    body.setdefault("WKST", "MO")  # dateutil would otherwise follow calendar.firstweekday()
    return _Rule(
        normalised="RRULE:" + ";".join(f"{k}={v}" for k, v in normalised.items()),
        body=";".join(f"{k}={v}" for k, v in body.items()),
        until=until,
    )


def _expand(rule: _Rule, dtstart: datetime) -> rrule:
    """The dateutil rule from naive local ``dtstart``, without UNTIL."""
    try:
        expanded = rrulestr("RRULE:" + rule.body, dtstart=dtstart)
    except (ValueError, TypeError, KeyError, IndexError, OverflowError) as error:
        raise ReminderTimeError(
            f"{_quote(rule.normalised)} is not a valid RRULE ({error}); {_REPEAT_HINT}"
        ) from None
    if not isinstance(expanded, rrule):  # pragma: no cover - a single RRULE line
        raise ReminderTimeError(f"{_quote(rule.normalised)} is not a single RRULE")
    return expanded


def _until_wall(until: str, tz: ZoneInfo) -> datetime:
    match = _UNTIL.fullmatch(until)
    assert match is not None  # checked by _split_rule
    try:
        day = datetime.strptime(match["date"], "%Y%m%d")
        if match["time"] is None:
            return day.replace(hour=23, minute=59, second=59)
        wall = datetime.strptime(match["date"] + match["time"], "%Y%m%d%H%M%S")
    except ValueError:
        raise ReminderTimeError(f"UNTIL={until} is not a valid date") from None
    if match["utc"]:
        try:
            return _local_naive(wall.replace(tzinfo=UTC), tz)
        except OverflowError:
            # The end of the calendar (UNTIL=99991231T235959Z east of UTC): no end at all.
            return datetime.max
    return wall


def _check_occurs(rule: _Rule) -> None:
    """Refuse a rule that matches no day in a whole Gregorian cycle, or repeats too often."""
    shown = _quote(rule.normalised)
    expanded = _expand(rule, _CYCLE_START)
    if rule.until is not None:
        _until_wall(rule.until, ZoneInfo("UTC"))
    try:
        first = next(iter(expanded.replace(interval=1)), None)
        sample = list(islice(expanded, 500))
    except (ValueError, OverflowError) as error:
        raise ReminderTimeError(f"{shown} is not a usable RRULE ({error})") from None
    if first is None:
        raise ReminderTimeError(f"{shown} never occurs: no date matches it")
    gaps = (later - earlier for earlier, later in pairwise(sample))
    if any(gap < MIN_REPEAT_GAP for gap in gaps):
        raise ReminderTimeError(
            f"{shown} repeats more often than every 15 minutes, which is too frequent for a "
            "reminder"
        )


def parse_recurrence(text: str | None) -> str | None:
    """``None`` for a one-off; ``daily``, ``weekdays``, ``weekly``; or a checked RRULE as
    ``RRULE:FREQ=...``. ``ReminderTimeError`` for anything else."""
    if text is None:
        return None
    if not isinstance(text, str):
        raise ReminderTimeError(f"the repeat must be text; {_REPEAT_HINT}")
    spoken = " ".join(text.lower().split())
    if not spoken or spoken in _NO_REPEAT:
        return None
    if spoken in _NAMED_REPEATS:
        return _NAMED_REPEATS[spoken]
    if not spoken.startswith("rrule:") and "freq=" not in spoken:
        raise ReminderTimeError(
            f"{_quote(text.strip())} is not a repeat I understand; {_REPEAT_HINT}"
        )
    rule = _split_rule(text)
    _check_occurs(rule)
    return rule.normalised


def _rule_for(recurrence: str) -> _Rule:
    named = _NAMED_RULES.get(recurrence.strip().lower())
    return _split_rule(named if named is not None else recurrence, allow_count=True)


def next_occurrence(
    recurrence: str, previous_due: datetime, *, tz: ZoneInfo, after: datetime | None = None
) -> datetime | None:
    """The first occurrence (aware UTC) strictly after ``previous_due`` and after ``after``,
    following wall-clock time in ``tz``; ``None`` once the rule's UNTIL has passed, or
    when dateutil finds no time matching the rule from this start (``ReminderTimeError``
    for a recurrence that is not valid at all).

    The rule is expanded with the previous due time's local wall time as DTSTART, so a
    COUNT (which ``parse_recurrence`` refuses) counts from the previous due time. A wall
    time in a DST gap moves to the first valid local time after it; one in a fold is its
    first instant.
    """
    _require_aware(previous_due, "previous_due")
    threshold = previous_due
    if after is not None:
        _require_aware(after, "after")
        threshold = max(previous_due, after)
    rule = _rule_for(recurrence)
    try:
        expanded = _expand(rule, _local_naive(previous_due, tz))
    except ReminderTimeError:
        _expand(rule, _CYCLE_START)  # a malformed rule raises; one valid elsewhere ends here
        return None
    if rule.until is not None:
        expanded = expanded.replace(until=_until_wall(rule.until, tz))
    for wall in expanded:
        due, _ = _wall_to_utc(wall, tz)
        if due > threshold:
            return due
    return None


# --------------------------------------------------------------------------- speech


def _clock(wall: datetime) -> str:
    hour = wall.hour % 12 or 12
    return f"{hour}:{wall.minute:02d} {'AM' if wall.hour < 12 else 'PM'}"


def _long_date(day: date) -> str:
    return f"{_WEEKDAYS[day.weekday()]}, {_MONTHS[day.month - 1]} {day.day}, {day.year}"


def describe_due(due: datetime, *, now: datetime, tz: ZoneInfo) -> str:
    """``due`` as spoken in ``tz``: "today at 9:30 AM", "tomorrow at 5:00 PM",
    "on Thursday at 9:00 AM" (within a week), "on December 24, 2026 at 8:00 AM"; past:
    "earlier today at 8:00 AM", "yesterday at 8:00 AM", "on November 20 at 8:00 AM"."""
    _require_aware(due, "due")
    _require_aware(now, "now")
    wall = _local_naive(due, tz)
    today = _local_naive(now, tz).date()
    days = (wall.date() - today).days
    at = f"at {_clock(wall)}"
    month_day = f"{_MONTHS[wall.month - 1]} {wall.day}"
    if due < now:
        if days == 0:
            return f"earlier today {at}"
        if days == -1:
            return f"yesterday {at}"
        if wall.year == today.year:
            return f"on {month_day} {at}"
        return f"on {month_day}, {wall.year} {at}"
    if days == 0:
        return f"today {at}"
    if days == 1:
        return f"tomorrow {at}"
    if days < 7:
        return f"on {_WEEKDAYS[wall.weekday()]} {at}"
    return f"on {month_day}, {wall.year} {at}"


def describe_recurrence(recurrence: str | None) -> str:
    """The repeat as spoken: empty for a one-off, "every day", "every weekday",
    "every week", or "repeating (RRULE:...)"."""
    if not recurrence:
        return ""
    named = {"daily": "every day", "weekdays": "every weekday", "weekly": "every week"}
    return named.get(recurrence.strip().lower(), f"repeating ({recurrence})")
