"""The owner is proven, not claimed: the carrier's attestation, the PIN typed on the keypad, or
(by choice) the number alone. Every call goes through the real server with the softphone."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pykka
import pytest

from actors.reminder_scheduler import ReminderScheduler
from tars_actors.reminders.book import ReminderBook, RemindersChanged
from tars_actors.sim.gemini import LiveConnection
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.twilio_api import Operation
from tars_actors.sim.world import FAKE_OWNER_PIN, OWNER_PHONE, LocalWorld
from tars_actors.store import AgentSession, Conversation, PinLockout, utcnow
from tests.logs import log_events
from tests.waiting import wait_until

WAIT = 15.0
PIN_ENV = {"TARS_OWNER_PIN": FAKE_OWNER_PIN}
#: Not the owner's PIN.
WRONG_PIN = "1357"


def written(pin: str, logs: io.StringIO) -> bool:
    """Whether ``pin`` stands in the log as a token of its own (its digits may also turn up
    inside a timestamp's microseconds or a hex id, which is no leak)."""
    return re.search(rf"(?<![0-9A-Za-z]){pin}(?![0-9A-Za-z])", logs.getvalue()) is not None


@pytest.fixture
def pin_world(logs: io.StringIO) -> Iterator[LocalWorld]:
    """A TARS whose owner has a keypad PIN (``[owner] caller_id_trust`` the default)."""
    with LocalWorld(environ=PIN_ENV) as running:
        yield running
    pykka.ActorRegistry.stop_all()


def unattested_owner(world: LocalWorld) -> tuple[SyncSoftphone, LiveConnection]:
    """A call from the owner's number that the carrier did not vouch for, greeted."""
    count = len(world.gemini.connections) + 1
    phone = world.phone(OWNER_PHONE, stir_verstat=None)
    twiml = phone.call()
    assert twiml.stream is not None, twiml.says
    model = world.gemini.wait_for_connection(count, timeout=WAIT)
    phone.wait_for_mark("turn-1", timeout=WAIT)
    return phone, model


def type_keys(phone: SyncSoftphone, keys: str) -> None:
    for key in keys:
        phone.send_dtmf(key)


def session_row(world: LocalWorld, call_sid: str) -> Any:
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        return AgentSession.get(AgentSession.call_sid == call_sid)


def everything_the_model_was_sent(world: LocalWorld) -> str:
    parts: list[str] = []
    for connection in world.gemini.connections:
        parts.append(connection.system_instruction)
        parts += [content.text for content in connection.client_contents]
        parts += connection.realtime_texts
        parts += [str(response.response) for response in connection.tool_responses]
    return "\n".join(parts)


def transcript(world: LocalWorld) -> list[str]:
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        return [str(row.text) for row in Conversation.select()]


# --- caller ID alone is no proof ------------------------------------------------------------


def test_an_attested_call_from_the_owners_number_is_the_owner(
    world: LocalWorld, logs: io.StringIO
) -> None:
    phone = world.phone(OWNER_PHONE)  # the softphone's calls are fully attested by default
    phone.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    phone.wait_for_mark("turn-1", timeout=WAIT)
    assert "list_contacts" in model.function_names
    assert session_row(world, phone.call_sid).permission == "owner"
    [line] = log_events(logs, "calls.owner_number")
    assert (line["standing"], line["why"]) == ("proven", "attested")


@pytest.mark.parametrize("verstat", [None, "TN-Validation-Passed-C", "TN-Validation-Failed"])
def test_a_faked_owners_number_without_attestation_gets_a_strangers_level(
    world: LocalWorld, logs: io.StringIO, verstat: str | None
) -> None:
    """The attack: caller ID is cheap to fake. Before, the number alone gave every tool."""
    faker = world.phone(OWNER_PHONE, stir_verstat=verstat)
    faker.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    faker.wait_for_mark("turn-1", timeout=WAIT)
    assert set(model.function_names) == {
        "end_call",
        "take_message",
        "request_callback",
        "request_transfer",
    }
    # Asking anyway: refused at execution.
    call_id = model.send_tool_call("list_contacts")
    assert "error" in model.wait_for_tool_response(call_id, timeout=WAIT).response
    row = session_row(world, faker.call_sid)
    assert (row.phone_number, row.permission) == (OWNER_PHONE, "unknown")
    [line] = log_events(logs, "calls.owner_unproven")
    assert line["why"] == "not attested and no owner PIN is set"
    # Without a PIN no keys can make it the owner's.
    type_keys(faker, FAKE_OWNER_PIN + "#")
    call_id = model.send_tool_call("list_contacts")
    assert "error" in model.wait_for_tool_response(call_id, timeout=WAIT).response
    assert len(world.gemini.connections) == 1


def test_caller_id_trust_number_takes_the_number_alone_and_warns_at_start(
    logs: io.StringIO,
) -> None:
    with LocalWorld(settings={"owner": {"caller_id_trust": "number"}}) as world:
        [warning] = log_events(logs, "daemon.owner_trust")
        assert warning["level"] == "warning"
        assert "anyone who fakes the caller ID" in warning["note"]
        phone = world.phone(OWNER_PHONE, stir_verstat=None)
        phone.call()
        model = world.gemini.wait_for_connection(1, timeout=WAIT)
        phone.wait_for_mark("turn-1", timeout=WAIT)
        assert "list_contacts" in model.function_names
        assert session_row(world, phone.call_sid).permission == "owner"
    pykka.ActorRegistry.stop_all()


# --- the PIN ---------------------------------------------------------------------------------


def test_the_owner_proves_themself_with_the_pin_and_the_call_carries_on(
    pin_world: LocalWorld, logs: io.StringIO
) -> None:
    world = pin_world
    phone, first = unattested_owner(world)
    assert set(first.function_names) == {
        "end_call",
        "take_message",
        "request_callback",
        "request_transfer",
    }
    assert "PIN" in first.system_instruction
    assert "hash key" in first.client_contents[0].text
    assert first.issued_handles, "the stand-in issues a handle after the greeting"
    refused = first.send_tool_call("list_contacts")
    assert "error" in first.wait_for_tool_response(refused, timeout=WAIT).response
    row = session_row(world, phone.call_sid)
    assert (row.permission, row.name) == ("unknown", f"Call with {OWNER_PHONE} (PIN not yet typed)")

    type_keys(phone, FAKE_OWNER_PIN + "#")

    # The owner's connection, resumed from the first: the conversation goes on.
    second = world.gemini.wait_for_connection(2, timeout=WAIT)
    assert "list_contacts" in second.function_names
    assert "full access" in second.system_instruction
    assert second.resumption_handle == first.issued_handles[-1]
    verified = second.wait_for_client_content(1, timeout=WAIT)
    assert "right PIN" in verified.text
    first.wait_closed(timeout=WAIT)
    # No restart the caller could hear: the stream stays up, nothing was hung up.
    assert not phone.closed
    assert world.twilio.requests_for(Operation.CALLS_UPDATE) == []
    answer = second.send_tool_call("list_contacts")
    assert "error" not in second.wait_for_tool_response(answer, timeout=WAIT).response

    row = session_row(world, phone.call_sid)
    assert (row.permission, row.name) == ("owner", "Call with Máté Dort (main)")
    assert world.daemon is not None
    assert world.daemon.runtime is not None
    owner_main = world.daemon.runtime.switchboard.presence.owner_main()
    assert owner_main is not None
    assert owner_main.call_sid == phone.call_sid
    assert len(log_events(logs, "owner.verified")) == 1

    # The digits reached no model, no transcript and no log line.
    phone.hang_up()
    wait_until(lambda: session_row(world, phone.call_sid).status == "ended", "the call to end")
    assert FAKE_OWNER_PIN not in everything_the_model_was_sent(world)
    assert not any(FAKE_OWNER_PIN in line for line in transcript(world))
    assert not written(FAKE_OWNER_PIN, logs)
    keys = sum(line["keys"] for line in log_events(logs, "call.dtmf"))
    assert keys == len(FAKE_OWNER_PIN) + 1


def test_a_pause_after_the_last_key_ends_the_pin(pin_world: LocalWorld) -> None:
    world = pin_world
    phone, _first = unattested_owner(world)
    type_keys(phone, FAKE_OWNER_PIN)  # no "#": about 3 s of quiet ends it
    second = world.gemini.wait_for_connection(2, timeout=WAIT)
    assert "list_contacts" in second.function_names
    wait_until(lambda: session_row(world, phone.call_sid).permission == "owner", "the owner")


def test_star_starts_the_pin_again(pin_world: LocalWorld) -> None:
    world = pin_world
    phone, first = unattested_owner(world)
    type_keys(phone, "99*" + FAKE_OWNER_PIN + "#")
    second = world.gemini.wait_for_connection(2, timeout=WAIT)
    assert "list_contacts" in second.function_names
    assert not any("was wrong" in content.text for content in first.client_contents)


def test_three_wrong_pins_end_the_call_politely_and_lock_the_number_out(
    pin_world: LocalWorld, logs: io.StringIO
) -> None:
    world = pin_world
    phone, model = unattested_owner(world)
    for tries_left in (2, 1):
        told = len(model.client_contents)  # counted before: the note may come at once
        type_keys(phone, WRONG_PIN + "#")
        note = model.wait_for_client_content(told + 1, timeout=WAIT)
        assert "was wrong" in note.text
        assert f"{tries_left} tr" in note.text
    type_keys(phone, WRONG_PIN + "#")

    goodbye = world.twilio.wait_for_request(Operation.CALLS_UPDATE, timeout=WAIT)
    twiml = goodbye.param("Twiml") or ""
    assert "locked for 15 minutes" in twiml
    assert "<Hangup" in twiml
    phone.hang_up()  # as Twilio does to play the new TwiML
    wait_until(lambda: session_row(world, phone.call_sid).status == "ended", "the call to end")
    assert session_row(world, phone.call_sid).end_reason == "owner PIN refused"
    [locked] = log_events(logs, "owner.pin_locked")
    assert (locked["level"], locked["phone"], locked["minutes"]) == ("warning", OWNER_PHONE, 15)
    # The owner hears of it (not on a call: by text message).
    sms = world.twilio.wait_for_message(1, timeout=WAIT)
    assert (sms.to, "wrong PIN 3 times" in sms.body) == (OWNER_PHONE, True)
    assert len(world.gemini.connections) == 1  # never the owner's

    # For the next 15 minutes even the right PIN is no use from that number.
    again, again_model = unattested_owner(world)
    assert "PIN" not in again_model.system_instruction
    type_keys(again, FAKE_OWNER_PIN + "#")
    call_id = again_model.send_tool_call("list_contacts")
    assert "error" in again_model.wait_for_tool_response(call_id, timeout=WAIT).response
    assert len(world.gemini.connections) == 2
    assert session_row(world, again.call_sid).permission == "unknown"
    assert log_events(logs, "calls.owner_number")[-1]["why"] == (
        "PIN entry locked after wrong PINs"
    )
    assert not written(WRONG_PIN, logs)
    assert not written(FAKE_OWNER_PIN, logs)
    # One notice of the lock; the locked number's next call is announced like a stranger's.
    wait_until(lambda: len(world.twilio.messages) == 2, "the owner to hear of the call")
    assert ["wrong PIN" in m.body for m in world.twilio.messages] == [True, False]
    assert "Incoming call" in world.twilio.messages[1].body


def test_two_wrong_pins_and_a_new_call_leave_one_try(pin_world: LocalWorld) -> None:
    """Hanging up between tries gives a guesser no fresh ones."""
    world = pin_world
    phone, model = unattested_owner(world)
    for count in (1, 2):
        type_keys(phone, WRONG_PIN + "#")
        model.wait_for_client_content(1 + count, timeout=WAIT)
    phone.hang_up()
    wait_until(lambda: session_row(world, phone.call_sid).status == "ended", "the call to end")

    again, again_model = unattested_owner(world)
    type_keys(again, WRONG_PIN + "#")
    goodbye = world.twilio.wait_for_request(Operation.CALLS_UPDATE, timeout=WAIT)
    assert again.call_sid in goodbye.path
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        [lockout] = PinLockout.select()
    assert lockout.phone == OWNER_PHONE
    assert lockout.locked_until is not None
    assert again_model is world.gemini.connections[-1]


def test_trust_pin_asks_even_an_attested_owner_for_the_pin(logs: io.StringIO) -> None:
    settings = {"owner": {"caller_id_trust": "pin"}}
    with LocalWorld(settings=settings, environ=PIN_ENV) as world:
        phone = world.phone(OWNER_PHONE)  # attested
        phone.call()
        first = world.gemini.wait_for_connection(1, timeout=WAIT)
        phone.wait_for_mark("turn-1", timeout=WAIT)
        assert "list_contacts" not in first.function_names
        type_keys(phone, FAKE_OWNER_PIN + "#")
        second = world.gemini.wait_for_connection(2, timeout=WAIT)
        assert "list_contacts" in second.function_names
    pykka.ActorRegistry.stop_all()


def test_a_reminder_call_to_the_owner_is_trusted_by_its_record(logs: io.StringIO) -> None:
    """TARS placed it: no attestation comes with it, and no PIN is asked for."""
    settings = {"owner": {"caller_id_trust": "pin"}, "reminders": {"delivery": "call"}}
    with LocalWorld(settings=settings, environ=PIN_ENV) as world:
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
        [record] = world.twilio.calls
        owner = world.phone(OWNER_PHONE, call_sid=record.sid, direction="outbound-api")
        owner.connect(request.param("Twiml") or "")
        model = world.gemini.wait_for_connection(1, timeout=WAIT)
        owner.wait_for_mark("turn-1", timeout=WAIT)
        assert "list_contacts" in model.function_names
        assert "PIN" not in model.system_instruction
        [line] = log_events(logs, "calls.owner_number")
        assert (line["standing"], line["why"]) == ("proven", "placed by TARS")
    pykka.ActorRegistry.stop_all()


# --- the owner always gets through ----------------------------------------------------------


def test_a_faked_owners_number_and_a_flood_of_strangers_do_not_keep_the_owner_out(
    logs: io.StringIO,
) -> None:
    settings = {"sessions": {"max_concurrent": 3, "owner_reserved": 1}}
    with LocalWorld(settings=settings, environ=PIN_ENV) as world:
        fakers = [world.phone(OWNER_PHONE, stir_verstat=None) for _ in range(30)]
        answers = [faker.dial() for faker in fakers]
        # One at a time may wait for its PIN ([sessions] max_per_caller).
        [admitted] = [n for n, twiml in enumerate(answers) if twiml.stream is not None]
        faker = fakers[admitted]
        faker.connect(answers[admitted])
        world.gemini.wait_for_connection(1, timeout=WAIT)
        strangers = [world.phone(f"+1555555{n:04d}") for n in range(30)]
        taken = [stranger for stranger in strangers if stranger.dial().stream is not None]
        assert len(taken) == 2  # every place is now live or promised

        owner = world.phone(OWNER_PHONE)  # attested: the owner
        assert owner.call().stream is not None
        # Each admitted call connects its model at its webhook: the strangers' are 2 and 3.
        model = world.gemini.wait_for_connection(4, timeout=WAIT)
        owner.wait_for_mark("turn-1", timeout=WAIT)
        assert "list_contacts" in model.function_names
        # The faker, still to type the PIN, gave up its place: told so, and hung up.
        notice = world.twilio.wait_for_request(Operation.CALLS_UPDATE, timeout=WAIT)
        assert faker.call_sid in notice.path
        assert "line is needed" in (notice.param("Twiml") or "")
        [line] = log_events(logs, "calls.place_taken")
        assert line["call_sid"] == faker.call_sid
    pykka.ActorRegistry.stop_all()
