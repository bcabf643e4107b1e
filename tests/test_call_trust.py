"""A call is what its signed webhook, or TARS's own REST call, said; the owner always gets
through. Each attack runs through the real server with the softphone, as an attacker would."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.request
from typing import Any

import pykka

from tars_actors.sim.gemini import ScriptedReply, tone
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.softphone._twiml import StreamInstruction, Twiml
from tars_actors.sim.world import (
    FAKE_ACCOUNT_SID,
    FAKE_AUTH_TOKEN,
    OWNER_PHONE,
    TWILIO_NUMBER,
    LocalWorld,
)
from tars_actors.store import AgentSession, CallGoal, GoalStatus, Reminder, StreamToken, utcnow
from tars_actors.telephony.twiml import connect_twiml
from tests.logs import log_events
from tests.rig import OWNER, Rig
from tests.test_goals import answer, goal_row, owner_on_a_call, place_goal_call
from tests.waiting import wait_until

WAIT = 15.0
STRANGER = "+15555550777"
OTHER = "+15555550778"


def forged_twiml(world: LocalWorld, parameters: dict[str, str]) -> str:
    """What an attacker connects with: Twilio's stream URL and parameters of their choosing."""
    assert world.daemon is not None
    assert world.daemon.server is not None
    return connect_twiml(world.daemon.server.stream_url, parameters)


def with_parameters(twiml: Twiml, **extra: str) -> Twiml:
    """``twiml`` with more ``<Parameter>``s after its own: a later one wins, as in Twilio."""
    assert twiml.stream is not None
    stream = StreamInstruction(
        url=twiml.stream.url, parameters=(*twiml.stream.parameters, *extra.items())
    )
    return dataclasses.replace(twiml, stream=stream)


def sessions(world: LocalWorld) -> list[Any]:
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        return list(AgentSession.select().order_by(AgentSession.id))


def streams(world: LocalWorld) -> list[str]:
    """The streams that calls took: a call's session starts at its webhook (its greeting
    waits for the stream), and only a stream with the call's token joins it."""
    return [row.stream_sid for row in sessions(world) if row.stream_sid is not None]


def healthz(world: LocalWorld) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{world.port}/healthz", timeout=5) as reply:
        figures: dict[str, Any] = json.load(reply)
        return figures


def refused(phone: SyncSoftphone) -> None:
    """The server closed ``phone``'s stream without a word."""
    phone.wait_closed(timeout=WAIT)
    assert phone.closed_by == "server"
    assert phone.received == []


def owner_is_greeted(world: LocalWorld, count: int) -> SyncSoftphone:
    """The owner calls in; the model connection is the ``count``-th one and hears the owner."""
    owner = world.phone(OWNER_PHONE)
    twiml = owner.call()
    assert twiml.stream is not None, twiml.says
    model = world.gemini.wait_for_connection(count, timeout=WAIT)
    owner.wait_for_mark("turn-1", timeout=WAIT)
    assert "list_contacts" in model.function_names
    return owner


# --- item 1: the stream proves nothing; the record does -----------------------------------


def test_a_stream_without_a_webhook_claiming_the_owners_number_is_refused(
    world: LocalWorld, logs: Any
) -> None:
    attacker = world.phone(STRANGER, call_sid="CA" + "f" * 32)
    attacker.connect(forged_twiml(world, {"from": OWNER_PHONE, "direction": "inbound"}))
    refused(attacker)

    owner = owner_is_greeted(world, 1)  # the first and only model connection is the owner's
    assert len(world.gemini.connections) == 1
    assert [s.call_sid for s in sessions(world)] == [owner.call_sid]
    [line] = log_events(logs, "calls.stream_refused")
    assert line["why"] == "no_token"
    assert line["remote"].startswith("127.0.0.1:")
    assert line["call_sid"] == "CA" + "f" * 32


