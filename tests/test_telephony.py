"""The Telephony actor and the Twilio REST client, against the REST stand-in."""

from __future__ import annotations

import threading
from collections.abc import Iterator, MutableMapping, Sequence
from typing import Any

import pykka
import pytest
import requests
import urllib3
from structlog.testing import capture_logs
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from actors.telephony import RetryPolicy, Telephony
from tars_actors.actor_messages import (
    CallFailed,
    CallPlaced,
    HangUp,
    PlaceCall,
    SayAndHangUp,
    SendSms,
    SmsFailed,
    SmsSent,
)
from tars_actors.runtime.settings import Secrets, Settings
from tars_actors.sim.twilio_api import Operation, TwilioRestStandIn
from tars_actors.telephony.rest import describe_error, is_already_ended, is_transient, make_client
from tests.waiting import wait_until

ACCOUNT = "ACtest0123456789abcdef0123456789"
TOKEN = "test-auth-token"
NUMBER = "+15550100000"
CALLEE = "+15550199999"
WAIT = 5.0
QUICK_RETRIES = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.02)


class Replies:
    """The replies an SMS requester got, waitable from the test thread."""

    def __init__(self) -> None:
        self._arrived = threading.Condition()
        self._replies: list[Any] = []

    def add(self, message: Any) -> None:
        with self._arrived:
            self._replies.append(message)
            self._arrived.notify_all()

    def first(self) -> Any:
        with self._arrived:
            if not self._arrived.wait_for(lambda: self._replies, WAIT):
                raise TimeoutError("no reply to the SMS request")
            return self._replies[0]


class Inbox(pykka.ThreadingActor):
    """Whoever asked for an SMS: keeps the replies."""

    def __init__(self, replies: Replies) -> None:
        super().__init__()
        self._replies = replies

    def on_receive(self, message: Any) -> Any:
        self._replies.add(message)
        return None


def new_inbox() -> tuple[pykka.ActorRef[Inbox], Replies]:
    replies = Replies()
    return Inbox.start(replies), replies


def logged(logs: Sequence[MutableMapping[str, Any]], event: str) -> list[MutableMapping[str, Any]]:
    return [line for line in list(logs) if line["event"] == event]


@pytest.fixture(autouse=True)
def _stop_every_actor() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=WAIT)


@pytest.fixture
def twilio() -> Iterator[TwilioRestStandIn]:
    with TwilioRestStandIn(account_sid=ACCOUNT, auth_token=TOKEN, phone_numbers=[NUMBER]) as rest:
        yield rest


@pytest.fixture
def settings(twilio: TwilioRestStandIn) -> Settings:
    base = Settings(secrets=Secrets(twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN))
    return base.with_overrides(
        {"twilio.api_base_url": twilio.base_url, "twilio.phone_number": NUMBER}
    )


@pytest.fixture
def telephony(settings: Settings) -> pykka.ActorRef[Telephony]:
    return Telephony.start(settings, retry=QUICK_RETRIES)


def live_call(twilio: TwilioRestStandIn) -> str:
    call = twilio.make_client().calls.create(to=CALLEE, from_=NUMBER, twiml="<Response/>")
    twilio.set_call_status(call.sid, "in-progress")
    return str(call.sid)


# -- the client ----------------------------------------------------------------------------------


