"""The Telephony actor with a store: every SMS, call, hang-up and redirect is an intent, so a
request asked for again is answered from the record, and one whose outcome is unknown is looked
up in Twilio's lists (the REST stand-in, the real client) before anything is sent again."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pykka
import pytest
from structlog.testing import capture_logs

from actors.telephony import RetryPolicy, Telephony
from tars_actors.actor_messages import (
    CallPlaced,
    CallRedirected,
    HangUp,
    PlaceCall,
    Redirect,
    RedirectFailed,
    SendSms,
    SmsFailed,
    SmsSent,
)
from tars_actors.runtime.settings import Secrets, Settings
from tars_actors.sim.twilio_api import Operation, TwilioRestStandIn
from tars_actors.store import RestIntent, Store, utcnow
from tars_actors.telephony.intents import CALL_LEFT_FOR, IntentBook, IntentKind, intent_key
from tars_actors.telephony.outbox import Outbox
from tars_actors.telephony.rest import make_client
from tests.waiting import wait_until

pytest_plugins = ("tests.pg",)

ACCOUNT = "ACtest0123456789abcdef0123456789"
TOKEN = "test-auth-token"
NUMBER = "+15550100000"
OWNER = "+15550199999"
OTHER = "+15550188888"
THIRD = "+15550177777"
WAIT = 10.0
QUICK_RETRIES = RetryPolicy(attempts=3, initial_delay=0.01, max_delay=0.02)
QUICK_RECHECKS = RetryPolicy(attempts=1, initial_delay=0.05, max_delay=0.1)
STATUS_URL = "https://tars.example/twilio/status"

Logs = Sequence[MutableMapping[str, Any]]


class Replies:
    """The replies a requester got, waitable from the test thread."""

    def __init__(self) -> None:
        self._arrived = threading.Condition()
        self._replies: list[Any] = []

    def add(self, message: Any) -> None:
        with self._arrived:
            self._replies.append(message)
            self._arrived.notify_all()

    def now(self) -> list[Any]:
        with self._arrived:
            return list(self._replies)

    def wait(self, count: int = 1) -> list[Any]:
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._replies) >= count, WAIT):
                raise TimeoutError(f"{len(self._replies)} of {count} replies arrived")
            return list(self._replies)


class Inbox(pykka.ThreadingActor):
    def __init__(self, replies: Replies) -> None:
        super().__init__()
        self._replies = replies

    def on_receive(self, message: Any) -> Any:
        self._replies.add(message)
        return None


def new_inbox() -> tuple[pykka.ActorRef[Inbox], Replies]:
    replies = Replies()
    return Inbox.start(replies), replies


def logged(logs: Logs, event: str) -> list[MutableMapping[str, Any]]:
    return [line for line in list(logs) if line["event"] == event]


def wait_logged(logs: Logs, event: str, count: int = 1) -> list[MutableMapping[str, Any]]:
    wait_until(lambda: len(logged(logs, event)) >= count, f"{count} {event} line(s)", WAIT)
    return logged(logs, event)


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


def open_store(url: str) -> Store:
    store = Store.open(url)
    store.migrate()
    return store


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path}/tars.db")
    yield store
    store.shutdown()


@pytest.fixture
def start(settings: Settings, store: Store) -> Callable[..., pykka.ActorRef[Telephony]]:
    """Start a Telephony on the test's store (again, for a restart). The intents a test
    writes stand for a dead daemon's: none of their requests is still on its way."""

    def start(**options: Any) -> pykka.ActorRef[Telephony]:
        options = {
            "retry": QUICK_RETRIES,
            "recheck": QUICK_RECHECKS,
            "store": store,
            "in_transit": timedelta(0),
        } | options
        return Telephony.start(settings, **options)

    return start


def intent(store: Store, key: str) -> Any:
    with store.connection():
        return RestIntent.get(RestIntent.key == key)


def creates(twilio: TwilioRestStandIn, operation: Operation) -> list[int]:
    return [request.status for request in twilio.requests_for(operation)]


def sms(cid: str, reply_to: Any = None, body: str = "Call Anna back") -> SendSms:
    return SendSms(to=OWNER, body=body, reply_to=reply_to, correlation_id=cid)


