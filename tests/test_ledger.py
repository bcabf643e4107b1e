"""The message ledger on SQLite and PostgreSQL: outcomes, redelivery after a crash, approvals."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import peewee
import pytest

from tars_actors.messaging.ledger import (
    MAX_BODY_CHARS,
    ApprovalRecord,
    LedgerError,
    MessageLedger,
    MessageRecord,
)
from tars_actors.store import (
    AgentSession,
    ApprovalStatus,
    BroadcastApproval,
    Direction,
    InterSessionMessage,
    MessageStatus,
    Permission,
    Store,
    utcnow,
)

pytest_plugins = ("tests.pg",)


@pytest.fixture
def url(make_url: Callable[[], str]) -> str:
    """The URL of the test's database, for opening it again as a restarted process would."""
    return make_url()


@pytest.fixture
def store(url: str) -> Iterator[Store]:
    """A migrated store with a connection open on the test's thread."""
    store = Store.open(url)
    store.migrate()
    store.connect()
    yield store
    store.shutdown()


@pytest.fixture
def ledger(store: Store) -> MessageLedger:
    return MessageLedger(store)


def make_session(name: str = "owner", **fields: Any) -> AgentSession:
    values: dict[str, Any] = {
        "name": name,
        "phone_number": "+15550000001",
        "permission": Permission.OWNER,
        "direction": Direction.INBOUND,
    }
    return AgentSession.create(**(values | fields))


def note(ledger: MessageLedger, body: str = "Buy milk", **fields: Any) -> MessageRecord:
    """A message to the owner, as the Router records one before trying to deliver it."""
    values: dict[str, Any] = {
        "sender_session_id": None,
        "sender_name": "Anna",
        "target": "user",
        "message_type": "note",
        "body": body,
    }
    return ledger.record(**(values | fields))


def run_in_threads(count: int, work: Callable[[int], Any], store: Store) -> list[Any]:
    """Run ``work(i)`` on ``count`` threads released together, each on its own connection.

    Returns each thread's result, or the exception it raised.
    """
    start = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(index: int) -> None:
        store.connect()
        try:
            start.wait(timeout=30)
            results[index] = work(index)
        except Exception as error:
            results[index] = error
        finally:
            store.close()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    return results


# Recording


def test_a_recorded_message_reads_back_with_every_field(ledger: MessageLedger) -> None:
    anna = make_session("Anna", permission=Permission.CONTACT, phone_number="+36201234567")
    owner = make_session()
    before = utcnow()

    written = ledger.record(
        sender_session_id=anna.id,
        sender_name="Anna",
        target="owner",
        target_session_id=owner.id,
        message_type="note",
        body="  Dinner at 8?\n",
    )

    assert ledger.get(written.id) == written
    assert (written.sender_session_id, written.target_session_id) == (anna.id, owner.id)
    assert (written.sender_name, written.target, written.message_type) == ("Anna", "owner", "note")
    assert written.body == "Dinner at 8?"
    assert written.status is MessageStatus.PENDING
    assert written.attempts == 0
    assert (written.delivered_at, written.read_at, written.error, written.approval_id) == (
        None,
        None,
        None,
        None,
    )
    assert before <= written.created_at <= utcnow()
    assert written.created_at.tzinfo is UTC
    with pytest.raises(dataclasses.FrozenInstanceError):
        written.status = MessageStatus.DELIVERED  # type: ignore[misc]


def test_a_message_can_be_recorded_straight_into_the_owners_queue(ledger: MessageLedger) -> None:
    queued = note(ledger, status=MessageStatus.QUEUED)
    assert ledger.get(queued.id).status is MessageStatus.QUEUED


def test_a_message_cannot_be_recorded_with_an_outcome(ledger: MessageLedger) -> None:
    with pytest.raises(LedgerError, match="cannot be recorded as delivered") as raised:
        note(ledger, status=MessageStatus.DELIVERED)
    assert raised.value.kind == "bad_status"
    assert InterSessionMessage.select().count() == 0


