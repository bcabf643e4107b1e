"""Stream tokens: what a call's webhook recorded, and the one-time proof its stream presents."""

from __future__ import annotations

import concurrent.futures
import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tars_actors.store import Reminder, Store, StreamToken
from tars_actors.telephony.stream_tokens import (
    PLACED_CALL_TOKEN_SECONDS,
    STREAM_TOKEN_SECONDS,
    TOKEN_PARAMETER,
    CallRecord,
    StreamRefusal,
    bind_placed_call,
    hash_token,
    issue,
    placed_call,
    redeem,
    refusal,
)

ACCOUNT = "AC" + "0" * 32
NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
INBOUND = CallRecord(
    call_sid="CA1",
    account_sid=ACCOUNT,
    from_number="+15555550777",
    to_number="+15555550999",
    direction="inbound",
    stir_verstat="TN-Validation-Passed-A",
)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    opened = Store.open(f"sqlite:///{tmp_path / 'tars.db'}")
    opened.migrate()
    with opened.connection():
        yield opened
    opened.shutdown()


def check(record: CallRecord = INBOUND, **overrides: object) -> StreamRefusal | None:
    arguments: dict[str, object] = {
        "expires_at": NOW + timedelta(seconds=60),
        "used": False,
        "call_sid": "CA1",
        "account_sid": ACCOUNT,
        "account": ACCOUNT,
        "now": NOW,
    }
    arguments.update(overrides)
    return refusal(record, **arguments)  # type: ignore[arg-type]


def test_a_fresh_token_for_its_own_call_and_account_is_accepted() -> None:
    assert check() is None
    assert check(account="") is None  # TWILIO_ACCOUNT_SID not set: the record's account


def test_a_token_is_refused_used_expired_for_another_call_or_account() -> None:
    assert check(used=True) is StreamRefusal.USED
    assert check(now=NOW + timedelta(seconds=60)) is StreamRefusal.EXPIRED
    assert check(call_sid="CA2") is StreamRefusal.OTHER_CALL
    assert check(account_sid="AC" + "1" * 32) is StreamRefusal.OTHER_ACCOUNT
    placed = CallRecord(
        call_sid=None,
        account_sid="",
        from_number="+15555550999",
        to_number="+15555550123",
        direction="outbound-api",
    )
    assert check(placed, call_sid="CA9") is None  # a placed call binds its first stream
    assert check(placed, call_sid="CA9", account_sid="AC" + "1" * 32) is (
        StreamRefusal.OTHER_ACCOUNT
    )


def test_the_caller_is_the_other_party_whichever_way_the_call_goes() -> None:
    assert INBOUND.caller_number == "+15555550777"
    placed = CallRecord(
        call_sid=None,
        account_sid=ACCOUNT,
        from_number="+15555550999",
        to_number="+15555550123",
        direction="outbound-api",
    )
    assert placed.caller_number == "+15555550123"
    withheld = CallRecord(
        call_sid="CA3", account_sid=ACCOUNT, from_number="", to_number="", direction="inbound"
    )
    assert withheld.caller_number == "unknown"


def test_only_the_tokens_digest_is_stored_with_the_record(store: Store) -> None:
    token = issue(store, INBOUND, seconds=STREAM_TOKEN_SECONDS, now=NOW)
    [row] = StreamToken.select()
    assert row.token_hash == hash_token(token) != token
    assert token not in {str(value) for value in row.__data__.values()}
    assert (row.call_sid, row.from_number, row.stir_verstat) == (
        "CA1",
        "+15555550777",
        "TN-Validation-Passed-A",
    )
    assert row.expires_at == NOW + timedelta(seconds=60)


def test_a_token_is_redeemed_once(store: Store) -> None:
    token = issue(store, INBOUND, seconds=STREAM_TOKEN_SECONDS, now=NOW)
    options = {"call_sid": "CA1", "account_sid": ACCOUNT, "account": ACCOUNT}
    assert redeem(store, token, now=NOW, **options) == INBOUND
    assert redeem(store, token, now=NOW, **options) is StreamRefusal.USED
    assert redeem(store, "", now=NOW, **options) is StreamRefusal.NO_TOKEN
    assert redeem(store, "made-up", now=NOW, **options) is StreamRefusal.UNKNOWN_TOKEN