def test_a_flood_of_made_up_streams_is_refused_and_logged_once_then_counted(
    world: LocalWorld, logs: Any
) -> None:
    attackers = [world.phone(STRANGER, call_sid=f"CA{n:032x}") for n in range(40)]
    for attacker in attackers:
        attacker.connect(forged_twiml(world, {"from": OWNER_PHONE}))
    for attacker in attackers:
        refused(attacker)
    # One line for the address (the interval has not passed): 40 refusals, 1 line.
    [line] = log_events(logs, "calls.stream_refused")
    assert (line["why"], line["suppressed"]) == ("no_token", 0)
    # Nor does a refused stream buy lines of its own: not opened, not closed (a call
    # that is taken after them says its own stream's lines are written by then).
    owner_is_greeted(world, 1)
    assert log_events(logs, "stream.started") == []
    assert log_events(logs, "stream.closed") == []
    assert [s.phone_number for s in sessions(world)] == [OWNER_PHONE]


def test_the_webhook_records_what_the_call_is_and_the_twiml_carries_only_its_token(
    world: LocalWorld,
) -> None:
    caller = world.phone(STRANGER)
    twiml = caller.dial(extra_params={"StirVerstat": "TN-Validation-Passed-A"})
    assert twiml.stream is not None
    assert list(twiml.stream.custom_parameters) == ["token"]
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        [row] = StreamToken.select()
    assert (row.call_sid, row.account_sid, row.from_number, row.to_number) == (
        caller.call_sid,
        FAKE_ACCOUNT_SID,
        STRANGER,
        TWILIO_NUMBER,
    )
    assert (row.direction, row.stir_verstat, row.used_at) == (
        "inbound",
        "TN-Validation-Passed-A",
        None,
    )
    assert row.token_hash != twiml.stream.custom_parameters["token"]


def test_a_used_token_cannot_start_a_second_stream(world: LocalWorld) -> None:
    caller = world.phone(STRANGER)
    twiml = caller.call()
    world.gemini.wait_for_connection(1, timeout=WAIT)
    caller.wait_for_mark("turn-1", timeout=WAIT)
    caller.hang_up()
    wait_until(lambda: healthz(world)["sessions"] == 0, "the call to end")

    replay = world.phone(STRANGER, call_sid=caller.call_sid)
    replay.connect(twiml)
    refused(replay)
    assert len(sessions(world)) == 1
    assert len(world.gemini.connections) == 1


def test_an_expired_token_is_refused(world: LocalWorld, logs: Any) -> None:
    caller = world.phone(STRANGER)
    twiml = caller.dial()
    assert twiml.stream is not None
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():  # a minute passes before the stream opens
        StreamToken.update(expires_at=utcnow()).execute()
    caller.connect(twiml)
    refused(caller)
    assert streams(world) == []
    assert [e["why"] for e in log_events(logs, "calls.stream_refused")] == ["expired"]


def test_a_token_for_another_call_is_refused_and_still_serves_its_own(
    world: LocalWorld,
) -> None:
    caller = world.phone(STRANGER)
    twiml = caller.dial()
    thief = world.phone(OWNER_PHONE)  # another CallSid, presenting the caller's token
    thief.connect(twiml)
    refused(thief)
    assert streams(world) == []

    caller.connect(twiml)
    world.gemini.wait_for_connection(1, timeout=WAIT)
    caller.wait_for_mark("turn-1", timeout=WAIT)
    [row] = sessions(world)
    assert (row.call_sid, row.phone_number, row.permission) == (
        caller.call_sid,
        STRANGER,
        "unknown",
    )


def test_a_start_from_another_account_is_refused(world: LocalWorld) -> None:
    caller = world.phone(STRANGER)
    twiml = caller.dial()
    caller.phone.account_sid = "AC" + "1" * 32  # the stream says another account
    caller.connect(twiml)
    refused(caller)
    assert streams(world) == []


def test_custom_parameters_claiming_the_owner_do_not_raise_the_level(world: LocalWorld) -> None:
    stranger = world.phone(STRANGER)
    twiml = stranger.dial()
    stranger.connect(with_parameters(twiml, **{"from": OWNER_PHONE, "caller": OWNER_PHONE}))
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    stranger.wait_for_mark("turn-1", timeout=WAIT)
    assert "list_contacts" not in model.function_names
    [row] = sessions(world)
    assert (row.phone_number, row.permission) == (STRANGER, "unknown")