def test_a_body_of_exactly_the_limit_is_accepted(ledger: MessageLedger) -> None:
    body = "x" * MAX_BODY_CHARS
    assert ledger.get(note(ledger, f" {body} ").id).body == body


@pytest.mark.parametrize(
    ("body", "kind", "message"),
    [
        ("", "empty_body", "empty"),
        (" \n\t ", "empty_body", "empty"),
        (
            "x" * (MAX_BODY_CHARS + 1),
            "body_too_long",
            f"1001 characters .* limit is {MAX_BODY_CHARS}",
        ),
    ],
)
def test_an_empty_or_oversized_body_is_refused_and_nothing_written(
    ledger: MessageLedger, body: str, kind: str, message: str
) -> None:
    owner = make_session()
    attempts: list[Callable[[], Any]] = [
        lambda: note(ledger, body),
        lambda: ledger.record_many(
            sender_session_id=owner.id,
            sender_name="owner",
            target="broadcast",
            message_type="broadcast",
            body=body,
            target_session_ids=[owner.id],
        ),
        lambda: ledger.request_approval(
            requester_session_id=None, requester_name="Anna", body=body
        ),
    ]
    for attempt in attempts:
        with pytest.raises(LedgerError, match=message) as raised:
            attempt()
        assert raised.value.kind == kind
    assert InterSessionMessage.select().count() == 0
    assert BroadcastApproval.select().count() == 0


def test_check_body_returns_the_stripped_text() -> None:
    assert MessageLedger.check_body("  call me back \n") == "call me back"


def test_an_unknown_message_is_not_found(ledger: MessageLedger) -> None:
    for call in (
        lambda: ledger.get(404),
        lambda: ledger.begin_attempt(404),
        lambda: ledger.settle(404, MessageStatus.DELIVERED),
        lambda: ledger.requeue(404),
    ):
        with pytest.raises(LedgerError, match="no message with id 404") as raised:
            call()
        assert raised.value.kind == "not_found"


def test_record_many_writes_one_row_per_session(ledger: MessageLedger) -> None:
    owner, anna, bob = make_session(), make_session("Anna"), make_session("Bob")
    rows = ledger.record_many(
        sender_session_id=owner.id,
        sender_name="owner",
        target="broadcast",
        message_type="broadcast",
        body="Dinner is ready",
        target_session_ids=[anna.id, bob.id],
    )
    assert [row.target_session_id for row in rows] == [anna.id, bob.id]
    assert [ledger.get(row.id) for row in rows] == rows
    assert (
        ledger.record_many(
            sender_session_id=owner.id,
            sender_name="owner",
            target="broadcast",
            message_type="broadcast",
            body="Nobody listening",
            target_session_ids=[],
        )
        == []
    )


def test_record_many_writes_every_row_or_none(ledger: MessageLedger) -> None:
    anna, bob = make_session("Anna"), make_session("Bob")
    with pytest.raises(peewee.IntegrityError):
        ledger.record_many(
            sender_session_id=None,
            sender_name="owner",
            target="broadcast",
            message_type="broadcast",
            body="Dinner is ready",
            target_session_ids=[anna.id, bob.id, 9999],  # no session 9999
        )
    assert InterSessionMessage.select().count() == 0


# Outcomes


def test_delivered_sets_the_delivery_time_and_a_duplicate_ack_changes_nothing(
    ledger: MessageLedger,
) -> None:
    owner = make_session()
    message = note(ledger)
    before = utcnow()

    assert ledger.settle(message.id, MessageStatus.DELIVERED, target_session_id=owner.id)
    delivered = ledger.get(message.id)
    assert delivered.status is MessageStatus.DELIVERED
    assert delivered.delivered_at is not None
    assert before <= delivered.delivered_at <= utcnow()
    assert delivered.target_session_id == owner.id
    assert delivered.updated_at >= delivered.delivered_at

    assert not ledger.settle(message.id, MessageStatus.DELIVERED)
    assert not ledger.settle(message.id, MessageStatus.FAILED, error="socket closed")
    assert not ledger.settle(message.id, MessageStatus.QUEUED)
    assert ledger.get(message.id) == delivered


