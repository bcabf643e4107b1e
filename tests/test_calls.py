"""Phone calls end to end: softphones call the real server and actors, which talk to the
Gemini Live stand-in with the real google-genai client and hang up through the real
twilio client against the REST stand-in."""

from __future__ import annotations

import io
import json
import urllib.request
from typing import Any

import numpy as np
import pykka

from tars_actors.audio.g711 import pcm16_to_ulaw, ulaw_to_pcm16
from tars_actors.call.persona import unknown_caller_greeting
from tars_actors.runtime.events import Subscription
from tars_actors.runtime.supervision import SupervisorEvent
from tars_actors.sim.gemini import LiveBehaviour, ScriptedReply, tone
from tars_actors.sim.twilio_api import Operation
from tars_actors.sim.world import OWNER_PHONE, LocalWorld
from tars_actors.store import AgentSession, Contact, Conversation
from tests.logs import log_events

WAIT = 15.0
STRANGER = "+15555550777"


def session_ended(world: LocalWorld, call_sid: str) -> Subscription:
    """Subscribe before the action that ends the call; wait on the result after."""
    assert world.daemon is not None
    return world.daemon.events.subscribe(
        lambda e: (
            isinstance(e, SupervisorEvent)
            and e.event == "supervisor.child_exited"
            and e.child_id == call_sid
        )
    )


def dominant_frequency(pcm: bytes, rate: int) -> float:
    samples = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(samples.size)))
    return float(np.fft.rfftfreq(samples.size, 1.0 / rate)[int(np.argmax(spectrum))])


def ulaw_tone(frequency: float, seconds: float) -> bytes:
    return pcm16_to_ulaw(tone(frequency, seconds, rate=8000))


def rows(world: LocalWorld, call_sid: str) -> tuple[Any, list[Any]]:
    assert world.daemon is not None
    assert world.daemon.store is not None
    store = world.daemon.store
    with store.connection():
        session = AgentSession.get(AgentSession.call_sid == call_sid)
        lines = list(
            Conversation.select().where(Conversation.session == session).order_by(Conversation.seq)
        )
    return session, lines


def test_owner_call_greets_and_bridges_audio_both_ways_and_records_the_call(
    world: LocalWorld,
) -> None:
    phone = world.phone(OWNER_PHONE)
    phone.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    greeting = model.wait_for_client_content(timeout=WAIT)
    assert "Máté Dort" in greeting.text
    assert "en-US" in greeting.text
    assert "end_call" in model.function_names

    # The greeting reply (a 440 Hz tone, 0.5 s at 24 kHz) reaches the caller as μ-law.
    phone.wait_for_mark("turn-1", timeout=WAIT)
    heard = ulaw_to_pcm16(phone.played_audio())
    assert len(heard) >= 2 * 3800
    assert abs(dominant_frequency(heard, 8000) - 440.0) < 15.0

    # The caller's voice (a 600 Hz tone) reaches the model as 16 kHz PCM.
    phone.say(ulaw_tone(600.0, 1.0))
    model.wait_for_audio(32_000, timeout=WAIT)
    assert model.audio_mime_type == "audio/pcm;rate=16000"
    spoken = model.audio[-24_000:]  # the tail: the tone, not the silence before it
    assert abs(dominant_frequency(spoken, 16000) - 600.0) < 15.0

    model.send_input_transcription("Remind me to call mum.")
    model.reply(ScriptedReply(transcript="Sure, when?", audio=tone(500.0, 0.2)))
    phone.wait_for_mark("turn-2", timeout=WAIT)

    ended = session_ended(world, phone.call_sid)
    phone.hang_up()
    ended.wait_for(lambda e: True, timeout=WAIT)

    session, lines = rows(world, phone.call_sid)
    assert session.name == "Call with Máté Dort (main)"
    assert session.permission == "owner"
    assert session.phone_number == OWNER_PHONE
    assert session.direction == "inbound"
    assert session.stream_sid == phone.stream_sid
    assert session.status == "ended"
    assert session.end_reason == "caller hung up"
    assert session.duration_seconds > 0
    assert [(line.speaker, line.text, line.heard) for line in lines] == [
        ("assistant", "Hello from the stand-in model.", True),
        ("caller", "Remind me to call mum.", True),
        ("assistant", "Sure, when?", True),
    ]


