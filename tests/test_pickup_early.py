"""No dead air at pickup: a call's model connection opens at its signed webhook (or when a
call TARS placed is answered), and the greeting waits for the stream, through the real
server with the softphone and the Live stand-in."""

from __future__ import annotations

import io
import time
import urllib.error
from typing import Any

import pykka

from actors.call_supervisor import CallSupervisor
from tars_actors.sim.gemini import QUOTA_EXCEEDED
from tars_actors.sim.twilio_api import Operation
from tars_actors.sim.world import OWNER_PHONE, LocalWorld
from tars_actors.store import AgentSession, Conversation
from tests.logs import log_events
from tests.test_call_trust import healthz
from tests.test_goals import DENTIST, goal_row, owner_on_a_call, place_goal_call
from tests.waiting import wait_until

WAIT = 15.0
STRANGER = "+15555550777"
OTHER = "+15555550778"
#: The stand-in's greeting: half a second of tone, 4,000 bytes of 8 kHz μ-law.
GREETING_BYTES = 4000


def rows(world: LocalWorld) -> list[Any]:
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        return list(AgentSession.select().order_by(AgentSession.id))


def lines(world: LocalWorld, session_id: int) -> list[Any]:
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        query = Conversation.select().where(Conversation.session == session_id)
        return list(query.order_by(Conversation.seq))


def ready_with(world: LocalWorld) -> int | None:
    """The live calls ``/healthz`` counts; None while it answers 503 (not ready: an actor
    restarting)."""
    try:
        return int(healthz(world)["sessions"])
    except urllib.error.HTTPError as error:
        if error.code != 503:
            raise
        return None


def greeted_before_the_stream(world: LocalWorld, index: int = 1) -> Any:
    """The call's model connection greeted the caller, whose stream has not opened: the
    greeting's line is stored once the whole greeting (and its mark) waits for the stream."""
    model = world.gemini.wait_for_connection(index, timeout=WAIT)
    model.wait_for_client_content(1, timeout=WAIT)
    row = rows(world)[-1]
    wait_until(lambda: lines(world, row.id) != [], "the greeting to be held", timeout=WAIT)
    return model


def test_the_greeting_is_ready_at_the_webhook_and_goes_out_as_the_stream_opens(
    world: LocalWorld, logs: io.StringIO
) -> None:
    caller = world.phone(STRANGER)
    twiml = caller.dial()
    assert twiml.stream is not None
    model = greeted_before_the_stream(world)
    [row] = rows(world)
    assert (row.call_sid, row.status, row.stream_sid) == (caller.call_sid, "pending", None)
    assert "take_message" in model.function_names  # the stranger's level, from the webhook

    caller.connect(twiml)
    caller.wait_for_mark("turn-1", timeout=WAIT)

    assert len(caller.received_audio) == GREETING_BYTES  # all of it, once
    [row] = rows(world)
    assert (row.status, row.stream_sid) == ("active", caller.stream_sid)
    assert len(world.gemini.connections) == 1  # the stream added no second connection
    caller.hang_up()
    wait_until(lambda: log_events(logs, "call.summary") != [], "the call's summary")
    [summary] = log_events(logs, "call.summary")
    [opened] = log_events(logs, "call.stream_opened")
    # Every payload of the greeting had waited for the stream, and none was dropped.
    assert opened["held_frames"] == summary["frames_out"] > 0
    assert opened["dropped_frames"] == 0
    [line] = lines(world, row.id)
    assert line.heard


def test_barge_in_during_a_held_greeting_still_clears_it(world: LocalWorld) -> None:
    caller = world.phone(STRANGER)
    twiml = caller.dial()
    model = greeted_before_the_stream(world)
    caller.connect(twiml)
    caller.wait_for_audio(160, timeout=WAIT)
    model.send_interrupted()
    caller.wait_for_clear(timeout=WAIT)


def test_a_caller_who_hangs_up_before_the_stream_frees_the_place_and_the_connection(
    logs: io.StringIO,
) -> None:
    settings = {"sessions": {"max_concurrent": 1, "owner_reserved": 0}}
    with LocalWorld(settings=settings) as world:
        caller = world.phone(STRANGER)
        assert caller.dial().stream is not None
        model = greeted_before_the_stream(world)
        assert world.phone(OTHER).dial().stream is None  # the place is the caller's

        assert caller.send_status("completed").status in (200, 204)

        model.wait_closed(timeout=WAIT)
        wait_until(lambda: rows(world)[0].status == "ended", "the row to close")
        [row] = rows(world)
        assert row.end_reason == "ended before its stream opened (status completed)"
        [greeting] = lines(world, row.id)
        assert not greeting.heard  # nobody was there to hear it
        assert healthz(world)["sessions"] == 0
        assert world.phone(OTHER).dial().stream is not None  # the place is free again
        [line] = log_events(logs, "call.stream_never_opened")
        assert line["call_sid"] == caller.call_sid
    pykka.ActorRegistry.stop_all()