def test_sms_sent_sets_the_delivery_time(ledger: MessageLedger) -> None:
    message = note(ledger)
    assert ledger.settle(message.id, MessageStatus.SMS_SENT)
    sent = ledger.get(message.id)
    assert sent.status is MessageStatus.SMS_SENT
    assert sent.delivered_at is not None


def test_a_failure_needs_its_error_and_keeps_it(ledger: MessageLedger) -> None:
    message = note(ledger)
    for missing in (None, "", "   "):
        with pytest.raises(LedgerError, match="needs its error") as raised:
            ledger.settle(message.id, MessageStatus.FAILED, error=missing)
        assert raised.value.kind == "bad_status"
    assert ledger.get(message.id).status is MessageStatus.PENDING

    assert ledger.settle(message.id, MessageStatus.FAILED, error="Twilio 21610: unsubscribed")
    failed = ledger.get(message.id)
    assert (failed.status, failed.error) == (MessageStatus.FAILED, "Twilio 21610: unsubscribed")
    assert failed.delivered_at is None


def test_a_queued_message_can_still_be_delivered_once(ledger: MessageLedger) -> None:
    message = note(ledger)
    assert ledger.settle(message.id, MessageStatus.QUEUED, error="SMS failed: no signal")
    assert ledger.get(message.id).error == "SMS failed: no signal"
    assert ledger.settle(message.id, MessageStatus.DELIVERED)
    assert not ledger.settle(message.id, MessageStatus.DELIVERED)
    assert ledger.get(message.id).status is MessageStatus.DELIVERED


def test_settling_back_to_pending_is_refused(ledger: MessageLedger) -> None:
    message = note(ledger)
    with pytest.raises(LedgerError, match=r"use requeue\(\)") as raised:
        ledger.settle(message.id, MessageStatus.PENDING)
    assert raised.value.kind == "bad_status"


def test_begin_attempt_counts_attempts_until_the_message_is_settled(
    ledger: MessageLedger,
) -> None:
    message = note(ledger)
    first = ledger.begin_attempt(message.id)
    assert first is not None
    assert (first.attempts, first.status) == (1, MessageStatus.PENDING)
    # In hand (handed to a call): not taken again until it is given back.
    assert ledger.begin_attempt(message.id) is None
    assert ledger.requeue(message.id)
    second = ledger.begin_attempt(message.id)
    assert second is not None
    assert second.attempts == 2

    ledger.settle(message.id, MessageStatus.DELIVERED)
    assert ledger.begin_attempt(message.id) is None
    assert ledger.get(message.id).attempts == 2


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (MessageStatus.DELIVERED, None),
        (MessageStatus.SMS_SENT, None),
        (MessageStatus.DENIED, None),
        (MessageStatus.FAILED, "boom"),
        (MessageStatus.READ, None),
    ],
)
def test_a_settled_message_is_never_attempted_again(
    ledger: MessageLedger, status: MessageStatus, error: str | None
) -> None:
    message = note(ledger)
    ledger.settle(message.id, status, error=error)
    assert ledger.begin_attempt(message.id) is None


def test_a_queued_message_is_attempted_when_the_owner_calls(ledger: MessageLedger) -> None:
    message = note(ledger, status=MessageStatus.QUEUED)
    attempt = ledger.begin_attempt(message.id)
    assert attempt is not None
    assert (attempt.status, attempt.attempts) == (MessageStatus.QUEUED, 1)


def test_a_message_awaiting_approval_is_not_attempted(ledger: MessageLedger) -> None:
    _, message = ledger.request_approval(
        requester_session_id=None, requester_name="Anna", body="Party!"
    )
    assert ledger.begin_attempt(message.id) is None


