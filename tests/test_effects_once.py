"""Effects that cost money or reach people happen once: ``python run.py`` killed with SIGKILL
while it texts 50 messages or places a goal call sends each exactly once after the restart,
and an intent whose outcome is unknown is looked up in Twilio's records before anything is
sent again, waiting (never resending) while Twilio cannot be asked."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pykka
import pytest

from actors.reminder_scheduler import ReminderScheduler
from actors.router import Router
from tars_actors.messaging.ledger import OWNER_TARGET, MessageLedger
from tars_actors.messaging.routing import Dispatch, MessageType
from tars_actors.reminders.book import ReminderBook, RemindersChanged
from tars_actors.sim.twilio_api import Operation
from tars_actors.sim.world import LocalWorld
from tars_actors.store import (
    CallGoal,
    InterSessionMessage,
    MessageStatus,
    Reminder,
    RestIntent,
    Store,
    utcnow,
)
from tests.rig import OWNER, WAIT, Rig
from tests.waiting import wait_until

MESSAGES = 50
DENTIST = "+15555550444"


def write_messages(rig: Rig, count: int) -> list[str]:
    """``count`` messages for the absent owner, as callers' take_message leaves them."""
    store = Store.open(rig.database_url)
    try:
        ledger = MessageLedger(store)
        with store.connection():
            bodies = [f"Message {n} from a caller." for n in range(count)]
            for body in bodies:
                ledger.record(
                    sender_session_id=None,
                    sender_name="Call with +15555550777",
                    target=OWNER_TARGET,
                    message_type=MessageType.MESSAGE,
                    body=body,
                )
        return bodies
    finally:
        store.shutdown()


def intents(rig: Rig) -> list[Any]:
    store = Store.open(rig.database_url)
    try:
        with store.connection():
            return list(RestIntent.select().order_by(RestIntent.id))
    finally:
        store.shutdown()


def all_texted(rig: Rig) -> bool:
    return all(m.status == MessageStatus.SMS_SENT for m in rig.messages())


@pytest.mark.parametrize("answer_delay", [0.0, 0.4])
def test_messages_being_texted_when_the_daemon_is_killed_are_texted_once(
    rig: Rig, answer_delay: float
) -> None:
    first, _ = rig.daemon()  # a database, migrated
    first.stop()
    bodies = write_messages(rig, MESSAGES)
    rig.twilio.set_answer_delay(Operation.MESSAGES_CREATE, answer_delay)

    texting, _ = rig.daemon()
    try:
        # Killed mid-way: some texted and recorded, some accepted by Twilio with the answer
        # still on its way, some not yet asked for.
        rig.twilio.wait_for(
            lambda rest: len(rest.messages) >= 12, WAIT, "a dozen messages at Twilio"
        )
    finally:
        texting.kill()
    sent_before = len(rig.twilio.messages)
    assert sent_before < MESSAGES

    after, _ = rig.daemon()
    try:
        wait_until(lambda: all_texted(rig), "every message texted", timeout=60)
    finally:
        after.stop()
    texts = [m.body for m in rig.twilio.messages]
    assert len(texts) == MESSAGES, f"{len(texts) - MESSAGES} duplicates"
    assert all(m.to == OWNER for m in rig.twilio.messages)
    assert {body for body in bodies if any(body in text for text in texts)} == set(bodies)
    assert [i.status for i in intents(rig)] == ["sent"] * MESSAGES
    if answer_delay:
        # Twilio had taken some whose answers never came: looked up, not sent again.
        assert after.events("telephony.started")[0]["unsure_intents"] >= 1
        assert after.events("telephony.found_at_twilio") != []


