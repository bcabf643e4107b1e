"""The Twilio account as the stand-in holds it: its records and scripted failures, one lock."""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from tars_actors.sim._waiting import Changes
from tars_actors.sim.twilio_api._records import (
    ENDED_STATUSES,
    CallRecord,
    MessageRecord,
    Operation,
    PhoneNumberRecord,
    RecordedRequest,
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
    """Requests, calls, messages, numbers and scripted failures of one account.

    Shared by the stand-in's scripting side and its server threads: read and change it under
    ``changes.lock``, then ``changes.notify()`` so that waiters look again.
    """

    __slots__ = (
        "account_sid",
        "auth_token",
        "calls",
        "changes",
        "failures",
        "messages",
        "numbers",
        "requests",
    )

    def __init__(self, *, account_sid: str, auth_token: str) -> None:
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.changes = Changes()
        self.requests: list[RecordedRequest] = []
        self.calls: dict[str, CallRecord] = {}
        self.messages: list[MessageRecord] = []
        self.numbers: dict[str, PhoneNumberRecord] = {}
        self.failures: dict[Operation, deque[Failure]] = {}

    def transition(
        self,
        record: CallRecord,
        status: str,
        *,
        answered_by: str | None = None,
        by_request: bool = False,
    ) -> CallRecord:
        """Replace ``record`` with its new status; the caller holds the lock."""
        now = datetime.now(UTC)
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