def call(cid: str, reply_to: Any = None, to: str = OWNER) -> PlaceCall:
    return PlaceCall(
        to=to,
        twiml="<Response/>",
        status_callback=STATUS_URL,
        reply_to=reply_to,
        correlation_id=cid,
    )


# -- asked again -------------------------------------------------------------------------------


def test_an_sms_asked_for_again_is_answered_from_the_record_even_after_a_restart(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    telephony = start()
    inbox, replies = new_inbox()
    with capture_logs() as logs:
        telephony.tell(sms("m1", inbox))
        [first] = replies.wait(1)
        telephony.tell(sms("m1", inbox))
        second = replies.wait(2)[1]
        telephony.stop(timeout=WAIT)
        start().tell(sms("m1", inbox))
        third = replies.wait(3)[2]
    [message] = twilio.messages
    assert first == second == third == SmsSent(correlation_id="m1", message_sid=message.sid)
    assert creates(twilio, Operation.MESSAGES_CREATE) == [201]
    assert [line["sid"] for line in logged(logs, "telephony.already_sent")] == [message.sid] * 2
    row = intent(store, "sms:m1")
    assert (row.status, row.sid, row.attempts) == ("sent", message.sid, 1)


def test_a_call_asked_for_again_rings_once(
    twilio: TwilioRestStandIn, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    telephony = start()
    inbox, replies = new_inbox()
    telephony.tell(call("goal-3", inbox))
    replies.wait(1)
    telephony.tell(call("goal-3", inbox))
    first, second = replies.wait(2)
    [placed] = twilio.calls
    assert first == second == CallPlaced(correlation_id="goal-3", call_sid=placed.sid)
    assert creates(twilio, Operation.CALLS_CREATE) == [201]


def test_a_request_asked_for_again_while_the_first_is_slow_joins_it(
    twilio: TwilioRestStandIn, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    twilio.set_answer_delay(Operation.MESSAGES_CREATE, 1.0)
    telephony = start()
    inbox, replies = new_inbox()
    with capture_logs() as logs:
        telephony.tell(sms("m2", inbox))
        telephony.tell(sms("m2", inbox))
        first, second = replies.wait(2)
    [message] = twilio.messages
    assert first == second == SmsSent(correlation_id="m2", message_sid=message.sid)
    assert creates(twilio, Operation.MESSAGES_CREATE) == [201]
    assert len(logged(logs, "telephony.request_joined")) == 1
    assert logged(logs, "telephony.already_sent") == []


def test_requests_without_a_correlation_id_are_each_sent(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    telephony = start()
    telephony.tell(SendSms(to=OWNER, body="same words"))
    telephony.tell(SendSms(to=OWNER, body="same words"))
    twilio.wait_for_message(2)
    with store.connection():
        keys = [row.key for row in RestIntent.select()]
    assert len(set(keys)) == 2
    assert all(key.startswith("sms:once-") for key in keys)


# -- outcomes -----------------------------------------------------------------------------------


def test_an_sms_whose_answer_was_lost_is_found_at_twilio_not_sent_again(
    twilio: TwilioRestStandIn,
    settings: Settings,
    store: Store,
    start: Callable[..., pykka.ActorRef[Telephony]],
) -> None:
    # Twilio creates the message, and its answer comes after the client gave up waiting.
    twilio.set_answer_delay(Operation.MESSAGES_CREATE, 5.0)
    telephony = start(client=make_client(settings, timeout=0.5))
    inbox, replies = new_inbox()
    with capture_logs() as logs:
        telephony.tell(sms("m3", inbox))
        [reply] = replies.wait(1)
    [message] = twilio.messages
    assert reply == SmsSent(correlation_id="m3", message_sid=message.sid)
    assert len(twilio.requests_for(Operation.MESSAGES_CREATE)) == 1
    [unknown] = logged(logs, "telephony.outcome_unknown")
    assert unknown["checks"] == 1
    assert unknown["error"].startswith("ReadTimeout")
    assert [line["sid"] for line in logged(logs, "telephony.found_at_twilio")] == [message.sid]
    row = intent(store, "sms:m3")
    assert (row.status, row.sid, row.attempts) == ("sent", message.sid, 1)


def test_a_call_whose_answer_was_lost_is_found_at_twilio_not_placed_again(
    twilio: TwilioRestStandIn,
    settings: Settings,
    start: Callable[..., pykka.ActorRef[Telephony]],
) -> None:
    twilio.set_answer_delay(Operation.CALLS_CREATE, 5.0)
    telephony = start(client=make_client(settings, timeout=0.5))
    inbox, replies = new_inbox()
    telephony.tell(call("goal-5", inbox))
    [reply] = replies.wait(1)
    [placed] = twilio.calls
    assert reply == CallPlaced(correlation_id="goal-5", call_sid=placed.sid)
    assert len(twilio.requests_for(Operation.CALLS_CREATE)) == 1


def test_an_sms_refused_with_a_500_twilio_did_not_act_on_is_looked_up_then_sent(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    twilio.fail_next(Operation.MESSAGES_CREATE, status=500, code=20500)
    telephony = start()
    inbox, replies = new_inbox()
    with capture_logs() as logs:
        telephony.tell(sms("m4", inbox))
        [reply] = replies.wait(1)
    [message] = twilio.messages
    assert reply == SmsSent(correlation_id="m4", message_sid=message.sid)
    assert creates(twilio, Operation.MESSAGES_CREATE) == [500, 201]
    assert [line["checks"] for line in logged(logs, "telephony.outcome_unknown")] == [1]
    assert len(logged(logs, "telephony.not_at_twilio")) == 1
    assert intent(store, "sms:m4").attempts == 2


def test_while_twilio_cannot_be_asked_the_outcome_is_rechecked_never_resent(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    # A dead daemon's SMS, which Twilio has; its list fails twice before it answers.
    claim = IntentBook(store).claim(
        key="sms:m5",
        kind=IntentKind.SMS,
        to_number=OWNER,
        from_number=NUMBER,
        request={"body": "Call Anna back", "correlation_id": "m5"},
    )
    sid = str(
        twilio.make_client().messages.create(to=OWNER, from_=NUMBER, body="Call Anna back").sid
    )
    twilio.fail_next(Operation.MESSAGES_LIST, status=500, times=2)
    with capture_logs() as logs:
        start()
        wait_logged(logs, "telephony.found_at_twilio")
    assert [line["checks"] for line in logged(logs, "telephony.outcome_unknown")] == [1, 2]
    assert [line["retry_in_seconds"] for line in logged(logs, "telephony.outcome_unknown")] == [
        0.05,
        0.1,
    ]
    assert len(twilio.requests_for(Operation.MESSAGES_CREATE)) == 1  # the test's own
    row = intent(store, "sms:m5")
    assert (row.status, row.sid, row.attempts) == ("sent", sid, claim.intent.attempts)


def test_a_repeat_of_a_request_waiting_for_its_recheck_joins_it_and_keeps_the_backoff(
    twilio: TwilioRestStandIn, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    """After a restart the Router asks again for an SMS the Telephony is already looking
    up (its own start took the unsure intent up): the repeat waits for the recheck
    rather than asking Twilio again at once, and both requesters get the one reply."""
    recheck = RetryPolicy(attempts=1, initial_delay=1.0, max_delay=1.0)
    telephony = start(recheck=recheck)
    inbox, replies = new_inbox()
    twilio.fail_next(Operation.MESSAGES_CREATE, status=500)
    with capture_logs() as logs:
        telephony.tell(sms("m6", inbox))
        wait_logged(logs, "telephony.outcome_unknown")
        telephony.tell(sms("m6", inbox))
        wait_logged(logs, "telephony.request_joined")
        first, second = replies.wait(2)
    [message] = twilio.messages
    assert first == second == SmsSent(correlation_id="m6", message_sid=message.sid)
    assert [line["checks"] for line in logged(logs, "telephony.outcome_unknown")] == [1]
    assert len(logged(logs, "telephony.not_at_twilio")) == 1  # looked up once
    assert creates(twilio, Operation.MESSAGES_CREATE) == [500, 201]


def test_a_telephony_started_in_a_crashed_ones_place_takes_up_its_rechecks_and_replies(
    twilio: TwilioRestStandIn, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    """The first Telephony's request got a 500 (outcome unknown) and its recheck was still
    waiting when it stopped; the one started in its place, on the same outbox, looks the
    intent up, sends what Twilio lacks, and replies to the original requester."""
    outbox = Outbox()
    slow = RetryPolicy(attempts=1, initial_delay=60.0, max_delay=60.0)
    first = start(outbox=outbox, recheck=slow)
    inbox, replies = new_inbox()
    twilio.fail_next(Operation.MESSAGES_CREATE, status=500)
    with capture_logs() as logs:
        first.tell(SendSms(to=OWNER, body="Water the plants", reply_to=inbox, correlation_id="r"))
        wait_logged(logs, "telephony.outcome_unknown")
    first.stop()
    assert replies.now() == []  # no answer yet: the outcome is unknown

    start(outbox=outbox)
    [reply] = replies.wait(1)
    assert isinstance(reply, SmsSent)
    assert reply.correlation_id == "r"
    assert [m.body for m in twilio.messages] == ["Water the plants"]


def test_an_sms_twilio_refuses_is_failed_and_sent_when_asked_again(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    twilio.fail_next(
        Operation.MESSAGES_CREATE, status=400, code=21211, message="Invalid 'To' Phone Number"
    )
    telephony = start()
    inbox, replies = new_inbox()
    telephony.tell(sms("m6", inbox))
    [refused] = replies.wait(1)
    assert isinstance(refused, SmsFailed)
    assert (refused.correlation_id, refused.code) == ("m6", 21211)
    row = intent(store, "sms:m6")
    assert (row.status, row.sid, row.attempts) == ("failed", None, 1)
    assert "Invalid 'To' Phone Number" in row.error

    telephony.tell(sms("m6", inbox))
    sent = replies.wait(2)[1]
    [message] = twilio.messages
    assert sent == SmsSent(correlation_id="m6", message_sid=message.sid)
    assert creates(twilio, Operation.MESSAGES_CREATE) == [400, 201]
    row = intent(store, "sms:m6")
    assert (row.status, row.sid, row.attempts) == ("sent", message.sid, 2)


# -- after a restart ----------------------------------------------------------------------------


def test_at_start_unsure_smses_are_looked_up_and_only_the_missing_one_is_sent(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    book = IntentBook(store)
    for cid, body in (("had", "Twilio has this one"), ("lost", "TARS died before sending")):
        book.claim(
            key=f"sms:{cid}",
            kind=IntentKind.SMS,
            to_number=OWNER,
            from_number=NUMBER,
            request={"body": body, "correlation_id": cid},
        )
    client = twilio.make_client()
    had = str(client.messages.create(to=OWNER, from_=NUMBER, body="Twilio has this one").sid)
    with capture_logs() as logs:
        start()
        wait_logged(logs, "telephony.sms_sent", 2)
    assert [line["key"] for line in logged(logs, "telephony.found_at_twilio")] == ["sms:had"]
    assert [line["key"] for line in logged(logs, "telephony.not_at_twilio")] == ["sms:lost"]
    assert [m.body for m in twilio.messages] == ["Twilio has this one", "TARS died before sending"]
    assert creates(twilio, Operation.MESSAGES_CREATE) == [201, 201]  # the test's, then TARS's
    assert (intent(store, "sms:had").status, intent(store, "sms:had").sid) == ("sent", had)
    lost = intent(store, "sms:lost")
    assert (lost.status, lost.sid, lost.attempts) == ("sent", twilio.messages[1].sid, 2)


def test_at_start_an_unsure_call_twilio_lacks_is_not_placed_and_one_it_has_is_recorded(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    """A call a dead daemon may have placed is never placed late from its stale TwiML: one
    Twilio has is recorded; one it lacks waits for its requester to ask again, and is given
    up once older than CALL_LEFT_FOR."""
    now = utcnow()
    for cid, to, attempted in (
        ("had", OWNER, now),
        ("lost", OTHER, now),
        ("long-lost", THIRD, now - CALL_LEFT_FOR - timedelta(minutes=1)),
    ):
        IntentBook(store, clock=lambda at=attempted: at).claim(
            key=f"call:{cid}",
            kind=IntentKind.CALL,
            to_number=to,
            from_number=NUMBER,
            request={"twiml": "<Response/>", "status_callback": STATUS_URL, "correlation_id": cid},
        )
    had = str(twilio.make_client().calls.create(to=OWNER, from_=NUMBER, twiml="<Response/>").sid)
    with capture_logs() as logs:
        start()
        wait_logged(logs, "telephony.found_at_twilio")
        wait_logged(logs, "telephony.call_left_to_requester")
        wait_logged(logs, "telephony.call_never_placed")
    assert [c.sid for c in twilio.calls] == [had]
    assert creates(twilio, Operation.CALLS_CREATE) == [201]  # the test's own
    assert (intent(store, "call:had").status, intent(store, "call:had").sid) == ("sent", had)
    assert intent(store, "call:lost").status == "sending"  # its requester decides
    assert intent(store, "call:long-lost").status == "failed"


def test_a_request_this_run_started_is_looked_up_only_once_it_cannot_be_on_its_way(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    """A Telephony that crashed mid-request left its thread waiting for the answer: the one
    started in its place looks the intent up only after the request's time is up."""
    IntentBook(store).claim(
        key="sms:in-flight",
        kind=IntentKind.SMS,
        to_number=OWNER,
        from_number=NUMBER,
        request={"body": "On its way.", "correlation_id": "in-flight"},
    )
    with capture_logs() as logs:
        start(in_transit=timedelta(seconds=0.5))
        [waiting] = wait_logged(logs, "telephony.outcome_unknown")
        assert waiting["error"] == "a request may still be on its way"
        assert 0 < waiting["retry_in_seconds"] <= 0.5
        wait_logged(logs, "telephony.sms_sent")
    assert creates(twilio, Operation.MESSAGES_CREATE) == [201]
    assert intent(store, "sms:in-flight").status == "sent"


# -- hang-ups -----------------------------------------------------------------------------------


def test_a_hang_up_asked_for_again_is_done_once(
    twilio: TwilioRestStandIn, settings: Settings, make_url: Callable[[], str]
) -> None:
    store = open_store(make_url())
    try:
        telephony = Telephony.start(settings, retry=QUICK_RETRIES, store=store)
        placed = twilio.make_client().calls.create(to=OWNER, from_=NUMBER, twiml="<Response/>")
        sid = str(placed.sid)
        twilio.set_call_status(sid, "in-progress")
        with capture_logs() as logs:
            telephony.tell(HangUp(call_sid=sid, reason="end_call"))
            wait_logged(logs, "telephony.hung_up")
            # Skipped: joined to the first if that is still settling, else done already.
            telephony.tell(HangUp(call_sid=sid, reason="end_call"))
            wait_until(
                lambda: bool(
                    logged(logs, "telephony.request_joined")
                    or logged(logs, "telephony.already_done")
                ),
                "the second hang-up skipped",
                WAIT,
            )
            telephony.stop(timeout=WAIT)
            Telephony.start(settings, retry=QUICK_RETRIES, store=store).tell(
                HangUp(call_sid=sid, reason="shutdown")
            )
            done = wait_logged(logs, "telephony.already_done")
        assert twilio.call(sid).ended
        assert creates(twilio, Operation.CALLS_UPDATE) == [200]
        assert done[-1]["key"] == f"hang_up:{sid}"
        assert logged(logs, "telephony.request_crashed") == []
        row = intent(store, f"hang_up:{sid}")
        assert (row.status, row.sid, row.attempts) == ("sent", sid, 1)
    finally:
        pykka.ActorRegistry.stop_all(timeout=WAIT)
        store.shutdown()


def test_a_lookup_does_not_take_the_message_of_a_send_still_in_flight(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    # Two texts with the same words: b's message exists at Twilio, its answer still on the
    # way, when a's outcome is to be looked up (a's create was refused by a 500). Taken for
    # a's, it would leave a unsent and both intents settled with b's SID.
    twilio.set_answer_delay(Operation.MESSAGES_CREATE, 3.0)
    telephony = start()
    inbox, replies = new_inbox()
    telephony.tell(sms("b", inbox, body="Please call Anna"))
    twilio.wait_for_message(1)
    twilio.set_answer_delay(Operation.MESSAGES_CREATE, 0.0)
    twilio.fail_next(Operation.MESSAGES_CREATE, status=500, code=20500)
    telephony.tell(sms("a", inbox, body="Please call Anna"))
    sent = {reply.correlation_id: reply for reply in replies.wait(2)}
    first, second = twilio.messages
    assert sent["b"] == SmsSent(correlation_id="b", message_sid=first.sid)
    assert sent["a"] == SmsSent(correlation_id="a", message_sid=second.sid)
    assert (intent(store, "sms:b").sid, intent(store, "sms:a").sid) == (first.sid, second.sid)
    assert creates(twilio, Operation.MESSAGES_CREATE) == [201, 500, 201]


# --- redirects -----------------------------------------------------------------------------


def redirect(
    sid: str,
    reply_to: Any,
    twiml: str = "<Response><Dial><Conference>r</Conference></Dial></Response>",
) -> Redirect:
    return Redirect(
        call_sid=sid,
        twiml=twiml,
        reason="transfer",
        reply_to=reply_to,
        correlation_id=f"transfer-{sid}",
    )


def test_a_redirect_is_done_once_and_asked_again_is_answered_from_its_record(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    call = twilio.seed_call("CA" + "1" * 32, from_=OWNER, to=NUMBER)
    telephony = start()
    inbox, replies = new_inbox()
    telephony.tell(redirect(call.sid, inbox))
    [done] = replies.wait(1)
    assert done == CallRedirected(correlation_id=f"transfer-{call.sid}", call_sid=call.sid)
    [record] = twilio.redirects
    assert record.call_sid == call.sid

    # A restarted requester asks again: answered from the intent, not redirected twice.
    telephony.tell(redirect(call.sid, inbox))
    _, again = replies.wait(2)
    assert again == done
    assert len(twilio.redirects) == 1
    [row] = [r for r in all_intents(store) if r.kind == "redirect"]
    assert (row.status, row.sid) == ("sent", call.sid)


def test_a_redirect_of_a_call_that_ended_says_so(
    twilio: TwilioRestStandIn, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    call = twilio.seed_call("CA" + "2" * 32, from_=OWNER, to=NUMBER)
    twilio.set_call_status(call.sid, "completed")
    telephony = start()
    inbox, replies = new_inbox()
    telephony.tell(redirect(call.sid, inbox))
    [failed] = replies.wait(1)
    assert isinstance(failed, RedirectFailed)
    assert failed.ended
    assert failed.call_sid == call.sid
    assert twilio.redirects == []


def test_a_redirect_left_unsure_by_a_dead_daemon_is_not_repeated(
    twilio: TwilioRestStandIn, store: Store, start: Callable[..., pykka.ActorRef[Telephony]]
) -> None:
    """Twilio may have redirected the call into a room before TARS died: run again, the
    leg would leave the room and come back (and a room that ends when it leaves would end).
    The intent is settled as failed, saying why, and nothing is sent."""
    call = twilio.seed_call("CA" + "3" * 32, from_=OWNER, to=NUMBER)
    twiml = "<Response><Dial><Conference>tars-transfer-9</Conference></Dial></Response>"
    request = redirect(call.sid, None, twiml)
    IntentBook(store).claim(
        key=intent_key(request),
        kind=IntentKind.REDIRECT,
        to_number="",
        from_number="",
        request={"call_sid": call.sid, "twiml": twiml, "reason": "transfer", "correlation_id": "x"},
    )
    with capture_logs() as logs:
        start()
        wait_logged(logs, "telephony.redirect_not_repeated")
    wait_until(lambda: intent(store, intent_key(request)).status == "failed", "settled failed")
    row = intent(store, intent_key(request))
    assert "not repeated" in row.error
    assert twilio.redirects == []


def all_intents(store: Store) -> list[Any]:
    with store.connection():
        return list(RestIntent.select())