def test_the_client_goes_to_the_api_base_url_even_with_an_edge_in_the_environment(
    twilio: TwilioRestStandIn, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TWILIO_EDGE", "sydney")
    monkeypatch.setenv("TWILIO_REGION", "au1")
    client = make_client(settings)
    client.messages.create(from_=NUMBER, to=CALLEE, body="hello")
    [request] = twilio.requests_for(Operation.MESSAGES_CREATE)
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert request.status == 201


def test_the_client_needs_both_credentials() -> None:
    settings = Settings(secrets=Secrets(twilio_account_sid=ACCOUNT))
    with pytest.raises(ValueError, match="TWILIO_AUTH_TOKEN"):
        make_client(settings)


def test_errors_are_told_apart_already_ended_and_transient() -> None:
    ended = TwilioRestException(404, "/Calls/CA1.json", "not found", code=20404, method="POST")
    server = TwilioRestException(500, "/Calls.json", "oops", code=20500, method="POST")
    busy = TwilioRestException(503, "/Messages.json", "busy", code=20503, method="POST")
    refused = requests.exceptions.ConnectionError(
        urllib3.exceptions.MaxRetryError(
            urllib3.HTTPConnectionPool("127.0.0.1"),
            "/",
            urllib3.exceptions.NewConnectionError(
                urllib3.connection.HTTPConnection("127.0.0.1"), "refused"
            ),
        )
    )
    dropped = requests.exceptions.ConnectionError("Connection aborted.")
    assert is_already_ended(ended)
    assert not is_already_ended(server)
    assert not is_transient(ended, idempotent=True)
    assert is_transient(server, idempotent=True)
    # A message may have gone out before a 500 or a dropped connection: not sent twice.
    assert not is_transient(server, idempotent=False)
    assert not is_transient(dropped, idempotent=False)
    assert is_transient(busy, idempotent=False)
    assert is_transient(refused, idempotent=False)
    assert is_transient(requests.exceptions.ReadTimeout(), idempotent=True)
    assert not is_transient(ValueError("bug"), idempotent=True)
    assert describe_error(ended) == "HTTP 404 code 20404: not found"


# -- hang-ups ------------------------------------------------------------------------------------


def test_a_hang_up_completes_the_call(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    sid = live_call(twilio)
    with capture_logs() as logs:
        telephony.tell(HangUp(call_sid=sid, reason="end_call"))
        twilio.wait_for(lambda rest: rest.call(sid).ended, WAIT, "the call to end")
        wait_until(lambda: bool(logged(logs, "telephony.hung_up")), "the outcome line")
    record = twilio.call(sid)
    assert (record.status, record.ended_by_request) == ("completed", True)
    [request] = twilio.requests_for(Operation.CALLS_UPDATE)
    assert request.form == (("Status", "completed"),)
    [line] = logged(logs, "telephony.hung_up")
    assert (line["call_sid"], line["reason"], line["attempts"]) == (sid, "end_call", 1)


def test_hanging_up_a_call_that_already_ended_is_fine(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    sid = live_call(twilio)
    twilio.set_call_status(sid, "completed")
    with capture_logs() as logs:
        telephony.tell(HangUp(call_sid=sid, reason="end_call"))
        wait_until(lambda: bool(logged(logs, "telephony.hang_up_already_ended")), "the outcome")
    [request] = twilio.requests_for(Operation.CALLS_UPDATE)  # a 404 is not retried
    assert request.status == 404
    [line] = logged(logs, "telephony.hang_up_already_ended")
    assert line["log_level"] == "info"
    assert logged(logs, "telephony.hang_up_failed") == []


def test_a_transient_server_error_is_retried_until_the_hang_up_succeeds(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    sid = live_call(twilio)
    twilio.fail_next(Operation.CALLS_UPDATE, status=500, code=20500, times=2)
    with capture_logs() as logs:
        telephony.tell(HangUp(call_sid=sid, reason="max_duration"))
        twilio.wait_for(lambda rest: rest.call(sid).ended, WAIT, "the call to end")
        wait_until(lambda: bool(logged(logs, "telephony.hung_up")), "the outcome line")
    statuses = [request.status for request in twilio.requests_for(Operation.CALLS_UPDATE)]
    assert statuses == [500, 500, 200]
    assert [line["attempt"] for line in logged(logs, "telephony.retrying")] == [1, 2]
    assert logged(logs, "telephony.hung_up")[0]["attempts"] == 3


def test_retries_are_bounded(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    sid = live_call(twilio)
    twilio.fail_next(Operation.CALLS_UPDATE, status=502, code=20502, times=10)
    with capture_logs() as logs:
        telephony.tell(HangUp(call_sid=sid, reason="end_call"))
        wait_until(lambda: bool(logged(logs, "telephony.hang_up_failed")), "the failure line")
    assert len(twilio.requests_for(Operation.CALLS_UPDATE)) == QUICK_RETRIES.attempts
    [line] = logged(logs, "telephony.hang_up_failed")
    assert (line["log_level"], line["attempts"]) == ("error", 3)
    assert line["error"].startswith("HTTP 502 code 20502")
    assert not twilio.call(sid).ended


def test_say_and_hang_up_replaces_the_calls_twiml_with_a_goodbye(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    sid = live_call(twilio)
    text = "Sorry, I cannot reach my brain right now. Please call again later."
    telephony.tell(SayAndHangUp(call_sid=sid, text=text, language="en-US"))
    request = twilio.wait_for_request(Operation.CALLS_UPDATE)
    assert request.status == 200
    assert twilio.call(sid).twiml == (
        f'<?xml version="1.0" encoding="UTF-8"?><Response><Say language="en-US">{text}</Say>'
        "<Hangup /></Response>"
    )


def test_say_and_hang_up_of_an_unanswered_call_just_ends_it(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    call = twilio.make_client().calls.create(to=CALLEE, from_=NUMBER, twiml="<Response/>")
    telephony.tell(SayAndHangUp(call_sid=call.sid, text="Goodbye."))
    twilio.wait_for(lambda rest: rest.call(call.sid).ended, WAIT, "the call to end")
    assert [r.status for r in twilio.requests_for(Operation.CALLS_UPDATE)] == [400, 200]


# -- SMS -----------------------------------------------------------------------------------------


def test_an_sms_goes_from_the_twilio_number_and_the_requester_is_told(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    inbox, replies = new_inbox()
    telephony.tell(
        SendSms(to=CALLEE, body="Call Anna back about Friday", reply_to=inbox, correlation_id="m7")
    )
    reply = replies.first()
    [message] = twilio.messages
    assert (message.from_, message.to, message.body) == (
        NUMBER,
        CALLEE,
        "Call Anna back about Friday",
    )
    assert reply == SmsSent(correlation_id="m7", message_sid=message.sid)


def test_an_sms_twilio_refuses_is_reported_and_not_retried(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    twilio.fail_next(
        Operation.MESSAGES_CREATE, status=400, code=21211, message="Invalid 'To' Phone Number"
    )
    inbox, replies = new_inbox()
    telephony.tell(SendSms(to="+1555", body="hi", reply_to=inbox, correlation_id="m8"))
    reply = replies.first()
    assert isinstance(reply, SmsFailed)
    assert (reply.correlation_id, reply.code) == ("m8", 21211)
    assert "Invalid 'To' Phone Number" in reply.error
    assert len(twilio.requests_for(Operation.MESSAGES_CREATE)) == 1


def test_an_sms_is_not_sent_twice_after_a_server_error_but_is_retried_when_busy(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    twilio.fail_next(Operation.MESSAGES_CREATE, status=500, code=20500)
    inbox, replies = new_inbox()
    telephony.tell(SendSms(to=CALLEE, body="once", reply_to=inbox, correlation_id="a"))
    assert isinstance(replies.first(), SmsFailed)
    assert len(twilio.requests_for(Operation.MESSAGES_CREATE)) == 1

    twilio.fail_next(Operation.MESSAGES_CREATE, status=503, code=20503)
    busy_inbox, busy_replies = new_inbox()
    telephony.tell(SendSms(to=CALLEE, body="again", reply_to=busy_inbox, correlation_id="b"))
    assert isinstance(busy_replies.first(), SmsSent)
    assert [r.status for r in twilio.requests_for(Operation.MESSAGES_CREATE)] == [500, 503, 201]


def test_a_call_is_placed_with_inline_twiml_get_callbacks_and_machine_detection(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    inbox, replies = new_inbox()
    twiml = (
        '<Response><Connect><Stream url="wss://tars.example/twilio/media"/></Connect></Response>'
    )
    telephony.tell(
        PlaceCall(
            to=CALLEE,
            twiml=twiml,
            status_callback="https://tars.example/twilio/status",
            detect_machine=True,
            time_limit_seconds=600,
            reply_to=inbox,
            correlation_id="goal-3",
        )
    )
    reply = replies.first()
    [request] = twilio.requests_for(Operation.CALLS_CREATE)
    assert (request.param("To"), request.param("From"), request.param("Twiml")) == (
        CALLEE,
        NUMBER,
        twiml,
    )
    assert request.param("StatusCallback") == "https://tars.example/twilio/status"
    assert request.param("StatusCallbackMethod") == "GET"
    assert request.params("StatusCallbackEvent") == (
        "initiated",
        "ringing",
        "answered",
        "completed",
    )
    assert request.param("MachineDetection") == "DetectMessageEnd"
    assert request.param("AsyncAmd") == "true"
    assert request.param("AsyncAmdStatusCallbackMethod") == "GET"
    assert request.param("TimeLimit") == "600"
    assert isinstance(reply, CallPlaced)
    assert reply.correlation_id == "goal-3"
    assert reply.call_sid.startswith("CA")


def test_a_call_twilio_refuses_is_reported_and_never_retried(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    twilio.fail_next(Operation.CALLS_CREATE, status=500, code=20500)
    inbox, replies = new_inbox()
    telephony.tell(
        PlaceCall(
            to=CALLEE,
            twiml="<Response/>",
            status_callback="https://tars.example/twilio/status",
            reply_to=inbox,
            correlation_id="goal-4",
        )
    )
    reply = replies.first()
    assert isinstance(reply, CallFailed)
    assert reply.correlation_id == "goal-4"
    assert reply.code == 20500
    # A retry after an ambiguous failure could ring the callee twice.
    assert len(twilio.requests_for(Operation.CALLS_CREATE)) == 1


def test_without_credentials_telephony_starts_and_reports_each_request_failed(
    twilio: TwilioRestStandIn,
) -> None:
    settings = Settings().with_overrides({"twilio.phone_number": NUMBER})
    with capture_logs() as logs:
        telephony = Telephony.start(settings, retry=QUICK_RETRIES)
        inbox, replies = new_inbox()
        telephony.tell(SendSms(to=CALLEE, body="hi", reply_to=inbox, correlation_id="c"))
        reply = replies.first()
    assert isinstance(reply, SmsFailed)
    assert "credentials" in reply.error
    assert [line["log_level"] for line in logged(logs, "telephony.no_credentials")] == ["warning"]
    assert twilio.requests == []


# -- the pool ------------------------------------------------------------------------------------


class _StalledMessages:
    def __init__(self, release: threading.Event, entered: threading.Event) -> None:
        self._release = release
        self._entered = entered

    def create(self, **_: Any) -> Any:
        self._entered.set()
        self._release.wait(WAIT)
        raise requests.exceptions.ReadTimeout("stalled")


class _SlowSmsClient:
    """The real client, except that creating a message hangs until released."""

    def __init__(self, client: Client, release: threading.Event, entered: threading.Event) -> None:
        self._client = client
        self.messages = _StalledMessages(release, entered)

    def calls(self, sid: str) -> Any:
        return self._client.calls(sid)


def test_a_slow_request_does_not_hold_up_a_hang_up(
    twilio: TwilioRestStandIn, settings: Settings
) -> None:
    release, entered = threading.Event(), threading.Event()
    client = _SlowSmsClient(make_client(settings), release, entered)
    telephony = Telephony.start(settings, client=client, retry=QUICK_RETRIES)
    sid = live_call(twilio)
    try:
        telephony.tell(SendSms(to=CALLEE, body="slow", correlation_id="s"))
        assert entered.wait(WAIT)
        telephony.tell(HangUp(call_sid=sid, reason="end_call"))
        twilio.wait_for(lambda rest: rest.call(sid).ended, WAIT, "the hang-up past the slow SMS")
    finally:
        release.set()


def test_stopping_shuts_the_pool_down(
    twilio: TwilioRestStandIn, telephony: pykka.ActorRef[Telephony]
) -> None:
    sid = live_call(twilio)
    telephony.tell(HangUp(call_sid=sid, reason="end_call"))
    twilio.wait_for(lambda rest: rest.call(sid).ended, WAIT, "the call to end")
    assert any(thread.name.startswith("telephony") for thread in threading.enumerate())
    telephony.stop(timeout=WAIT)
    wait_until(
        lambda: not any(t.name.startswith("telephony") for t in threading.enumerate()),
        "the pool threads to end",
    )
