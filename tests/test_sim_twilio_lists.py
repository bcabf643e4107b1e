"""Listing messages and calls on the Twilio REST stand-in, and answers it holds back, driven by
the real twilio client as the daemon drives it when it reconciles after a crash."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta

import pytest
from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from tars_actors.sim.twilio_api import Operation, TwilioRestStandIn

ACCOUNT = "ACtest0123456789abcdef0123456789"
TOKEN = "test-auth-token"
NUMBER = "+15550100000"
OWNER = "+15550199999"
OTHER = "+15550188888"
TWIML = "<Response><Say>hello</Say></Response>"
# Late in a UTC day, so that "the same day" and "the next day" are seconds apart.
LATE = datetime(2024, 5, 1, 23, 59, 30, tzinfo=UTC)
DAY = LATE.date()


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(LATE)


@pytest.fixture
def twilio(clock: Clock) -> Iterator[TwilioRestStandIn]:
    with TwilioRestStandIn(
        account_sid=ACCOUNT, auth_token=TOKEN, phone_numbers=[NUMBER], clock=clock
    ) as rest:
        yield rest


@pytest.fixture
def client(twilio: TwilioRestStandIn) -> Client:
    return twilio.make_client()


def send(client: Client, to: str, body: str) -> str:
    sid = client.messages.create(to=to, from_=NUMBER, body=body).sid
    assert sid is not None
    return sid


def test_messages_are_listed_newest_first_by_to_and_from(
    twilio: TwilioRestStandIn, client: Client, clock: Clock
) -> None:
    first = send(client, OWNER, "first")
    clock.advance(1)
    send(client, OTHER, "other")
    clock.advance(1)
    second = send(client, OWNER, "second")

    to_owner = client.messages.list(to=OWNER, from_=NUMBER)
    assert [m.sid for m in to_owner] == [second, first]
    assert [m.body for m in client.messages.list()] == ["second", "other", "first"]
    assert client.messages.list(from_=OWNER) == []
    assert [m.body for m in client.messages.list(to=OTHER)] == ["other"]

    newest = to_owner[0]
    assert newest.date_created == clock.now.replace(microsecond=0)
    assert (newest.status, newest.date_sent) == ("sent", newest.date_created)
    request = twilio.requests_for(Operation.MESSAGES_LIST)[0]
    assert (request.method, request.status) == ("GET", 200)
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Messages.json"
    assert (request.param("To"), request.param("From")) == (OWNER, NUMBER)


def test_the_create_answer_says_queued_and_the_message_counts_as_sent_at_once(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    message = client.messages.create(to=OWNER, from_=NUMBER, body="hello")
    assert (message.status, message.date_sent) == ("queued", None)
    recorded = twilio.wait_for_message(1)
    assert (recorded.status, recorded.date_sent) == ("sent", recorded.created_at)


def test_date_sent_filters_compare_whole_utc_days(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    sid = send(client, OWNER, "late in the day")
    next_day = midnight(DAY + timedelta(days=1))
    matching = {
        "date_sent_after": [midnight(DAY), LATE + timedelta(seconds=29), DAY],
        "date_sent_before": [midnight(DAY), LATE - timedelta(hours=23)],
        "date_sent": [midnight(DAY), DAY],
    }
    for name, moments in matching.items():
        for moment in moments:
            listed = client.messages.list(to=OWNER, **{name: moment})
            assert [m.sid for m in listed] == [sid], (name, moment)
    missing = {
        "date_sent_after": [next_day],
        "date_sent_before": [midnight(DAY) - timedelta(seconds=1)],
        "date_sent": [next_day, DAY - timedelta(days=1)],
    }
    for name, moments in missing.items():
        for moment in moments:
            assert client.messages.list(to=OWNER, **{name: moment}) == [], (name, moment)
    both = client.messages.list(date_sent_after=midnight(DAY), date_sent_before=midnight(DAY))
    assert [m.sid for m in both] == [sid]

    # twilio-python sends a timestamp, not a date, under the names DateSent> and DateSent<.
    request = twilio.requests_for(Operation.MESSAGES_LIST)[-1]
    assert request.query == (
        ("DateSent<", "2024-05-01T00:00:00Z"),
        ("DateSent>", "2024-05-01T00:00:00Z"),
    )


def test_a_message_sent_today_matches_today_from_its_first_to_its_last_minute() -> None:
    with TwilioRestStandIn(account_sid=ACCOUNT, auth_token=TOKEN) as twilio:
        client = twilio.make_client()
        sid = send(client, OWNER, "now")
        sent = twilio.wait_for_message(1).date_sent
        assert sent is not None
        today = midnight(sent.date())
        for after in (today, today + timedelta(hours=23, minutes=59)):
            assert [m.sid for m in client.messages.list(date_sent_after=after)] == [sid]
        assert client.messages.list(date_sent_after=today + timedelta(days=1)) == []


def test_a_message_never_sent_is_listed_but_matches_no_date_sent_filter(clock: Clock) -> None:
    with TwilioRestStandIn(
        account_sid=ACCOUNT, auth_token=TOKEN, sms_sent_after=None, clock=clock
    ) as twilio:
        client = twilio.make_client()
        sid = send(client, OWNER, "stuck")
        clock.advance(3600)
        (listed,) = client.messages.list(to=OWNER)
        assert (listed.sid, listed.status, listed.date_sent) == (sid, "queued", None)
        for name in ("date_sent_after", "date_sent_before", "date_sent"):
            assert client.messages.list(to=OWNER, **{name: midnight(DAY)}) == [], name

        twilio.set_message_status(sid, "sent")
        (sent,) = client.messages.list(to=OWNER, date_sent_after=midnight(DAY))
        assert sent.status == "sent"
        assert sent.date_sent == clock.now.replace(microsecond=0)


def test_sms_sent_after_is_counted_from_creation_on_the_stand_in_clock(clock: Clock) -> None:
    with TwilioRestStandIn(
        account_sid=ACCOUNT, auth_token=TOKEN, sms_sent_after=60, clock=clock
    ) as twilio:
        client = twilio.make_client()
        sid = send(client, OWNER, "soon")
        created = clock.now
        clock.advance(59)
        assert twilio.message(sid).status == "queued"
        assert client.messages.list(date_sent=DAY) == []
        clock.advance(1)
        (sent,) = client.messages.list(date_sent=created + timedelta(days=1))
        assert sent.status == "sent"
        assert twilio.message(sid).date_sent == created + timedelta(seconds=60)


def test_pages_follow_next_page_uri_with_the_filters(
    twilio: TwilioRestStandIn, client: Client, clock: Clock
) -> None:
    sids = []
    for n in range(5):
        sids.append(send(client, OWNER, f"m{n}"))
        send(client, OTHER, f"other {n}")
        clock.advance(1)
    newest_first = sids[::-1]

    assert [m.sid for m in client.messages.list(to=OWNER, page_size=2)] == newest_first
    requests = twilio.requests_for(Operation.MESSAGES_LIST)
    assert [r.param("Page") for r in requests] == [None, "1", "2"]
    assert all(r.param("To") == OWNER and r.param("PageSize") == "2" for r in requests)

    assert [m.sid for m in client.messages.list(to=OWNER, limit=3)] == newest_first[:3]
    assert len(twilio.requests_for(Operation.MESSAGES_LIST)) == 4
    assert len(list(client.messages.stream(to=OWNER, page_size=3))) == 5

    # A page token marks a place: a message created meanwhile does not shift the next page.
    first = client.messages.page(to=OWNER, page_size=2)
    assert [m.sid for m in first] == newest_first[:2]
    send(client, OWNER, "newer")
    second = first.next_page()
    assert second is not None
    assert [m.sid for m in second] == newest_first[2:4]
    previous = second.previous_page()
    assert previous is not None
    assert [m.sid for m in previous] == newest_first[:2]
    last = second.next_page()
    assert last is not None
    assert [m.sid for m in last] == newest_first[4:]
    assert last.next_page() is None


def test_calls_are_listed_by_to_from_status_and_start_time(
    twilio: TwilioRestStandIn, client: Client, clock: Clock
) -> None:
    def call(to: str) -> str:
        sid = client.calls.create(to=to, from_=NUMBER, twiml=TWIML).sid
        assert sid is not None
        clock.advance(1)
        return sid

    queued, ringing, answered, other = call(OWNER), call(OWNER), call(OWNER), call(OTHER)
    twilio.set_call_status(ringing, "ringing")
    twilio.set_call_status(answered, "in-progress")
    twilio.set_call_status(other, "in-progress")
    clock.advance(30)
    twilio.set_call_status(other, "completed")

    assert [c.sid for c in client.calls.list(to=OWNER)] == [answered, ringing, queued]
    assert [c.sid for c in client.calls.list(from_=NUMBER)] == [other, answered, ringing, queued]
    assert [c.sid for c in client.calls.list(status="ringing")] == [ringing]
    # A call not answered yet has no start_time: no StartTime filter finds it.
    for name in ("start_time_after", "start_time_before", "start_time"):
        listed = client.calls.list(to=OWNER, **{name: midnight(DAY)})
        assert [c.sid for c in listed] == [answered], name
    next_day = midnight(DAY + timedelta(days=1))
    assert client.calls.list(start_time_after=next_day + timedelta(hours=1)) == []
    assert len(client.calls.list(start_time_before=next_day)) == 2
    (ended,) = client.calls.list(end_time=next_day)
    assert (ended.sid, ended.status, ended.duration) == (other, "completed", "30")
    (found,) = client.calls.list(to=OWNER, status="in-progress", page_size=1)
    assert found.start_time == (LATE + timedelta(seconds=4)).replace(microsecond=0)
    assert found.date_created == (LATE + timedelta(seconds=2)).replace(microsecond=0)
    request = twilio.requests_for(Operation.CALLS_LIST)[-1]
    assert request.path == f"/2010-04-01/Accounts/{ACCOUNT}/Calls.json"
    assert request.param("StartTime") is None
    assert request.param("Status") == "in-progress"


def test_a_failed_list_raises_with_the_status_and_the_next_succeeds(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    send(client, OWNER, "hello")
    twilio.fail_next(Operation.MESSAGES_LIST, status=503, code=20503, message="Unavailable")
    twilio.fail_next(Operation.CALLS_LIST)
    # twilio-python reads a list answer without checking it for an error: what it raises is a
    # plain TwilioException("Unable to fetch page", response), not a TwilioRestException.
    with pytest.raises(TwilioException) as failed:
        client.messages.list(to=OWNER)
    assert not isinstance(failed.value, TwilioRestException)
    assert failed.value.args[1].status_code == 503
    with pytest.raises(TwilioException) as failed_calls:
        client.calls.list()
    assert failed_calls.value.args[1].status_code == 500
    assert [r.status for r in twilio.requests_for(Operation.MESSAGES_LIST)] == [503]

    assert len(client.messages.list(to=OWNER)) == 1
    assert client.calls.list() == []


def test_a_bad_date_or_page_token_is_a_400(client: Client) -> None:
    with pytest.raises(TwilioException) as bad_date:
        client.messages.list(date_sent_after="yesterday")
    assert bad_date.value.args[1].status_code == 400
    with pytest.raises(TwilioException) as bad_token:
        client.messages.page(page_token="PASMnotthere")
    assert bad_token.value.args[1].status_code == 400


def test_an_answer_held_back_comes_after_the_message_exists() -> None:
    twilio = TwilioRestStandIn(account_sid=ACCOUNT, auth_token=TOKEN).start()
    try:
        client = twilio.make_client()
        twilio.set_answer_delay(Operation.MESSAGES_CREATE, 60)
        answered: list[str | None] = []
        done = threading.Event()

        def create() -> None:
            answered.append(client.messages.create(to=OWNER, from_=NUMBER, body="slow").sid)
            done.set()

        threading.Thread(target=create, daemon=True).start()
        recorded = twilio.wait_for_message(1)
        assert twilio.wait_for_request(Operation.MESSAGES_CREATE).status == 201
        # The sender is still waiting for its answer, yet a list already finds the message.
        assert not done.is_set()
        (listed,) = twilio.make_client().messages.list(to=OWNER)
        assert listed.sid == recorded.sid
        assert not done.is_set()
    finally:
        twilio.stop()  # answers held back go out at once
    assert done.wait(5)
    assert answered == [recorded.sid]


def test_an_answer_delay_for_every_operation_and_one_that_overrides_it(
    twilio: TwilioRestStandIn, client: Client
) -> None:
    twilio.set_answer_delay(None, 0.2)
    client.calls.list()
    request = twilio.wait_for_request(Operation.CALLS_LIST)
    assert time.monotonic() - request.at >= 0.2

    twilio.set_answer_delay(None, 30)
    twilio.set_answer_delay(Operation.MESSAGES_LIST, 0)
    started = time.monotonic()
    client.messages.list()
    assert time.monotonic() - started < 30
    with pytest.raises(ValueError, match="negative"):
        twilio.set_answer_delay(None, -1)
