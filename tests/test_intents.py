"""Intents of costly Twilio requests: the ``rest_intents`` book on SQLite and PostgreSQL, and
looking an intent up in Twilio's Messages and Calls lists (the REST stand-in, the real client).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from twilio.rest import Client

from tars_actors.actor_messages import HangUp, PlaceCall, SayAndHangUp, SendSms
from tars_actors.sim.twilio_api import TwilioRestStandIn
from tars_actors.store import RestIntent, Store
from tars_actors.telephony.intents import (
    CLOCK_SKEW,
    IN_TRANSIT,
    KEEP_SETTLED,
    Go,
    IntentBook,
    IntentKind,
    IntentRecord,
    Known,
    Unsure,
    find_call,
    find_message,
    intent_key,
    request_of,
)

pytest_plugins = ("tests.pg",)

ACCOUNT = "ACtest0123456789abcdef0123456789"
TOKEN = "test-auth-token"
NUMBER = "+15550100000"
OWNER = "+15550199999"
OTHER = "+15550188888"
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
# A call SID as Twilio writes them: 34 characters.
CALL_SID = "CA" + "0123456789abcdef" * 2


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


# -- the book ------------------------------------------------------------------------------------


@pytest.fixture
def store(make_url: Callable[[], str]) -> Iterator[Store]:
    """A migrated store with a connection open on the test's thread."""
    store = Store.open(make_url())
    store.migrate()
    store.connect()
    yield store
    store.shutdown()


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def book(store: Store, clock: Clock) -> IntentBook:
    return IntentBook(store, clock=clock)


def claim_sms(book: IntentBook, cid: str, body: str = "hello") -> Go | Known | Unsure:
    return book.claim(
        key=f"sms:{cid}",
        kind=IntentKind.SMS,
        to_number=OWNER,
        from_number=NUMBER,
        request={"body": body, "correlation_id": cid},
    )


def go(claim: Go | Known | Unsure) -> IntentRecord:
    assert isinstance(claim, Go), claim
    return claim.intent


def row(key: str) -> Any:
    return RestIntent.get(RestIntent.key == key)


def test_a_first_claim_goes_and_is_written_as_sending_before_the_request(
    book: IntentBook, clock: Clock
) -> None:
    intent = go(claim_sms(book, "m1", body="Call Anna back"))
    assert (intent.key, intent.kind, intent.attempts) == ("sms:m1", IntentKind.SMS, 1)
    assert (intent.to_number, intent.from_number) == (OWNER, NUMBER)
    assert intent.request == {"body": "Call Anna back", "correlation_id": "m1"}
    assert intent.attempted_at == clock.now
    saved = row("sms:m1")
    assert (saved.status, saved.sid, saved.attempts) == ("sending", None, 1)
    assert request_of(intent) == SendSms(to=OWNER, body="Call Anna back", correlation_id="m1")


def test_a_claim_while_the_first_is_sending_is_unsure_and_counts_no_attempt(
    book: IntentBook, clock: Clock
) -> None:
    first = go(claim_sms(book, "m1"))
    clock.advance(30)
    again = claim_sms(book, "m1")
    assert isinstance(again, Unsure)
    assert (again.intent.id, again.intent.attempts) == (first.id, 1)
    assert again.intent.attempted_at == T0
    assert row("sms:m1").status == "sending"


def test_a_sent_intent_is_known_with_its_sid(book: IntentBook, clock: Clock) -> None:
    intent = go(claim_sms(book, "m1"))
    book.sent(intent, "SM1")
    clock.advance(60)
    known = claim_sms(book, "m1")
    assert isinstance(known, Known)
    assert (known.sid, known.intent.attempts) == ("SM1", 1)
    saved = row("sms:m1")
    assert (saved.status, saved.sid, saved.settled_at) == ("sent", "SM1", T0)
    assert book.unsure() == []


def test_a_failed_intent_goes_again_as_a_new_attempt(book: IntentBook, clock: Clock) -> None:
    first = go(claim_sms(book, "m1"))
    book.failed(first, "HTTP 400 code 21211: Invalid 'To' Phone Number")
    assert (row("sms:m1").status, row("sms:m1").error) == (
        "failed",
        "HTTP 400 code 21211: Invalid 'To' Phone Number",
    )
    clock.advance(60)
    second = go(claim_sms(book, "m1"))
    assert (second.id, second.attempts) == (first.id, 2)
    assert second.attempted_at == T0 + timedelta(seconds=60)
    assert row("sms:m1").status == "sending"


