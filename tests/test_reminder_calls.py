"""Reminders through the real daemon: announced in the owner's live call, delivered by a
reminder call that the owner snoozes, and delivered late, once, after the daemon was down."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pykka

from actors.reminder_scheduler import ReminderScheduler
from tars_actors.reminders.book import ReminderBook, RemindersChanged
from tars_actors.sim.gemini import LiveConnection
from tars_actors.sim.twilio_api import Operation
from tars_actors.sim.world import OWNER_PHONE, LocalWorld
from tars_actors.store import AgentSession, Reminder, ReminderStatus, Store, utcnow
from tests.waiting import QUIET, never, wait_until

WAIT = 15.0


def call_tool(model: LiveConnection, name: str, args: dict[str, Any]) -> dict[str, Any]:
    call_id = model.send_tool_call(name, args)
    response: dict[str, Any] = model.wait_for_tool_response(call_id, timeout=WAIT).response
    return response


def reminders(world: LocalWorld) -> list[Any]:
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        return list(Reminder.select().order_by(Reminder.id))


def test_a_reminder_due_during_the_owners_call_is_announced_in_it(world: LocalWorld) -> None:
    owner = world.phone(OWNER_PHONE)
    owner.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    owner.wait_for_mark("turn-1", timeout=WAIT)
    created = call_tool(
        model, "create_reminder", {"title": "Turn the oven off", "due": "in 2 seconds"}
    )
    assert created["ok"] is True
    assert created["result"].startswith("Reminder set for")

    note = model.wait_for_client_content(count=2, timeout=WAIT)
    assert "Reminder: Turn the oven off" in note.text
    wait_until(
        lambda: (
            [(r.status, r.delivery_outcome) for r in reminders(world)]
            == [("delivered", "announced_in_call")]
        ),
        "the reminder to be settled",
    )
    assert world.twilio.requests_for(Operation.MESSAGES_CREATE) == []
    assert world.twilio.requests_for(Operation.CALLS_CREATE) == []

    listed = call_tool(model, "list_reminders", {})
    assert listed["reminders"] == []
    bad = call_tool(model, "create_reminder", {"title": "Too late", "due": "2020-01-01T09:00Z"})
    assert "in the past" in bad["error"]
    vague = call_tool(model, "create_reminder", {"title": "Hm", "due": "next blursday"})
    assert "is not a time I understand" in vague["error"]
    bad_rule = call_tool(
        model,
        "create_reminder",
        {"title": "Spam", "due": "in 1 hour", "recurrence": "FREQ=MINUTELY"},
    )
    assert "MINUTELY" in bad_rule["error"]
    never = call_tool(
        model,
        "create_reminder",
        {
            "title": "Never again",
            "due": "2030-01-01T09:00:00+01:00",  # a Tuesday: this rule only matches Tuesdays
            "recurrence": "FREQ=DAILY;INTERVAL=7;BYDAY=MO",
        },
    )
    assert "would never repeat" in never["error"]
    unknown = call_tool(model, "cancel_reminder", {"reminder_id": 999})
    assert unknown["error"] == "there is no reminder with id 999"
    assert len(reminders(world)) == 1


def test_a_reminder_call_lets_the_owner_snooze(tmp_path: Path) -> None:
    with LocalWorld(directory=tmp_path, settings={"reminders": {"delivery": "call"}}) as world:
        assert world.daemon is not None
        assert world.daemon.store is not None
        assert world.settings is not None
        store = world.daemon.store
        with store.connection():
            ReminderBook(store, ZoneInfo(world.settings.owner.timezone)).create(
                title="Water the plants", due_at=utcnow() + timedelta(seconds=1)
            )
        [scheduler] = pykka.ActorRegistry.get_by_class(ReminderScheduler)
        scheduler.tell(RemindersChanged())

        request = world.twilio.wait_for_request(Operation.CALLS_CREATE, timeout=WAIT)
        assert request.param("To") == OWNER_PHONE
        [record] = world.twilio.calls
        owner = world.phone(OWNER_PHONE, call_sid=record.sid)
        owner.connect(request.param("Twiml") or "")
        model = world.gemini.wait_for_connection(1, timeout=WAIT)
        assert "Water the plants" in model.wait_for_client_content(timeout=WAIT).text
        assert "reminder" in model.system_instruction
        owner.wait_for_mark("turn-1", timeout=WAIT)

        snoozed = call_tool(
            model, "create_reminder", {"title": "Water the plants", "due": "in 10 minutes"}
        )
        assert snoozed["ok"] is True
        rows = reminders(world)
        assert [(r.title, r.status) for r in rows] == [
            ("Water the plants", "delivered"),
            ("Water the plants", "pending"),
        ]
        assert rows[0].delivery_outcome == "called"
        delay = rows[1].due_at - utcnow()
        assert timedelta(minutes=9) < delay <= timedelta(minutes=10)
        owner.hang_up()
        # Twilio's final status comes after the stream's stop: an answered call is no
        # missed one, and no "nobody answered" SMS follows.
        wait_until(lambda: ended_sessions(world) == 1, "the reminder call's session ended")
        owner.send_status("completed")
        never(
            lambda: world.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=QUIET),
            "an SMS after the answered reminder call",
        )
    pykka.ActorRegistry.stop_all()


def ended_sessions(world: LocalWorld) -> int:
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        return int(AgentSession.select().where(AgentSession.status == "ended").count())


def test_a_reminder_due_while_the_daemon_was_down_is_texted_once_and_says_it_is_late(
    tmp_path: Path,
) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'tars.db'}")
    store.migrate()
    with store.connection():
        ReminderBook(store, ZoneInfo("Europe/Budapest")).create(
            title="Pay the rent", due_at=utcnow() - timedelta(hours=3)
        )
    store.shutdown()
    settings = {"reminders": {"delivery": "message"}}
    for boot in (1, 2):
        with LocalWorld(directory=tmp_path, settings=settings) as world:
            if boot == 1:
                sms = world.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
                body = sms.param("Body") or ""
                assert body.startswith("TARS: Reminder: Pay the rent (This reminder is late")
                wait_until(
                    lambda: [r.status for r in reminders(world)] == [ReminderStatus.DELIVERED],
                    "the reminder to be settled",
                )
            else:
                never(
                    lambda: world.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=QUIET),
                    "the reminder sent again",
                )
        pykka.ActorRegistry.stop_all()


def test_an_unanswered_reminder_call_sends_the_reminder_by_sms(tmp_path: Path) -> None:
    with LocalWorld(directory=tmp_path, settings={"reminders": {"delivery": "call"}}) as world:
        assert world.daemon is not None
        assert world.daemon.store is not None
        store = world.daemon.store
        with store.connection():
            ReminderBook(store, ZoneInfo("Europe/Budapest")).create(
                title="Feed the cat", due_at=utcnow() - timedelta(seconds=1)
            )
        [scheduler] = pykka.ActorRegistry.get_by_class(ReminderScheduler)
        scheduler.tell(RemindersChanged())
        world.twilio.wait_for_request(Operation.CALLS_CREATE, timeout=WAIT)
        [record] = world.twilio.calls
        wait_until(lambda: [r.delivery_outcome for r in reminders(world)] == ["called"], "the call")
        # Twilio reports that nobody picked up.
        world.phone(OWNER_PHONE, call_sid=record.sid).send_status("no-answer")

        sms = world.twilio.wait_for_request(Operation.MESSAGES_CREATE, timeout=WAIT)
        assert sms.param("To") == OWNER_PHONE
        assert sms.param("Body") == "TARS: Reminder: Feed the cat (I called, but nobody answered.)"
        wait_until(
            lambda: (
                [r.delivery_outcome for r in reminders(world)] == ["texted_after_unanswered_call"]
            ),
            "the outcome to say so",
        )
    pykka.ActorRegistry.stop_all()
