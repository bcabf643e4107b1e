"""The reminder book: reminders and callback requests in the ``reminders`` table, claimed once.

Each occurrence is its own row. When one comes due it is claimed in one transaction
(``pending`` → ``delivering``, ``claimed_by`` this daemon, read ``FOR UPDATE SKIP LOCKED`` on
PostgreSQL, so daemons sharing the database each claim different occurrences) together with
writing the next occurrence of a recurring reminder, so no occurrence is delivered twice and
none is lost; the outcome is then settled (``delivered`` with how, or ``failed`` with the
error). A claim left unsettled by a daemon that is gone (it died mid-delivery, or another
member found it lost) is claimed again by one live daemon and delivered again.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import structlog

from tars_actors.reminders.timing import next_occurrence
from tars_actors.store import Reminder, ReminderKind, ReminderStatus, Store, utcnow

log = structlog.get_logger("tars.reminders")

__all__ = [
    "ReminderBook",
    "ReminderError",
    "ReminderRecord",
    "RemindersChanged",
]

Outcome = Literal["announced_in_call", "called", "texted", "called_and_texted"]


@dataclass(frozen=True, slots=True, kw_only=True)
class RemindersChanged:
    """→ ReminderScheduler: reminders were created or cancelled; look again."""


class ReminderError(ValueError):
    """A request the book refuses, in words the model can relay."""


@dataclass(frozen=True, slots=True)
class ReminderRecord:
    """A snapshot of one ``reminders`` row."""

    id: int
    title: str
    due_at: datetime
    recurrence: str | None
    status: ReminderStatus
    kind: ReminderKind
    caller_phone: str | None
    created_by_session_id: int | None
    delivered_at: datetime | None
    delivery_outcome: str | None
    error: str | None


def _record(row: Any) -> ReminderRecord:
    return ReminderRecord(
        id=int(row.id),
        title=str(row.title),
        due_at=row.due_at,
        recurrence=row.recurrence,
        status=ReminderStatus(row.status),
        kind=ReminderKind(row.kind),
        caller_phone=row.caller_phone,
        created_by_session_id=(
            None if row.created_by_session_id is None else int(row.created_by_session_id)
        ),
        delivered_at=row.delivered_at,
        delivery_outcome=row.delivery_outcome,
        error=row.error,
    )


class ReminderBook:
    """Reads and writes reminders on the calling thread's connection (``store.connect()``)."""

    def __init__(self, store: Store, tz: ZoneInfo, clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store
        self._tz = tz
        self._clock = clock

    def create(
        self,
        *,
        title: str,
        due_at: datetime,
        recurrence: str | None = None,
        kind: ReminderKind = ReminderKind.REMINDER,
        caller_phone: str | None = None,
        created_by_session_id: int | None = None,
    ) -> ReminderRecord:
        text = title.strip()
        if not text:
            raise ReminderError("the reminder needs a title: say what to remind about")
        with self._store.transaction():
            row = Reminder.create(
                title=text,
                due_at=due_at,
                recurrence=recurrence,
                kind=kind,
                caller_phone=caller_phone,
                created_by_session=created_by_session_id,
                created_at=self._clock(),
            )
        return _record(row)

    def _locked(self, reminder_id: int) -> Any:
        """The row, read for update inside the caller's transaction; None if missing."""
        return self._store.for_update(Reminder.select().where(Reminder.id == reminder_id)).first()

    def get(self, reminder_id: int) -> ReminderRecord:
        row = Reminder.get_or_none(Reminder.id == reminder_id)
        if row is None:
            raise ReminderError(f"there is no reminder with id {reminder_id}")
        return _record(row)

    def upcoming(self, limit: int = 20) -> list[ReminderRecord]:
        """Pending reminders and callback requests, soonest first."""
        query = (
            Reminder.select()
            .where(Reminder.status == ReminderStatus.PENDING)
            .order_by(Reminder.due_at, Reminder.id)
            .limit(limit)
        )
        return [_record(row) for row in query]

    def cancel(self, reminder_id: int) -> ReminderRecord:
        """Cancel a pending reminder (and so its recurrence); ReminderError otherwise."""
        with self._store.transaction():
            row = self._locked(reminder_id)
            if row is None:
                raise ReminderError(f"there is no reminder with id {reminder_id}")
            if row.status != ReminderStatus.PENDING:
                raise ReminderError(
                    f"reminder {reminder_id} cannot be cancelled: it is already {row.status}"
                )
            row.status = ReminderStatus.CANCELLED
            row.save()
        return _record(row)

    def next_due(self) -> datetime | None:
        """When the soonest pending reminder is due, if any."""
        row = (
            Reminder.select(Reminder.due_at)
            .where(Reminder.status == ReminderStatus.PENDING)
            .order_by(Reminder.due_at)
            .first()
        )
        return None if row is None else row.due_at

    def claim_due(self) -> list[ReminderRecord]:
        """Claim every pending reminder due by now, oldest first, for this daemon, and
        schedule the next occurrence of each recurring one; one transaction, so each
        occurrence is claimed by one caller only. Rows another daemon is claiming at this
        moment are skipped, not waited for: they are its to deliver."""
        now = self._clock()
        claimed: list[ReminderRecord] = []
        with self._store.transaction():
            rows = list(
                self._store.for_update(
                    Reminder.select()
                    .where(Reminder.status == ReminderStatus.PENDING, Reminder.due_at <= now)
                    .order_by(Reminder.due_at, Reminder.id),
                    skip_locked=True,
                )
            )
            for row in rows:
                row.status = ReminderStatus.DELIVERING
                row.claimed_by = self._store.daemon_id
                row.save()
                claimed.append(_record(row))
                if row.recurrence:
                    try:
                        following = next_occurrence(
                            row.recurrence, row.due_at, tz=self._tz, after=now
                        )
                    except Exception:
                        # One bad rule must not hold up every other due reminder.
                        log.exception("reminders.recurrence_failed", reminder_id=int(row.id))
                        following = None
                    if following is not None:
                        Reminder.create(
                            title=row.title,
                            due_at=following,
                            recurrence=row.recurrence,
                            kind=row.kind,
                            caller_phone=row.caller_phone,
                            created_by_session=row.created_by_session_id,
                            created_at=now,
                        )
        return claimed

    def claim_unsettled(self, *, boot: str, others: bool = True) -> list[ReminderRecord]:
        """Claim for this daemon the occurrences claimed but never settled that are free to
        deliver again (at least once): this daemon's own not yet on their way in this boot
        (its scheduler stopped mid-delivery) and, with ``others``, those of daemons that are
        gone (or of a daemon that named none). Each is claimed by one daemon only, however
        many take up at once: its row is locked (rows another is claiming are skipped) and
        ``claimed_by`` moves only from the value read."""
        me = self._store.daemon_id
        wanted = (Reminder.claimed_by == me) & (
            Reminder.delivery_outcome.is_null() | (Reminder.delivery_outcome != _sending(boot))
        )
        if others:
            live = sorted(self._store.live_daemons())
            wanted |= Reminder.claimed_by.is_null() | Reminder.claimed_by.not_in(live)
        taken: list[ReminderRecord] = []
        with self._store.transaction():
            query = (
                Reminder.select()
                .where(Reminder.status == ReminderStatus.DELIVERING, wanted)
                .order_by(Reminder.due_at, Reminder.id)
            )
            for row in list(self._store.for_update(query, skip_locked=True)):
                held = row.claimed_by
                was = Reminder.claimed_by.is_null() if held is None else Reminder.claimed_by == held
                changed = (
                    Reminder.update(claimed_by=me)
                    .where(Reminder.id == row.id, Reminder.status == ReminderStatus.DELIVERING, was)
                    .execute()
                )
                if changed:
                    taken.append(_record(row))
        return taken

    def mark_sending(self, reminder_id: int, *, boot: str) -> None:
        """The occurrence's call or SMS was handed to Telephony in this boot: a restarted
        scheduler waits for its outcome instead of sending it again."""
        with self._store.transaction():
            Reminder.update(delivery_outcome=_sending(boot)).where(
                Reminder.id == reminder_id, Reminder.status == ReminderStatus.DELIVERING
            ).execute()

    def relabel(self, reminder_id: int, outcome: str) -> None:
        """A delivered occurrence went another way after all (an unanswered reminder call
        followed by an SMS): record how it finally reached the owner."""
        with self._store.transaction():
            Reminder.update(delivery_outcome=outcome).where(
                Reminder.id == reminder_id, Reminder.status == ReminderStatus.DELIVERED
            ).execute()

    def settle(self, reminder_id: int, outcome: str, *, error: str | None = None) -> bool:
        """Record how a claimed occurrence went; False if it was settled already."""
        with self._store.transaction():
            row = self._locked(reminder_id)
            if row is None or row.status != ReminderStatus.DELIVERING:
                return False
            row.status = ReminderStatus.FAILED if error is not None else ReminderStatus.DELIVERED
            row.delivery_outcome = "failed" if error is not None else outcome
            row.error = error
            row.delivered_at = None if error is not None else self._clock()
            row.save()
        return True


def _sending(boot: str) -> str:
    return f"sending:{boot}"
