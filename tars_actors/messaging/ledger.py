"""The message ledger: every routed message and broadcast approval, as the Router records them.

A message is written (``PENDING``) before any delivery is tried, and each outcome is recorded
with its time, so a restart after a crash redelivers what was never delivered
(:meth:`MessageLedger.undelivered`) and repeats nothing that was
(:meth:`MessageLedger.begin_attempt` returns None for a settled row).

The API is synchronous and keeps no state of its own: each call runs in one transaction on
the calling thread's connection (``store.connect()`` first), and rows about to change are
read with :meth:`~tars_actors.store.Store.for_update`, so two threads never both settle,
claim or decide the same row. Calls return :class:`MessageRecord` and
:class:`ApprovalRecord` snapshots, safe to hand to another thread or actor.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from tars_actors.call.caller_words import BEGIN, END, visible_length
from tars_actors.store import (
    ApprovalStatus,
    BroadcastApproval,
    InterSessionMessage,
    MessageStatus,
    Store,
    utcnow,
)

__all__ = [
    "BROADCAST_TARGET",
    "FINAL_STATUSES",
    "MAX_BODY_CHARS",
    "OWNER_TARGET",
    "ApprovalRecord",
    "LedgerError",
    "LedgerErrorKind",
    "MessageLedger",
    "MessageRecord",
]

#: Longest message body accepted, in characters (after stripping surrounding whitespace).
MAX_BODY_CHARS = 1000

#: ``target`` of a message to the owner.
OWNER_TARGET = "user"
#: ``target`` (and ``message_type``) of a broadcast.
BROADCAST_TARGET = "broadcast"

LedgerErrorKind = Literal[
    "empty_body", "body_too_long", "not_found", "already_decided", "bad_status"
]

#: Outcomes after which a message is never delivered again.
FINAL_STATUSES = frozenset(
    {
        MessageStatus.DELIVERED,
        MessageStatus.SMS_SENT,
        MessageStatus.DENIED,
        MessageStatus.FAILED,
        MessageStatus.READ,
    }
)
#: Statuses a message can be written with: an outcome comes later, through ``settle``.
_RECORDABLE = frozenset(
    {MessageStatus.PENDING, MessageStatus.QUEUED, MessageStatus.AWAITING_APPROVAL}
)
#: Statuses of a message that has reached the owner and may be marked read.
_READABLE = (MessageStatus.QUEUED, MessageStatus.SMS_SENT, MessageStatus.DELIVERED)


class LedgerError(ValueError):
    """A request the ledger refuses, with a message fit to relay to the model.

    ``kind`` is one of ``empty_body``, ``body_too_long``, ``not_found``, ``already_decided``
    and ``bad_status``.
    """

    def __init__(self, message: str, *, kind: LedgerErrorKind) -> None:
        super().__init__(message)
        self.kind: LedgerErrorKind = kind


@dataclass(frozen=True, slots=True)
class MessageRecord:
    """A snapshot of one ``inter_session_messages`` row."""

    id: int
    sender_session_id: int | None
    sender_name: str
    target: str
    target_session_id: int | None
    message_type: str
    body: str
    status: MessageStatus
    created_at: datetime
    updated_at: datetime
    delivered_at: datetime | None
    read_at: datetime | None
    error: str | None
    attempts: int
    approval_id: int | None


@dataclass(frozen=True, slots=True)
class ApprovalRecord:
    """A snapshot of one ``broadcast_approvals`` row."""

    id: int
    requester_session_id: int | None
    requester_name: str
    body: str
    status: ApprovalStatus
    created_at: datetime
    decided_at: datetime | None


def _optional_id(value: Any) -> int | None:
    return None if value is None else int(value)


def _message_record(row: Any) -> MessageRecord:
    return MessageRecord(
        id=int(row.id),
        sender_session_id=_optional_id(row.sender_session_id),
        sender_name=str(row.sender_name),
        target=str(row.target),
        target_session_id=_optional_id(row.target_session_id),
        message_type=str(row.message_type),
        body=str(row.body),
        status=MessageStatus(row.status),
        created_at=row.created_at,
        updated_at=row.updated_at,
        delivered_at=row.delivered_at,
        read_at=row.read_at,
        error=row.error,
        attempts=int(row.attempts),
        approval_id=_optional_id(row.approval_id),
    )


def _approval_record(row: Any) -> ApprovalRecord:
    return ApprovalRecord(
        id=int(row.id),
        requester_session_id=_optional_id(row.requester_session_id),
        requester_name=str(row.requester_name),
        body=str(row.body),
        status=ApprovalStatus(row.status),
        created_at=row.created_at,
        decided_at=row.decided_at,
    )


def _message_not_found(message_id: int) -> LedgerError:
    return LedgerError(f"there is no message with id {message_id}", kind="not_found")


class MessageLedger:
    """Records routed messages and broadcast approvals in the store; see the module docstring."""

    def __init__(self, store: Store) -> None:
        self._store = store

    @property
    def store(self) -> Store:
        return self._store

    @staticmethod
    def check_body(body: str) -> str:
        """``body`` without surrounding whitespace; LedgerError if empty or too long."""
        text = body.strip()
        # A caller's words are marked (caller_words): the marks are not characters of theirs.
        length = visible_length(text)
        if not visible_length(text.strip(f"{BEGIN}{END} \t\n")):
            raise LedgerError("the message is empty; say what to send", kind="empty_body")
        if length > MAX_BODY_CHARS:
            raise LedgerError(
                f"the message is {length} characters long; the limit is {MAX_BODY_CHARS}",
                kind="body_too_long",
            )
        return text

    # --- Writing messages -------------------------------------------------------------

    def record(
        self,
        *,
        sender_session_id: int | None,
        sender_name: str,
        target: str,
        message_type: str,
        body: str,
        target_session_id: int | None = None,
        status: MessageStatus = MessageStatus.PENDING,
        approval_id: int | None = None,
    ) -> MessageRecord:
        """Write one message, before any delivery is tried; return it with its id.

        ``status`` is PENDING, QUEUED or AWAITING_APPROVAL (outcomes go through
        :meth:`settle`). An unknown session or approval id raises ``peewee.IntegrityError``.
        """
        [written] = self.record_many(
            sender_session_id=sender_session_id,
            sender_name=sender_name,
            target=target,
            message_type=message_type,
            body=body,
            target_session_ids=[target_session_id],
            status=status,
            approval_id=approval_id,
        )
        return written

    def record_many(
        self,
        *,
        sender_session_id: int | None,
        sender_name: str,
        target: str,
        message_type: str,
        body: str,
        target_session_ids: Iterable[int | None],
        status: MessageStatus = MessageStatus.PENDING,
        approval_id: int | None = None,
    ) -> list[MessageRecord]:
        """Write one message per target session, all or none, in one transaction.

        Same rules as :meth:`record`; no targets writes nothing and returns ``[]``.
        """
        text = self.check_body(body)
        status = self._recordable(status)
        targets = list(target_session_ids)
        if not targets:
            return []
        with self._store.transaction():
            now = utcnow()
            rows = [
                InterSessionMessage.create(
                    sender_session=sender_session_id,
                    sender_name=sender_name,
                    target=target,
                    target_session=target_session_id,
                    message_type=message_type,
                    body=text,
                    status=status,
                    created_at=now,
                    approval=approval_id,
                )
                for target_session_id in targets
            ]
        return [_message_record(row) for row in rows]

    @staticmethod
    def _recordable(status: MessageStatus) -> MessageStatus:
        status = MessageStatus(status)
        if status not in _RECORDABLE:
            allowed = ", ".join(sorted(member.value for member in _RECORDABLE))
            raise LedgerError(
                f"a new message cannot be recorded as {status.value} (only {allowed}); "
                "record it, then settle its outcome",
                kind="bad_status",
            )
        return status

    # --- Delivery ---------------------------------------------------------------------

    def get(self, message_id: int) -> MessageRecord:
        """The message ``message_id``; LedgerError ``not_found`` if there is none."""
        row = InterSessionMessage.get_or_none(InterSessionMessage.id == message_id)
        if row is None:
            raise _message_not_found(message_id)
        return _message_record(row)

    def _locked_message(self, message_id: int) -> Any:
        query = InterSessionMessage.select().where(InterSessionMessage.id == message_id)
        row = self._store.for_update(query).get_or_none()
        if row is None:
            raise _message_not_found(message_id)
        return row

    def begin_attempt(self, message_id: int) -> MessageRecord | None:
        """Take a PENDING or QUEUED message in hand for a delivery: count the attempt,
        mark it held by this daemon, and return it.

        None for a message in any other status (already delivered, sent, denied, failed or
        read, or awaiting approval), or one a live daemon holds already (handed to a call,
        being texted): the caller must not deliver it. What a gone daemon held is free.
        """
        store = self._store
        with store.transaction():
            row = self._locked_message(message_id)
            if row.status not in (MessageStatus.PENDING, MessageStatus.QUEUED):
                return None
            if row.held_by is not None and row.held_by in store.live_daemons():
                return None  # in hand already (here or on another live daemon)
            row.attempts += 1
            row.held_by = store.daemon_id
            row.save()
        return _message_record(row)

    def settle(
        self,
        message_id: int,
        status: MessageStatus,
        *,
        error: str | None = None,
        target_session_id: int | None = None,
    ) -> bool:
        """Record an outcome of a message; False (and nothing changed) if it had one already.

        Only a PENDING, QUEUED or AWAITING_APPROVAL message changes, so a duplicate
        acknowledgement is harmless. DELIVERED and SMS_SENT set ``delivered_at``; FAILED
        needs ``error``, which is stored with any outcome it is given for;
        ``target_session_id`` records the session the message went to. READ acts as
        :meth:`mark_read` (it also applies to DELIVERED and SMS_SENT messages, keeping
        their status) and marks any other open message READ. PENDING is refused: use
        :meth:`requeue`.
        """
        status = MessageStatus(status)
        if status is MessageStatus.PENDING:
            raise LedgerError(
                "a message cannot be settled as pending; use requeue()", kind="bad_status"
            )
        if status is MessageStatus.FAILED and not (error and error.strip()):
            raise LedgerError("a failed delivery needs its error", kind="bad_status")
        with self._store.transaction():
            row = self._locked_message(message_id)
            now = utcnow()
            if status is MessageStatus.READ and row.status in (
                MessageStatus.DELIVERED,
                MessageStatus.SMS_SENT,
            ):
                if row.read_at is not None:
                    return False
                row.read_at = now
            elif row.status in FINAL_STATUSES:
                return False
            else:
                row.status = status
                if status in (MessageStatus.DELIVERED, MessageStatus.SMS_SENT):
                    row.delivered_at = now
                elif status is MessageStatus.READ:
                    row.read_at = now
            if error is not None:
                row.error = error
            if target_session_id is not None:
                row.target_session = target_session_id
            row.save()
        return True

    def release_held(self, *, keep: Iterable[int] = ()) -> int:
        """Free the open messages this daemon holds (its Router starts again), but those in
        ``keep`` (texts on their way, whose outcome will come)."""
        with self._store.transaction():
            return int(
                InterSessionMessage.update(held_by=None)
                .where(
                    InterSessionMessage.held_by == self._store.daemon_id,
                    InterSessionMessage.status.in_([MessageStatus.PENDING, MessageStatus.QUEUED]),
                    InterSessionMessage.id.not_in(list(keep)),
                )
                .execute()
            )

    def requeue(self, message_id: int) -> bool:
        """Leave a message handed to a session that ended undelivered PENDING for redelivery.

        False if the message is no longer PENDING (the session delivered it, or another
        outcome was recorded): then it must not be delivered again.
        """
        with self._store.transaction():
            row = self._locked_message(message_id)
            if row.held_by not in (None, self._store.daemon_id):
                # Taken up by another member meanwhile (this one was taken for lost).
                return False
            row.held_by = None  # queued for the owner's next call, it is free too
            row.save()  # touches updated_at
        return bool(row.status == MessageStatus.PENDING)

    # --- Reading ----------------------------------------------------------------------

    @staticmethod
    def _messages(*conditions: Any, limit: int | None = None) -> list[MessageRecord]:
        query = InterSessionMessage.select().where(*conditions).order_by(InterSessionMessage.id)
        if limit is not None:
            query = query.limit(limit)
        return [_message_record(row) for row in query]

    def _free(self) -> Any:
        """Messages no live daemon holds."""
        live = list(self._store.live_daemons())
        return InterSessionMessage.held_by.is_null() | InterSessionMessage.held_by.not_in(live)

    def undelivered(self) -> list[MessageRecord]:
        """PENDING messages no live daemon holds, oldest first: what to (re)deliver at boot,
        when a member is gone, and at each sweep."""
        return self._messages(InterSessionMessage.status == MessageStatus.PENDING, self._free())

    def queued_for_owner(self) -> list[MessageRecord]:
        """QUEUED messages no live daemon holds, oldest first: what waits for the owner's
        next call."""
        return self._messages(InterSessionMessage.status == MessageStatus.QUEUED, self._free())

    def unread_for_owner(self, *, limit: int = 20) -> list[MessageRecord]:
        """Messages to the owner that reached them (queued, texted or told) and are unread."""
        return self._messages(
            InterSessionMessage.target == OWNER_TARGET,
            InterSessionMessage.status.in_(_READABLE),
            InterSessionMessage.read_at.is_null(),
            limit=limit,
        )

    def mark_read(self, message_ids: Iterable[int]) -> int:
        """Mark the owner's messages read; return how many were unread before.

        Sets ``read_at``; QUEUED messages also become READ, while DELIVERED and SMS_SENT
        ones keep their status. Messages already read, not found, or not yet delivered
        (PENDING, AWAITING_APPROVAL...) are left as they are.
        """
        ids = sorted({int(message_id) for message_id in message_ids})
        if not ids:
            return 0
        with self._store.transaction():
            now = utcnow()
            unread = (InterSessionMessage.id.in_(ids), InterSessionMessage.read_at.is_null())
            queued = (
                InterSessionMessage.update(status=MessageStatus.READ, read_at=now, updated_at=now)
                .where(*unread, InterSessionMessage.status == MessageStatus.QUEUED)
                .execute()
            )
            delivered = (
                InterSessionMessage.update(read_at=now, updated_at=now)
                .where(
                    *unread,
                    InterSessionMessage.status.in_(
                        (MessageStatus.DELIVERED, MessageStatus.SMS_SENT)
                    ),
                )
                .execute()
            )
        return int(queued) + int(delivered)

    # --- Broadcast approvals ----------------------------------------------------------

    def request_approval(
        self, *, requester_session_id: int | None, requester_name: str, body: str
    ) -> tuple[ApprovalRecord, MessageRecord]:
        """Write a broadcast awaiting the owner's decision: the approval and its message."""
        text = self.check_body(body)
        with self._store.transaction():
            now = utcnow()
            approval = BroadcastApproval.create(
                requester_session=requester_session_id,
                requester_name=requester_name,
                body=text,
                status=ApprovalStatus.PENDING,
                created_at=now,
            )
            message = InterSessionMessage.create(
                sender_session=requester_session_id,
                sender_name=requester_name,
                target=BROADCAST_TARGET,
                message_type=BROADCAST_TARGET,
                body=text,
                status=MessageStatus.AWAITING_APPROVAL,
                created_at=now,
                approval=approval.id,
            )
        return _approval_record(approval), _message_record(message)

    def decide(
        self, approval_id: int, *, approve: bool
    ) -> tuple[ApprovalRecord, list[MessageRecord]]:
        """Approve or deny a pending broadcast, once; return it and its messages after.

        Denied, its AWAITING_APPROVAL messages become DENIED; approved, they stay
        AWAITING_APPROVAL for the caller to deliver and settle. LedgerError ``not_found``
        for an unknown id, ``already_decided`` for one decided before.
        """
        with self._store.transaction():
            query = BroadcastApproval.select().where(BroadcastApproval.id == approval_id)
            approval = self._store.for_update(query).get_or_none()
            if approval is None:
                raise LedgerError(
                    f"there is no broadcast approval with id {approval_id}", kind="not_found"
                )
            if approval.status != ApprovalStatus.PENDING:
                earlier = ApprovalStatus(approval.status).value
                when = approval.decided_at
                at = f" at {when:%Y-%m-%d %H:%M} UTC" if when is not None else ""
                raise LedgerError(
                    f"broadcast approval {approval_id} was already {earlier}{at}",
                    kind="already_decided",
                )
            now = utcnow()
            approval.status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
            approval.decided_at = now
            approval.save()
            if not approve:
                InterSessionMessage.update(status=MessageStatus.DENIED, updated_at=now).where(
                    InterSessionMessage.approval == approval_id,
                    InterSessionMessage.status == MessageStatus.AWAITING_APPROVAL,
                ).execute()
            messages = self._messages(InterSessionMessage.approval == approval_id)
        return _approval_record(approval), messages

    def pending_approvals(self) -> list[ApprovalRecord]:
        """Broadcasts waiting for the owner's decision, oldest first."""
        query = (
            BroadcastApproval.select()
            .where(BroadcastApproval.status == ApprovalStatus.PENDING)
            .order_by(BroadcastApproval.id)
        )
        return [_approval_record(row) for row in query]

    def approved_undelivered(self) -> list[MessageRecord]:
        """Messages of approved broadcasts still AWAITING_APPROVAL, oldest first.

        What an approval left to deliver when the process stopped between :meth:`decide`
        and settling the message; the Router delivers these at boot with the PENDING ones.
        """
        approved = BroadcastApproval.select(BroadcastApproval.id).where(
            BroadcastApproval.status == ApprovalStatus.APPROVED
        )
        return self._messages(
            InterSessionMessage.status == MessageStatus.AWAITING_APPROVAL,
            InterSessionMessage.approval.in_(approved),
        )

    def broadcast_copies(self, approval_id: int) -> list[MessageRecord]:
        """The per-session copies an approved broadcast was delivered as, oldest first."""
        return self._messages(
            InterSessionMessage.approval == approval_id,
            InterSessionMessage.status != MessageStatus.AWAITING_APPROVAL,
        )
