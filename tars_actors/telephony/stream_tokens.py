"""One-time stream tokens: what a call is, recorded when its signed webhook is answered (or
when TARS places it), and the proof its Media Stream's ``start`` must present.

The upgrade's ``X-Twilio-Signature`` covers only the constant stream URL, so it proves
nothing about which call a stream is. The TwiML Twilio fetched over a signed webhook (or was
handed by TARS's REST call) carries a fresh token as a ``<Parameter>``; the stream's
``start`` must bring it back, unused and unexpired, for its own CallSid and account. Who is
calling then comes from the record, never from the stream's other parameters.

:func:`refusal` decides alone (pure); :func:`issue` and :func:`redeem` do the store's part.
Tokens are kept hashed in ``stream_tokens`` and used once in a transaction, so a call
admitted just before a restart still connects after it, and never twice.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

import peewee

from tars_actors.store import Store, StreamToken, utcnow

__all__ = [
    "PLACED_CALL_TOKEN_SECONDS",
    "STREAM_TOKEN_SECONDS",
    "TOKEN_PARAMETER",
    "CallRecord",
    "StreamRefusal",
    "bind_placed_call",
    "hash_token",
    "issue",
    "placed_call",
    "placed_record",
    "redeem",
    "refusal",
]

#: The ``<Parameter>`` (and ``customParameters`` key) the token travels as.
TOKEN_PARAMETER: Final = "token"  # noqa: S105 (a parameter's name, not a secret)
#: From the webhook's answer to the stream's ``start``: Twilio opens it within seconds.
STREAM_TOKEN_SECONDS: Final = 60.0
#: A call TARS places rings first (Twilio's default ring timeout is 60 s) and is answered
#: before its stream starts: its token lives for the ring and then the usual minute.
PLACED_CALL_TOKEN_SECONDS: Final = 60.0 + STREAM_TOKEN_SECONDS
#: How long a record is kept after its token expired (used or not), for an operator looking
#: into a call; each new record clears older ones, so the table stays the size of a day.
KEEP_EXPIRED: Final = timedelta(days=1)


class StreamRefusal(enum.StrEnum):
    """Why a stream's ``start`` was refused (the ``why`` of ``calls.stream_refused``)."""

    # Names of refusals, not secrets.
    NO_TOKEN = "no_token"  # noqa: S105
    UNKNOWN_TOKEN = "unknown_token"  # noqa: S105
    USED = "used"
    EXPIRED = "expired"
    OTHER_CALL = "other_call"
    OTHER_ACCOUNT = "other_account"
    LIVE_CALL = "live_call"
    """A second ``start`` for a CallSid whose call is live."""
    OVER_CAPACITY = "over_capacity"
    CALL_ENDED = "call_ended"
    """The call's session, started at its webhook, gave up waiting for this stream."""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRecord:
    """What the webhook (or TARS placing the call) said the call is."""

    #: None for a call TARS placed, until its stream starts.
    call_sid: str | None
    account_sid: str
    from_number: str
    to_number: str
    #: Twilio's ``Direction``: ``inbound``, ``outbound-api``...
    direction: str
    goal_id: int | None = None
    reminder_id: int | None = None
    #: A screening call TARS placed to the owner, for this transfer's decision.
    transfer_id: int | None = None
    #: Twilio's ``StirVerstat`` attestation of the caller ID, when it sent one.
    stir_verstat: str | None = None

    @property
    def outbound(self) -> bool:
        return self.direction.startswith("outbound")

    @property
    def caller_number(self) -> str:
        """The other party's number: who called TARS, or whom TARS called."""
        return (self.to_number if self.outbound else self.from_number) or "unknown"


def hash_token(token: str) -> str:
    # 256 random bits: a plain digest is enough (nothing to brute-force), and it means
    # a copy of the database holds no token that could still be presented.
    return hashlib.sha256(token.encode()).hexdigest()


def refusal(
    record: CallRecord,
    *,
    expires_at: datetime,
    used: bool,
    call_sid: str,
    account_sid: str,
    account: str,
    now: datetime,
) -> StreamRefusal | None:
    """Why a ``start`` for ``call_sid`` from ``account_sid`` may not use this record's token
    (None: it may). ``account`` is ``TWILIO_ACCOUNT_SID`` ("" when not set)."""
    if used:
        return StreamRefusal.USED
    if now >= expires_at:
        return StreamRefusal.EXPIRED
    if record.call_sid is not None and record.call_sid != call_sid:
        return StreamRefusal.OTHER_CALL
    if (record.account_sid and account_sid != record.account_sid) or (
        account and account_sid != account
    ):
        return StreamRefusal.OTHER_ACCOUNT
    return None