def test_again_is_a_new_attempt_of_an_unsure_intent(book: IntentBook, clock: Clock) -> None:
    go(claim_sms(book, "m1"))
    unsure = claim_sms(book, "m1")
    assert isinstance(unsure, Unsure)
    clock.advance(5)
    again = book.again(unsure.intent, {"body": "hello again", "correlation_id": "m1"})
    assert again is not None
    assert (again.attempts, again.attempted_at) == (2, T0 + timedelta(seconds=5))
    assert (row("sms:m1").status, again.request["body"]) == ("sending", "hello again")
    # Taken up by another request meanwhile: this one must ask the record again.
    assert book.again(unsure.intent, {"body": "stale"}) is None
    assert row("sms:m1").attempts == 2


def test_unsure_lists_only_the_sending_intents_oldest_first(book: IntentBook) -> None:
    sending = go(claim_sms(book, "a"))
    book.sent(go(claim_sms(book, "b")), "SMb")
    book.failed(go(claim_sms(book, "c")), "refused")
    call = go(
        book.claim(
            key="call:d",
            kind=IntentKind.CALL,
            to_number=OWNER,
            from_number=NUMBER,
            request={
                "twiml": "<Response/>",
                "status_callback": "https://x/s",
                "correlation_id": "d",
            },
        )
    )
    assert [intent.key for intent in book.unsure()] == [sending.key, call.key]
    assert [intent.kind for intent in book.unsure()] == [IntentKind.SMS, IntentKind.CALL]


def test_known_sids_are_kept_per_kind(book: IntentBook) -> None:
    book.sent(go(claim_sms(book, "a")), "SMa")
    book.sent(go(claim_sms(book, "b")), "SMb")
    go(claim_sms(book, "c"))  # unsure: no sid yet
    call = book.claim(
        key="call:a",
        kind=IntentKind.CALL,
        to_number=OWNER,
        from_number=NUMBER,
        request={"correlation_id": "a"},
    )
    book.sent(go(call), "CAa")
    assert book.known_sids(IntentKind.SMS) == {"SMa", "SMb"}
    assert book.known_sids(IntentKind.CALL) == {"CAa"}
    assert book.known_sids(IntentKind.HANG_UP) == set()


def test_a_lookup_skips_only_the_sids_of_intents_whose_records_it_could_meet(
    book: IntentBook, clock: Clock
) -> None:
    book.sent(go(claim_sms(book, "old")), "SMold")
    clock.advance(24 * 3600)
    book.sent(go(claim_sms(book, "new")), "SMnew")
    unsure = go(claim_sms(book, "unsure"))
    assert book.known_sids(IntentKind.SMS, near=unsure) == {"SMnew"}
    assert book.known_sids(IntentKind.SMS) == {"SMold", "SMnew"}


def test_settled_intents_are_forgotten_after_thirty_days_unsure_ones_never(
    book: IntentBook, clock: Clock
) -> None:
    book.sent(go(claim_sms(book, "sent")), "SMsent")
    book.failed(go(claim_sms(book, "failed")), "refused")
    claim_sms(book, "unsure")
    clock.advance(KEEP_SETTLED.total_seconds() - 1)
    assert book.forget_settled() == 0
    clock.advance(2)
    assert book.forget_settled() == 2
    assert [row.key for row in RestIntent.select()] == ["sms:unsure"]


def test_a_hang_up_intent_keeps_its_call_sid_in_the_key_and_the_request(
    book: IntentBook,
) -> None:
    # As the Telephony actor writes it: a call SID (34 characters) fits no number column.
    request = HangUp(call_sid=CALL_SID, reason="end_call")
    intent = go(
        book.claim(
            key=intent_key(request),
            kind=IntentKind.HANG_UP,
            to_number="",
            from_number="",
            request={"call_sid": CALL_SID, "reason": "end_call"},
        )
    )
    book.sent(intent, CALL_SID)
    assert request_of(intent) == request
    assert book.known_sids(IntentKind.HANG_UP) == {CALL_SID}


