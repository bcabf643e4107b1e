"""Transfers as rows: a caller put through to the owner, or the owner's call connected to
someone, from the request to its outcome (``transfers``), and the TwiML that bridges them.

Every change of state is a compare-and-set in one transaction (``FOR UPDATE`` on
PostgreSQL): of a decision, a deadline and a hang-up arriving together, one wins and the
others find the transfer settled. The :class:`~tars_actors.transfer.switch.TransferSwitch`
decides what to do; this module only records it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from twilio.twiml.voice_response import VoiceResponse

from tars_actors.call.caller_words import readable
from tars_actors.call.identity import ScreeningRecord
from tars_actors.store import Store, Transfer, TransferKind, TransferStatus, utcnow

__all__ = [
    "FINAL_STATUSES",
    "OPEN_STATUSES",
    "ROOM_PREFIX",
    "TransferDesk",
    "TransferRecord",
    "caller_leg_twiml",
    "connect_twiml",
    "owner_leg_twiml",
    "screening_record",
    "whisper_text",
]

#: Waiting for the owner's word.
OPEN_STATUSES: Final = frozenset(
    {TransferStatus.ASKING, TransferStatus.RINGING, TransferStatus.SCREENING}
)
FINAL_STATUSES: Final = frozenset(
    {
        TransferStatus.BRIDGED,
        TransferStatus.DECLINED,
        TransferStatus.NO_ANSWER,
        TransferStatus.CANCELED,
        TransferStatus.FAILED,
    }
)
#: The ``<Conference>`` room of transfer N is ``tars-transfer-N``.
ROOM_PREFIX: Final = "tars-transfer-"
#: How much of the caller's reason the owner hears in the whisper.
_WHISPER_REASON_CHARS: Final = 160


@dataclass(frozen=True, slots=True)
class TransferRecord:
    id: int
    kind: TransferKind
    status: TransferStatus
    caller_session_id: int | None
    caller_call_sid: str
    caller_number: str
    caller_name: str
    #: The caller's words, marked as such (:func:`~tars_actors.call.caller_words.quote`).
    reason: str
    target_number: str
    target_name: str | None
    asked_by: str | None
    owner_session_id: int | None
    owner_call_sid: str | None
    screening_call_sid: str | None
    room: str | None
    detail: str | None
    created_at: datetime
    decided_at: datetime | None
    ended_at: datetime | None

    @property
    def open(self) -> bool:
        return self.status in OPEN_STATUSES

    @property
    def final(self) -> bool:
        return self.status in FINAL_STATUSES


def _record(row: Any) -> TransferRecord:
    return TransferRecord(
        id=int(row.id),
        kind=TransferKind(row.kind),
        status=TransferStatus(row.status),
        caller_session_id=row.caller_session_id,
        caller_call_sid=str(row.caller_call_sid),
        caller_number=str(row.caller_number),
        caller_name=str(row.caller_name),
        reason=str(row.reason),
        target_number=str(row.target_number),
        target_name=row.target_name,
        asked_by=row.asked_by,
        owner_session_id=row.owner_session_id,
        owner_call_sid=row.owner_call_sid,
        screening_call_sid=row.screening_call_sid,
        room=row.room,
        detail=row.detail,
        created_at=row.created_at,
        decided_at=row.decided_at,
        ended_at=row.ended_at,
    )


class TransferDesk:
    """The ``transfers`` table; each method holds its own connection and transaction."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def create(
        self,
        *,
        kind: TransferKind,
        status: TransferStatus,
        caller_session_id: int,
        caller_call_sid: str,
        caller_number: str,
        caller_name: str,
        reason: str,
        target_number: str,
        target_name: str | None = None,
    ) -> TransferRecord:
        with self._store.connection(), self._store.transaction():
            row = Transfer.create(
                kind=kind,
                status=status,
                caller_session=caller_session_id,
                caller_call_sid=caller_call_sid,
                caller_number=caller_number[:32],
                caller_name=caller_name[:100],
                reason=reason,
                target_number=target_number,
                target_name=target_name[:100] if target_name else None,
                created_at=utcnow(),
            )
            if kind is TransferKind.SCREENED:
                row.room = f"{ROOM_PREFIX}{row.id}"
                row.save()
        return _record(row)

    def get(self, transfer_id: int) -> TransferRecord | None:
        with self._store.connection():
            row = Transfer.get_or_none(Transfer.id == transfer_id)
        return None if row is None else _record(row)

    def unsettled(self) -> list[TransferRecord]:
        """Every transfer still open or being bridged (after a restart: to take up again)."""
        with self._store.connection():
            rows = Transfer.select().where(Transfer.status.not_in(FINAL_STATUSES))
            return [_record(row) for row in rows.order_by(Transfer.id)]

    def latest_for_caller(self, session_id: int) -> TransferRecord | None:
        """The latest transfer this call asked for, settled or not."""
        with self._store.connection():
            row = (
                Transfer.select()
                .where(Transfer.caller_session == session_id)
                .order_by(Transfer.id.desc())
                .first()
            )
        return None if row is None else _record(row)

    def asked_from(self, number: str, since: datetime) -> int:
        """How many screened transfers calls from ``number`` asked for since then (those
        TARS itself failed to ask about not counted)."""
        with self._store.connection():
            return int(
                Transfer.select()
                .where(
                    Transfer.kind == TransferKind.SCREENED,
                    Transfer.caller_number == number,
                    Transfer.created_at >= since,
                    Transfer.status != TransferStatus.FAILED,
                )
                .count()
            )

    def phoning_owner(self) -> bool:
        """Whether a screening call to the owner is ringing or being answered now."""
        with self._store.connection():
            busy = Transfer.select().where(
                Transfer.status.in_((TransferStatus.RINGING, TransferStatus.SCREENING))
            )
            return bool(busy.exists())

    def involving(self, session_id: int) -> list[TransferRecord]:
        """Unsettled transfers this session asked for or decides on."""
        with self._store.connection():
            rows = Transfer.select().where(
                (Transfer.caller_session == session_id) | (Transfer.owner_session == session_id),
                Transfer.status.not_in(FINAL_STATUSES),
            )
            return [_record(row) for row in rows]

    def for_screening_call(self, call_sid: str) -> TransferRecord | None:
        with self._store.connection():
            row = Transfer.get_or_none(Transfer.screening_call_sid == call_sid)
        return None if row is None else _record(row)

    def move(
        self,
        transfer_id: int,
        to: TransferStatus,
        *,
        only_from: Iterable[TransferStatus],
        **fields: Any,
    ) -> TransferRecord | None:
        """Set the status (and ``fields``) if the transfer is in one of ``only_from``; the
        changed record, or None when it was not (someone else moved it first)."""
        allowed = frozenset(only_from)
        now = utcnow()
        with self._store.connection(), self._store.transaction():
            query = Transfer.select().where(Transfer.id == transfer_id)
            row = self._store.for_update(query).first()
            if row is None or TransferStatus(row.status) not in allowed:
                return None
            row.status = to
            for name, value in fields.items():
                setattr(row, name, value)
            if to in FINAL_STATUSES and row.ended_at is None:
                row.ended_at = now
            row.save()
        return _record(row)

    def set_fields(self, transfer_id: int, **fields: Any) -> None:
        """Fields that do not change the state (the screening call's SID)."""
        with self._store.connection(), self._store.transaction():
            Transfer.update(**fields).where(Transfer.id == transfer_id).execute()