def issue(store: Store, record: CallRecord, *, seconds: float, now: datetime | None = None) -> str:
    """Record ``record`` with a new token valid for ``seconds``; the token (to send once)."""
    token = secrets.token_urlsafe(32)
    issued_at = now or utcnow()
    with store.transaction():
        StreamToken.delete().where(StreamToken.expires_at < issued_at - KEEP_EXPIRED).execute()
        StreamToken.create(
            token_hash=hash_token(token),
            call_sid=record.call_sid,
            account_sid=record.account_sid,
            from_number=record.from_number[:32],
            to_number=record.to_number[:32],
            direction=record.direction[:32],
            goal=record.goal_id,
            reminder=record.reminder_id,
            transfer=record.transfer_id,
            stir_verstat=record.stir_verstat[:64] if record.stir_verstat else None,
            issued_at=issued_at,
            expires_at=issued_at + timedelta(seconds=seconds),
        )
    return token


def placed_call(
    store: Store,
    *,
    account_sid: str,
    from_number: str,
    to_number: str,
    goal_id: int | None = None,
    reminder_id: int | None = None,
    transfer_id: int | None = None,
) -> dict[str, str]:
    """Record a call TARS is about to place; the ``<Parameter>``s its inline TwiML carries.

    The CallSid is not known yet: :func:`bind_placed_call` records it once Twilio gives it
    (or the first stream to present the token binds it, if it comes first). The token
    travels only to Twilio, inside the authenticated REST request.
    """
    record = CallRecord(
        call_sid=None,
        account_sid=account_sid,
        from_number=from_number,
        to_number=to_number,
        direction="outbound-api",
        goal_id=goal_id,
        reminder_id=reminder_id,
        transfer_id=transfer_id,
    )
    return {TOKEN_PARAMETER: issue(store, record, seconds=PLACED_CALL_TOKEN_SECONDS)}


def bind_placed_call(
    store: Store,
    call_sid: str,
    *,
    goal_id: int | None = None,
    reminder_id: int | None = None,
    transfer_id: int | None = None,
) -> None:
    """Twilio gave the SID of a call TARS placed: from now on only a stream for that SID
    may use its token (the newest unused one of the goal, reminder or transfer). A stream
    that started first has bound it already; nothing changes then."""
    if goal_id is not None:
        which = StreamToken.goal == goal_id
    elif reminder_id is not None:
        which = StreamToken.reminder == reminder_id
    elif transfer_id is not None:
        which = StreamToken.transfer == transfer_id
    else:
        return
    with store.transaction():
        newest = (
            StreamToken.select(peewee.fn.MAX(StreamToken.id))
            .where(which, StreamToken.call_sid.is_null(), StreamToken.used_at.is_null())
            .scalar()
        )
        if newest is not None:
            StreamToken.update(call_sid=call_sid).where(
                StreamToken.id == newest, StreamToken.call_sid.is_null()
            ).execute()


def placed_record(store: Store, call_sid: str, *, now: datetime | None = None) -> CallRecord | None:
    """The record of a call TARS placed, once Twilio said it was answered: that of its
    newest unused, unexpired token bound to ``call_sid`` (None when there is none: not a
    call TARS placed, not bound yet, or its stream came already). The token stays unused:
    only the stream's ``start`` may use it."""
    now = now or utcnow()
    with store.connection():
        row = (
            StreamToken.select()
            .where(
                StreamToken.call_sid == call_sid,
                StreamToken.used_at.is_null(),
                StreamToken.expires_at > now,
                StreamToken.direction.startswith("outbound"),
            )
            .order_by(StreamToken.id.desc())
            .first()
        )
    return None if row is None else _record(row)


def redeem(
    store: Store,
    token: str,
    *,
    call_sid: str,
    account_sid: str,
    account: str,
    now: datetime | None = None,
) -> CallRecord | StreamRefusal:
    """Use ``token`` for the stream of ``call_sid``: its record, or why not.

    Used once, in a transaction (a row lock on PostgreSQL): of two starts presenting the
    same token, one gets the record. A refused token stays as it was, so a stolen token
    presented for another call does not spoil its own call.
    """
    if not token:
        return StreamRefusal.NO_TOKEN
    now = now or utcnow()
    with store.transaction():
        query = StreamToken.select().where(StreamToken.token_hash == hash_token(token))
        row = store.for_update(query).first()
        if row is None:
            return StreamRefusal.UNKNOWN_TOKEN
        record = _record(row)
        why = refusal(
            record,
            expires_at=row.expires_at,
            used=row.used_at is not None,
            call_sid=call_sid,
            account_sid=account_sid,
            account=account,
            now=now,
        )
        if why is not None:
            return why
        # The guard repeats the check in the write: SQLite has no row lock to take.
        claimed = (
            StreamToken.update(used_at=now, call_sid=call_sid)
            .where(StreamToken.id == row.id, StreamToken.used_at.is_null())
            .execute()
        )
        if claimed != 1:
            return StreamRefusal.USED
    # A placed call's record learns its CallSid here when Twilio's answer has not bound it.
    return dataclasses.replace(record, call_sid=call_sid)


def _record(row: Any) -> CallRecord:
    return CallRecord(
        call_sid=row.call_sid,
        account_sid=str(row.account_sid),
        from_number=str(row.from_number),
        to_number=str(row.to_number),
        direction=str(row.direction),
        goal_id=row.goal_id,
        reminder_id=row.reminder_id,
        transfer_id=row.transfer_id,
        stir_verstat=row.stir_verstat,
    )
