"""Costly Twilio requests happen once: each is written as an intent before it is sent and
settled with Twilio's SID after; one whose outcome is unknown (TARS died, or the answer was
lost) is looked up in Twilio's own records before anything is sent again.

:class:`IntentBook` keeps the ``rest_intents`` rows; :func:`find_message` and
:func:`find_call` look an intent up in Twilio's Messages and Calls lists. Twilio's date
filters (``DateSent``, ``StartTime``) compare whole UTC days, and a message or call Twilio
accepted but has not sent or started yet has no ``date_sent`` / ``start_time`` at all; so
each lookup asks for the days from the intent's attempt on, and separately for the newest
records with no date filter, and matches on what TARS sent and on ``date_created``.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import pykka
import structlog
from twilio.rest import Client

from tars_actors.actor_messages import (
    CallFailed,
    CallPlaced,
    CallRedirected,
    HangUp,
    PlaceCall,
    Redirect,
    RedirectFailed,
    SayAndHangUp,
    SendSms,
    SmsFailed,
    SmsSent,
)
from tars_actors.store import RestIntent, Store, utcnow
from tars_actors.telephony.rest import DEFAULT_TIMEOUT

log = structlog.get_logger("tars.telephony")

__all__ = [
    "CLOCK_SKEW",
    "IN_TRANSIT",
    "Go",
    "IntentBook",
    "IntentKind",
    "IntentRecord",
    "Known",
    "LookupGate",
    "TelephonyRequest",
    "Unsure",
    "describe_request",
    "find_call",
    "find_message",
    "intent_key",
    "payload_of",
    "recover_calls",
    "reply",
    "request_of",
]

#: What the Telephony actor carries out.
TelephonyRequest = HangUp | SayAndHangUp | Redirect | SendSms | PlaceCall

#: Twilio's clock and ours may differ by this much: a record created this long before the
#: attempt still counts as the attempt's.
CLOCK_SKEW: Final = timedelta(minutes=2)
#: How long a request may be on its way (three attempts, each up to the REST timeout, and
#: the backoff between them): one this process started that recently may yet be answered.
IN_TRANSIT: Final = timedelta(seconds=3 * DEFAULT_TIMEOUT + 10)
#: How long a settled intent is kept (for an operator looking into what was sent, and so
#: that a late request with its key is answered from it).
KEEP_SETTLED: Final = timedelta(days=30)
#: How long an unsure call TARS did not place waits for its requester to ask again.
CALL_LEFT_FOR: Final = timedelta(minutes=10)
#: Records with no date filter asked for: the newest, where one not yet sent sits.
_NEWEST: Final = 50


class IntentKind(enum.StrEnum):
    SMS = "sms"
    CALL = "call"
    HANG_UP = "hang_up"
    REDIRECT = "redirect"


class _Status(enum.StrEnum):
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class IntentRecord:
    id: int
    key: str
    kind: IntentKind
    to_number: str
    from_number: str
    request: Mapping[str, Any]
    attempts: int
    attempted_at: datetime | None
    #: Started by this daemon (whose thread may still be waiting for the answer).
    ours: bool = False
    #: Started by another daemon that is still live: it may still be waiting for the answer,
    #: and it looks the outcome up itself if it never comes.
    elsewhere: bool = False

    def in_transit(self, now: datetime, window: timedelta = IN_TRANSIT) -> float:
        """Seconds its last request, started by a live daemon (this one or another), may
        still be on its way (0: none)."""
        if not (self.ours or self.elsewhere) or self.attempted_at is None:
            return 0.0
        return max(0.0, (self.attempted_at + window - now).total_seconds())


@dataclass(frozen=True, slots=True)
class Go:
    """Send it now: the intent is written as sending (this is attempt ``intent.attempts``)."""

    intent: IntentRecord


@dataclass(frozen=True, slots=True)
class Known:
    """Twilio has it already (``sid``): answer from the record, send nothing."""

    intent: IntentRecord
    sid: str


@dataclass(frozen=True, slots=True)
class Unsure:
    """A request was sent before and its outcome never recorded: ask Twilio first."""

    intent: IntentRecord


def _record(row: RestIntent, *, me: str, live: frozenset[str] = frozenset()) -> IntentRecord:
    """``me``: this daemon; ``live``: the live daemons (only a request still sending can be
    on its way, so only then does it matter who started it)."""
    return IntentRecord(
        id=int(row.id),
        key=str(row.key),
        kind=IntentKind(row.kind),
        to_number=str(row.to_number),
        from_number=str(row.from_number),
        request=json.loads(row.request),
        attempts=int(row.attempts),
        attempted_at=row.attempted_at,
        ours=row.attempted_by == me,
        elsewhere=row.attempted_by != me and row.attempted_by in live,
    )


class IntentBook:
    """The ``rest_intents`` rows; thread-safe (each call is one short transaction).

    Each attempt records the daemon that made it (``store.daemon_id``): several daemons may
    share the database, and a request another live daemon started is its own to settle.
    """

    def __init__(self, store: Store, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store
        self._clock = clock

    def _record(self, row: RestIntent) -> IntentRecord:
        me = self._store.daemon_id
        elsewhere = row.status == _Status.SENDING and row.attempted_by not in (None, me)
        live = self._store.live_daemons() if elsewhere else frozenset()
        return _record(row, me=me, live=live)

    def claim(
        self,
        *,
        key: str,
        kind: IntentKind,
        to_number: str,
        from_number: str,
        request: Mapping[str, Any],
    ) -> Go | Known | Unsure:
        """The intent of a request about to be sent: written (or found) before the request."""
        store = self._store
        now = self._clock()
        with store.connection(), store.transaction():
            RestIntent.insert(
                key=key,
                kind=str(kind),
                to_number=to_number,
                from_number=from_number,
                request=json.dumps(dict(request), sort_keys=True),
                status=_Status.FAILED,  # no request sent yet: the same as one refused
                attempts=0,
                created_at=now,
            ).on_conflict_ignore().execute()
            row = store.for_update(RestIntent.select().where(RestIntent.key == key)).get()
            if row.status == _Status.SENT:
                return Known(self._record(row), str(row.sid))
            if row.status == _Status.SENDING:
                return Unsure(self._record(row))
            row.status, row.attempts, row.attempted_at = _Status.SENDING, row.attempts + 1, now
            row.attempted_by = store.daemon_id
            # What goes out now (a redelivered reminder may say it is late).
            row.request = json.dumps(dict(request), sort_keys=True)
            row.save()
            return Go(self._record(row))

    def again(self, intent: IntentRecord, request: Mapping[str, Any]) -> IntentRecord | None:
        """Twilio does not have an unsure intent: it is sent again (a new attempt, with the
        request as it is now). None if another request took the intent up since it was read
        (claim it again)."""
        store = self._store
        with store.connection(), store.transaction():
            changed = (
                RestIntent.update(
                    status=_Status.SENDING,
                    attempts=RestIntent.attempts + 1,
                    attempted_at=self._clock(),
                    attempted_by=store.daemon_id,
                    request=json.dumps(dict(request), sort_keys=True),
                )
                .where(
                    RestIntent.id == intent.id,
                    RestIntent.status == _Status.SENDING,
                    RestIntent.attempts == intent.attempts,
                )
                .execute()
            )
            if not changed:
                return None
            return self._record(RestIntent.get_by_id(intent.id))

    def sent(self, intent: IntentRecord, sid: str) -> None:
        self._settle(intent, status=_Status.SENT, sid=sid, error=None)

    def failed(self, intent: IntentRecord, error: str) -> None:
        """Twilio refused it (or it could not be asked for good): asked again, it is sent."""
        self._settle(intent, status=_Status.FAILED, sid=None, error=error)

    def settle_unchanged(
        self, intent: IntentRecord, *, sid: str | None = None, error: str | None = None
    ) -> bool:
        """Settle ``intent`` sent (``sid``) or failed (``error``) only if no other request
        took it up since it was read (still sending, same attempt); whether it was."""
        status = _Status.SENT if sid is not None else _Status.FAILED
        with self._store.connection(), self._store.transaction():
            changed = (
                RestIntent.update(status=status, sid=sid, error=error, settled_at=self._clock())
                .where(
                    RestIntent.id == intent.id,
                    RestIntent.status == _Status.SENDING,
                    RestIntent.attempts == intent.attempts,
                )
                .execute()
            )
        return bool(changed)

    def sent_sid(self, intent: IntentRecord) -> str | None:
        """The SID ``intent`` was settled with since it was read, if it was."""
        with self._store.connection():
            row = RestIntent.get_by_id(intent.id)
        return str(row.sid) if row.status == _Status.SENT and row.sid else None

    def unsure(self) -> list[IntentRecord]:
        """Intents whose request may have reached Twilio, outcome unknown (oldest first),
        but not those another live daemon is sending: that one may still be waiting for
        Twilio's answer, and looks the outcome up itself if it never comes."""
        me = self._store.daemon_id
        with self._store.connection():
            live = self._store.live_daemons()
            others = sorted(live - {me})
            query = RestIntent.status == _Status.SENDING
            if others:
                query &= RestIntent.attempted_by.is_null() | RestIntent.attempted_by.not_in(others)
            rows = RestIntent.select().where(query).order_by(RestIntent.id)
            return [_record(row, me=me, live=live) for row in rows]

    def known_sids(self, kind: IntentKind, *, near: IntentRecord | None = None) -> set[str]:
        """SIDs other intents of ``kind`` were settled with: one record matches one intent.
        ``near``: only those whose records a lookup of that intent could meet."""
        query = (RestIntent.kind == str(kind)) & RestIntent.sid.is_null(False)
        if near is not None and near.attempted_at is not None:
            query &= RestIntent.attempted_at >= near.attempted_at - 2 * CLOCK_SKEW - IN_TRANSIT
        with self._store.connection():
            return {str(row.sid) for row in RestIntent.select(RestIntent.sid).where(query)}

    def forget_settled(self, *, older_than: timedelta = KEEP_SETTLED) -> int:
        """Delete intents settled longer ago than ``older_than``; how many."""
        cutoff = self._clock() - older_than
        with self._store.connection(), self._store.transaction():
            return int(
                RestIntent.delete()
                .where(RestIntent.status != _Status.SENDING, RestIntent.settled_at < cutoff)
                .execute()
            )

    def _settle(
        self, intent: IntentRecord, *, status: _Status, sid: str | None, error: str | None
    ) -> None:
        with self._store.connection(), self._store.transaction():
            RestIntent.update(status=status, sid=sid, error=error, settled_at=self._clock()).where(
                RestIntent.id == intent.id
            ).execute()