def test_after_a_crash_only_undelivered_messages_are_redelivered_in_order(
    ledger: MessageLedger, url: str
) -> None:
    delivered = note(ledger, "delivered before the crash")
    in_flight = note(ledger, "handed to a call when the daemon died")
    never_tried = note(ledger, "written, then SIGKILL")
    queued = note(ledger, "queued for the owner")
    failed = note(ledger, "failed")
    assert ledger.begin_attempt(delivered.id) is not None
    ledger.settle(delivered.id, MessageStatus.DELIVERED)
    assert ledger.begin_attempt(in_flight.id) is not None
    ledger.settle(queued.id, MessageStatus.QUEUED)
    ledger.settle(failed.id, MessageStatus.FAILED, error="no route")

    # The restarted daemon opens the database afresh; the dead one never closed anything.
    restarted = Store.open(url)
    restarted.connect()
    try:
        after_restart = MessageLedger(restarted)
        pending = after_restart.undelivered()
        assert [message.id for message in pending] == [in_flight.id, never_tried.id]
        assert pending[0].attempts == 1
        assert [message.id for message in after_restart.queued_for_owner()] == [queued.id]

        # Redelivering everything it finds delivers each pending message once, and nothing
        # that was delivered before the crash.
        shown = []
        for message in [delivered, *pending]:
            if after_restart.begin_attempt(message.id) is not None:
                shown.append(message.id)
                after_restart.settle(message.id, MessageStatus.DELIVERED)
        assert shown == [in_flight.id, never_tried.id]
        assert after_restart.undelivered() == []
    finally:
        restarted.shutdown()


def test_requeue_keeps_an_undelivered_message_pending(ledger: MessageLedger) -> None:
    message = note(ledger)
    assert ledger.begin_attempt(message.id) is not None
    assert ledger.requeue(message.id)
    requeued = ledger.get(message.id)
    assert (requeued.status, requeued.attempts) == (MessageStatus.PENDING, 1)
    assert [pending.id for pending in ledger.undelivered()] == [message.id]


def test_requeue_refuses_a_message_already_delivered(ledger: MessageLedger) -> None:
    message = note(ledger)
    ledger.settle(message.id, MessageStatus.DELIVERED)
    assert not ledger.requeue(message.id)
    assert ledger.get(message.id).status is MessageStatus.DELIVERED
    assert ledger.undelivered() == []


def test_concurrent_acks_of_one_message_settle_it_once(ledger: MessageLedger, store: Store) -> None:
    message = note(ledger)
    outcomes = [MessageStatus.DELIVERED, MessageStatus.SMS_SENT] * 4

    results = run_in_threads(
        len(outcomes), lambda index: ledger.settle(message.id, outcomes[index]), store
    )

    assert sorted(results) == [False] * (len(outcomes) - 1) + [True]
    winner = outcomes[results.index(True)]
    assert ledger.get(message.id).status is winner


# The owner's messages


def test_unread_lists_what_reached_the_owner_and_mark_read_clears_it(
    ledger: MessageLedger,
) -> None:
    queued = note(ledger, "queued", status=MessageStatus.QUEUED)
    texted = note(ledger, "texted")
    ledger.settle(texted.id, MessageStatus.SMS_SENT)
    told = note(ledger, "told in a call")
    ledger.settle(told.id, MessageStatus.DELIVERED)
    note(ledger, "still pending")
    failed = note(ledger, "failed")
    ledger.settle(failed.id, MessageStatus.FAILED, error="no route")
    to_anna = note(ledger, "for Anna", target="Anna", status=MessageStatus.QUEUED)

    unread = ledger.unread_for_owner()
    assert [message.body for message in unread] == ["queued", "texted", "told in a call"]

    before = utcnow()
    assert ledger.mark_read(message.id for message in unread) == 3
    assert ledger.unread_for_owner() == []
    read = {message.id: ledger.get(message.id) for message in unread}
    assert read[queued.id].status is MessageStatus.READ
    assert read[texted.id].status is MessageStatus.SMS_SENT  # the outcome is kept
    assert read[told.id].status is MessageStatus.DELIVERED
    for message in read.values():
        assert message.read_at is not None
        assert before <= message.read_at <= utcnow()

    assert ledger.mark_read([queued.id, texted.id, told.id, 404]) == 0
    assert ledger.mark_read([]) == 0
    assert ledger.get(queued.id).read_at == read[queued.id].read_at
    assert ledger.get(to_anna.id).read_at is None