def test_unknown_caller_gets_the_exact_greeting_and_only_everyone_tools(
    world: LocalWorld, logs: io.StringIO
) -> None:
    phone = world.phone(STRANGER)
    phone.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    greeting = model.wait_for_client_content(timeout=WAIT)
    assert world.settings is not None
    assert unknown_caller_greeting(world.settings) in greeting.text
    assert unknown_caller_greeting(world.settings) == (
        "Hey, this is Máté Dort's assistant TARS, how can I help you?"
    )
    assert "limited access" in model.system_instruction
    assert set(model.function_names) == {
        "end_call",
        "take_message",
        "request_callback",
        "request_transfer",
    }

    call_id = model.send_tool_call("create_reminder", {"title": "steal the owner's day"})
    response = model.wait_for_tool_response(call_id, timeout=WAIT)

    assert "error" in response.response
    (refusal,) = log_events(logs, "tool.refused")
    assert refusal["level"] == "warning"
    assert refusal["call_sid"] == phone.call_sid
    assert refusal["tool"] == "create_reminder"
    session, _ = rows(world, phone.call_sid)
    assert session.name == f"Call with {STRANGER}"
    assert session.permission == "unknown"
    phone.hang_up()


def test_barge_in_clears_the_caller_and_drops_the_rest_of_the_turn(world: LocalWorld) -> None:
    phone = world.phone(OWNER_PHONE)
    phone.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    phone.wait_for_mark("turn-1", timeout=WAIT)
    before = len(phone.received_audio)

    model.send_audio(tone(300.0, 5.0))  # a long answer, sent faster than real time
    phone.wait_for_audio(before + 1600, timeout=WAIT)
    model.send_interrupted()
    clear = phone.wait_for_clear(timeout=WAIT)
    at_clear = len(phone.received_audio)

    # The caller's next turn: a short, different answer.
    model.send_turn_complete()
    model.reply(ScriptedReply(transcript="Go ahead.", audio=tone(700.0, 0.2)))
    phone.wait_for_mark("turn-3", timeout=WAIT)

    after = phone.received_audio[at_clear:]
    assert clear.dropped_bytes >= 0
    # Only the new 0.2 s answer (1600 bytes of μ-law, padded to a whole frame) came after.
    assert len(after) <= 1600 + 160
    assert abs(dominant_frequency(ulaw_to_pcm16(after), 8000) - 700.0) < 25.0
    # 5 s were queued; the caller never got most of them.
    assert at_clear - before < 8000 * 2
    phone.hang_up()


def test_end_call_speaks_the_goodbye_then_hangs_up_through_rest_once(
    world: LocalWorld, logs: io.StringIO
) -> None:
    phone = world.phone(OWNER_PHONE)
    phone.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    phone.wait_for_mark("turn-1", timeout=WAIT)
    ended = session_ended(world, phone.call_sid)

    call_id = model.send_tool_call("end_call", {"reason": "done"})
    assert model.wait_for_tool_response(call_id, timeout=WAIT).response["ok"] is True
    model.reply(ScriptedReply(transcript="Goodbye!", audio=tone(500.0, 0.6)))
    goodbye_mark = phone.wait_for_mark("turn-2", timeout=WAIT)
    hang_up = world.twilio.wait_for_request(Operation.CALLS_UPDATE, timeout=WAIT)
    ended.wait_for(lambda e: True, timeout=WAIT)

    assert hang_up.param("Status") == "completed"
    assert phone.call_sid in hang_up.path
    assert hang_up.at >= goodbye_mark.returned_at  # not before the goodbye was heard
    assert not goodbye_mark.flushed

    # Twilio's final status callback arrives afterwards: nothing is closed twice.
    assert phone.send_status("completed").status in (200, 204)
    session, _ = rows(world, phone.call_sid)
    assert session.end_reason == "end_call"
    assert len(log_events(logs, "call.summary")) == 1
    assert len(world.twilio.requests_for(Operation.CALLS_UPDATE)) == 1


def test_a_call_over_capacity_gets_the_apology_and_the_others_carry_on() -> None:
    with LocalWorld(settings={"sessions": {"max_concurrent": 2}}) as world:
        first, second = world.phone(OWNER_PHONE), world.phone(STRANGER)
        first.call()
        second.call()
        world.gemini.wait_for_connection(2, timeout=WAIT)

        third = world.phone("+15555550111")
        twiml = third.dial()

        assert twiml.stream is None
        assert twiml.hangup
        assert any("busy" in text for text in twiml.says)
        for phone in (first, second):
            phone.wait_for_mark("turn-1", timeout=WAIT)
            assert phone.violations == []
            phone.hang_up()
    pykka.ActorRegistry.stop_all()