def test_an_unsure_message_waits_while_twilios_list_fails_and_is_never_resent(
    rig: Rig,
) -> None:
    first, _ = rig.daemon()
    first.stop()
    write_messages(rig, 1)
    # Twilio takes the message, and TARS never hears back: killed while the answer waits.
    rig.twilio.set_answer_delay(Operation.MESSAGES_CREATE, 10.0)
    texting, _ = rig.daemon()
    try:
        rig.twilio.wait_for(lambda rest: len(rest.messages) == 1, WAIT, "the message at Twilio")
    finally:
        texting.kill()
    rig.twilio.set_answer_delay(Operation.MESSAGES_CREATE, 0.0)
    [unsure] = intents(rig)
    assert unsure.status == "sending"

    # Twilio's list fails twice: the intent waits, with backoff, and nothing is sent.
    rig.twilio.fail_next(Operation.MESSAGES_LIST, status=500, times=2)
    after, _ = rig.daemon()
    try:
        wait_until(lambda: all_texted(rig), "the message recorded as texted", timeout=60)
        waits = after.events("telephony.outcome_unknown")
        assert len(waits) == 2
        assert [w["checks"] for w in waits] == [1, 2]
        assert after.events("telephony.found_at_twilio") != []
    finally:
        after.stop()
    assert len(rig.twilio.requests_for(Operation.MESSAGES_CREATE)) == 1
    [settled] = intents(rig)
    assert (settled.status, settled.sid) == ("sent", rig.twilio.messages[0].sid)


def goals(rig: Rig) -> list[Any]:
    store = Store.open(rig.database_url)
    try:
        with store.connection():
            return list(CallGoal.select().order_by(CallGoal.id))
    finally:
        store.shutdown()


def test_a_goal_call_placed_just_before_the_daemon_is_killed_is_placed_once_and_reported_once(
    rig: Rig,
) -> None:
    # Twilio takes the call at once and answers 0.4 s later: the daemon dies in between,
    # never learning the call's SID.
    rig.twilio.set_answer_delay(Operation.CALLS_CREATE, 0.4)
    first, port = rig.daemon()
    try:
        owner = rig.phone(port, OWNER)
        owner.call()
        model = rig.gemini.wait_for_connection(1, timeout=WAIT)
        owner.wait_for_mark("turn-1", timeout=WAIT)
        call_id = model.send_tool_call(
            "call_contact", {"contact": DENTIST, "objective": "Book a check-up next week."}
        )
        assert model.wait_for_tool_response(call_id, timeout=WAIT).response["ok"]
        rig.twilio.wait_for(lambda rest: len(rest.calls) == 1, WAIT, "the call at Twilio")
    finally:
        first.kill()
    [goal] = goals(rig)
    assert goal.call_sid is None  # the kill came before the answer

    after, _ = rig.daemon()
    try:
        wait_until(lambda: goals(rig)[0].summary is not None, "the goal's report", timeout=30)
        wait_until(
            lambda: any("Goal call" in m.body or "goal" in m.body.lower() for m in rig.messages()),
            "the report in the ledger",
        )
        reports = [m for m in rig.messages() if m.sender_name.startswith("Goal call")]
        wait_until(
            lambda: (
                [m.status for m in rig.messages() if m.sender_name.startswith("Goal call")]
                == [MessageStatus.SMS_SENT]
            ),
            "the report texted",
        )
        assert after.events("telephony.found_at_twilio") != []
    finally:
        after.stop()
    assert len(rig.twilio.requests_for(Operation.CALLS_CREATE)) == 1
    assert len(reports) == 1
    assert [m.to for m in rig.twilio.messages] == [OWNER]
    [intent] = [i for i in intents(rig) if i.kind == "call"]
    assert (intent.status, intent.sid) == ("sent", rig.twilio.calls[0].sid)


