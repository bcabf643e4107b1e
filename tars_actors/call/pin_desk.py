"""The owner's PIN, checked against what is typed, and the lockouts of numbers that typed it
wrong, kept in ``pin_lockouts`` so that a restart hands no one fresh tries.

Shared by every call (the webhook asks :meth:`PinDesk.locked`, sessions :meth:`PinDesk.check`);
each call is one short transaction, so it needs no lock of its own.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from datetime import datetime, timedelta

import structlog

from tars_actors.call.owner_pin import (
    LOCKOUT_MINUTES,
    MAX_WRONG_PINS,
    PinLockedOut,
    PinVerdict,
    PinVerified,
    PinWrong,
)
from tars_actors.store import PinLockout, Store, utcnow

__all__ = ["PinDesk"]

log = structlog.get_logger("tars.owner")

_LOCKOUT = timedelta(minutes=LOCKOUT_MINUTES)


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

        A wrong PIN counts against the number for :data:`LOCKOUT_MINUTES` from the first
        miss; the :data:`MAX_WRONG_PINS`-th locks it out of PIN entry for as long. A right
        one clears the count. A number already locked out is refused unchecked.
        """
        now = self._clock()
        # Compared in constant time, and always: a locked number learns nothing either.
        right = bool(self._pin) and hmac.compare_digest(digits.encode(), self._pin)
        store = self._store
        with store.connection(), store.transaction():
            # The row first, then locked: two calls from the number check one after the other.
            PinLockout.insert(phone=phone, failures=0).on_conflict_ignore().execute()
            query = PinLockout.select().where(PinLockout.phone == phone)
            row = store.for_update(query).get()
            if row.locked_until is not None and row.locked_until > now:
                return PinLockedOut()
            if right:
                row.delete_instance()
                return PinVerified()
            if row.first_failed_at is None or now - row.first_failed_at > _LOCKOUT:
                row.failures, row.first_failed_at = 0, now
            row.failures += 1
            row.locked_until = None
            if row.failures < MAX_WRONG_PINS:
                row.save()
                return PinWrong(tries_left=MAX_WRONG_PINS - row.failures)
            row.failures, row.first_failed_at, row.locked_until = 0, None, now + _LOCKOUT
            row.save()
        log.warning(
            "owner.pin_locked",
            phone=phone,
            wrong_pins=MAX_WRONG_PINS,
            minutes=LOCKOUT_MINUTES,
            until=(now + _LOCKOUT).isoformat(),
        )
        return PinLockedOut()