def test_a_flood_of_malformed_frames_leaves_a_concurrent_call_intact(
    world: LocalWorld, logs: io.StringIO
) -> None:
    good, bad = world.phone(OWNER_PHONE), world.phone(STRANGER)
    good.call()
    bad.call()
    world.gemini.wait_for_connection(2, timeout=WAIT)
    garbage = ["not json", "{}", '{"event":"media"}', '{"event":"dance"}', "[1,2]"]
    for n in range(200):
        bad.send_raw(garbage[n % len(garbage)])

    good.wait_for_mark("turn-1", timeout=WAIT)
    bad.wait_for_mark("turn-1", timeout=WAIT)
    assert len(good.played_audio()) >= 3800
    ended = session_ended(world, bad.call_sid)
    bad.hang_up()
    ended.wait_for(lambda e: True, timeout=WAIT)

    summaries = {s["call_sid"]: s for s in log_events(logs, "call.summary")}
    assert summaries[bad.call_sid]["frames_rejected"] == 200
    # Every summary says what TARS added to the audio each way.
    assert summaries[bad.call_sid]["latency_in_p99_ms"] > 0
    assert summaries[bad.call_sid]["latency_out_p99_ms"] > 0
    assert sum(summaries[bad.call_sid]["latency_out_ms_histogram"].values()) > 10
    good.hang_up()


def test_an_abruptly_closed_model_connection_resumes_without_losing_the_call(
    world: LocalWorld,
) -> None:
    phone = world.phone(OWNER_PHONE)
    phone.call()
    first = world.gemini.wait_for_connection(1, timeout=WAIT)
    phone.wait_for_mark("turn-1", timeout=WAIT)
    first.wait_for(lambda c: bool(c.issued_handles), timeout=WAIT)
    handle = first.issued_handles[-1]

    first.abort()
    second = world.gemini.wait_for_connection(2, timeout=WAIT)
    second.wait_for_audio(32_000, timeout=WAIT)

    assert second.resumption_handle == handle
    assert second.client_contents == []  # resumed: no second greeting
    assert not phone.closed
    # Every caller frame reached one of the two connections: 640 bytes of 16 kHz PCM per
    # 20 ms frame, less what was in flight on the dead socket and the resampler's delay.
    sent = phone.frames_sent
    received = first.audio_bytes + second.audio_bytes
    assert received >= (sent - 15) * 640
    second.reply(ScriptedReply(transcript="Still here.", audio=tone(500.0, 0.2)))
    phone.wait_for_mark("turn-2", timeout=WAIT)
    phone.hang_up()


def test_go_away_rotates_to_a_resumed_connection_and_closes_the_old_one(
    world: LocalWorld,
) -> None:
    phone = world.phone(OWNER_PHONE)
    phone.call()
    first = world.gemini.wait_for_connection(1, timeout=WAIT)
    phone.wait_for_mark("turn-1", timeout=WAIT)
    first.wait_for(lambda c: bool(c.issued_handles), timeout=WAIT)
    handle = first.issued_handles[-1]

    first.send_go_away(10.0, close_after=False)
    second = world.gemini.wait_for_connection(2, timeout=WAIT)
    assert first.wait_closed(timeout=WAIT) == 1000
    second.wait_for_audio(16_000, timeout=WAIT)

    assert second.resumption_handle == handle
    assert second.client_contents == []
    second.reply(ScriptedReply(transcript="Still here.", audio=tone(500.0, 0.2)))
    phone.wait_for_mark("turn-2", timeout=WAIT)
    phone.hang_up()


def test_ten_concurrent_callers_each_hear_only_their_own_audio() -> None:
    echo = LiveBehaviour(echo=True, echo_turn_frames=25, turn_reply=None)
    # Ten strangers: none of the places is kept for the owner.
    limits = {"max_concurrent": 10, "owner_reserved": 0}
    with LocalWorld(behaviour=echo, settings={"sessions": limits}) as world:
        phones = []
        for index in range(10):
            phone = world.phone(f"+1555555{index:04d}")
            phone.call()
            phones.append(phone)
        world.gemini.wait_for_connection(10, timeout=WAIT)
        frequencies = [300.0 + 110.0 * i for i in range(10)]
        for phone, frequency in zip(phones, frequencies, strict=True):
            phone.say(ulaw_tone(frequency, 1.5))
        for phone, frequency in zip(phones, frequencies, strict=True):
            phone.wait_for_audio(8000, timeout=WAIT)
            heard = ulaw_to_pcm16(phone.received_audio[-8000:])
            assert abs(dominant_frequency(heard, 8000) - frequency) < 20.0, frequency
            assert phone.violations == []
        for phone in phones:
            phone.hang_up()
    pykka.ActorRegistry.stop_all()


