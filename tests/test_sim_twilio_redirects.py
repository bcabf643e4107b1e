"""Redirects of calls on the Twilio REST stand-in, the conference joins and dials their TwiML
asks for, and calls a caller placed (seeded), driven by the real twilio client."""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from tars_actors.sim.twilio_api import (
    CallRecord,
    ConferenceJoin,
    DialRecord,
    Operation,
    RedirectRecord,
    TwilioRestStandIn,
)

ACCOUNT = "ACtest0123456789abcdef0123456789"
TOKEN = "test-auth-token"
NUMBER = "+15550100000"
CALLEE = "+15550199999"
CALLER = "+15550177777"
INBOUND_SID = "CA" + "7" * 32
ROOM = "tars-transfer-7"
STREAM = (
    '<Response><Connect><Stream url="wss://tars.example.net/twilio/media"/></Connect></Response>'
)


@pytest.fixture
def twilio() -> Iterator[TwilioRestStandIn]:
    with TwilioRestStandIn(account_sid=ACCOUNT, auth_token=TOKEN, phone_numbers=[NUMBER]) as rest:
        yield rest


@pytest.fixture
def client(twilio: TwilioRestStandIn) -> Client:
    return twilio.make_client()


def answered_call(twilio: TwilioRestStandIn, client: Client) -> str:
    """A call TARS placed and the callee answered."""
    call = client.calls.create(to=CALLEE, from_=NUMBER, twiml=STREAM)
    assert call.sid is not None
    twilio.set_call_status(call.sid, "in-progress")
    return call.sid


def to_conference(
    *,
    whisper: str | None = None,
    start: bool = True,
    end: bool = False,
    wait_url: str | None = None,
) -> str:
    response = VoiceResponse()
    if whisper is not None:
        response.say(whisper)
    dial = response.dial()
    dial.conference(
        ROOM, start_conference_on_enter=start, end_conference_on_exit=end, wait_url=wait_url
    )
    return str(response)


def hooks_done(twilio: TwilioRestStandIn, client: Client) -> None:
    """Wait until every hook queued so far has run: hooks run in order, one at a time."""
    marker = threading.Event()
    twilio.on_call_created(lambda _: marker.set())
    client.calls.create(to=CALLEE, from_=NUMBER, twiml=STREAM)
    assert marker.wait(5)


