"""The Router's pure parts: who is live, resolving targets, where a message goes, its text."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from tars_actors.call.permissions import Permission
from tars_actors.call.session_info import SessionInfo
from tars_actors.messaging.ledger import MessageRecord
from tars_actors.messaging.routing import (
    SMS_MAX_CHARS,
    Deliver,
    Fail,
    LiveSession,
    MessageType,
    Presence,
    Queue,
    Text,
    UnknownTarget,
    note_text,
    plan_delivery,
    resolve_target,
    sms_text,
)
from tars_actors.store import MessageStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def live(session_id: int, name: str, permission: Permission = Permission.UNKNOWN) -> LiveSession:
    info = SessionInfo(
        session_id=session_id,
        session_name=name,
        permission=permission,
        caller_number="+15555550777",
        call_sid=f"CA{session_id}",
        stream_sid=f"MZ{session_id}",
        direction="inbound",
    )
    return LiveSession(info=info, ref=None)


def record(**fields: Any) -> MessageRecord:
    values: dict[str, Any] = {
        "id": 1,
        "sender_session_id": 2,
        "sender_name": "Call with +15555550777",
        "target": "user",
        "target_session_id": None,
        "message_type": MessageType.MESSAGE,
        "body": "Hello",
        "status": MessageStatus.PENDING,
        "created_at": T0,
        "updated_at": T0,
        "delivered_at": None,
        "read_at": None,
        "error": None,
        "attempts": 0,
        "approval_id": None,
    }
    values.update(fields)
    return MessageRecord(**values)


def presence_of(*sessions: LiveSession) -> Presence:
    presence = Presence()
    for session in sessions:
        presence.join(session)
    return presence


def test_targets_resolve_by_id_or_by_name_whatever_the_case() -> None:
    anna, owner = live(3, "Call with Anna"), live(1, "Call with Máté (main)", Permission.OWNER)
    presence = presence_of(owner, anna)
    assert resolve_target(presence, "3") == anna
    assert resolve_target(presence, "#3") == anna
    assert resolve_target(presence, "  call with ANNA ") == anna
    missing = resolve_target(presence, "Call with Bob")
    assert isinstance(missing, UnknownTarget)
    assert missing.message == (
        'there is no live session named "Call with Bob"; '
        'live sessions: "Call with Máté (main)", "Call with Anna"'
    )
    assert isinstance(resolve_target(Presence(), "x"), UnknownTarget)
    assert resolve_target(Presence(), "x").message.endswith("live sessions: none")  # type: ignore[union-attr]


def test_the_owners_main_session_is_their_earliest_live_call() -> None:
    first, second = live(1, "a", Permission.OWNER), live(4, "b", Permission.OWNER)
    presence = presence_of(live(2, "stranger"), first, second)
    assert presence.owner_main() == first
    presence.leave(1)
    assert presence.owner_main() == second
    assert len(presence) == 2


def test_a_message_for_the_owner_goes_into_their_call_else_by_sms_or_to_the_queue() -> None:
    owner = live(1, "Call with Máté (main)", Permission.OWNER)
    assert plan_delivery(record(), presence_of(owner)) == Deliver(owner)
    assert plan_delivery(record(), Presence()) == Text()
    assert plan_delivery(record(message_type=MessageType.REPORT), Presence()) == Queue()
    assert plan_delivery(record(message_type=MessageType.URGENT_REPORT), Presence()) == Text()
    # The owner's own message to "user" is not read back into their own call.
    assert plan_delivery(record(sender_session_id=1), presence_of(owner)) == Text()


def test_a_message_for_a_session_that_ended_fails_with_the_reason() -> None:
    anna = live(3, "Call with Anna")
    to_anna = record(target="Call with Anna", target_session_id=3)
    assert plan_delivery(to_anna, presence_of(anna)) == Deliver(anna)
    assert plan_delivery(to_anna, Presence()) == Fail(
        "the session ended before the message could be delivered"
    )


def test_notes_are_marked_as_system_notes_and_name_the_sender() -> None:
    text = note_text(record(body="Call me back."))
    assert text.startswith("[System note, not spoken by the caller]")
    assert "Message from Call with +15555550777: Call me back." in text
    assert "Notice: Incoming call" in note_text(
        record(message_type=MessageType.NOTIFICATION, body="Incoming call")
    )
    assert "Broadcast from" in note_text(record(message_type=MessageType.BROADCAST))


def test_sms_texts_name_the_sender_and_fit_twilios_limit() -> None:
    assert sms_text(record(body="Hi")) == "TARS: message from Call with +15555550777: Hi"
    assert sms_text(record(message_type=MessageType.NOTIFICATION, body="Incoming")) == (
        "TARS: Incoming"
    )
    long = sms_text(record(body="x" * 5000))
    assert len(long) == SMS_MAX_CHARS
    assert long.endswith("…")


def test_a_live_session_reads_its_fields_from_the_sessions_own_info() -> None:
    session = live(3, "Call with Anna", Permission.OWNER)
    assert (session.session_id, session.name, session.call_sid) == (3, "Call with Anna", "CA3")
    assert (session.caller_number, session.direction, session.purpose) == (
        "+15555550777",
        "inbound",
        None,
    )
    assert session.permission is Permission.OWNER
    assert session.is_owner
    assert not live(4, "Call with Bob").is_owner