def screening_record(transfer_id: int | None) -> ScreeningRecord | None:
    """What a screening call for ``transfer_id`` asks the owner about (on the caller's
    connection); None when there is no such transfer."""
    row = Transfer.get_or_none(Transfer.id == transfer_id) if transfer_id is not None else None
    if row is None or row.kind != TransferKind.SCREENED:
        return None
    return ScreeningRecord(
        transfer_id=int(row.id), caller_name=str(row.caller_name), reason=str(row.reason)
    )


def whisper_text(record: TransferRecord) -> str:
    """What the owner hears before the legs are joined: who, and what about."""
    reason = readable(record.reason)
    if len(reason) > _WHISPER_REASON_CHARS:
        reason = reason[: _WHISPER_REASON_CHARS - 1].rstrip() + "…"
    return f"Putting through {record.caller_name}, about {reason}"


def caller_leg_twiml(room: str) -> str:
    """The caller's leg joins the room first and hears Twilio's hold music until the owner
    enters; either hanging up ends the room (and so the other leg)."""
    response = VoiceResponse()
    dial = response.dial()
    dial.conference(room, start_conference_on_enter=False, end_conference_on_exit=True, beep=False)
    return str(response.to_xml())


def owner_leg_twiml(room: str, whisper: str, language: str | None) -> str:
    """The owner's leg hears the whisper, then enters the room, which starts it."""
    response = VoiceResponse()
    response.say(whisper, language=language)
    dial = response.dial()
    dial.conference(room, start_conference_on_enter=True, end_conference_on_exit=True, beep=False)
    return str(response.to_xml())


def connect_twiml(
    *, number: str, caller_id: str, ring_seconds: int, announce: str, language: str | None
) -> str:
    """The owner's call dials ``number`` with the Twilio number as caller ID."""
    response = VoiceResponse()
    response.say(announce, language=language)
    dial = response.dial(caller_id=caller_id, timeout=ring_seconds)
    dial.number(number)
    return str(response.to_xml())