def test_concurrent_claims_of_one_key_go_exactly_once(store: Store, clock: Clock) -> None:
    threads_count = 6
    start = threading.Barrier(threads_count)
    claims: list[Go | Known | Unsure] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def claim() -> None:
        book = IntentBook(store, clock=clock)
        try:
            start.wait(10)
            outcome = claim_sms(book, "race")
        except BaseException as error:
            with lock:
                errors.append(error)
            return
        finally:
            store.close()
        with lock:
            claims.append(outcome)

    threads = [threading.Thread(target=claim) for _ in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert sorted(type(outcome).__name__ for outcome in claims) == ["Go"] + ["Unsure"] * (
        threads_count - 1
    )
    assert {outcome.intent.id for outcome in claims} == {row("sms:race").id}
    assert row("sms:race").attempts == 1


def test_keys_name_the_request_and_stay_the_same() -> None:
    sms = SendSms(to=OWNER, body="hi", correlation_id="message-7")
    call = PlaceCall(
        to=OWNER, twiml="<Response/>", status_callback="x", correlation_id="reminder-3"
    )
    assert (
        intent_key(sms)
        == "sms:message-7"
        == intent_key(SendSms(to=OTHER, body="x", correlation_id="message-7"))
    )
    assert intent_key(call) == "call:reminder-3"
    assert intent_key(HangUp(call_sid="CA1", reason="a")) == intent_key(
        HangUp(call_sid="CA1", reason="b")
    )
    goodbye = intent_key(SayAndHangUp(call_sid="CA1", text="Goodbye."))
    assert goodbye.startswith("redirect:CA1:")
    assert goodbye != intent_key(SayAndHangUp(call_sid="CA1", text="Bye."))


# -- looking intents up at Twilio --------------------------------------------------------------


@pytest.fixture
def twilio(clock: Clock) -> Iterator[TwilioRestStandIn]:
    with TwilioRestStandIn(
        account_sid=ACCOUNT, auth_token=TOKEN, phone_numbers=[NUMBER], clock=clock
    ) as rest:
        yield rest


@pytest.fixture
def client(twilio: TwilioRestStandIn) -> Client:
    return twilio.make_client()


def sms_intent(attempted_at: datetime, body: str = "hello", to: str = OWNER) -> IntentRecord:
    return IntentRecord(
        id=1,
        key="sms:m1",
        kind=IntentKind.SMS,
        to_number=to,
        from_number=NUMBER,
        request={"body": body, "correlation_id": "m1"},
        attempts=1,
        attempted_at=attempted_at,
    )


def call_intent(attempted_at: datetime, to: str = OWNER) -> IntentRecord:
    return IntentRecord(
        id=2,
        key="call:c1",
        kind=IntentKind.CALL,
        to_number=to,
        from_number=NUMBER,
        request={"twiml": "<Response/>", "status_callback": "x", "correlation_id": "c1"},
        attempts=1,
        attempted_at=attempted_at,
    )


def text(client: Client, body: str = "hello", to: str = OWNER) -> str:
    return str(client.messages.create(to=to, from_=NUMBER, body=body).sid)


def ring(client: Client, to: str = OWNER) -> str:
    return str(client.calls.create(to=to, from_=NUMBER, twiml="<Response/>").sid)


def test_a_message_created_after_the_attempt_is_found(client: Client, clock: Clock) -> None:
    intent = sms_intent(clock.now)
    clock.advance(1)
    sid = text(client)
    assert find_message(client, intent, set()) == sid


def test_a_message_with_another_body_or_number_is_not_the_intents(
    client: Client, clock: Clock
) -> None:
    intent = sms_intent(clock.now)
    clock.advance(1)
    text(client, body="something else")
    text(client, to=OTHER)
    assert find_message(client, intent, set()) is None


def test_a_message_created_before_the_attempt_counts_only_within_the_clock_skew(
    client: Client, clock: Clock
) -> None:
    older = text(client)  # T0, long before the attempt
    clock.advance(CLOCK_SKEW.total_seconds() + 60)
    attempt = clock.now + timedelta(seconds=61)  # our clock is ahead of Twilio's
    assert find_message(client, sms_intent(attempt), set()) is None
    clock.advance(5)
    within = text(client)  # 56 s before the attempt by our clock
    assert find_message(client, sms_intent(attempt), set()) == within != older


def test_a_sid_settled_on_another_intent_is_skipped(client: Client, clock: Clock) -> None:
    intent = sms_intent(clock.now)
    clock.advance(1)
    first = text(client)
    clock.advance(1)
    second = text(client)  # the same words, for another intent
    assert find_message(client, intent, set()) == first  # the nearest the attempt
    assert find_message(client, intent, {first}) == second
    assert find_message(client, intent, {first, second}) is None


def test_a_record_created_after_the_request_could_have_arrived_is_another_intents(
    client: Client, clock: Clock
) -> None:
    """Two unsure intents with the same words: the later one's record is not the earlier's."""
    intent = sms_intent(clock.now)
    clock.advance((IN_TRANSIT + CLOCK_SKEW).total_seconds() + 1)
    text(client)
    assert find_message(client, intent, set()) is None


def test_a_message_still_queued_is_found_though_no_date_filter_lists_it(clock: Clock) -> None:
    with TwilioRestStandIn(
        account_sid=ACCOUNT, auth_token=TOKEN, sms_sent_after=None, clock=clock
    ) as queued:
        client = queued.make_client()
        intent = sms_intent(clock.now)
        clock.advance(1)
        sid = text(client)
        assert queued.message(sid).date_sent is None
        # The dated lookup alone would miss it: a queued message has no date_sent.
        assert client.messages.list(to=OWNER, from_=NUMBER, date_sent_after=T0) == []
        assert find_message(client, intent, set()) == sid


def test_a_message_sent_before_midnight_is_found_for_an_attempt_after_it(
    client: Client, clock: Clock
) -> None:
    # Twilio's clock is 40 s behind ours: it created and sent the message on the day before
    # the day of the attempt. Found among the newest records, and still found once fifty
    # later texts push it out of them (by the dated lookup, from the day before).
    clock.now = datetime(2024, 5, 1, 23, 59, 30, tzinfo=UTC)
    sid = text(client)
    intent = sms_intent(datetime(2024, 5, 2, 0, 0, 10, tzinfo=UTC))
    assert find_message(client, intent, set()) == sid
    for n in range(50):
        clock.advance(1)
        text(client, body=f"later {n}")
    assert find_message(client, intent, set()) == sid


def test_a_queued_call_is_found_though_no_start_time_filter_lists_it(
    twilio: TwilioRestStandIn, client: Client, clock: Clock
) -> None:
    intent = call_intent(clock.now)
    clock.advance(1)
    ring(client, to=OTHER)
    sid = ring(client)
    assert twilio.call(sid).started_at is None
    assert client.calls.list(to=OWNER, from_=NUMBER, start_time_after=T0) == []
    assert find_call(client, intent, set()) == sid
    assert find_call(client, intent, {sid}) is None


def test_an_answered_call_is_found_and_an_old_one_is_not(
    twilio: TwilioRestStandIn, client: Client, clock: Clock
) -> None:
    old = ring(client)
    twilio.set_call_status(old, "completed")
    clock.advance(CLOCK_SKEW.total_seconds() + 1)
    intent = call_intent(clock.now)
    assert find_call(client, intent, set()) is None
    clock.advance(1)
    sid = ring(client)
    twilio.set_call_status(sid, "in-progress")
    assert find_call(client, intent, set()) == sid


def test_a_call_answered_before_midnight_is_found_for_an_attempt_after_it(
    twilio: TwilioRestStandIn, client: Client, clock: Clock
) -> None:
    clock.now = datetime(2024, 5, 1, 23, 59, 30, tzinfo=UTC)
    sid = ring(client)
    twilio.set_call_status(sid, "in-progress")
    intent = call_intent(datetime(2024, 5, 2, 0, 0, 10, tzinfo=UTC))
    assert find_call(client, intent, set()) == sid
    others = set()  # calls other intents placed since, each settled with its SID
    for _ in range(50):
        clock.advance(1)
        others.add(ring(client))
    assert find_call(client, intent, others) == sid