def test_a_reminder_id_in_the_stream_does_not_make_the_owner(world: LocalWorld) -> None:
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        reminder = Reminder.create(title="Call back a stranger", due_at=utcnow())
    stranger = world.phone(STRANGER)
    twiml = stranger.dial()
    stranger.connect(with_parameters(twiml, reminder_id=str(reminder.id)))
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    stranger.wait_for_mark("turn-1", timeout=WAIT)
    assert "list_contacts" not in model.function_names
    [row] = sessions(world)
    assert (row.phone_number, row.permission) == (STRANGER, "unknown")


def test_a_goal_id_in_the_stream_does_not_take_over_the_goal(world: LocalWorld) -> None:
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        goal = CallGoal.create(
            contact_name="Dr Smith's office",
            phone="+15555550333",
            objective="Book a check-up.",
            status=GoalStatus.DIALING,
        )
    stranger = world.phone(STRANGER)
    twiml = stranger.dial()
    stranger.connect(with_parameters(twiml, goal_id=str(goal.id), direction="outbound-api"))
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    stranger.wait_for_mark("turn-1", timeout=WAIT)
    assert "report_goal_outcome" not in model.function_names
    assert "Book a check-up." not in model.system_instruction
    [row] = sessions(world)
    assert (row.phone_number, row.permission, row.direction) == (STRANGER, "unknown", "inbound")
    with world.daemon.store.connection():
        after = CallGoal.get_by_id(goal.id)
    assert (after.status, after.session_id) == (GoalStatus.DIALING, None)


def test_a_placed_goal_calls_twiml_serves_that_call_alone(world: LocalWorld) -> None:
    _owner, owner_model = owner_on_a_call(world)
    goal_id, request = place_goal_call(world, owner_model)
    twiml = request.param("Twiml") or ""
    thief = world.phone(STRANGER)  # another CallSid, with the placed call's TwiML
    thief.connect(twiml)
    refused(thief)

    _callee, goal_model = answer(world, twiml)
    assert "report_goal_outcome" in goal_model.function_names
    assert goal_row(world, goal_id).status == "in_progress"


def test_a_second_start_for_a_live_call_leaves_the_call_the_count_and_the_rows_alone(
    world: LocalWorld,
) -> None:
    owner = owner_is_greeted(world, 1)
    assert healthz(world)["sessions"] == 1
    # The same CallSid again: once with the owner's own (used) TwiML, once with made-up
    # parameters.
    again = world.phone(OWNER_PHONE, call_sid=owner.call_sid)
    again.connect(forged_twiml(world, {"from": OWNER_PHONE}))
    refused(again)
    assert healthz(world)["sessions"] == 1
    [row] = sessions(world)
    assert (row.call_sid, row.status) == (owner.call_sid, "active")
    # The live call goes on: its model still hears it and it still hears its model.
    model = world.gemini.connections[0]
    model.reply(ScriptedReply(transcript="Still here.", audio=tone(500.0, 0.2)))
    owner.wait_for_mark("turn-2", timeout=WAIT)
    assert len(world.gemini.connections) == 1
    assert not owner.closed


def test_a_token_issued_before_a_restart_still_connects_after_it(rig: Rig) -> None:
    rig.rewrite_settings({"sessions": {"shutdown_grace_seconds": 0}})
    first, port = rig.daemon()
    try:
        ringing = rig.phone(port, OWNER)
        twiml = ringing.dial()
        assert twiml.stream is not None
    finally:
        first.stop()
    second, port = rig.daemon()
    try:
        answered = SyncSoftphone(
            server_url=f"http://127.0.0.1:{port}",
            public_url=ringing.phone.public_url,
            auth_token=FAKE_AUTH_TOKEN,
            account_sid=ringing.phone.account_sid,
            call_sid=ringing.call_sid,
            from_number=OWNER,
            loop=rig.loop,
        )
        answered.connect(twiml)
        model = rig.gemini.wait_for_connection(1, timeout=WAIT)
        answered.wait_for_mark("turn-1", timeout=WAIT)
        assert "list_contacts" in model.function_names
        answered.hang_up()
    finally:
        second.stop()
    # The first daemon started the call at its webhook and left it to the stream.
    before, row = rig.sessions()
    assert (before.call_sid, before.stream_sid) == (ringing.call_sid, None)
    assert before.end_reason == "shutdown before the stream opened"
    assert (row.call_sid, row.permission) == (ringing.call_sid, "owner")