def test_a_refused_token_stays_usable_by_its_own_call(store: Store) -> None:
    token = issue(store, INBOUND, seconds=STREAM_TOKEN_SECONDS, now=NOW)
    assert (
        redeem(store, token, call_sid="CA2", account_sid=ACCOUNT, account=ACCOUNT, now=NOW)
        is StreamRefusal.OTHER_CALL
    )
    redeemed = redeem(store, token, call_sid="CA1", account_sid=ACCOUNT, account=ACCOUNT, now=NOW)
    assert redeemed == INBOUND


def test_a_placed_calls_token_binds_the_callsid_its_stream_presents(store: Store) -> None:
    parameters = placed_call(
        store,
        account_sid=ACCOUNT,
        from_number="+15555550999",
        to_number="+15555550100",
    )
    [row] = StreamToken.select()
    assert row.expires_at - row.issued_at == timedelta(seconds=PLACED_CALL_TOKEN_SECONDS)
    redeemed = redeem(
        store, parameters[TOKEN_PARAMETER], call_sid="CA7", account_sid=ACCOUNT, account=ACCOUNT
    )
    assert isinstance(redeemed, CallRecord)
    assert (redeemed.call_sid, redeemed.caller_number, redeemed.outbound) == (
        "CA7",
        "+15555550100",
        True,
    )
    assert StreamToken.get_by_id(row.id).call_sid == "CA7"


def test_once_twilio_gives_the_sid_only_that_calls_stream_may_use_the_token(
    store: Store,
) -> None:
    Reminder.create(title="Water the plants", due_at=NOW)
    older = placed_call(store, account_sid=ACCOUNT, from_number="+1", to_number="+2", reminder_id=1)
    newer = placed_call(store, account_sid=ACCOUNT, from_number="+1", to_number="+2", reminder_id=1)
    bind_placed_call(store, "CA5", reminder_id=1)
    options = {"account_sid": ACCOUNT, "account": ACCOUNT}
    assert redeem(store, newer[TOKEN_PARAMETER], call_sid="CA6", **options) is (
        StreamRefusal.OTHER_CALL
    )
    redeemed = redeem(store, newer[TOKEN_PARAMETER], call_sid="CA5", **options)
    assert isinstance(redeemed, CallRecord)
    assert redeemed.reminder_id == 1
    # The older call's token was not bound to this SID.
    assert (
        StreamToken.get(StreamToken.token_hash == hash_token(older[TOKEN_PARAMETER])).call_sid
        is None
    )
    bind_placed_call(store, "CA7")  # neither a goal nor a reminder: nothing to bind


def test_two_starts_racing_with_one_token_get_one_record(tmp_path: Path) -> None:
    opened = Store.open(f"sqlite:///{tmp_path / 'race.db'}")
    opened.migrate()
    with opened.connection():
        token = issue(opened, INBOUND, seconds=STREAM_TOKEN_SECONDS)

    def start() -> object:
        with opened.connection():
            return redeem(opened, token, call_sid="CA1", account_sid=ACCOUNT, account=ACCOUNT)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(lambda _: start(), range(8)))
    opened.shutdown()
    assert sum(isinstance(outcome, CallRecord) for outcome in outcomes) == 1
    assert outcomes.count(StreamRefusal.USED) == 7


def test_records_expired_over_a_day_ago_are_cleared_when_a_new_one_is_recorded(
    store: Store,
) -> None:
    issue(store, INBOUND, seconds=STREAM_TOKEN_SECONDS, now=NOW)
    second = dataclasses.replace(INBOUND, call_sid="CA2")
    third = dataclasses.replace(INBOUND, call_sid="CA3")
    # A day after the first expired, less a second: it is kept for an operator to read.
    issue(store, second, seconds=STREAM_TOKEN_SECONDS, now=NOW + timedelta(days=1, seconds=59))
    assert sorted(row.call_sid for row in StreamToken.select()) == ["CA1", "CA2"]
    # Past that day, the next record clears it.
    issue(store, third, seconds=STREAM_TOKEN_SECONDS, now=NOW + timedelta(days=1, seconds=61))
    assert sorted(row.call_sid for row in StreamToken.select()) == ["CA2", "CA3"]
