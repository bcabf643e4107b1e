"""Who may take a place: how many calls are live or about to be, the owner's reserved
places, and how much of TARS one unknown number may hold.

:class:`CallAdmission` is plain code on an injected clock (tested on a fake one); it is
locked because the server's webhooks and the ``CallSupervisor`` both ask it.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from tars_actors.runtime.settings import Settings

__all__ = [
    "PIN_DEADLINE_SECONDS",
    "RESERVATION_SECONDS",
    "AdmissionLimits",
    "CallAdmission",
    "Refusal",
    "admission_limits",
]

#: How long a webhook's place waits for its stream. Twilio opens the stream within a
#: second or two of the TwiML; a webhook whose stream never comes must not hold a place
#: for long, or a flood of them keeps everyone out.
RESERVATION_SECONDS: Final = 10.0

#: How long a call from the owner's number keeps its place against another call from the
#: number while it has not typed the PIN: the owner types it within a minute of the greeting.
PIN_DEADLINE_SECONDS: Final = 60.0

#: The window ``calls_per_hour`` counts admitted webhooks in.
_HOUR: Final = 3600.0


class Refusal(enum.StrEnum):
    """Why a call was not admitted (the ``why`` of ``server.call_refused``)."""

    OVER_CAPACITY = "over_capacity"
    """Every place is live or promised (or only the owner's reserved ones are left)."""
    CALLER_BUSY = "caller_busy"
    """This number already holds ``[sessions] max_per_caller`` calls."""
    HOURLY_LIMIT = "hourly_limit"
    """This number had ``[sessions] unknown_calls_per_hour`` calls admitted in the last hour."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AdmissionLimits:
    """The ``[sessions]`` limits admission applies."""

    max_concurrent: int
    #: Places only the owner's number may take. At most ``max_concurrent - 1`` of them
    #: hold: one place always stays open to everyone.
    owner_reserved: int = 1
    #: Live or promised calls one number other than the owner's may hold.
    max_per_caller: int = 1
    #: Admitted webhooks per number other than the owner's in any hour.
    calls_per_hour: int = 10

    @property
    def reserved(self) -> int:
        return max(0, min(self.owner_reserved, self.max_concurrent - 1))


class CallAdmission:
    """Places for calls; thread-safe, never blocks for long.

    The voice webhook reserves a place for its CallSid (:meth:`reserve`); the stream's
    ``start`` turns it into a live call (:meth:`activate`); the session's end releases it.
    A reservation whose stream never comes expires after ``reservation_seconds``.

    The owner's number may take any place (while it still has to type the PIN, at most
    ``max_per_caller`` at once); any other number only the places that are not reserved
    for the owner, at most ``max_per_caller`` at once and ``calls_per_hour`` admitted
    webhooks an hour. Caller ID is cheap to claim, so a known contact's number is limited
    like any other.

    A proven owner's call that finds every place taken takes the place of a call from the
    owner's number that is still to type the PIN (:meth:`take_evicted` names it, to be
    ended): the owner is on one phone at a time, so that call is someone faking the number.
    So does a new call from the owner's number still to type the PIN, of one that has not
    typed it within ``pin_deadline`` seconds.
    """

    def __init__(
        self,
        limits: AdmissionLimits,
        *,
        reservation_seconds: float = RESERVATION_SECONDS,
        pin_deadline: float = PIN_DEADLINE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._limits = limits
        self._reservation_seconds = reservation_seconds
        self._pin_deadline = pin_deadline
        self._clock = clock
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        # call SID -> (until, number, owner)
        self._reserved: dict[str, tuple[float, str, bool]] = {}
        # call SID -> (number, owner)
        self._live: dict[str, tuple[str, bool]] = {}
        # number -> when its admitted webhooks were admitted (within the last hour)
        self._admitted: dict[str, deque[float]] = {}
        # Calls from the owner's number still to type the PIN, and those that gave their
        # place to a proven owner's call (to be ended).
        self._pending: dict[str, float] = {}  # call SID -> since when
        self._evicted: list[str] = []
        # Evicted before their stream started: it is refused when it comes.
        self._gone: set[str] = set()
        self.draining = False

    @property
    def limits(self) -> AdmissionLimits:
        return self._limits

    def use(self, limits: AdmissionLimits) -> None:
        """New limits (SIGHUP): calls already live keep their places."""
        with self._lock:
            self._limits = limits

    # -- deciding ---------------------------------------------------------------------------

    def reserve(
        self, call_sid: str, number: str, *, owner: bool, proven: bool = True
    ) -> Refusal | None:
        """A signed voice webhook: hold a place for its stream, or say why not.

        ``owner``: from the owner's number, which may take the reserved places. ``proven``
        (for the owner's number): attested or trusted; an unproven one, still to type the
        PIN, holds at most ``max_per_caller`` places, so that a faked owner's number cannot
        take them all.
        """
        with self._lock:
            now = self._clock()
            self._expire(now)
            if call_sid in self._live or call_sid in self._reserved:
                return None  # Twilio retried the webhook: the place is the call's already
            refusal = self._refusal(number, owner=owner, limited=not (owner and proven), now=now)
            if refusal is Refusal.OVER_CAPACITY and owner and proven and self._evict_pending():
                refusal = None
            while (
                refusal is Refusal.CALLER_BUSY
                and owner
                and not proven
                and self._evict_pending(number=number, since=now - self._pin_deadline)
            ):
                # A call from the owner's number that let its PIN deadline pass makes way
                # for a new one: a silent faker cannot keep the owner's number busy.
                refusal = self._refusal(number, owner=owner, limited=True, now=now)
            if refusal is not None:
                return refusal
            if owner and not proven:
                self._pending[call_sid] = now
            self._reserved[call_sid] = (now + self._reservation_seconds, number, owner)
            if not owner:
                self._admitted.setdefault(number, deque()).append(now)
            return None

    def activate(
        self,
        call_sid: str,
        number: str,
        *,
        owner: bool,
        pending: bool = False,
        reserved_only: bool = False,
    ) -> bool:
        """A stream with a valid token started: count it live.

        Its reservation is its place; without one (it expired, or TARS placed the call, or
        TARS restarted since the webhook) it takes a free place if there is one, owner's
        number or not: the call was proven by its token. False for a CallSid already live
        (a second ``start``) and when every place is taken. ``pending``: from the owner's
        number, still to type the PIN. ``reserved_only``: the call's session starts at its
        webhook, so it takes its reservation or nothing (one given up to the owner, expired
        or cancelled by the call's end stays so, for its stream to meet).
        """
        with self._lock:
            self._expire(self._clock())
            if call_sid in self._live:
                return False
            if call_sid in self._gone:
                if not reserved_only:
                    self._gone.discard(call_sid)
                return False
            reserved = self._reserved.pop(call_sid, None)
            if reserved is not None:
                # Counted as the webhook saw it: the record may store the number shortened.
                _, number, owner = reserved
            elif reserved_only or not self._free(owner=owner):
                return False
            self._live[call_sid] = (number, owner)
            if pending:
                self._pending.setdefault(call_sid, self._clock())
            return True

    def proven(self, call_sid: str) -> None:
        """The call typed the owner's PIN: it keeps its place from now on."""
        with self._lock:
            self._pending.pop(call_sid, None)

    def take_evicted(self) -> list[str]:
        """Calls that gave their place to a proven owner's call since the last time asked:
        end them (one whose stream has not started yet finds no place)."""
        with self._lock:
            evicted, self._evicted = self._evicted, []
            return evicted

    def is_live(self, call_sid: str) -> bool:
        with self._lock:
            return call_sid in self._live

    def holds(self, call_sid: str) -> bool:
        """The call has a place here: reserved at its webhook, or live."""
        with self._lock:
            return call_sid in self._live or call_sid in self._reserved

    def cancel_reservation(self, call_sid: str) -> None:
        """The call ended before its stream started (a final status callback)."""
        with self._lock:
            self._reserved.pop(call_sid, None)
            self._pending.pop(call_sid, None)
            self._gone.discard(call_sid)

    def ended(self, call_sid: str) -> None:
        """Twilio says the call is over (a final status): its place is free at once,
        whatever its session still has to finish."""
        self.cancel_reservation(call_sid)
        self.release(call_sid)

    def release(self, call_sid: str) -> None:
        with self._lock:
            self._live.pop(call_sid, None)
            self._reserved.pop(call_sid, None)
            self._pending.pop(call_sid, None)
            if not self._live:
                self._idle.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no call is live; False if some still are after ``timeout`` seconds."""
        with self._lock:
            return self._idle.wait_for(lambda: not self._live, timeout)

    @property
    def live(self) -> int:
        with self._lock:
            return len(self._live)

    # -- under the lock -------------------------------------------------------------------

    def _expire(self, now: float) -> None:
        for call_sid, (until, _, _) in list(self._reserved.items()):
            if until <= now:
                del self._reserved[call_sid]
                self._pending.pop(call_sid, None)
        for number, times in list(self._admitted.items()):
            while times and times[0] <= now - _HOUR:
                times.popleft()
            if not times:
                del self._admitted[number]

    def _evict_pending(self, *, number: str | None = None, since: float | None = None) -> bool:
        """Free the place of a call still to type the PIN (the least far along first); only
        one from ``number`` pending since before ``since``, when given."""
        places: dict[str, Any]
        for places in (self._reserved, self._live):
            for call_sid, entry in places.items():
                pending_since = self._pending.get(call_sid)
                if pending_since is None or (since is not None and pending_since > since):
                    continue
                # (until, number, owner) reserved, (number, owner) live: the number is [-2].
                if number is None or entry[-2] == number:
                    if places is self._reserved:
                        self._gone.add(call_sid)
                    del places[call_sid]
                    self._pending.pop(call_sid, None)
                    self._evicted.append(call_sid)
                    return True
        return False

    def _free(self, *, owner: bool) -> bool:
        """Whether a call of this kind finds a free place."""
        limits = self._limits
        taken = len(self._live) + len(self._reserved)
        if taken >= limits.max_concurrent:
            return False
        if owner:
            return True
        others = sum(not o for _, o in self._live.values())
        others += sum(not o for _, _, o in self._reserved.values())
        return others < limits.max_concurrent - limits.reserved

    def _refusal(self, number: str, *, owner: bool, limited: bool, now: float) -> Refusal | None:
        limits = self._limits
        if limited:
            held = sum(n == number for n, _ in self._live.values())
            held += sum(n == number for _, n, _ in self._reserved.values())
            if held >= limits.max_per_caller:
                return Refusal.CALLER_BUSY
        if not owner and len(self._admitted.get(number, ())) >= limits.calls_per_hour:
            return Refusal.HOURLY_LIMIT
        if not self._free(owner=owner):
            return Refusal.OVER_CAPACITY
        return None


def admission_limits(settings: Settings) -> AdmissionLimits:
    """The ``[sessions]`` limits :class:`CallAdmission` applies."""
    sessions = settings.sessions
    # Each call holds one Live session from its webhook on: the model's limit is the line's.
    max_sessions = settings.gemini.max_sessions or sessions.max_concurrent
    return AdmissionLimits(
        max_concurrent=min(sessions.max_concurrent, max_sessions),
        owner_reserved=sessions.owner_reserved,
        max_per_caller=sessions.max_per_caller,
        calls_per_hour=sessions.unknown_calls_per_hour,
    )