def test_a_reminder_call_placed_just_before_the_daemon_is_killed_is_placed_once(
    tmp_path: Path,
) -> None:
    """The restarted scheduler delivers the unsettled occurrence again (at least once); the
    call it asks for is found at Twilio and not placed a second time."""
    with Rig(tmp_path, extra={"reminders": {"delivery": "call"}}) as rig:
        first, _ = rig.daemon()
        first.stop()
        store = Store.open(rig.database_url)
        try:
            with store.connection():
                ReminderBook(store, ZoneInfo("UTC")).create(
                    title="Water the plants", due_at=utcnow() + timedelta(seconds=2)
                )
        finally:
            store.shutdown()
        rig.twilio.set_answer_delay(Operation.CALLS_CREATE, 0.4)
        calling, _ = rig.daemon()
        try:
            rig.twilio.wait_for(lambda rest: len(rest.calls) == 1, WAIT, "the reminder call")
        finally:
            calling.kill()

        after, _ = rig.daemon()
        try:
            placed = after.wait_for_event("reminders.call_placed", timeout=WAIT)
            assert placed["call_sid"] == rig.twilio.calls[0].sid
            assert after.events("telephony.already_sent") + after.events(
                "telephony.found_at_twilio"
            )
        finally:
            after.stop()
        assert len(rig.twilio.requests_for(Operation.CALLS_CREATE)) == 1


# --- an actor that crashes between claiming an effect and hearing its outcome ---------------


def test_a_router_that_crashes_right_after_asking_for_an_sms_texts_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The Router asks Telephony for the owner's SMS and fails before it notes that it did;
    the Router started in its place finds the message pending and asks again: one SMS."""
    crashed: list[int] = []
    original = Router._text_owner

    def text_then_fail(self: Router, record: Any) -> None:
        original(self, record)
        if not crashed:
            crashed.append(record.id)
            self._texting.discard(record.id)  # as if it failed before noting it
            raise RuntimeError("router failure injected by the test")

    monkeypatch.setattr(Router, "_text_owner", text_then_fail)
    with LocalWorld() as world:
        world.twilio.set_answer_delay(Operation.MESSAGES_CREATE, 0.3)
        assert world.daemon is not None
        assert world.daemon.store is not None
        store = world.daemon.store
        # As a goal's report or a reminder reaches the Router: written, then dispatched.
        with store.connection():
            record = MessageLedger(store).record(
                sender_session_id=None,
                sender_name="Goal call with Dr Smith's office",
                target=OWNER_TARGET,
                message_type=MessageType.URGENT_REPORT,
                body="The check-up is booked.",
            )
        [router] = pykka.ActorRegistry.get_by_class(Router)
        router.tell(Dispatch(message_id=record.id))

        def texted() -> bool:
            with store.connection():
                return [m.status for m in InterSessionMessage.select()] == ["sms_sent"]

        wait_until(texted, "the message recorded as texted")
        assert crashed == [1]
        assert pykka.ActorRegistry.get_by_class(Router) != [router]
        assert len(world.twilio.requests_for(Operation.MESSAGES_CREATE)) == 1
    pykka.ActorRegistry.stop_all()


def test_a_scheduler_that_crashes_right_after_asking_for_a_reminder_sms_sends_it_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The scheduler asks for the reminder's SMS and fails before hearing back; the one
    started in its place delivers the unsettled occurrence again: one SMS."""
    crashed: list[int] = []
    original = ReminderScheduler._deliver

    def deliver_then_fail(self: ReminderScheduler, reminder: Any) -> None:
        original(self, reminder)
        if not crashed:
            crashed.append(reminder.id)
            raise RuntimeError("scheduler failure injected by the test")

    monkeypatch.setattr(ReminderScheduler, "_deliver", deliver_then_fail)
    with LocalWorld(settings={"reminders": {"delivery": "message"}}) as world:
        world.twilio.set_answer_delay(Operation.MESSAGES_CREATE, 0.3)
        assert world.daemon is not None
        assert world.daemon.store is not None
        store = world.daemon.store
        with store.connection():
            ReminderBook(store, ZoneInfo("UTC")).create(
                title="Water the plants", due_at=utcnow() + timedelta(seconds=1)
            )
        [scheduler] = pykka.ActorRegistry.get_by_class(ReminderScheduler)
        scheduler.tell(RemindersChanged())

        def delivered() -> bool:
            with store.connection():
                return [r.status for r in Reminder.select()] == ["delivered"]

        wait_until(delivered, "the reminder delivered", timeout=30)
        assert crashed == [1]
        assert len(world.twilio.requests_for(Operation.MESSAGES_CREATE)) == 1
    pykka.ActorRegistry.stop_all()
