"""The stand-ins' pure pieces without sockets: Media Streams messages, the playout buffer,
REST request reading and the Live client messages."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from tars_actors.sim._waiting import Changes
from tars_actors.sim.gemini._messages import client_content_of, tool_responses_of
from tars_actors.sim.softphone._media import (
    MediaFrames,
    ServerClear,
    ServerMark,
    ServerMedia,
    Violation,
    event_frame,
    read_server_frame,
)
from tars_actors.sim.softphone._playout import PlayoutBuffer
from tars_actors.sim.twilio_api import Operation
from tars_actors.sim.twilio_api._requests import Params, RestError, authenticate, route

SID = "MZ0123"
ACCOUNT = "ACtest0123456789abcdef0123456789"


def _server(event: str, **body: object) -> str:
    return json.dumps({"event": event, "streamSid": SID, **body})


# -- Media Streams messages ---------------------------------------------------------------------


def test_twilio_reads_media_mark_and_clear_from_the_server() -> None:
    payload = base64.b64encode(b"\x01\x02").decode()
    assert read_server_frame(_server("media", media={"payload": payload}), SID) == ServerMedia(
        b"\x01\x02"
    )
    assert read_server_frame(_server("mark", mark={"name": "m1"}), SID) == ServerMark("m1")
    assert read_server_frame(_server("clear"), SID) == ServerClear()


@pytest.mark.parametrize(
    ("message", "violation"),
    [
        (b"{}", "binary frame (Twilio accepts text frames only)"),
        ("nope", "not JSON: 'nope'"),
        ("[1]", "not a JSON object: '[1]'"),
        (json.dumps({"event": "clear", "streamSid": "MZother"}), "clear with streamSid 'MZother'"),
        (
            _server("media", media={"payload": "AA==", "track": "outbound"}),
            "media with keys {'event': None, 'streamSid': None, 'media': ['payload', 'track']}",
        ),
        (_server("media", media={"payload": 7}), "media payload is not a string"),
        (_server("media", media={"payload": "not base64!"}), "media payload is not base64"),
        (_server("mark", mark={"name": 3}), "mark name is not a string: 3"),
        (_server("clear", clear={}), "clear with keys ['clear', 'event', 'streamSid']"),
        (_server("dtmf"), "unknown event 'dtmf'"),
    ],
)
def test_what_twilio_would_reject_is_named(message: str | bytes, violation: str) -> None:
    assert read_server_frame(message, SID) == Violation(violation)


def test_media_frames_carry_sequence_chunk_timestamp_and_base64_audio() -> None:
    frame = json.loads(MediaFrames(SID).frame(sequence=7, chunk=3, mulaw=b"\xff\x00"))
    assert frame == {
        "event": "media",
        "sequenceNumber": "7",
        "streamSid": SID,
        "media": {"track": "inbound", "chunk": "3", "timestamp": "40", "payload": "/wA="},
    }


def test_an_event_frame_puts_its_body_under_the_event_name() -> None:
    frame = event_frame("mark", sequence=2, stream_sid=SID, body={"name": "m1"})
    assert frame == (
        '{"event": "mark", "sequenceNumber": "2", "streamSid": "MZ0123", "mark": {"name": "m1"}}'
    )


# -- the playout buffer -------------------------------------------------------------------------


def test_clear_drops_unplayed_audio_and_returns_pending_marks_flushed() -> None:
    echoed: list[str] = []

    async def scenario() -> PlayoutBuffer:
        buffer = PlayoutBuffer(
            changes=Changes(), echo_mark=echoed.append, gap_tolerance=0.01, record_audio=True
        )
        buffer.media(b"\x00" * 8000)  # one second of μ-law
        buffer.mark("after-audio")
        assert buffer.marks == []  # due once the second has played
        buffer.clear()
        return buffer

    buffer = asyncio.run(scenario())
    [mark] = buffer.marks
    assert (mark.name, mark.flushed) == ("after-audio", True)
    assert echoed == ["after-audio"]
    [clear] = buffer.clears
    assert clear.flushed_marks == ("after-audio",)
    heard = sum(len(played.audio) for played in buffer.played(clear.at))
    assert clear.dropped_bytes > 0
    assert heard + clear.dropped_bytes == 8000
    assert (buffer.frames_received, buffer.bytes_received) == (1, 8000)


def test_a_mark_after_played_audio_returns_at_once() -> None:
    echoed: list[str] = []

    async def scenario() -> PlayoutBuffer:
        buffer = PlayoutBuffer(
            changes=Changes(), echo_mark=echoed.append, gap_tolerance=0.01, record_audio=False
        )
        buffer.mark("nothing-buffered")
        return buffer

    buffer = asyncio.run(scenario())
    assert [(mark.name, mark.flushed) for mark in buffer.marks] == [("nothing-buffered", False)]
    assert echoed == ["nothing-buffered"]


# -- REST request reading -----------------------------------------------------------------------


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def test_basic_auth_must_name_the_account_and_its_token() -> None:
    authenticate(_basic(ACCOUNT, "token"), account_sid=ACCOUNT, auth_token="token")
    for authorization in (_basic(ACCOUNT, "wrong"), "Bearer x", None, "Basic !!!"):
        with pytest.raises(RestError) as refused:
            authenticate(authorization, account_sid=ACCOUNT, auth_token="token")
        assert (refused.value.status, refused.value.code) == (401, 20003)


def test_routes_pick_the_operation_and_refuse_other_accounts_and_methods() -> None:
    calls = f"/2010-04-01/Accounts/{ACCOUNT}/Calls"
    operation, match = route("POST", f"{calls}/CA1.json", account_sid=ACCOUNT)
    assert (operation, match["sid"]) == (Operation.CALLS_UPDATE, "CA1")
    assert route("GET", f"{calls}/CA1.json", account_sid=ACCOUNT)[0] is Operation.CALLS_FETCH
    with pytest.raises(RestError) as other_account:
        route("POST", "/2010-04-01/Accounts/ACother/Calls.json", account_sid=ACCOUNT)
    assert other_account.value.status == 403
    # GET on the list is Twilio's calls.list; a method the resource has not is a 404.
    assert route("GET", f"{calls}.json", account_sid=ACCOUNT)[0] is Operation.CALLS_LIST
    with pytest.raises(RestError) as wrong_method:
        route("DELETE", f"{calls}.json", account_sid=ACCOUNT)
    assert wrong_method.value.status == 404


def test_params_keep_repeated_keys_and_give_the_first() -> None:
    params = Params((("Event", "a"), ("To", "+1"), ("Event", "b")))
    assert params.get("Event") == "a"
    assert params.all("Event") == ("a", "b")
    assert params.get("Missing", "default") == "default"


# -- Live client messages -----------------------------------------------------------------------


def test_client_content_is_read_in_either_key_style() -> None:
    turns = [{"role": "user", "parts": [{"text": "hello"}, {"inline_data": {}}]}, "junk"]
    snake = client_content_of({"turns": turns, "turn_complete": True}, at=1.0)
    camel = client_content_of({"turns": turns, "turnComplete": True}, at=1.0)
    assert snake == camel
    assert (snake.text, snake.roles, snake.turn_complete) == ("hello", ("user",), True)


def test_tool_responses_skip_entries_that_are_not_objects() -> None:
    message = {"functionResponses": [{"id": "c1", "name": "f", "response": {"ok": 1}}, 7]}
    [response] = tool_responses_of(message, at=2.0)
    assert (response.id, response.name, dict(response.response), response.at) == (
        "c1",
        "f",
        {"ok": 1},
        2.0,
    )
