"""Who is calling and at what level, decided from the call's record and the rows it names.

:func:`identify` is pure: the ``CallSupervisor`` looks up the rows :class:`CallerClaims`
names (a goal, a reminder, a contact by number) and passes them in as plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tars_actors.call.owner_pin import OwnerCheck, Standing
from tars_actors.call.permissions import Permission
from tars_actors.call.persona import Caller

__all__ = [
    "CallerClaims",
    "ContactRecord",
    "GoalRecord",
    "Identification",
    "ReminderRecord",
    "ScreeningRecord",
    "identify",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerClaims:
    """What the call's record says about it: its signed voice webhook, or TARS placing it.

    Never what the Media Stream's ``customParameters`` say: anyone who reaches the stream
    URL can write those.
    """

    #: ``goal_id``: a call TARS placed for the owner (empty when absent).
    goal_id: str = ""
    #: ``reminder_id``: a reminder call TARS placed to the owner (empty when absent).
    reminder_id: str = ""
    #: The caller ID; ``unknown`` when Twilio gave none.
    number: str = "unknown"
    #: A screening call TARS placed to the owner about this transfer (None: not one).
    transfer_id: int | None = None

    @classmethod
    def of_call(
        cls,
        *,
        number: str,
        goal_id: int | None = None,
        reminder_id: int | None = None,
        transfer_id: int | None = None,
    ) -> CallerClaims:
        """The claims of a call's record (``goal_id``/``reminder_id`` None: none)."""
        return cls(
            goal_id="" if goal_id is None else str(goal_id),
            reminder_id="" if reminder_id is None else str(reminder_id),
            number=number or "unknown",
            transfer_id=transfer_id,
        )

    @property
    def goal_key(self) -> int | None:
        """The ``call_goals`` id to look up, if the parameter is one."""
        return int(self.goal_id) if self.goal_id.isdigit() else None

    @property
    def reminder_key(self) -> int | None:
        """The ``reminders`` id to look up, if the parameter is one."""
        return int(self.reminder_id) if self.reminder_id.isdigit() else None


@dataclass(frozen=True, slots=True, kw_only=True)
class GoalRecord:
    """The fields of a ``call_goals`` row that say whom TARS called and what for."""

    goal_id: int
    phone: str
    contact_name: str
    objective: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ReminderRecord:
    title: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ScreeningRecord:
    """The transfer a screening call asks the owner about."""

    transfer_id: int
    caller_name: str
    #: The caller's reason, marked as their words.
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ContactRecord:
    name: str
    relation: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Identification:
    caller: Caller
    #: Warnings to log, as (event, fields): a parameter that named no row.
    warnings: tuple[tuple[str, Mapping[str, Any]], ...] = field(default=())


def identify(
    claims: CallerClaims,
    *,
    owner_phone: str,
    goal: GoalRecord | None = None,
    reminder: ReminderRecord | None = None,
    contact: ContactRecord | None = None,
    owner: OwnerCheck | None = None,
    screening: ScreeningRecord | None = None,
) -> Identification:
    """The caller and their level. ``goal``, ``reminder``, ``screening`` and ``contact`` are
    the rows found for ``claims.goal_key``, ``claims.reminder_key``, ``claims.transfer_id``
    and ``claims.number`` (None: none).

    ``owner``: how far the record proves a call from ``owner_phone`` is the owner
    (:func:`~tars_actors.call.owner_pin.owner_standing`); None takes the number's word."""
    warnings: list[tuple[str, Mapping[str, Any]]] = []
    if claims.goal_id:
        # A call TARS placed for the owner: the goal row says whom and what for.
        if goal is not None:
            return Identification(
                caller=Caller(
                    number=goal.phone,
                    permission=Permission.GOAL,
                    contact_name=goal.contact_name,
                    objective=goal.objective,
                    goal_id=goal.goal_id,
                )
            )
        warnings.append(("calls.unknown_goal", {"goal_id": claims.goal_id}))
    if claims.reminder_id:
        # A reminder call TARS placed to the owner.
        if reminder is not None:
            caller = Caller(
                number=owner_phone, permission=Permission.OWNER, reminder=reminder.title
            )
            return Identification(caller=caller, warnings=tuple(warnings))
        warnings.append(("calls.unknown_reminder", {"reminder_id": claims.reminder_id}))
    if claims.transfer_id is not None:
        # A screening call TARS placed to the owner: a caller waits for their answer.
        if screening is not None:
            caller = Caller(
                number=owner_phone, permission=Permission.SCREENING, screening=screening
            )
            return Identification(caller=caller, warnings=tuple(warnings))
        warnings.append(("calls.unknown_transfer", {"transfer_id": claims.transfer_id}))
    number = claims.number
    standing = Standing.PROVEN if owner is None else owner.standing
    if number == owner_phone and standing is Standing.PROVEN:
        caller = Caller(number=number, permission=Permission.OWNER)
    elif number == owner_phone and standing is Standing.PIN_PENDING:
        caller = Caller(number=number, permission=Permission.UNKNOWN, pin_pending=True)
    elif number == owner_phone:
        # The owner's number, unproven: a stranger's level, and the log says why.
        why = "" if owner is None else owner.why
        warnings.append(("calls.owner_unproven", {"why": why}))
        caller = Caller(number=number, permission=Permission.UNKNOWN)
    elif contact is not None:
        caller = Caller(
            number=number,
            permission=Permission.CONTACT,
            contact_name=contact.name,
            contact_relation=contact.relation,
        )
    else:
        caller = Caller(number=number, permission=Permission.UNKNOWN)
    return Identification(caller=caller, warnings=tuple(warnings))
