"""The owner's PIN, checked against what is typed, and the lockouts of numbers that typed it
wrong, kept in ``pin_lockouts`` so that a restart hands no one fresh tries.

Shared by every call (the webhook asks :meth:`PinDesk.locked`, sessions :meth:`PinDesk.check`);
each call is one short transaction, so it needs no lock of its own.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from tars_actors.call.owner_pin import (
    MAX_WRONG_PINS,
    PinLockedOut,
    PinVerdict,
    PinVerified,
    PinWrong,
    lockout_minutes,
)
from tars_actors.store import PinLockout, Store, utcnow

__all__ = ["PinDesk"]

log = structlog.get_logger("tars.owner")


class PinDesk:
    """Checks typed PINs against ``TARS_OWNER_PIN`` (``pin``; empty: none is set)."""

    def __init__(self, store: Store, pin: str, *, clock: Callable[[], datetime] = utcnow) -> None:
        self._store = store
        self._pin = pin.encode()
        self._clock = clock

    @property
    def pin_set(self) -> bool:
        return bool(self._pin)

    def locked(self, phone: str) -> bool:
        """Whether ``phone`` may not type a PIN now."""
        with self._store.connection():
            row = PinLockout.get_or_none(PinLockout.phone == phone)
        return row is not None and row.locked_until is not None and row.locked_until > self._clock()

    def check(self, phone: str, digits: str) -> PinVerdict:
        """Whether ``digits`` (typed on a call from ``phone``) are the owner's PIN.

        Wrong PINs count against the number until a right one: the :data:`MAX_WRONG_PINS`-th
        locks it out of PIN entry for :data:`LOCKOUT_MINUTES`, each further lockout before
        a right PIN for twice as long as the last (at most a day). A number locked out is
        refused unchecked.
        """
        now = self._clock()
        # Compared in constant time, and always: a locked number learns nothing either.
        right = bool(self._pin) and hmac.compare_digest(digits.encode(), self._pin)
        store = self._store
        with store.connection(), store.transaction():
            # The row first, then locked: two calls from the number check one after the other.
            PinLockout.insert(phone=phone, failures=0, lockouts=0).on_conflict_ignore().execute()
            query = PinLockout.select().where(PinLockout.phone == phone)
            row = store.for_update(query).get()
            if row.locked_until is not None and row.locked_until > now:
                left = math.ceil((row.locked_until - now) / timedelta(minutes=1))
                return PinLockedOut(minutes=left)
            if right:
                row.delete_instance()
                return PinVerified()
            row.failures += 1
            if row.failures < MAX_WRONG_PINS:
                row.save()
                return PinWrong(tries_left=MAX_WRONG_PINS - row.failures)
            row.lockouts += 1
            minutes = lockout_minutes(row.lockouts)
            row.failures, row.locked_until = 0, now + timedelta(minutes=minutes)
            row.save()
        log.warning(
            "owner.pin_locked",
            phone=phone,
            wrong_pins=MAX_WRONG_PINS,
            lockouts=row.lockouts,
            minutes=minutes,
            until=row.locked_until.isoformat(),
        )
        return PinLockedOut(minutes=minutes, new=True)
