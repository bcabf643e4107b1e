"""The Twilio account as the stand-in holds it: its records and scripted failures, one lock."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from tars_actors.sim._waiting import Changes
from tars_actors.sim.twilio_api._records import (
    ENDED_STATUSES,
    SENT_STATUSES,
    CallRecord,
    ConferenceJoin,
    DialRecord,
    MessageRecord,
    Operation,
    PhoneNumberRecord,
    RecordedRequest,
    RedirectRecord,
)

__all__ = ["Failure", "RestState", "new_sid"]


@dataclass(frozen=True, slots=True)
class Failure:
    """A Twilio error the next request of an operation gets instead of its answer."""

    status: int
    code: int
    message: str


def new_sid(prefix: str) -> str:
    return prefix + uuid.uuid4().hex


class RestState:
    """Requests, calls, messages, numbers, redirects and scripted failures of one account.

    ``conferences`` holds the joins of each room in order, rooms in the order of their first
    join; ``seeded`` the SIDs of calls the stand-in did not create (``seed_call``).

    Shared by the stand-in's scripting side and its server threads: read and change it under
    ``changes.lock``, then ``changes.notify()`` so that waiters look again.
    """

    __slots__ = (
        "_clock",
        "account_sid",
        "answer_delays",
        "auth_token",
        "calls",
        "changes",
        "conferences",
        "dials",
        "failures",
        "messages",
        "numbers",
        "redirects",
        "requests",
        "seeded",
        "sms_sent_after",
    )

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        clock: Callable[[], datetime] | None = None,
        sms_sent_after: float | None = 0.0,
    ) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self._clock = clock or (lambda: datetime.now(UTC))
        self.sms_sent_after = sms_sent_after
        # Seconds the server waits before answering an operation (None: any operation).
        self.answer_delays: dict[Operation | None, float] = {}
        self.changes = Changes()
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, CallRecord] = {}
        self.messages: list[MessageRecord] = []
        self.numbers: dict[str, PhoneNumberRecord] = {}
        self.failures: dict[Operation, deque[Failure]] = {}
        self.seeded: set[str] = set()
        self.redirects: list[RedirectRecord] = []
        self.conferences: dict[str, list[ConferenceJoin]] = {}
        self.dials: list[DialRecord] = []

    def now(self) -> datetime:
        """The stand-in's clock, in UTC."""
        return self._clock().astimezone(UTC)

    def answer_delay(self, operation: Operation) -> float:
        with self.changes.lock:
            return self.answer_delays.get(operation, self.answer_delays.get(None, 0.0))

    def settle_messages(self) -> list[MessageRecord]:
        """Mark sent the queued messages ``sms_sent_after`` has passed for; return all of them.

        Statuses are worked out lazily, whenever messages are read; the caller holds the lock.
        """
        if self.sms_sent_after is None:
            return self.messages
        delay = timedelta(seconds=self.sms_sent_after)
        now = self.now()
        for index, message in enumerate(self.messages):
            due = message.created_at + delay
            if message.status == "queued" and message.date_sent is None and due <= now:
                self.messages[index] = replace(message, status="sent", date_sent=due)
        return self.messages

    def set_message_status(self, sid: str, status: str) -> MessageRecord:
        """Replace message ``sid`` with its new status; the caller holds the lock."""
        self.settle_messages()
        for index, message in enumerate(self.messages):
            if message.sid == sid:
                sent = message.date_sent
                if sent is None and status in SENT_STATUSES:
                    sent = self.now()
                updated = replace(message, status=status, date_sent=sent)
                self.messages[index] = updated
                return updated
        raise KeyError(f"no message {sid}")

    def created_calls(self) -> list[CallRecord]:
        """The calls calls.create placed, in creation order; the caller holds the lock."""
        return [call for call in self.calls.values() if call.sid not in self.seeded]

    def transition(
        self,
        record: CallRecord,
        status: str,
        *,
        answered_by: str | None = None,
        by_request: bool = False,
    ) -> CallRecord:
        """Replace ``record`` with its new status; the caller holds the lock."""
        now = self.now()
        updated = replace(
            record,
            status=status,
            answered_by=answered_by or record.answered_by,
            started_at=record.started_at or (now if status == "in-progress" else None),
            ended_at=record.ended_at or (now if status in ENDED_STATUSES else None),
            ended_by_request=record.ended_by_request or by_request,
        )
        self.calls[record.sid] = updated
        return updated
