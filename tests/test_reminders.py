"""The ReminderScheduler on a manual clock: precise due times, rescheduling, cancelling,
recurrence across a DST change, no double delivery after a change or a restart, late
delivery after downtime, and each ``[reminders] delivery`` mode through the real Telephony
actor against the Twilio REST stand-in."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pykka
import pytest

from actors.reminder_scheduler import ReminderScheduler
from actors.telephony import RetryPolicy, Telephony
from tars_actors.messaging.ledger import MessageLedger
from tars_actors.messaging.routing import Presence, Switchboard
from tars_actors.reminders.book import ReminderBook, RemindersChanged
from tars_actors.runtime.settings import Secrets, Settings
from tars_actors.runtime.timers import ManualTimers
from tars_actors.sim.twilio_api import Operation, TwilioRestStandIn
from tars_actors.store import Reminder, ReminderKind, ReminderStatus, Store
from tests.waiting import QUIET, never, wait_until

ACCOUNT = "AC" + "1" * 32
TOKEN = "test-auth-token"
NUMBER = "+15550100000"
OWNER = "+15550123456"
BUDAPEST = ZoneInfo("Europe/Budapest")
# 2026-03-28 08:00 in Budapest (CET, UTC+1); the clocks go forward the next night.
T0 = datetime(2026, 3, 28, 7, 0, tzinfo=UTC)
WAIT = 10.0


class Rig:
    def __init__(self, tmp_path: Path, twilio: TwilioRestStandIn) -> None:
        self.twilio = twilio
        self.timers = ManualTimers(start=T0)
        self.store = Store.open(f"sqlite:///{tmp_path / 'tars.db'}")
        self.store.migrate()
        self.store.connect()
        self.book = ReminderBook(self.store, BUDAPEST, clock=self.timers.wall_now)
        self.scheduler: pykka.ActorRef[Any] | None = None
        self.telephony: pykka.ActorRef[Any] | None = None

    def settings(self, delivery: str) -> Settings:
        base = Settings(secrets=Secrets(twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN))
        return base.with_overrides(
            {
                "twilio.api_base_url": self.twilio.base_url,
                "twilio.phone_number": NUMBER,
                "owner.phone": OWNER,
                "owner.timezone": "Europe/Budapest",
                "reminders.delivery": delivery,
                "server.public_url": "https://tars.example.test",
            }
        )

    def start(self, delivery: str = "message") -> None:
        settings = self.settings(delivery)
        self.telephony = Telephony.start(
            settings, retry=RetryPolicy(attempts=1, initial_delay=0.01, max_delay=0.01)
        )
        self.start_scheduler(delivery)

    def restart_scheduler(self) -> None:
        assert self.scheduler is not None
        self.scheduler.stop()
        self.start_scheduler()

    def start_scheduler(self, delivery: str = "message") -> None:
        telephony = self.telephony
        self.scheduler = ReminderScheduler.start(
            settings=self.settings(delivery),
            store=self.store,
            timers=self.timers,
            switchboard=Switchboard(
                presence=Presence(), ledger=MessageLedger(self.store), router=lambda: None
            ),
            telephony=lambda: telephony,
            me=lambda: self.scheduler,
            boot="test-boot",
        )
        # A round trip: on_start (delivering what is due, setting the timer) is done.
        self.scheduler.ask(RemindersChanged(), timeout=WAIT)

    def changed(self) -> None:
        """What the reminder tools do after a change; returns once it was handled."""
        assert self.scheduler is not None
        self.scheduler.ask(RemindersChanged(), timeout=WAIT)

    def advance(self, seconds: float) -> None:
        self.timers.advance(seconds)
        assert self.scheduler is not None
        # A round trip: the timer's tell was handled before this returns.
        self.scheduler.ask(RemindersChanged(), timeout=WAIT)

    def texts(self) -> list[str]:
        return [r.param("Body") or "" for r in self.twilio.requests_for(Operation.MESSAGES_CREATE)]

    def wait_texts(self, count: int) -> list[str]:
        self.twilio.wait_for_request(Operation.MESSAGES_CREATE, count=count, timeout=WAIT)
        return self.texts()

    def no_second_text(self) -> None:
        never(
            lambda: self.twilio.wait_for_request(Operation.MESSAGES_CREATE, count=2, timeout=QUIET),
            "a second SMS",
        )

    def row(self, reminder_id: int) -> Any:
        return Reminder.get_by_id(reminder_id)

    def settled(self, reminder_id: int) -> Any:
        wait_until(
            lambda: self.row(reminder_id).status != ReminderStatus.DELIVERING,
            "the occurrence to be settled",
        )
        return self.row(reminder_id)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with TwilioRestStandIn(account_sid=ACCOUNT, auth_token=TOKEN, phone_numbers=[NUMBER]) as rest:
        running = Rig(tmp_path, rest)
        yield running
        pykka.ActorRegistry.stop_all(timeout=WAIT)
        running.store.shutdown()


def test_a_reminder_fires_at_its_due_time_not_before(rig: Rig) -> None:
    reminder = rig.book.create(title="Call mum", due_at=T0 + timedelta(seconds=90))
    rig.start()
    assert rig.timers.pending() == [90.0]
    rig.advance(89.0)
    assert rig.row(reminder.id).status == "pending"  # not claimed a second early
    assert rig.timers.pending() == [1.0]
    rig.advance(1.0)
    assert rig.wait_texts(1) == ["TARS: Reminder: Call mum"]
    row = rig.settled(reminder.id)
    assert (row.status, row.delivery_outcome) == ("delivered", "texted")
    assert row.delivered_at == T0 + timedelta(seconds=90)


def test_the_timer_moves_to_an_earlier_reminder_and_a_cancelled_one_never_fires(
    rig: Rig,
) -> None:
    rig.start()
    assert rig.timers.pending() == []
    later = rig.book.create(title="Later", due_at=T0 + timedelta(minutes=30))
    rig.changed()
    assert rig.timers.pending() == [1800.0]
    sooner = rig.book.create(title="Sooner", due_at=T0 + timedelta(minutes=5))
    rig.changed()
    assert rig.timers.pending() == [300.0]  # one timer: the old one was cancelled
    rig.book.cancel(sooner.id)
    rig.changed()
    assert rig.timers.pending() == [1800.0]
    rig.advance(1800.0)
    assert rig.wait_texts(1) == ["TARS: Reminder: Later"]
    assert rig.row(sooner.id).status == "cancelled"
    assert rig.settled(later.id).status == "delivered"


def test_changes_and_a_restart_never_make_a_reminder_fire_twice(rig: Rig) -> None:
    rig.book.create(title="Once", due_at=T0 + timedelta(seconds=60))
    rig.start()
    rig.changed()
    rig.changed()  # three generations of the same timer: only the last one counts
    rig.restart_scheduler()  # and a new scheduler schedules its own
    rig.advance(60.0)
    rig.wait_texts(1)
    rig.restart_scheduler()
    rig.advance(600.0)
    rig.no_second_text()
    assert rig.texts() == ["TARS: Reminder: Once"]


def test_a_daily_reminder_keeps_its_local_time_across_the_dst_change(rig: Rig) -> None:
    # 09:00 in Budapest: 08:00 UTC in winter time, 07:00 UTC after the clocks go forward.
    first = rig.book.create(
        title="Vitamins", due_at=datetime(2026, 3, 28, 8, 0, tzinfo=UTC), recurrence="daily"
    )
    rig.start()
    rig.advance(3600.0)
    rig.wait_texts(1)
    rig.settled(first.id)
    [second] = rig.book.upcoming()
    assert second.due_at == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)
    assert second.recurrence == "daily"
    assert rig.timers.pending() == [23 * 3600.0]
    rig.advance(23 * 3600.0)
    rig.wait_texts(2)
    [third] = rig.book.upcoming()
    assert third.due_at == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)


def test_a_reminder_due_while_the_daemon_was_down_is_delivered_once_and_says_it_is_late(
    rig: Rig,
) -> None:
    missed = rig.book.create(title="Take the bins out", due_at=T0 - timedelta(hours=2))
    rig.start()
    [text] = rig.wait_texts(1)
    assert text.startswith("TARS: Reminder: Take the bins out (This reminder is late: it was due")
    assert rig.settled(missed.id).status == "delivered"
    rig.restart_scheduler()
    rig.advance(3600.0)
    rig.no_second_text()


def test_an_occurrence_claimed_by_a_daemon_that_died_is_delivered_after_boot(rig: Rig) -> None:
    claimed = rig.book.create(title="Half done", due_at=T0 - timedelta(minutes=1))
    assert [r.id for r in rig.book.claim_due()] == [claimed.id]  # then the daemon died
    rig.start()
    assert rig.wait_texts(1)[0].startswith("TARS: Reminder: Half done")
    assert rig.settled(claimed.id).status == "delivered"


def test_delivery_by_call_places_a_reminder_call_with_its_id(rig: Rig) -> None:
    reminder = rig.book.create(title="Dentist at 3", due_at=T0 + timedelta(seconds=10))
    rig.start(delivery="call")
    rig.advance(10.0)
    call = rig.twilio.wait_for_request(Operation.CALLS_CREATE, timeout=WAIT)
    assert call.param("To") == OWNER
    assert f'<Parameter name="reminder_id" value="{reminder.id}"' in (call.param("Twiml") or "")
    assert call.param("StatusCallback") == "https://tars.example.test/twilio/status"
    assert rig.settled(reminder.id).delivery_outcome == "called"
    assert rig.texts() == []


def test_delivery_both_calls_and_texts(rig: Rig) -> None:
    reminder = rig.book.create(title="Both ways", due_at=T0 + timedelta(seconds=10))
    rig.start(delivery="both")
    rig.advance(10.0)
    rig.twilio.wait_for_request(Operation.CALLS_CREATE, timeout=WAIT)
    assert rig.wait_texts(1) == ["TARS: Reminder: Both ways"]
    assert rig.settled(reminder.id).delivery_outcome == "called_and_texted"


def test_a_failed_delivery_is_recorded_with_its_error(rig: Rig) -> None:
    rig.twilio.fail_next(Operation.MESSAGES_CREATE, status=400, code=21211, message="Invalid 'To'")
    reminder = rig.book.create(title="Doomed", due_at=T0 + timedelta(seconds=10))
    rig.start()
    rig.advance(10.0)
    row = rig.settled(reminder.id)
    assert row.status == "failed"
    assert "Invalid 'To'" in row.error


def test_a_callback_request_reaches_the_owner_in_its_own_words(rig: Rig) -> None:
    rig.book.create(
        title="Anna asked you to call back about the invoice",
        due_at=T0,
        kind=ReminderKind.CALLBACK,
        caller_phone="+15555550777",
    )
    rig.start()
    assert rig.wait_texts(1) == [
        "TARS: Anna asked you to call back about the invoice (call back on +15555550777)"
    ]


def test_a_rule_that_ends_at_the_end_of_the_calendar_still_repeats(rig: Rig) -> None:
    # UNTIL at the very end of year 9999 in UTC is past the calendar in Budapest's time.
    first = rig.book.create(
        title="Forever", due_at=T0, recurrence="RRULE:FREQ=DAILY;UNTIL=99991231T235959Z"
    )
    rig.start()
    assert rig.wait_texts(1) == ["TARS: Reminder: Forever"]
    assert rig.settled(first.id).status == "delivered"
    [following] = rig.book.upcoming()
    # 08:00 in Budapest the next day, after the clocks went forward: 06:00 UTC.
    assert following.due_at == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)


def test_a_rule_that_cannot_be_expanded_does_not_hold_up_the_others(rig: Rig) -> None:
    with rig.store.transaction():
        Reminder.create(title="Broken", due_at=T0, recurrence="RRULE:FREQ=NONSENSE")
    fine = rig.book.create(title="Fine", due_at=T0)
    rig.start()
    texts = rig.wait_texts(2)
    assert sorted(texts) == ["TARS: Reminder: Broken", "TARS: Reminder: Fine"]
    assert rig.settled(fine.id).status == "delivered"