def test_a_stream_that_never_opens_closes_its_model_connection_within_ten_seconds(
    world: LocalWorld,
) -> None:
    caller = world.phone(STRANGER)
    assert caller.dial().stream is not None
    answered = time.monotonic()
    model = greeted_before_the_stream(world)

    model.wait_closed(timeout=12.0)
    closed_after = time.monotonic() - answered
    wait_until(lambda: rows(world)[0].status == "ended", "the row to close")

    assert 9.0 < closed_after < 11.0  # 10 s after the webhook, the close handshake later
    [row] = rows(world)
    assert row.end_reason == "stream never opened"
    assert healthz(world)["sessions"] == 0
    assert len(world.gemini.connections) == 1  # closed, never reopened
    assert world.twilio.requests_for(Operation.CALLS_UPDATE) == []  # the call was not hung up


def test_a_model_over_its_quota_gets_the_caller_an_apology_before_the_stream_opens(
    world: LocalWorld, logs: io.StringIO
) -> None:
    world.gemini.limit_sessions(0)
    caller = world.phone(STRANGER)
    assert caller.dial().stream is not None

    apology = world.twilio.wait_for_request(Operation.CALLS_UPDATE, timeout=WAIT)
    assert caller.call_sid in apology.path
    assert "trouble connecting" in (apology.param("Twiml") or "")
    assert world.gemini.refused_attempts == 1  # no retries into a quota
    [refused] = log_events(logs, "model.refused")
    assert QUOTA_EXCEEDED in refused["reason"]

    caller.send_status("completed")  # Twilio spoke the apology and hung up
    wait_until(lambda: rows(world)[0].status == "ended", "the row to close")
    [row] = rows(world)
    assert "RESOURCE_EXHAUSTED" in row.end_reason
    assert world.gemini.refused_attempts == 1


def test_max_sessions_turns_a_call_away_at_the_webhook_and_keeps_the_owners_place() -> None:
    settings = {
        "gemini": {"max_sessions": 2},
        "sessions": {"max_concurrent": 8, "owner_reserved": 1},
    }
    with LocalWorld(settings=settings) as world:
        first = world.phone(STRANGER)
        assert first.dial().stream is not None
        world.gemini.wait_for_connection(1, timeout=WAIT)

        second = world.phone(OTHER).dial()
        assert second.stream is None  # the second Live session is the owner's
        assert second.hangup
        assert any("busy" in said for said in second.says)

        owner = world.phone(OWNER_PHONE)
        assert owner.dial().stream is not None
        model = world.gemini.wait_for_connection(2, timeout=WAIT)
        assert "list_contacts" in model.function_names
        assert len(world.gemini.connections) == 2  # never more than the project allows
    pykka.ActorRegistry.stop_all()


def test_a_placed_call_connects_its_model_when_answered_and_greets_as_the_stream_opens(
    world: LocalWorld, logs: io.StringIO
) -> None:
    _owner, owner_model = owner_on_a_call(world)
    goal_id, request = place_goal_call(world, owner_model)
    [record] = world.twilio.calls
    callee = world.phone(DENTIST, call_sid=record.sid, direction="outbound-api")

    assert callee.send_status("in-progress").status in (200, 204)  # answered
    model = greeted_before_the_stream(world, 2)
    assert "report_goal_outcome" in model.function_names
    callee.connect(request.param("Twiml") or "")
    callee.wait_for_mark("turn-1", timeout=WAIT)

    assert len(callee.received_audio) == GREETING_BYTES
    [opened] = [e for e in log_events(logs, "call.stream_opened") if e["call_sid"] == record.sid]
    assert opened["held_frames"] > 0
    assert len(world.gemini.connections) == 2
    row = rows(world)[-1]
    assert (row.call_sid, row.status) == (record.sid, "active")
    assert goal_row(world, goal_id).status == "in_progress"


def test_a_placed_call_hung_up_before_its_stream_opened_is_a_call_not_answered(
    world: LocalWorld,
) -> None:
    _owner, owner_model = owner_on_a_call(world)
    goal_id, _request = place_goal_call(world, owner_model)
    [record] = world.twilio.calls
    callee = world.phone(DENTIST, call_sid=record.sid, direction="outbound-api")
    callee.send_status("in-progress")
    model = greeted_before_the_stream(world, 2)

    callee.send_status("completed")  # gone before Twilio opened the stream

    model.wait_closed(timeout=WAIT)
    wait_until(lambda: goal_row(world, goal_id).status == "no_answer", "the goal to end")
    assert rows(world)[-1].end_reason == "ended before its stream opened (status completed)"


def test_a_restarted_call_supervisor_gives_back_the_places_of_calls_awaiting_their_stream(
    logs: io.StringIO,
) -> None:
    settings = {"sessions": {"max_concurrent": 1, "owner_reserved": 0}}
    with LocalWorld(settings=settings) as world:
        caller = world.phone(STRANGER)
        twiml = caller.dial()
        first = greeted_before_the_stream(world)
        [supervisor] = pykka.ActorRegistry.get_by_class(CallSupervisor)

        supervisor.stop()  # its root restarts it, without the sessions it had

        first.wait_closed(timeout=WAIT)
        wait_until(lambda: ready_with(world) == 0, "the place to be given back")
        # The call's stream still connects, to a session the new supervisor starts.
        caller.connect(twiml)
        second = world.gemini.wait_for_connection(2, timeout=WAIT)
        caller.wait_for_mark("turn-1", timeout=WAIT)
        assert "take_message" in second.function_names
        assert rows(world)[-1].stream_sid == caller.stream_sid
    pykka.ActorRegistry.stop_all()
