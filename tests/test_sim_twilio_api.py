"""The Twilio REST stand-in, driven by the real twilio client."""

from __future__ import annotations

import base64
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from tars_actors.sim.twilio_api import CallRecord, Operation, TwilioRestStandIn

ACCOUNT = "ACtest0123456789abcdef0123456789"
TOKEN = "test-auth-token"
NUMBER = "+15550100000"
CALLEE = "+15550199999"
TWIML = (
    '<Response><Connect><Stream url="wss://tars.example.net/twilio/media"/></Connect></Response>'
)


@pytest.fixture
def twilio() -> Iterator[TwilioRestStandIn]:
    with TwilioRestStandIn(account_sid=ACCOUNT, auth_token=TOKEN, phone_numbers=[NUMBER]) as rest:
        yield rest


@pytest.fixture
def client(twilio: TwilioRestStandIn) -> Client:
    return twilio.make_client()


def test_calls_create_returns_a_queued_call_and_records_every_option(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    call = client.calls.create(
        to=CALLEE,
        from_=NUMBER,
        twiml=TWIML,
        status_callback="https://tars.example.net/twilio/status",
        status_callback_event=["initiated", "answered", "completed"],
        status_callback_method="GET",
        machine_detection="Enable",
        async_amd="true",
        time_limit=600,
    )
    assert call.sid is not None
    assert call.sid.startswith("CA")
    assert len(call.sid) == 34
    assert call.status == "queued"
    assert (call.to, call._from) == (CALLEE, NUMBER)
    assert call.date_created is not None

    record = twilio.call(call.sid)
    assert record.twiml == TWIML
    assert record.status_callback == "https://tars.example.net/twilio/status"
    assert record.status_callback_events == ("initiated", "answered", "completed")
    assert record.status_callback_method == "GET"
    assert (record.machine_detection, record.async_amd, record.time_limit) == (
        "Enable",
        "true",
        600,
    )
    request = twilio.wait_for_request(Operation.CALLS_CREATE)
    assert request.status == 201
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert request.params("StatusCallbackEvent") == ("initiated", "answered", "completed")


def test_calls_create_with_a_url_instead_of_twiml(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    call = client.calls.create(to=CALLEE, from_=NUMBER, url="https://tars.example.net/twilio/voice")
    assert call.sid is not None
    record = twilio.call(call.sid)
    assert (record.url, record.twiml) == ("https://tars.example.net/twilio/voice", None)


def test_fetch_follows_the_call_through_its_statuses(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    call = client.calls.create(to=CALLEE, from_=NUMBER, twiml=TWIML)
    assert call.sid is not None
    twilio.set_call_status(call.sid, "ringing")
    assert client.calls(call.sid).fetch().status == "ringing"
    twilio.set_call_status(call.sid, "in-progress", answered_by="human")
    fetched = client.calls(call.sid).fetch()
    assert (fetched.status, fetched.answered_by) == ("in-progress", "human")
    assert fetched.start_time is not None


def test_update_to_completed_hangs_up_once_then_404s(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    ended: list[CallRecord] = []
    done = threading.Event()

    def record_end(call: CallRecord) -> None:
        ended.append(call)
        done.set()

    twilio.on_call_ended(record_end)
    call = client.calls.create(to=CALLEE, from_=NUMBER, twiml=TWIML)
    assert call.sid is not None
    twilio.set_call_status(call.sid, "in-progress")

    updated = client.calls(call.sid).update(status="completed")
    assert updated.status == "completed"
    assert updated.end_time is not None
    assert done.wait(5)
    assert [c.sid for c in ended] == [call.sid]
    assert ended[0].ended_by_request

    with pytest.raises(TwilioRestException) as again:
        client.calls(call.sid).update(status="completed")
    assert (again.value.status, again.value.code) == (404, 20404)
    assert twilio.requests_for(Operation.CALLS_UPDATE)[-1].status == 404
    assert twilio.hook_errors == []


def test_hanging_up_a_ringing_call_cancels_it(twilio: TwilioRestStandIn, client: Client) -> None:
    call = client.calls.create(to=CALLEE, from_=NUMBER, twiml=TWIML)
    assert call.sid is not None
    assert client.calls(call.sid).update(status="completed").status == "canceled"


def test_unknown_call_sid_is_a_404_with_code_20404(client: Client) -> None:
    with pytest.raises(TwilioRestException) as missing:
        client.calls("CA" + "0" * 32).fetch()
    assert (missing.value.status, missing.value.code) == (404, 20404)
    with pytest.raises(TwilioRestException) as missing_update:
        client.calls("CA" + "0" * 32).update(status="completed")
    assert missing_update.value.code == 20404


def test_call_created_hook_runs_after_the_response_and_can_answer(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    twilio.on_call_created(lambda call: twilio.set_call_status(call.sid, "in-progress"))
    call = client.calls.create(to=CALLEE, from_=NUMBER, twiml=TWIML)
    assert call.sid is not None
    answered = twilio.wait_for_call_status(call.sid, "in-progress")
    assert answered.started_at is not None
    assert twilio.wait_for_call(1).sid == call.sid


def test_callee_hanging_up_fires_the_ended_hook_exactly_once(twilio: TwilioRestStandIn) -> None:
    ended: list[str] = []
    twilio.on_call_ended(lambda call: ended.append(call.status))
    client = twilio.make_client()
    call = client.calls.create(to=CALLEE, from_=NUMBER, twiml=TWIML)
    assert call.sid is not None
    twilio.set_call_status(call.sid, "in-progress")
    twilio.set_call_status(call.sid, "completed")
    twilio.set_call_status(call.sid, "completed")
    with pytest.raises(ValueError, match="already ended"):
        twilio.set_call_status(call.sid, "in-progress")
    # A call created after the ending marks when all earlier hooks have run.
    marker = threading.Event()
    twilio.on_call_created(lambda _: marker.set())
    client.calls.create(to=CALLEE, from_=NUMBER, twiml=TWIML)
    assert marker.wait(5)
    assert ended == ["completed"]


def test_scripted_failure_applies_to_the_next_create_only(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    twilio.fail_next(Operation.CALLS_CREATE, status=429, code=20429, message="Too Many Requests")
    with pytest.raises(TwilioRestException) as failed:
        client.calls.create(to=CALLEE, from_=NUMBER, twiml=TWIML)
    assert (failed.value.status, failed.value.code) == (429, 20429)
    assert twilio.calls == []
    assert client.calls.create(to=CALLEE, from_=NUMBER, twiml=TWIML).status == "queued"


def test_messages_create_records_the_sms(twilio: TwilioRestStandIn, client: Client) -> None:
    message = client.messages.create(to=CALLEE, from_=NUMBER, body="Reminder: dentist at 3")
    assert message.sid is not None
    assert message.sid.startswith("SM")
    assert message.status == "queued"
    recorded = twilio.wait_for_message(1)
    assert (recorded.to, recorded.from_, recorded.body) == (
        CALLEE,
        NUMBER,
        "Reminder: dentist at 3",
    )


def test_messages_create_without_a_body_is_rejected(client: Client) -> None:
    with pytest.raises(TwilioRestException) as rejected:
        client.messages.create(to=CALLEE, from_=NUMBER)
    assert (rejected.value.status, rejected.value.code) == (400, 21602)


def test_numbers_are_listed_by_phone_number_and_updated(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    twilio.seed_phone_number("+15550100001", friendly_name="second line")
    (number,) = client.incoming_phone_numbers.list(phone_number=NUMBER)
    assert number.phone_number == NUMBER
    assert len(client.incoming_phone_numbers.list()) == 2
    assert client.incoming_phone_numbers.list(phone_number="+15550000000") == []

    updated = client.incoming_phone_numbers(number.sid).update(
        voice_url="https://tars.example.net/twilio/voice",
        voice_method="GET",
        status_callback="https://tars.example.net/twilio/status",
        status_callback_method="GET",
    )
    assert (updated.voice_url, updated.voice_method) == (
        "https://tars.example.net/twilio/voice",
        "GET",
    )
    (stored,) = [n for n in twilio.phone_numbers if n.phone_number == NUMBER]
    assert stored.status_callback == "https://tars.example.net/twilio/status"
    assert stored.status_callback_method == "GET"


def test_wrong_credentials_get_401(twilio: TwilioRestStandIn) -> None:
    intruder = Client(ACCOUNT, "wrong-test-token")
    intruder.edge = intruder.region = None
    intruder.api.base_url = twilio.base_url
    with pytest.raises(TwilioRestException) as refused:
        intruder.calls.create(to=CALLEE, from_=NUMBER, twiml=TWIML)
    assert (refused.value.status, refused.value.code) == (401, 20003)
    assert twilio.calls == []
    assert twilio.requests[-1].status == 401


def test_requests_without_auth_or_to_unknown_paths_are_refused(twilio: TwilioRestStandIn) -> None:
    url = f"{twilio.base_url}/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    with pytest.raises(urllib.error.HTTPError) as unauthenticated:
        urllib.request.urlopen(urllib.request.Request(url, data=b"To=x", method="POST"))
    assert unauthenticated.value.code == 401

    token = base64.b64encode(f"{ACCOUNT}:{TOKEN}".encode()).decode()
    unknown = urllib.request.Request(
        f"{twilio.base_url}/2010-04-01/Accounts/{ACCOUNT}/Recordings.json",
        headers={"Authorization": f"Basic {token}"},
    )
    with pytest.raises(urllib.error.HTTPError) as not_found:
        urllib.request.urlopen(unknown)
    assert not_found.value.code == 404