def test_redirecting_an_answered_call_replaces_its_twiml_and_records_the_redirect(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    sid = answered_call(twilio, client)
    twiml = to_conference(whisper="Anna, about the lease", start=True, end=True)

    updated = client.calls(sid).update(twiml=twiml)
    assert updated.status == "in-progress"
    assert twilio.call(sid).twiml == twiml

    redirect = twilio.wait_for_redirect(1)
    assert isinstance(redirect, RedirectRecord)
    assert (redirect.call_sid, redirect.twiml, redirect.url) == (sid, twiml, None)
    assert twilio.redirects == [redirect]
    (join,) = twilio.conference(ROOM)
    assert join == ConferenceJoin(
        room=ROOM,
        call_sid=sid,
        whisper="Anna, about the lease",
        start_conference_on_enter=True,
        end_conference_on_exit=True,
        wait_url=None,
        at=redirect.at,
    )
    assert twilio.conference_rooms == [ROOM]
    assert twilio.dials == []


def test_a_seeded_inbound_call_can_be_redirected_and_hung_up(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    ended: queue.Queue[CallRecord] = queue.Queue()
    twilio.on_call_ended(ended.put)
    seeded = twilio.seed_call(INBOUND_SID, from_=CALLER, to=NUMBER)
    assert (seeded.direction, seeded.status) == ("inbound", "in-progress")
    assert seeded.started_at is not None

    client.calls(INBOUND_SID).update(url="https://tars.example.net/twilio/hold")
    redirect = twilio.wait_for_redirect(1)
    assert (redirect.call_sid, redirect.twiml, redirect.url) == (
        INBOUND_SID,
        None,
        "https://tars.example.net/twilio/hold",
    )
    assert twilio.call(INBOUND_SID).url == "https://tars.example.net/twilio/hold"
    assert twilio.conference_rooms == []

    assert client.calls(INBOUND_SID).update(status="completed").status == "completed"
    assert ended.get(timeout=5).sid == INBOUND_SID
    assert twilio.call(INBOUND_SID).ended_by_request


def test_two_calls_join_one_room_in_order_with_their_whispers_and_flags(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    twilio.seed_call(INBOUND_SID, from_=CALLER, to=NUMBER)
    callee = answered_call(twilio, client)

    client.calls(INBOUND_SID).update(
        twiml=to_conference(start=False, wait_url="https://tars.example.net/twilio/hold-music")
    )
    client.calls(callee).update(
        twiml=to_conference(whisper="Anna, about the lease", start=True, end=True)
    )

    first, second = twilio.wait_for_conference(ROOM, participants=2)
    assert (first.call_sid, second.call_sid) == (INBOUND_SID, callee)
    assert (first.whisper, second.whisper) == (None, "Anna, about the lease")
    assert (first.start_conference_on_enter, first.end_conference_on_exit) == (False, False)
    assert (second.start_conference_on_enter, second.end_conference_on_exit) == (True, True)
    assert (first.wait_url, second.wait_url) == (
        "https://tars.example.net/twilio/hold-music",
        None,
    )
    assert twilio.conference_rooms == [ROOM]
    assert twilio.conference("another-room") == []
    assert [r.call_sid for r in twilio.redirects] == [INBOUND_SID, callee]


def test_conference_attributes_missing_take_twilios_defaults(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    sid = answered_call(twilio, client)
    response = VoiceResponse()
    response.say("One moment.")
    response.say("Connecting you now.")
    response.dial().conference(f"  {ROOM}\n")
    client.calls(sid).update(twiml=str(response))
    (join,) = twilio.wait_for_conference(ROOM)
    assert (join.start_conference_on_enter, join.end_conference_on_exit) == (True, False)
    assert join.whisper == "One moment. Connecting you now."


def test_a_dialled_number_is_recorded_with_caller_id_and_timeout(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    sid = answered_call(twilio, client)
    response = VoiceResponse()
    response.say("Putting you through to Anna.")
    dial = response.dial(caller_id="+15555550999", timeout=25)
    dial.number("+15555550444")
    client.calls(sid).update(twiml=str(response))

    redirect = twilio.wait_for_redirect(1)
    assert twilio.dials == [
        DialRecord(
            call_sid=sid,
            number="+15555550444",
            caller_id="+15555550999",
            timeout=25,
            whisper="Putting you through to Anna.",
            at=redirect.at,
        )
    ]
    assert twilio.conference_rooms == []


def test_redirecting_a_ringing_call_is_refused_and_not_recorded(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    call = client.calls.create(to=CALLEE, from_=NUMBER, twiml=STREAM)
    assert call.sid is not None
    twilio.set_call_status(call.sid, "ringing")
    with pytest.raises(TwilioRestException) as refused:
        client.calls(call.sid).update(twiml=to_conference())
    assert (refused.value.status, refused.value.code) == (400, 21220)
    assert twilio.call(call.sid).twiml == STREAM
    assert twilio.redirects == []
    assert twilio.conference_rooms == []


@pytest.mark.parametrize(
    "twiml",
    [
        "<Response><Dial><Conference>tars-transfer-7</Dial></Response>",
        "<Dial><Conference>tars-transfer-7</Conference></Dial>",
        "not TwiML at all",
    ],
)
def test_twiml_that_does_not_parse_is_refused_with_12100_and_changes_nothing(
    twilio: TwilioRestStandIn, client: Client, twiml: str
) -> None:
    sid = answered_call(twilio, client)
    with pytest.raises(TwilioRestException) as refused:
        client.calls(sid).update(twiml=twiml)
    assert (refused.value.status, refused.value.code) == (400, 12100)
    assert twilio.requests_for(Operation.CALLS_UPDATE)[-1].status == 400
    assert twilio.call(sid).twiml == STREAM
    assert twilio.redirects == []
    assert twilio.conference_rooms == []
    assert twilio.dials == []


def test_the_redirect_hook_runs_once_per_redirect_with_the_new_twiml(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    seen: list[tuple[CallRecord, RedirectRecord]] = []
    twilio.on_call_redirected(lambda call, redirect: seen.append((call, redirect)))
    sid = answered_call(twilio, client)
    hold = '<Response><Say>Please hold.</Say><Pause length="30"/></Response>'
    bridge = to_conference(whisper="Anna, about the lease")

    client.calls(sid).update(twiml=hold)
    client.calls(sid).update(twiml=bridge)
    client.calls(sid).update(status="completed")
    hooks_done(twilio, client)

    assert [(call.sid, call.twiml) for call, _ in seen] == [(sid, hold), (sid, bridge)]
    assert [redirect for _, redirect in seen] == twilio.redirects
    assert twilio.wait_for_redirect(2).twiml == bridge
    assert twilio.hook_errors == []


def test_calls_create_records_the_ring_timeout(twilio: TwilioRestStandIn, client: Client) -> None:
    timed = client.calls.create(to=CALLEE, from_=NUMBER, twiml=STREAM, timeout=25)
    untimed = client.calls.create(to=CALLEE, from_=NUMBER, twiml=STREAM)
    assert timed.sid is not None
    assert untimed.sid is not None
    assert twilio.call(timed.sid).timeout == 25
    assert twilio.call(untimed.sid).timeout is None
    assert twilio.wait_for_request(Operation.CALLS_CREATE).param("Timeout") == "25"


def test_a_seeded_call_runs_no_created_hook_and_lists_as_inbound(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    created: list[str] = []
    twilio.on_call_created(lambda call: created.append(call.sid))
    twilio.seed_call(INBOUND_SID, from_=CALLER, to=NUMBER)
    placed = client.calls.create(to=CALLEE, from_=NUMBER, twiml=STREAM)
    assert placed.sid is not None
    hooks_done(twilio, client)
    assert created[0] == placed.sid
    assert INBOUND_SID not in created
    assert twilio.wait_for_call(1).sid == placed.sid

    (inbound,) = client.calls.list(from_=CALLER)
    assert (inbound.sid, inbound.direction, inbound.status) == (
        INBOUND_SID,
        "inbound",
        "in-progress",
    )
    assert inbound.start_time is not None
    assert client.calls(placed.sid).fetch().direction == "outbound-api"
    assert client.calls(INBOUND_SID).fetch().to == NUMBER


def test_seeding_refuses_a_known_sid_and_an_ended_status(twilio: TwilioRestStandIn) -> None:
    twilio.seed_call(INBOUND_SID, from_=CALLER, to=NUMBER, status="ringing")
    assert twilio.call(INBOUND_SID).started_at is None
    with pytest.raises(ValueError, match="known already"):
        twilio.seed_call(INBOUND_SID, from_=CALLER, to=NUMBER)
    with pytest.raises(ValueError, match="not 'completed'"):
        twilio.seed_call("CA" + "8" * 32, from_=CALLER, to=NUMBER, status="completed")
    with pytest.raises(ValueError, match="direction"):
        twilio.seed_call("CA" + "9" * 32, from_=CALLER, to=NUMBER, direction="sideways")
