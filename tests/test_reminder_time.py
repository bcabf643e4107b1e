"""Reminder times: parsing due times and repeats, next occurrences across DST, and speech.

Every test passes a fixed ``now``; nothing reads the clock.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tars_actors.reminders.timing import (
    ReminderTimeError,
    describe_due,
    describe_recurrence,
    next_occurrence,
    parse_due,
    parse_recurrence,
)

BUDAPEST = ZoneInfo("Europe/Budapest")  # CET +01:00, CEST +02:00 from 2026-03-29 to 10-25
NEW_YORK = ZoneInfo("America/New_York")  # EST -05:00, EDT -04:00 from 2026-03-08 to 11-01

#: Tuesday 2026-11-24, 11:00 in Budapest, 05:00 in New York.
NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def local(when: datetime, tz: ZoneInfo = BUDAPEST) -> str:
    """A UTC instant as local wall time, for readable assertions."""
    return when.astimezone(tz).strftime("%a %Y-%m-%d %H:%M")


# --------------------------------------------------------------------------- parse_due


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # ISO 8601 with an offset or Z
        ("2026-11-25T09:00:00+01:00", utc(2026, 11, 25, 8, 0)),
        ("2026-11-25T08:00Z", utc(2026, 11, 25, 8, 0)),
        ("2026-11-25t08:00z", utc(2026, 11, 25, 8, 0)),
        ("2026-11-25T09:00:00-05:00", utc(2026, 11, 25, 14, 0)),
        # ISO 8601 without an offset: wall-clock time in the owner's zone
        ("2026-11-25T09:00", utc(2026, 11, 25, 8, 0)),
        ("2026-11-25 09:00", utc(2026, 11, 25, 8, 0)),
        ("  2026-11-25T09:00:30  ", utc(2026, 11, 25, 8, 0, 30)),
        # relative
        ("in 20 minutes", utc(2026, 11, 24, 10, 20)),
        ("in 1 hour", utc(2026, 11, 24, 11, 0)),
        ("in 2 hours and 30 minutes", utc(2026, 11, 24, 12, 30)),
        ("in 2 hours, 5 mins", utc(2026, 11, 24, 12, 5)),
        ("in 90 seconds", utc(2026, 11, 24, 10, 1, 30)),
        ("in 3 days", utc(2026, 11, 27, 10, 0)),
        ("in 2 weeks", utc(2026, 12, 8, 10, 0)),
        ("in a minute", utc(2026, 11, 24, 10, 1)),
        ("in an hour", utc(2026, 11, 24, 11, 0)),
        ("in half an hour", utc(2026, 11, 24, 10, 30)),
        ("in an hour and a half", utc(2026, 11, 24, 11, 30)),
        ("in 2 and a half hours", utc(2026, 11, 24, 12, 30)),
        ("in 1.5 hours", utc(2026, 11, 24, 11, 30)),
        ("in five minutes", utc(2026, 11, 24, 10, 5)),
        ("  IN 20 Minutes ", utc(2026, 11, 24, 10, 20)),
        # a time of day (now is 11:00 in Budapest)
        ("tomorrow at 9", utc(2026, 11, 25, 8, 0)),
        ("tomorrow at 9:30", utc(2026, 11, 25, 8, 30)),
        ("tomorrow at 17:45", utc(2026, 11, 25, 16, 45)),
        ("Tomorrow 7 PM", utc(2026, 11, 25, 18, 0)),
        ("today at 18:00", utc(2026, 11, 24, 17, 0)),
        ("today at noon", utc(2026, 11, 24, 11, 0)),
        ("9:30 tomorrow", utc(2026, 11, 25, 8, 30)),
        ("at 7:15 am tomorrow", utc(2026, 11, 25, 6, 15)),
        ("at 7pm", utc(2026, 11, 24, 18, 0)),  # still ahead today
        ("at 7:15 am", utc(2026, 11, 25, 6, 15)),  # passed today: tomorrow
        ("at 10", utc(2026, 11, 25, 9, 0)),  # 24-hour clock, passed today: tomorrow
        ("at 12 am", utc(2026, 11, 24, 23, 0)),  # midnight starting Wednesday
        ("at 12pm", utc(2026, 11, 24, 11, 0)),
        ("at 11:30 p.m.", utc(2026, 11, 24, 22, 30)),
        ("17:45", utc(2026, 11, 24, 16, 45)),
        ("7pm", utc(2026, 11, 24, 18, 0)),
    ],
)
def test_parse_due_accepts(text: str, expected: datetime) -> None:
    due = parse_due(text, now=NOW, tz=BUDAPEST)
    assert due == expected
    assert due.tzinfo is UTC


def test_parse_due_returns_utc_for_an_aware_now_in_another_zone() -> None:
    now = NOW.astimezone(NEW_YORK)
    assert parse_due("in 20 minutes", now=now, tz=BUDAPEST) == utc(2026, 11, 24, 10, 20)
    assert parse_due("in 20 minutes", now=now, tz=BUDAPEST).tzinfo is UTC


def test_times_of_day_are_read_in_the_owners_zone() -> None:
    # 05:00 in New York: 9:30 today is still ahead.
    assert parse_due("at 9:30", now=NOW, tz=NEW_YORK) == utc(2026, 11, 24, 14, 30)
    assert parse_due("today at 9:30 am", now=NOW, tz=NEW_YORK) == utc(2026, 11, 24, 14, 30)
    assert parse_due("tomorrow at 9", now=NOW, tz=NEW_YORK) == utc(2026, 11, 25, 14, 0)
    assert parse_due("2026-11-25T09:00", now=NOW, tz=NEW_YORK) == utc(2026, 11, 25, 14, 0)


def test_today_and_tomorrow_follow_the_local_date_not_the_utc_date() -> None:
    late = utc(2026, 11, 24, 23, 30)  # already Wednesday 00:30 in Budapest
    assert parse_due("tomorrow at 9", now=late, tz=BUDAPEST) == utc(2026, 11, 26, 8, 0)
    assert parse_due("today at 9", now=late, tz=BUDAPEST) == utc(2026, 11, 25, 8, 0)


def test_in_days_keeps_the_wall_clock_time_across_spring_forward() -> None:
    friday_9 = utc(2026, 3, 27, 8, 0)  # Friday 09:00 CET
    due = parse_due("in 3 days", now=friday_9, tz=BUDAPEST)
    assert local(due) == "Mon 2026-03-30 09:00"
    assert due == utc(2026, 3, 30, 7, 0)  # 71 hours later: the night lost an hour
    # Hours are elapsed time, not calendar time.
    assert local(parse_due("in 72 hours", now=friday_9, tz=BUDAPEST)) == "Mon 2026-03-30 10:00"


def test_in_days_keeps_the_wall_clock_time_across_fall_back() -> None:
    friday_9 = utc(2026, 10, 23, 7, 0)  # Friday 09:00 CEST
    due = parse_due("in 3 days", now=friday_9, tz=BUDAPEST)
    assert local(due) == "Mon 2026-10-26 09:00"
    assert due == utc(2026, 10, 26, 8, 0)


def test_in_days_landing_in_a_dst_gap_moves_to_the_first_valid_time() -> None:
    saturday_0230 = utc(2026, 3, 28, 1, 30)  # Saturday 02:30 CET; Sunday 02:30 does not exist
    due = parse_due("in 1 day", now=saturday_0230, tz=BUDAPEST)
    assert due == utc(2026, 3, 29, 1, 0)
    assert local(due) == "Sun 2026-03-29 03:00"


def test_iso_without_offset_in_a_dst_gap_is_refused() -> None:
    early = utc(2026, 3, 1, 12, 0)
    with pytest.raises(ReminderTimeError) as caught:
        parse_due("2026-03-29T02:30", now=early, tz=BUDAPEST)
    message = str(caught.value)
    assert "2:30 AM on Sunday, March 29, 2026 does not exist in Europe/Budapest" in message
    assert "3:00 AM" in message  # the first valid time, offered instead


def test_time_of_day_in_a_dst_gap_is_refused() -> None:
    saturday = utc(2026, 3, 28, 12, 0)
    with pytest.raises(ReminderTimeError, match="does not exist in Europe/Budapest"):
        parse_due("tomorrow at 2:30", now=saturday, tz=BUDAPEST)
    sunday_0100 = utc(2026, 3, 29, 0, 0)  # 01:00 CET, an hour before the gap
    with pytest.raises(ReminderTimeError, match="does not exist"):
        parse_due("at 2:30", now=sunday_0100, tz=BUDAPEST)


def test_iso_without_offset_in_a_dst_fold_is_the_first_occurrence() -> None:
    early = utc(2026, 10, 1, 12, 0)
    due = parse_due("2026-10-25T02:30", now=early, tz=BUDAPEST)
    assert due == utc(2026, 10, 25, 0, 30)  # 02:30 CEST, not 02:30 CET (01:30Z)
    # An explicit offset picks the second one.
    assert parse_due("2026-10-25T02:30+01:00", now=early, tz=BUDAPEST) == utc(2026, 10, 25, 1, 30)


@pytest.mark.parametrize(
    "text",
    ["2026-11-24T10:00Z", "2026-11-24T10:59+01:00", "2026-11-24 10:30", "2020-01-01T00:00Z"],
)
def test_parse_due_refuses_times_not_in_the_future(text: str) -> None:
    with pytest.raises(ReminderTimeError, match="is in the past"):
        parse_due(text, now=NOW, tz=BUDAPEST)


def test_past_message_says_when_that_was() -> None:
    with pytest.raises(ReminderTimeError) as caught:
        parse_due("2026-11-24T08:00", now=NOW, tz=BUDAPEST)
    assert str(caught.value) == "'2026-11-24T08:00' is in the past (earlier today at 8:00 AM)"


def test_today_at_a_passed_time_is_refused() -> None:
    with pytest.raises(ReminderTimeError) as caught:
        parse_due("today at 9", now=NOW, tz=BUDAPEST)
    message = str(caught.value)
    assert "that time has already passed today" in message
    assert "it is now 11:00 AM" in message


def test_in_zero_minutes_is_in_the_past() -> None:
    with pytest.raises(ReminderTimeError, match="is in the past"):
        parse_due("in 0 minutes", now=NOW, tz=BUDAPEST)


def test_parse_due_allows_five_years_and_not_more() -> None:
    assert parse_due("2031-11-24T10:00Z", now=NOW, tz=BUDAPEST) == utc(2031, 11, 24, 10, 0)
    for text in ("2031-11-24T10:00:01Z", "in 1900 days", "in 99999999999 days"):
        with pytest.raises(ReminderTimeError, match="more than 5 years ahead"):
            parse_due(text, now=NOW, tz=BUDAPEST)


def test_unparsable_text_is_refused_with_the_accepted_forms() -> None:
    with pytest.raises(ReminderTimeError) as caught:
        parse_due("next blursday", now=NOW, tz=BUDAPEST)
    assert str(caught.value) == (
        "'next blursday' is not a time I understand; use ISO 8601 like "
        "2026-11-25T09:00:00+01:00, 'in 20 minutes', or 'tomorrow at 9:30'"
    )


@pytest.mark.parametrize(
    "text",
    [
        "tomorrow",
        "9",
        "in minutes",
        "in 2 fortnights",
        "in 2 hours and",
        "in -5 minutes",
        "yesterday at 9",
        "2026-13-01T09:00",
        "soon",
    ],
)
def test_parse_due_refuses_unparsable_text(text: str) -> None:
    with pytest.raises(ReminderTimeError, match="is not a time I understand"):
        parse_due(text, now=NOW, tz=BUDAPEST)


@pytest.mark.parametrize("text", ["at 25:00", "at 13pm", "tomorrow at 9:75", "at 0 am"])
def test_parse_due_refuses_impossible_times_of_day(text: str) -> None:
    with pytest.raises(ReminderTimeError, match="is not a valid time of day"):
        parse_due(text, now=NOW, tz=BUDAPEST)


@pytest.mark.parametrize("text", ["", "   "])
def test_parse_due_refuses_empty_text(text: str) -> None:
    with pytest.raises(ReminderTimeError, match="a due time is needed"):
        parse_due(text, now=NOW, tz=BUDAPEST)


def test_parse_due_refuses_non_text() -> None:
    value: Any = 1764000000
    with pytest.raises(ReminderTimeError, match="a due time is needed"):
        parse_due(value, now=NOW, tz=BUDAPEST)


def test_date_without_time_is_refused() -> None:
    with pytest.raises(ReminderTimeError, match="is a date without a time of day"):
        parse_due("2026-11-25", now=NOW, tz=BUDAPEST)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="now must be a timezone-aware datetime") as caught:
        parse_due("in 20 minutes", now=datetime(2026, 11, 24, 10, 0), tz=BUDAPEST)
    assert not isinstance(caught.value, ReminderTimeError)


# --------------------------------------------------------------------------- parse_recurrence


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        ("none", None),
        ("daily", "daily"),
        ("Daily", "daily"),
        (" WEEKDAYS ", "weekdays"),
        ("weekly", "weekly"),
        ("every day", "daily"),
        ("every weekday", "weekdays"),
        ("every week", "weekly"),
        ("RRULE:FREQ=MONTHLY;BYMONTHDAY=1", "RRULE:FREQ=MONTHLY;BYMONTHDAY=1"),
        ("FREQ=MONTHLY;BYMONTHDAY=1", "RRULE:FREQ=MONTHLY;BYMONTHDAY=1"),
        ("rrule:freq=monthly; bymonthday=1;", "RRULE:FREQ=MONTHLY;BYMONTHDAY=1"),
        ("BYDAY=TU,TH;FREQ=WEEKLY;INTERVAL=2", "RRULE:FREQ=WEEKLY;BYDAY=TU,TH;INTERVAL=2"),
        ("FREQ=MONTHLY;BYDAY=-1FR", "RRULE:FREQ=MONTHLY;BYDAY=-1FR"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "RRULE:FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29"),
        ("FREQ=DAILY;BYHOUR=9,17;BYMINUTE=0", "RRULE:FREQ=DAILY;BYHOUR=9,17;BYMINUTE=0"),
        ("FREQ=HOURLY", "RRULE:FREQ=HOURLY"),
        ("FREQ=DAILY;UNTIL=20261231", "RRULE:FREQ=DAILY;UNTIL=20261231"),
        ("FREQ=DAILY;UNTIL=20261231T170000Z", "RRULE:FREQ=DAILY;UNTIL=20261231T170000Z"),
    ],
)
def test_parse_recurrence_accepts(text: str | None, expected: str | None) -> None:
    assert parse_recurrence(text) == expected


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("garbage", "is not a repeat I understand"),
        ("monthly", "is not a repeat I understand"),
        ("RRULE:FREQ=DAILY;BYDAY=XX", "is not a valid RRULE"),
        ("FREQ=FORTNIGHTLY", "FREQ=FORTNIGHTLY is not a valid frequency"),
        ("RRULE:BYDAY=MO", "an RRULE needs FREQ"),
        ("FREQ=MINUTELY", "FREQ=MINUTELY is too frequent for a reminder"),
        ("FREQ=SECONDLY;INTERVAL=3600", "FREQ=SECONDLY is too frequent for a reminder"),
        ("FREQ=HOURLY;BYMINUTE=0,10,20", "repeats more often than every 15 minutes"),
        ("DTSTART:20260101T090000\nRRULE:FREQ=DAILY", "DTSTART is not allowed"),
        ("FREQ=DAILY;DTSTART=20260101T090000", "DTSTART is not allowed"),
        ("RRULE:FREQ=DAILY\nEXDATE:20260101T090000", "give a single RRULE and nothing else"),
        ("FREQ=DAILY;COUNT=5", "COUNT is not supported"),
        ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=30", "never occurs"),
        ("FREQ=DAILY;BYMONTH=4;BYMONTHDAY=31", "never occurs"),
        ("FREQ=MONTHLY;BYMONTHDAY=0", "BYMONTHDAY values must be from 1 to 31"),
        ("FREQ=YEARLY;BYMONTH=13", "BYMONTH values must be from 1 to 12"),
        ("FREQ=DAILY;INTERVAL=0", "INTERVAL must be a whole number from 1 to 1000"),
        ("FREQ=DAILY;UNTIL=tomorrow", "UNTIL must look like 20261231"),
        ("FREQ=DAILY;UNTIL=20261331", "UNTIL=20261331 is not a valid date"),
        ("FREQ=DAILY;FREQ=WEEKLY", "FREQ is given twice"),
        ("FREQ=DAILY;X-NAME=x", "X-NAME is not supported"),
        ("FREQ=DAILY;BYHOUR", "is not a valid RRULE"),
    ],
)
def test_parse_recurrence_refuses(text: str, fragment: str) -> None:
    with pytest.raises(ReminderTimeError) as caught:
        parse_recurrence(text)
    assert fragment in str(caught.value)


def test_parse_recurrence_refuses_non_text() -> None:
    value: Any = 7
    with pytest.raises(ReminderTimeError, match="the repeat must be text"):
        parse_recurrence(value)


# --------------------------------------------------------------------------- next_occurrence


def series(recurrence: str, first: datetime, count: int, tz: ZoneInfo = BUDAPEST) -> list[str]:
    """``count`` next occurrences as "local wall | UTC" strings."""
    out: list[str] = []
    due: datetime | None = first
    for _ in range(count):
        assert due is not None
        due = next_occurrence(recurrence, due, tz=tz)
        out.append("end" if due is None else f"{local(due, tz)} | {due:%m-%d %H:%MZ}")
        if due is None:
            break
    return out


def test_daily_keeps_9_local_across_spring_forward() -> None:
    assert series("daily", utc(2026, 3, 27, 8, 0), 4) == [
        "Sat 2026-03-28 09:00 | 03-28 08:00Z",
        "Sun 2026-03-29 09:00 | 03-29 07:00Z",
        "Mon 2026-03-30 09:00 | 03-30 07:00Z",
        "Tue 2026-03-31 09:00 | 03-31 07:00Z",
    ]


def test_daily_keeps_9_local_across_fall_back() -> None:
    assert series("daily", utc(2026, 10, 23, 7, 0), 3) == [
        "Sat 2026-10-24 09:00 | 10-24 07:00Z",
        "Sun 2026-10-25 09:00 | 10-25 08:00Z",
        "Mon 2026-10-26 09:00 | 10-26 08:00Z",
    ]


def test_daily_keeps_wall_time_across_new_york_dst() -> None:
    assert series("daily", utc(2026, 3, 7, 14, 0), 2, NEW_YORK) == [
        "Sun 2026-03-08 09:00 | 03-08 13:00Z",
        "Mon 2026-03-09 09:00 | 03-09 13:00Z",
    ]


def test_weekdays_skips_saturday_and_sunday() -> None:
    assert series("weekdays", utc(2026, 11, 26, 8, 0), 4) == [
        "Fri 2026-11-27 09:00 | 11-27 08:00Z",
        "Mon 2026-11-30 09:00 | 11-30 08:00Z",
        "Tue 2026-12-01 09:00 | 12-01 08:00Z",
        "Wed 2026-12-02 09:00 | 12-02 08:00Z",
    ]


def test_weekdays_from_a_weekend_first_time_starts_on_monday() -> None:
    saturday = utc(2026, 11, 28, 8, 0)
    assert local(next_occurrence("weekdays", saturday, tz=BUDAPEST) or NOW) == (
        "Mon 2026-11-30 09:00"
    )


def test_weekly_keeps_weekday_and_wall_time_across_fall_back() -> None:
    assert series("weekly", utc(2026, 10, 15, 7, 0), 3) == [
        "Thu 2026-10-22 09:00 | 10-22 07:00Z",
        "Thu 2026-10-29 09:00 | 10-29 08:00Z",
        "Thu 2026-11-05 09:00 | 11-05 08:00Z",
    ]


def test_monthly_on_the_31st_skips_short_months() -> None:
    assert series("RRULE:FREQ=MONTHLY;BYMONTHDAY=31", utc(2026, 1, 31, 8, 0), 4) == [
        "Tue 2026-03-31 09:00 | 03-31 07:00Z",
        "Sun 2026-05-31 09:00 | 05-31 07:00Z",
        "Fri 2026-07-31 09:00 | 07-31 07:00Z",
        "Mon 2026-08-31 09:00 | 08-31 07:00Z",
    ]


def test_rrule_with_explicit_time_uses_it() -> None:
    # First due at 11:00; the rule says 17:30 on the last Friday of the month.
    rule = "RRULE:FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17;BYMINUTE=30"
    assert series(rule, utc(2026, 11, 24, 10, 0), 2) == [
        "Fri 2026-11-27 17:30 | 11-27 16:30Z",
        "Fri 2026-12-25 17:30 | 12-25 16:30Z",
    ]


def test_count_exhausted_rule_returns_none() -> None:
    # COUNT counts from the previous due time, which is itself the first occurrence.
    assert next_occurrence("RRULE:FREQ=DAILY;COUNT=1", utc(2026, 1, 5, 8, 0), tz=BUDAPEST) is None
    three = "RRULE:FREQ=DAILY;COUNT=3"
    first = utc(2026, 1, 5, 8, 0)
    assert next_occurrence(three, first, tz=BUDAPEST, after=utc(2026, 1, 6, 9)) == utc(
        2026, 1, 7, 8, 0
    )
    assert next_occurrence(three, first, tz=BUDAPEST, after=utc(2026, 1, 7, 9)) is None


def test_until_as_a_date_includes_that_whole_day() -> None:
    assert series("RRULE:FREQ=DAILY;UNTIL=20260202", utc(2026, 1, 31, 8, 0), 3) == [
        "Sun 2026-02-01 09:00 | 02-01 08:00Z",
        "Mon 2026-02-02 09:00 | 02-02 08:00Z",
        "end",
    ]


def test_until_in_utc_is_an_instant() -> None:
    assert series("RRULE:FREQ=DAILY;UNTIL=20260202T075959Z", utc(2026, 1, 31, 8, 0), 3) == [
        "Sun 2026-02-01 09:00 | 02-01 08:00Z",
        "end",
    ]
    # UNTIL is inclusive: an occurrence exactly at UNTIL still happens.
    assert series("RRULE:FREQ=DAILY;UNTIL=20260202T080000Z", utc(2026, 1, 31, 8, 0), 3) == [
        "Sun 2026-02-01 09:00 | 02-01 08:00Z",
        "Mon 2026-02-02 09:00 | 02-02 08:00Z",
        "end",
    ]


def test_after_skips_missed_occurrences() -> None:
    previous = utc(2026, 11, 20, 8, 0)  # Friday 09:00; the daemon was down until Tuesday 11:00
    assert next_occurrence("daily", previous, tz=BUDAPEST, after=NOW) == utc(2026, 11, 25, 8, 0)
    assert next_occurrence("weekdays", previous, tz=BUDAPEST, after=NOW) == utc(2026, 11, 25, 8)
    assert next_occurrence("weekly", previous, tz=BUDAPEST, after=NOW) == utc(2026, 11, 27, 8)
    # Strictly after: an occurrence exactly at ``after`` is skipped too.
    at_nine = utc(2026, 11, 24, 8, 0)
    assert next_occurrence("daily", previous, tz=BUDAPEST, after=at_nine) == utc(2026, 11, 25, 8)
    # An ``after`` before the previous due time changes nothing.
    assert next_occurrence("daily", previous, tz=BUDAPEST, after=utc(2026, 1, 1)) == utc(
        2026, 11, 21, 8, 0
    )


def test_after_skips_across_a_dst_change() -> None:
    previous = utc(2026, 3, 20, 8, 0)  # 09:00 CET
    after = utc(2026, 4, 2, 12, 0)
    assert next_occurrence("daily", previous, tz=BUDAPEST, after=after) == utc(2026, 4, 3, 7, 0)


def test_daily_wall_time_in_a_dst_gap_moves_to_the_first_valid_time() -> None:
    # 02:30 does not exist on 2026-03-29: that occurrence is at 03:00 CEST, and the series
    # then follows 03:00 (the previous due time is all next_occurrence knows).
    assert series("daily", utc(2026, 3, 27, 1, 30), 3) == [
        "Sat 2026-03-28 02:30 | 03-28 01:30Z",
        "Sun 2026-03-29 03:00 | 03-29 01:00Z",
        "Mon 2026-03-30 03:00 | 03-30 01:00Z",
    ]


def test_rrule_with_explicit_time_returns_to_it_after_a_dst_gap() -> None:
    rule = "RRULE:FREQ=DAILY;BYHOUR=2;BYMINUTE=30"
    assert series(rule, utc(2026, 3, 28, 1, 30), 2) == [
        "Sun 2026-03-29 03:00 | 03-29 01:00Z",
        "Mon 2026-03-30 02:30 | 03-30 00:30Z",
    ]


def test_daily_wall_time_in_a_dst_fold_is_the_first_occurrence() -> None:
    assert series("daily", utc(2026, 10, 24, 0, 30), 2) == [
        "Sun 2026-10-25 02:30 | 10-25 00:30Z",  # CEST, the first 02:30
        "Mon 2026-10-26 02:30 | 10-26 01:30Z",
    ]


def test_hourly_never_repeats_an_instant_across_spring_forward() -> None:
    rule = "RRULE:FREQ=HOURLY;BYMINUTE=0"
    assert series(rule, utc(2026, 3, 28, 23, 0), 3) == [
        "Sun 2026-03-29 01:00 | 03-29 00:00Z",
        "Sun 2026-03-29 03:00 | 03-29 01:00Z",
        "Sun 2026-03-29 04:00 | 03-29 02:00Z",
    ]


def test_rule_with_no_date_from_this_start_returns_none() -> None:
    # Yearly in February on the start's day of month: there is no February 30.
    rule = "RRULE:FREQ=YEARLY;BYMONTH=2"
    assert next_occurrence(rule, utc(2026, 1, 30, 8, 0), tz=BUDAPEST) is None
    assert next_occurrence(rule, utc(2026, 1, 3, 8, 0), tz=BUDAPEST) == utc(2026, 2, 3, 8, 0)


@pytest.mark.parametrize("recurrence", ["garbage", "RRULE:FREQ=DAILY;BYDAY=XX", "FREQ=MINUTELY"])
def test_next_occurrence_refuses_invalid_recurrences(recurrence: str) -> None:
    with pytest.raises(ReminderTimeError):
        next_occurrence(recurrence, NOW, tz=BUDAPEST)


def test_next_occurrence_refuses_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="previous_due must be a timezone-aware datetime"):
        next_occurrence("daily", datetime(2026, 11, 24, 9, 0), tz=BUDAPEST)
    with pytest.raises(ValueError, match="after must be a timezone-aware datetime"):
        next_occurrence("daily", NOW, tz=BUDAPEST, after=datetime(2026, 11, 24, 9, 0))


def test_every_accepted_recurrence_has_a_next_occurrence() -> None:
    for text in ("daily", "weekdays", "weekly", "FREQ=MONTHLY;BYMONTHDAY=1", "FREQ=HOURLY"):
        recurrence = parse_recurrence(text)
        assert recurrence is not None
        following = next_occurrence(recurrence, NOW, tz=BUDAPEST)
        assert following is not None
        assert NOW < following <= NOW + timedelta(days=31)


# --------------------------------------------------------------------------- describe_due


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        (utc(2026, 11, 24, 14, 30), "today at 9:30 AM"),
        (utc(2026, 11, 24, 17, 0), "today at 12:00 PM"),
        (utc(2026, 11, 25, 5, 0), "tomorrow at 12:00 AM"),
        (utc(2026, 11, 25, 22, 0), "tomorrow at 5:00 PM"),
        (utc(2026, 11, 26, 14, 0), "on Thursday at 9:00 AM"),
        (utc(2026, 11, 30, 14, 5), "on Monday at 9:05 AM"),
        (utc(2026, 12, 1, 14, 0), "on December 1, 2026 at 9:00 AM"),
        (utc(2026, 12, 24, 13, 0), "on December 24, 2026 at 8:00 AM"),
        (utc(2027, 1, 2, 23, 59), "on January 2, 2027 at 6:59 PM"),
        # past
        (utc(2026, 11, 24, 9, 0), "earlier today at 4:00 AM"),
        (utc(2026, 11, 23, 13, 0), "yesterday at 8:00 AM"),
        (utc(2026, 11, 20, 13, 0), "on November 20 at 8:00 AM"),
        (utc(2025, 12, 31, 13, 0), "on December 31, 2025 at 8:00 AM"),
    ],
)
def test_describe_due_in_new_york(due: datetime, expected: str) -> None:
    assert describe_due(due, now=NOW, tz=NEW_YORK) == expected  # now: Tuesday 5:00 AM


@pytest.mark.parametrize(
    ("due", "expected"),
    [
        (utc(2026, 11, 24, 8, 30), "earlier today at 9:30 AM"),
        (utc(2026, 11, 24, 10, 0), "today at 11:00 AM"),
        (utc(2026, 11, 24, 22, 59), "today at 11:59 PM"),
        (utc(2026, 11, 24, 23, 0), "tomorrow at 12:00 AM"),  # still the 24th in UTC
        (utc(2026, 11, 25, 16, 0), "tomorrow at 5:00 PM"),
        (utc(2026, 11, 28, 8, 0), "on Saturday at 9:00 AM"),
        (utc(2026, 12, 24, 7, 0), "on December 24, 2026 at 8:00 AM"),
        (utc(2026, 11, 23, 22, 59), "yesterday at 11:59 PM"),
        (utc(2026, 11, 20, 7, 0), "on November 20 at 8:00 AM"),
    ],
)
def test_describe_due_in_budapest(due: datetime, expected: str) -> None:
    assert describe_due(due, now=NOW, tz=BUDAPEST) == expected  # now: Tuesday 11:00 AM


def test_describe_due_uses_local_time_across_dst() -> None:
    now = utc(2026, 3, 27, 12, 0)
    assert describe_due(utc(2026, 3, 30, 7, 0), now=now, tz=BUDAPEST) == "on Monday at 9:00 AM"


def test_parse_then_describe_round_trip() -> None:
    due = parse_due("tomorrow at 17:45", now=NOW, tz=BUDAPEST)
    assert describe_due(due, now=NOW, tz=BUDAPEST) == "tomorrow at 5:45 PM"


# --------------------------------------------------------------------------- describe_recurrence


@pytest.mark.parametrize(
    ("recurrence", "expected"),
    [
        (None, ""),
        ("", ""),
        ("daily", "every day"),
        ("weekdays", "every weekday"),
        ("weekly", "every week"),
        ("RRULE:FREQ=MONTHLY;BYMONTHDAY=1", "repeating (RRULE:FREQ=MONTHLY;BYMONTHDAY=1)"),
    ],
)
def test_describe_recurrence(recurrence: str | None, expected: str) -> None:
    assert describe_recurrence(recurrence) == expected