def test_mark_read_leaves_undelivered_messages_alone(ledger: MessageLedger) -> None:
    pending = note(ledger)
    assert ledger.mark_read([pending.id]) == 0
    assert ledger.get(pending.id) == pending


def test_unread_for_owner_returns_the_oldest_up_to_the_limit(ledger: MessageLedger) -> None:
    messages = [note(ledger, f"message {n}", status=MessageStatus.QUEUED) for n in range(5)]
    assert [m.id for m in ledger.unread_for_owner(limit=3)] == [m.id for m in messages[:3]]
    ledger.mark_read([messages[0].id])
    assert [m.id for m in ledger.unread_for_owner(limit=3)] == [m.id for m in messages[1:4]]


def test_settling_read_marks_a_message_read_once(ledger: MessageLedger) -> None:
    queued = note(ledger, status=MessageStatus.QUEUED)
    delivered = note(ledger)
    ledger.settle(delivered.id, MessageStatus.DELIVERED)

    assert ledger.settle(queued.id, MessageStatus.READ)
    assert ledger.settle(delivered.id, MessageStatus.READ)
    assert ledger.get(queued.id).status is MessageStatus.READ
    assert ledger.get(delivered.id).status is MessageStatus.DELIVERED
    assert ledger.get(delivered.id).read_at is not None
    assert not ledger.settle(queued.id, MessageStatus.READ)
    assert not ledger.settle(delivered.id, MessageStatus.READ)
    assert ledger.unread_for_owner() == []


# Broadcast approvals


def test_request_approval_writes_the_approval_and_its_message(ledger: MessageLedger) -> None:
    anna = make_session("Anna", permission=Permission.CONTACT)
    approval, message = ledger.request_approval(
        requester_session_id=anna.id, requester_name="Anna", body=" Party at mine! "
    )

    assert isinstance(approval, ApprovalRecord)
    assert (approval.requester_session_id, approval.requester_name, approval.body) == (
        anna.id,
        "Anna",
        "Party at mine!",
    )
    assert (approval.status, approval.decided_at) == (ApprovalStatus.PENDING, None)
    assert ledger.pending_approvals() == [approval]
    assert message.approval_id == approval.id
    assert (message.target, message.status) == ("broadcast", MessageStatus.AWAITING_APPROVAL)
    assert (message.sender_session_id, message.body) == (anna.id, "Party at mine!")
    assert ledger.get(message.id) == message
    assert ledger.undelivered() == []


