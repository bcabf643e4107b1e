"""Who is calling, from the call's record and TARS's own rows (goal, reminder, transfer,
contact, the owner's PIN desk): the store-reading half of :mod:`tars_actors.call.identity`."""

from __future__ import annotations

import functools

import structlog

from tars_actors.call.identity import (
    CallerClaims,
    ContactRecord,
    GoalRecord,
    ReminderRecord,
    identify,
)
from tars_actors.call.owner_pin import OwnerCheck, Standing, owner_standing
from tars_actors.call.persona import Caller
from tars_actors.call.pin_desk import PinDesk
from tars_actors.runtime.settings import Settings
from tars_actors.store import CallGoal, Contact, Reminder
from tars_actors.telephony.stream_tokens import CallRecord
from tars_actors.transfer.desk import screening_record

__all__ = ["caller_of", "owner_check", "purpose_of"]

log = structlog.get_logger("tars.calls")


def caller_of(settings: Settings, record: CallRecord, pins: PinDesk) -> Caller:
    """Who a call is: the rows its record names, read from the store; :func:`identify`
    decides. Never anything the stream says of itself."""
    claims = CallerClaims.of_call(
        number=record.caller_number,
        goal_id=record.goal_id,
        reminder_id=record.reminder_id,
        transfer_id=record.transfer_id,
    )
    owner_phone = settings.owner.phone
    owner = owner_check(settings, record, pins)
    if owner.standing is not Standing.NOT_OWNER:
        log.info("calls.owner_number", standing=str(owner.standing), why=owner.why)
    # Only the rows identify() reads: a goal row decides alone, then a reminder row,
    # then the owner's number; the contacts table is read only for anyone else.
    goal = _goal_record(claims.goal_key)
    reminder = None if goal is not None else _reminder_record(claims.reminder_key)
    screening = screening_record(claims.transfer_id)
    decided = goal is not None or reminder is not None or claims.number == owner_phone
    identified = identify(
        claims,
        owner_phone=owner_phone,
        goal=goal,
        reminder=reminder,
        contact=None if decided else _contact_record(claims.number),
        owner=owner,
        screening=screening,
    )
    for event, fields in identified.warnings:
        log.warning(event, **fields)
    return identified.caller


def owner_check(settings: Settings, record: CallRecord, pins: PinDesk) -> OwnerCheck:
    """How far a call's record proves it is the owner's (the store is read only for a call
    from the owner's number that may have to type the PIN)."""
    owner = settings.owner
    number = record.caller_number
    # Placed by TARS: a call its own REST call made for a goal or a reminder (never what a
    # webhook says of its direction).
    placed = record.outbound and any(
        key is not None for key in (record.goal_id, record.reminder_id, record.transfer_id)
    )
    decide = functools.partial(
        owner_standing,
        number=number,
        owner_phone=owner.phone,
        trust=owner.caller_id_trust,
        stir_verstat=record.stir_verstat,
        placed=placed,
        pin_set=pins.pin_set,
    )
    # The lockout matters only to a call that would type the PIN: read it only then.
    unlocked = decide(locked=False)
    if unlocked.standing is Standing.PIN_PENDING and pins.locked(number):
        return decide(locked=True)
    return unlocked


def purpose_of(caller: Caller) -> str | None:
    """What a call TARS placed is for, as list_active_sessions shows it."""
    if caller.objective is not None:
        return caller.objective
    if caller.reminder is not None:
        return f"reminder: {caller.reminder}"
    if caller.screening is not None:
        return f"screening: {caller.screening.caller_name}"
    return None


def _goal_record(goal_id: int | None) -> GoalRecord | None:
    row = CallGoal.get_or_none(CallGoal.id == goal_id) if goal_id is not None else None
    if row is None:
        return None
    return GoalRecord(
        goal_id=int(row.id),
        phone=str(row.phone),
        contact_name=str(row.contact_name),
        objective=str(row.objective),
    )


def _reminder_record(reminder_id: int | None) -> ReminderRecord | None:
    row = Reminder.get_or_none(Reminder.id == reminder_id) if reminder_id is not None else None
    return None if row is None else ReminderRecord(title=str(row.title))


def _contact_record(number: str) -> ContactRecord | None:
    row = Contact.get_or_none(Contact.phone == number)
    return None if row is None else ContactRecord(name=str(row.name), relation=row.relation)