# --- item 3: the owner always gets through ---------------------------------------------------


def test_made_up_streams_and_a_webhook_flood_do_not_keep_the_owner_out() -> None:
    with LocalWorld(settings={"sessions": {"max_concurrent": 3}}) as world:
        forged = []
        for n in range(3):
            phone = world.phone(STRANGER, call_sid=f"CA{n:032x}")
            phone.connect(forged_twiml(world, {"from": STRANGER}))
            forged.append(phone)
        for phone in forged:
            phone.wait_closed(timeout=WAIT)

        flood = [world.phone(STRANGER) for _ in range(200)]
        loop = flood[0].loop

        async def dial_all() -> list[Twiml]:
            return await asyncio.gather(*(phone.phone.dial() for phone in flood))

        answers = loop.submit(dial_all()).result(60)
        admitted = [twiml for twiml in answers if twiml.stream is not None]
        assert len(admitted) == 1  # [sessions] max_per_caller
        assert all(twiml.hangup and twiml.says for twiml in answers if twiml.stream is None)

        started = time.monotonic()
        owner_is_greeted(world, 2)  # the one stranger admitted opened connection 1
        assert time.monotonic() - started < WAIT
    pykka.ActorRegistry.stop_all()


def test_the_owners_reserved_place_is_the_owners() -> None:
    settings = {"sessions": {"max_concurrent": 2, "owner_reserved": 1}}
    with LocalWorld(settings=settings) as world:
        first = world.phone(STRANGER)
        first.call()
        world.gemini.wait_for_connection(1, timeout=WAIT)
        second = world.phone(OTHER).dial()
        assert second.stream is None
        assert second.hangup
        owner_is_greeted(world, 2)
    pykka.ActorRegistry.stop_all()


def test_one_unknown_number_holds_one_live_call_and_ten_webhooks_an_hour() -> None:
    settings = {"sessions": {"max_concurrent": 6, "unknown_calls_per_hour": 3}}
    with LocalWorld(settings=settings) as world:
        live = world.phone(STRANGER)
        live.call()
        world.gemini.wait_for_connection(1, timeout=WAIT)
        again = world.phone(STRANGER).dial()
        assert again.stream is None  # [sessions] max_per_caller = 1
        assert again.hangup
        live.hang_up()
        wait_until(lambda: healthz(world)["sessions"] == 0, "the call to end")

        for _ in range(2):  # the 2nd and 3rd admitted webhooks of the hour
            phone = world.phone(STRANGER)
            assert phone.dial().stream is not None
            assert phone.send_status("completed").status in (200, 204)
        fourth = world.phone(STRANGER).dial()
        assert fourth.stream is None
        assert world.phone(OTHER).dial().stream is not None  # another number is not limited
    pykka.ActorRegistry.stop_all()


def test_a_webhook_whose_stream_never_opens_frees_its_place_within_ten_seconds() -> None:
    settings = {"sessions": {"max_concurrent": 1, "owner_reserved": 0}}
    with LocalWorld(settings=settings) as world:
        assert world.phone(STRANGER).dial().stream is not None  # its stream never opens
        started = time.monotonic()
        assert world.phone(OTHER).dial().stream is None  # the place is promised

        deadline = started + 12.0
        while world.phone(OTHER).dial().stream is None:  # Twilio's caller, redialling
            assert time.monotonic() < deadline, "the unopened call's place was never freed"
            time.sleep(0.25)
        # Freed 10 s after the webhook (before ``started``), seen at the next redial: one
        # poll interval and one webhook's round trip later at most.
        assert time.monotonic() - started <= 11.0
    pykka.ActorRegistry.stop_all()
