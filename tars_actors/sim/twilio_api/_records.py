"""What the Twilio REST stand-in records: the operations it serves, requests, calls, messages,
phone numbers, and the redirects of calls with the conference joins and dials their TwiML asks
for, as immutable records."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

__all__ = [
    "API_VERSION",
    "CALL_DIRECTIONS",
    "CALL_STATUSES",
    "ENDED_STATUSES",
    "MESSAGE_STATUSES",
    "SENT_STATUSES",
    "CallRecord",
    "ConferenceJoin",
    "DialRecord",
    "MessageRecord",
    "Operation",
    "PhoneNumberRecord",
    "RecordedRequest",
    "RedirectRecord",
]

API_VERSION = "2010-04-01"
ENDED_STATUSES = frozenset({"completed", "busy", "failed", "no-answer", "canceled"})
CALL_STATUSES = frozenset({"queued", "ringing", "in-progress"}) | ENDED_STATUSES
# A call's "direction" in Twilio's JSON: placed by calls.create, dialled by <Dial>, or received.
CALL_DIRECTIONS = frozenset({"inbound", "outbound-api", "outbound-dial"})
# Outbound message statuses; those in SENT_STATUSES have left Twilio, so they carry a date_sent.
SENT_STATUSES = frozenset({"sent", "delivered", "undelivered", "read"})
UNSENT_STATUSES = frozenset({"accepted", "scheduled", "queued", "sending", "failed", "canceled"})
MESSAGE_STATUSES = SENT_STATUSES | UNSENT_STATUSES


class Operation(enum.StrEnum):
    """The REST operations the stand-in implements, named as in twilio-python."""

    CALLS_CREATE = "calls.create"
    CALLS_FETCH = "calls.fetch"
    CALLS_UPDATE = "calls.update"
    CALLS_LIST = "calls.list"
    MESSAGES_CREATE = "messages.create"
    MESSAGES_LIST = "messages.list"
    NUMBERS_LIST = "incoming_phone_numbers.list"
    NUMBERS_UPDATE = "incoming_phone_numbers.update"


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedRequest:
    """One HTTP request as received, with the stand-in's answer."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    form: tuple[tuple[str, str], ...]
    operation: Operation | None
    status: int
    at: float

    def param(self, name: str) -> str | None:
        """The first value of ``name`` in the form, else in the query."""
        values = self.params(name)
        return values[0] if values else None

    def params(self, name: str) -> tuple[str, ...]:
        """All values of a repeated parameter (e.g. ``StatusCallbackEvent``)."""
        found = tuple(value for key, value in self.form if key == name)
        return found or tuple(value for key, value in self.query if key == name)


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """A call as the stand-in knows it; a new record replaces the old one on each change.

    ``created_at``, ``started_at`` and ``ended_at`` are Twilio's ``date_created``,
    ``start_time`` (set when the call goes in-progress) and ``end_time``. ``direction`` is
    ``outbound-api`` for a call calls.create placed and ``inbound`` for one a caller placed
    (see :meth:`~tars_actors.sim.twilio_api.TwilioRestStandIn.seed_call`); ``timeout`` is
    calls.create's ``Timeout``, the seconds it may ring.
    """

    sid: str
    account_sid: str
    to: str
    from_: str
    status: str
    twiml: str | None
    url: str | None
    method: str | None
    status_callback: str | None
    status_callback_events: tuple[str, ...]
    status_callback_method: str | None
    machine_detection: str | None
    async_amd: str | None
    time_limit: int | None
    answered_by: str | None
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    ended_by_request: bool = False
    direction: str = "outbound-api"
    timeout: int | None = None

    @property
    def ended(self) -> bool:
        return self.status in ENDED_STATUSES

    @property
    def duration(self) -> int | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return int((self.ended_at - self.started_at).total_seconds())


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRecord:
    """A message as the stand-in knows it: created ``queued`` with no ``date_sent``.

    ``created_at`` is Twilio's ``date_created``; ``date_sent`` is set when it counts as sent.
    """

    sid: str
    account_sid: str
    to: str
    from_: str
    body: str
    status: str
    created_at: datetime
    date_sent: datetime | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PhoneNumberRecord:
    sid: str
    account_sid: str
    phone_number: str
    friendly_name: str
    voice_url: str | None = None
    voice_method: str = "POST"
    status_callback: str | None = None
    status_callback_method: str = "POST"


@dataclass(frozen=True, slots=True, kw_only=True)
class RedirectRecord:
    """A calls.update that gave an in-progress call new instructions (``Twiml`` or ``Url``).

    ``at`` is the stand-in's clock when the redirect took effect.
    """

    call_sid: str
    twiml: str | None
    url: str | None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class ConferenceJoin:
    """A call that a redirect's ``<Dial><Conference>`` put into conference ``room``.

    ``whisper`` is what the ``<Say>`` verbs before that ``<Dial>`` told the call (None when
    there were none); ``start_conference_on_enter``, ``end_conference_on_exit`` and
    ``wait_url`` are the ``<Conference>`` attributes, with Twilio's defaults.
    """

    room: str
    call_sid: str
    whisper: str | None
    start_conference_on_enter: bool
    end_conference_on_exit: bool
    wait_url: str | None
    at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class DialRecord:
    """A ``<Dial><Number>`` in a redirect: the call dials ``number``.

    ``caller_id`` and ``timeout`` are the ``<Dial>`` attributes (None when absent);
    ``whisper`` is as in :class:`ConferenceJoin`.
    """

    call_sid: str
    number: str
    caller_id: str | None
    timeout: int | None
    whisper: str | None
    at: datetime