def test_an_unreachable_model_ends_the_call_with_a_spoken_apology() -> None:
    with LocalWorld(settings={"sessions": {"model_unreachable_seconds": 1.0}}) as world:
        world.gemini.refuse_connections()
        phone = world.phone(OWNER_PHONE)
        phone.call()
        ended = session_ended(world, phone.call_sid)

        update = world.twilio.wait_for_request(Operation.CALLS_UPDATE, timeout=WAIT)
        twiml = update.param("Twiml") or ""
        assert "trouble connecting" in twiml
        assert "<Hangup" in twiml
        assert phone.call_sid in update.path
        assert world.gemini.refused_attempts >= 2  # it kept trying meanwhile
        assert not phone.closed  # the socket is left for Twilio to end
        phone.hang_up()  # as Twilio does to play the new TwiML
        ended.wait_for(lambda e: True, timeout=WAIT)

        session, _ = rows(world, phone.call_sid)
        assert session.end_reason == "model unreachable"
    pykka.ActorRegistry.stop_all()


def test_a_known_contact_is_greeted_by_name(world: LocalWorld) -> None:
    assert world.daemon is not None
    assert world.daemon.store is not None
    with world.daemon.store.connection():
        Contact.create(name="Anna Kovacs", phone="+15555550123", relation="sister")
    phone = world.phone("+15555550123")
    phone.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)

    greeting = model.wait_for_client_content(timeout=WAIT)

    assert "Anna Kovacs" in greeting.text
    assert "sister" in model.system_instruction
    session, _ = rows(world, phone.call_sid)
    assert session.name == "Call with Anna Kovacs"
    assert session.permission == "contact"
    phone.hang_up()


def test_a_final_status_callback_ends_the_session_exactly_once(
    world: LocalWorld, logs: io.StringIO
) -> None:
    phone = world.phone(OWNER_PHONE)
    phone.call()
    phone.wait_for_mark("turn-1", timeout=WAIT)
    with urllib.request.urlopen(f"http://127.0.0.1:{world.port}/healthz", timeout=WAIT) as reply:
        health = json.loads(reply.read())
    assert health == {"ready": True, "sessions": 1}
    ended = session_ended(world, phone.call_sid)

    assert phone.send_status("completed", duration=4).status in (200, 204)
    ended.wait_for(lambda e: True, timeout=WAIT)
    phone.hang_up()  # the stream's own end comes after: nothing happens twice
    phone.wait_closed(timeout=WAIT)

    session, _ = rows(world, phone.call_sid)
    assert session.status == "ended"
    assert session.end_reason == "caller hung up"
    assert len(log_events(logs, "call.summary")) == 1
    assert world.twilio.requests_for(Operation.CALLS_UPDATE) == []


def test_a_call_that_ends_before_its_stream_starts_frees_its_place() -> None:
    with LocalWorld(settings={"sessions": {"max_concurrent": 1}}) as world:
        ringing = world.phone(OWNER_PHONE)
        assert ringing.dial().stream is not None  # admitted, place reserved
        assert world.phone(STRANGER).dial().stream is None  # no place left

        assert ringing.send_status("completed").status in (200, 204)

        assert world.phone(STRANGER).dial().stream is not None
    pykka.ActorRegistry.stop_all()


def test_the_caller_speaking_over_a_finished_answer_cuts_it_off(world: LocalWorld) -> None:
    phone = world.phone(OWNER_PHONE)
    phone.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    phone.wait_for_mark("turn-1", timeout=WAIT)

    # The model generates a long answer far faster than real time and is done with it;
    # most of it is still waiting to be played when the caller starts talking.
    model.reply(ScriptedReply(transcript="A very long story.", audio=tone(300.0, 6.0)))
    phone.wait_for_audio(len(phone.received_audio) + 1600, timeout=WAIT)
    model.send_input_transcription("Stop, stop.")
    clear = phone.wait_for_clear(timeout=WAIT)

    heard = len(phone.played_audio())
    assert clear.dropped_bytes > 0
    # The turn's mark comes straight back with nothing left to play before it.
    assert phone.wait_for_mark("turn-2", timeout=WAIT).returned_at - clear.at < 0.5
    assert heard < 8000 * 3  # far less than the six seconds generated
    ended = session_ended(world, phone.call_sid)
    phone.hang_up()
    ended.wait_for(lambda e: True, timeout=WAIT)
    _, lines = rows(world, phone.call_sid)
    story = [line for line in lines if line.text == "A very long story."]
    assert [line.heard for line in story] == [False]