def test_request_approval_writes_neither_row_if_one_fails(
    ledger: MessageLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(cls: Any, /, **fields: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(InterSessionMessage, "create", classmethod(fail))
    with pytest.raises(RuntimeError, match="disk full"):
        ledger.request_approval(requester_session_id=None, requester_name="Anna", body="Party!")
    monkeypatch.undo()
    assert BroadcastApproval.select().count() == 0
    assert InterSessionMessage.select().count() == 0
    assert ledger.pending_approvals() == []


def test_denying_a_broadcast_denies_its_message(ledger: MessageLedger) -> None:
    approval, message = ledger.request_approval(
        requester_session_id=None, requester_name="Anna", body="Party!"
    )
    before = utcnow()

    decided, messages = ledger.decide(approval.id, approve=False)

    assert decided.status is ApprovalStatus.DENIED
    assert decided.decided_at is not None
    assert before <= decided.decided_at <= utcnow()
    assert [(m.id, m.status) for m in messages] == [(message.id, MessageStatus.DENIED)]
    assert ledger.get(message.id).status is MessageStatus.DENIED
    assert ledger.pending_approvals() == []
    assert ledger.approved_undelivered() == []


def test_an_approved_broadcast_is_delivered_to_each_live_session(ledger: MessageLedger) -> None:
    anna, bob = make_session("Anna"), make_session("Bob")
    approval, message = ledger.request_approval(
        requester_session_id=anna.id, requester_name="Anna", body="Party!"
    )

    decided, messages = ledger.decide(approval.id, approve=True)

    assert decided.status is ApprovalStatus.APPROVED
    assert [(m.id, m.status) for m in messages] == [(message.id, MessageStatus.AWAITING_APPROVAL)]
    # Until the Router settles it, a restart finds the approved broadcast still to deliver.
    assert [m.id for m in ledger.approved_undelivered()] == [message.id]

    copies = ledger.record_many(
        sender_session_id=anna.id,
        sender_name="Anna",
        target="broadcast",
        message_type="broadcast",
        body=message.body,
        target_session_ids=[bob.id],
        approval_id=approval.id,
    )
    assert ledger.settle(message.id, MessageStatus.DELIVERED)
    assert ledger.approved_undelivered() == []
    assert [m.id for m in ledger.undelivered()] == [copy.id for copy in copies]


def test_a_broadcast_is_decided_only_once(ledger: MessageLedger) -> None:
    approval, message = ledger.request_approval(
        requester_session_id=None, requester_name="Anna", body="Party!"
    )
    ledger.decide(approval.id, approve=False)

    with pytest.raises(
        LedgerError, match=rf"approval {approval.id} was already denied at"
    ) as raised:
        ledger.decide(approval.id, approve=True)
    assert raised.value.kind == "already_decided"
    assert BroadcastApproval.get_by_id(approval.id).status is ApprovalStatus.DENIED
    assert ledger.get(message.id).status is MessageStatus.DENIED


def test_deciding_an_unknown_broadcast_is_not_found(ledger: MessageLedger) -> None:
    with pytest.raises(LedgerError, match="no broadcast approval with id 404") as raised:
        ledger.decide(404, approve=True)
    assert raised.value.kind == "not_found"


def test_two_concurrent_decisions_on_one_broadcast_exactly_one_wins(
    ledger: MessageLedger, store: Store
) -> None:
    approval, message = ledger.request_approval(
        requester_session_id=None, requester_name="Anna", body="Party!"
    )
    choices = [True, False]

    results = run_in_threads(
        2, lambda index: ledger.decide(approval.id, approve=choices[index]), store
    )

    winners = [index for index, result in enumerate(results) if isinstance(result, tuple)]
    losers = [result for result in results if isinstance(result, LedgerError)]
    assert len(winners) == 1, results
    assert [loser.kind for loser in losers] == ["already_decided"]
    approved = choices[winners[0]]
    expected = ApprovalStatus.APPROVED if approved else ApprovalStatus.DENIED
    assert BroadcastApproval.get_by_id(approval.id).status is expected
    assert ledger.get(message.id).status is (
        MessageStatus.AWAITING_APPROVAL if approved else MessageStatus.DENIED
    )


def test_pending_approvals_lists_undecided_broadcasts_oldest_first(
    ledger: MessageLedger,
) -> None:
    first, _ = ledger.request_approval(requester_session_id=None, requester_name="A", body="1")
    second, _ = ledger.request_approval(requester_session_id=None, requester_name="B", body="2")
    third, _ = ledger.request_approval(requester_session_id=None, requester_name="C", body="3")
    ledger.decide(second.id, approve=True)
    assert [approval.id for approval in ledger.pending_approvals()] == [first.id, third.id]


def test_times_are_utc(ledger: MessageLedger) -> None:
    message = note(ledger)
    ledger.settle(message.id, MessageStatus.DELIVERED)
    read_back = ledger.get(message.id)
    for instant in (read_back.created_at, read_back.updated_at, read_back.delivered_at):
        assert isinstance(instant, datetime)
        assert instant.tzinfo is UTC