# --- looking an intent up in Twilio's records ----------------------------------------------


class LookupGate:
    """Lookups against requests on their way: a request's record exists at Twilio before its
    SID is settled on its intent, so a lookup then could take it for another intent's (same
    words, same number) and leave that one unsent. Lookups run one at a time and only while
    no request is on its way; a waiting lookup holds new requests back."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._sending = 0
        self._lookups = 0  # waiting or running
        self._looking = False

    @contextlib.contextmanager
    def sending(self) -> Iterator[None]:
        """Around a request and the settling of its outcome."""
        with self._changed:
            self._changed.wait_for(lambda: self._lookups == 0)
            self._sending += 1
        try:
            yield
        finally:
            with self._changed:
                self._sending -= 1
                self._changed.notify_all()

    @contextlib.contextmanager
    def looking(self) -> Iterator[None]:
        """Around a lookup and the settling of what it found."""
        with self._changed:
            self._lookups += 1
            self._changed.wait_for(lambda: self._sending == 0 and not self._looking)
            self._looking = True
        try:
            yield
        finally:
            with self._changed:
                self._looking = False
                self._lookups -= 1
                self._changed.notify_all()


def _first_day(intent: IntentRecord) -> datetime:
    """The start of the first UTC day a record of ``intent`` may be dated: Twilio's clock may
    be behind ours by :data:`CLOCK_SKEW`, across midnight."""
    assert intent.attempted_at is not None
    earliest = intent.attempted_at - CLOCK_SKEW
    return earliest.replace(hour=0, minute=0, second=0, microsecond=0)


def _created(record: Any) -> datetime | None:
    created = getattr(record, "date_created", None)
    return created if isinstance(created, datetime) else None


def _first_match(
    records: Iterable[Any], intent: IntentRecord, known: set[str], also: Callable[[Any], bool]
) -> str | None:
    """The record created closest to the intent's attempt, within the time its request could
    have taken (a later intent's record is not this one's)."""
    attempted = intent.attempted_at
    if attempted is None:
        return None
    earliest, latest = attempted - CLOCK_SKEW, attempted + IN_TRANSIT + CLOCK_SKEW
    found: dict[str, timedelta] = {}
    for record in records:
        sid, created = str(record.sid), _created(record)
        if sid in known or created is None or not earliest <= created <= latest:
            continue
        if also(record):
            found[sid] = abs(created - attempted)
    return min(found, key=found.__getitem__) if found else None


def find_message(client: Client, intent: IntentRecord, known: set[str]) -> str | None:
    """The SID of the message Twilio has for ``intent``, or None; raises if Twilio cannot
    be asked. Any status counts: queued, accepted and sending ones are on their way."""
    assert intent.attempted_at is not None
    messages = client.messages
    body = str(intent.request.get("body", ""))
    filters = {"to": intent.to_number, "from_": intent.from_number}
    dated = messages.list(**filters, date_sent_after=_first_day(intent))
    newest = messages.list(**filters, limit=_NEWEST)
    # endswith: a trial account's messages are listed with Twilio's note before the body.
    return _first_match([*dated, *newest], intent, known, lambda m: str(m.body).endswith(body))


def find_call(client: Client, intent: IntentRecord, known: set[str]) -> str | None:
    """The SID of the call Twilio has for ``intent`` (queued, ringing or later), or None;
    raises if Twilio cannot be asked."""
    assert intent.attempted_at is not None
    calls = client.calls
    filters = {"to": intent.to_number, "from_": intent.from_number}
    dated = calls.list(**filters, start_time_after=_first_day(intent))
    newest = calls.list(**filters, limit=_NEWEST)
    placed = ("outbound-api", "outbound")  # a call TARS's REST request created
    return _first_match(
        [*dated, *newest], intent, known, lambda call: str(call.direction) in placed
    )


def recover_calls(
    client: Client, book: IntentBook, unsure: Iterable[IntentRecord], *, gate: LookupGate
) -> None:
    """Calls a dead daemon may have placed, oldest first (so that each takes the record
    nearest its own attempt): settled if Twilio has them, else left to their requesters to
    ask for again (given up once older than :data:`CALL_LEFT_FOR`)."""
    for intent in sorted(unsure, key=lambda i: (i.attempted_at is None, i.attempted_at, i.id)):
        try:
            _recover_call(client, book, intent, gate=gate)
        except Exception:  # one call's trouble must not leave the others unlooked-at
            log.exception("telephony.call_lookup_failed", key=intent.key)


def _recover_call(
    client: Client, book: IntentBook, intent: IntentRecord, *, gate: LookupGate
) -> None:
    with gate.looking():
        found = find_call(client, intent, book.known_sids(IntentKind.CALL, near=intent))
        if found is not None and book.settle_unchanged(intent, sid=found):
            log.info("telephony.found_at_twilio", key=intent.key, sid=found)
            return
    attempted = intent.attempted_at
    if found is None and attempted is not None and utcnow() - attempted > CALL_LEFT_FOR:
        if book.settle_unchanged(intent, error="not placed: TARS stopped before Twilio had it"):
            log.warning("telephony.call_never_placed", key=intent.key)
        return
    log.info("telephony.call_left_to_requester", key=intent.key, found=found is not None)


# --- requests and their intents -------------------------------------------------------


def intent_key(request: TelephonyRequest) -> str:
    """The intent a request is, the same each time it is asked for."""
    match request:
        case SendSms(correlation_id=cid):
            return f"{IntentKind.SMS}:{cid}"
        case PlaceCall(correlation_id=cid):
            return f"{IntentKind.CALL}:{cid}"
        case HangUp(call_sid=sid):
            return f"{IntentKind.HANG_UP}:{sid}"
        case SayAndHangUp(call_sid=sid, text=text) | Redirect(call_sid=sid, twiml=text):
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            return f"{IntentKind.REDIRECT}:{sid}:{digest}"


def payload_of(request: HangUp | SayAndHangUp | Redirect) -> dict[str, Any]:
    """What an intent records of a hang-up or a redirect (:func:`request_of` reads it)."""
    match request:
        case HangUp(call_sid=sid, reason=reason):
            return {"call_sid": sid, "reason": reason}
        case SayAndHangUp(call_sid=sid, text=text, language=language):
            return {"call_sid": sid, "text": text, "language": language}
        case Redirect(call_sid=sid, twiml=twiml, reason=reason, correlation_id=cid):
            return {"call_sid": sid, "twiml": twiml, "reason": reason, "correlation_id": cid}


def request_of(intent: IntentRecord) -> TelephonyRequest:
    """The request an intent left unsure by a dead daemon stands for (nobody awaits it)."""
    request = intent.request
    match intent.kind:
        case IntentKind.SMS:
            return SendSms(
                to=intent.to_number,
                body=str(request["body"]),
                correlation_id=str(request["correlation_id"]),
            )
        case IntentKind.CALL:
            return PlaceCall(
                to=intent.to_number,
                twiml=str(request["twiml"]),
                status_callback=str(request["status_callback"]),
                detect_machine=bool(request.get("detect_machine")),
                time_limit_seconds=request.get("time_limit_seconds"),
                ring_seconds=request.get("ring_seconds"),
                correlation_id=str(request["correlation_id"]),
            )
        case IntentKind.HANG_UP:
            return HangUp(call_sid=str(request["call_sid"]), reason=str(request["reason"]))
        case IntentKind.REDIRECT if "twiml" in request:
            return Redirect(
                call_sid=str(request["call_sid"]),
                twiml=str(request["twiml"]),
                reason=str(request.get("reason", "")),
                correlation_id=str(request.get("correlation_id", "")),
            )
        case IntentKind.REDIRECT:
            return SayAndHangUp(
                call_sid=str(request["call_sid"]),
                text=str(request["text"]),
                language=request.get("language"),
            )


def describe_request(request: TelephonyRequest) -> str:
    match request:
        case HangUp(call_sid=sid):
            return f"hang up {sid}"
        case SayAndHangUp(call_sid=sid):
            return f"say and hang up {sid}"
        case Redirect(call_sid=sid, reason=reason):
            return f"redirect {sid} ({reason})"
        case SendSms(to=to, correlation_id=correlation_id):
            return f"sms to {to} ({correlation_id or 'no id'})"
        case PlaceCall(to=to, correlation_id=correlation_id):
            return f"call to {to} ({correlation_id or 'no id'})"


def reply(
    request: SendSms | PlaceCall | Redirect,
    message: SmsSent | SmsFailed | CallPlaced | CallFailed | CallRedirected | RedirectFailed,
) -> None:
    reply_to = request.reply_to
    # A function is a lookup: the reply goes to whichever actor holds the role now (a
    # restarted requester is a new actor, and its outcome must still be recorded).
    direct = isinstance(reply_to, pykka.ActorRef) or reply_to is None
    target = reply_to if direct else reply_to()
    if target is None:
        log.info("telephony.reply_undelivered", correlation_id=request.correlation_id)
        return
    try:
        target.tell(message)
    except pykka.ActorDeadError:
        log.info("telephony.reply_undelivered", correlation_id=request.correlation_id)
