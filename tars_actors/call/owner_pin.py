"""Whether a call from the owner's number is the owner: the carrier's attestation, or the PIN
typed on the keypad.

Caller ID is cheap to fake. A call from ``[owner] phone`` is the owner's when Twilio says
the carrier fully attested the number (``StirVerstat`` ``TN-Validation-Passed-A``), when
TARS placed the call itself, or once the caller typed ``TARS_OWNER_PIN`` on the keypad,
as ``[owner] caller_id_trust`` says. Pure: :func:`owner_standing` decides, and
:class:`KeypadPin` turns one call's keys into a :class:`~tars_actors.call.effects.CheckPin`;
the :class:`~tars_actors.call.pin_desk.PinDesk` checks it and keeps the lockouts.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

from tars_actors.call.effects import CancelTimer, CheckPin, Effect, StartTimer, Timer

__all__ = [
    "ATTESTED",
    "LOCKOUT_MINUTES",
    "MAX_LOCKOUT_MINUTES",
    "MAX_WRONG_PINS",
    "PIN_PAUSE_SECONDS",
    "KeypadPin",
    "OwnerCheck",
    "PinLockedOut",
    "PinUnchecked",
    "PinVerdict",
    "PinVerified",
    "PinWrong",
    "Standing",
    "locked_out_goodbye",
    "lockout_minutes",
    "owner_standing",
]

#: Twilio's ``StirVerstat`` for a number the originating carrier fully attested.
ATTESTED: Final = "TN-Validation-Passed-A"
#: A pause this long after the last key ends the PIN, as ``#`` does.
PIN_PAUSE_SECONDS: Final = 3.0
#: Wrong PINs from one number before it is locked out of PIN entry.
MAX_WRONG_PINS: Final = 3
#: The first lockout; each further one before a right PIN lasts twice as long, up to a day,
#: so that guessing a 4-digit PIN takes years, not weeks.
LOCKOUT_MINUTES: Final = 15
MAX_LOCKOUT_MINUTES: Final = 24 * 60
#: Keys kept for one try: longer than any PIN, so a long one is simply wrong, and bounded.
_MAX_KEYS: Final = 32


class Standing(enum.StrEnum):
    """What a call's record says about the owner (the ``standing`` of log lines)."""

    NOT_OWNER = "not_owner"
    """Another number than the owner's."""
    PROVEN = "proven"
    """The owner: attested, placed by TARS, or ``caller_id_trust = "number"``."""
    PIN_PENDING = "pin_pending"
    """The owner's number, still to type the PIN: everyone's tools until then."""
    UNPROVEN = "unproven"
    """The owner's number with no way to prove it now: the unknown caller's level."""


@dataclass(frozen=True, slots=True)
class OwnerCheck:
    standing: Standing
    #: Why, for the log: how the owner was recognised or why not.
    why: str


def owner_standing(
    *,
    number: str,
    owner_phone: str,
    trust: str,
    stir_verstat: str | None,
    placed: bool,
    pin_set: bool,
    locked: bool,
) -> OwnerCheck:
    """How far the call's record proves the owner.

    ``placed``: TARS placed the call (its own REST call says whom it rang). ``locked``: the
    number typed too many wrong PINs lately.
    """
    if number != owner_phone:
        return OwnerCheck(Standing.NOT_OWNER, "another number")
    if placed:
        return OwnerCheck(Standing.PROVEN, "placed by TARS")
    if trust == "number":
        return OwnerCheck(Standing.PROVEN, "caller_id_trust number")
    if trust == "attested" and stir_verstat == ATTESTED:
        return OwnerCheck(Standing.PROVEN, "attested")
    if not pin_set:
        return OwnerCheck(Standing.UNPROVEN, "not attested and no owner PIN is set")
    if locked:
        return OwnerCheck(Standing.UNPROVEN, "PIN entry locked after wrong PINs")
    return OwnerCheck(Standing.PIN_PENDING, "PIN to be typed")


# --- what the PinDesk says about a PIN --------------------------------------------------


@dataclass(frozen=True, slots=True)
class PinVerified:
    pass


@dataclass(frozen=True, slots=True)
class PinWrong:
    #: Wrong PINs the number may still type before it is locked out.
    tries_left: int

    event = "owner.pin_wrong"

    def fields(self) -> dict[str, int]:
        return {"tries_left": self.tries_left}

    def note(self) -> str:
        """What the model is told (never the digits)."""
        tries = "1 try is" if self.tries_left == 1 else f"{self.tries_left} tries are"
        return (
            f"[System note] The PIN typed on the keypad was wrong. {tries} left before PIN "
            "entry from this number is locked. Tell the caller briefly; never guess at digits."
        )


@dataclass(frozen=True, slots=True)
class PinUnchecked:
    """The PIN could not be checked (the store failed): not counted, the caller may retry."""

    event = "owner.pin_unchecked"

    def fields(self) -> dict[str, int]:
        return {}

    def note(self) -> str:
        return (
            "[System note] The PIN typed on the keypad could not be checked just now. Ask the "
            "caller to type it again, followed by the hash key."
        )


@dataclass(frozen=True, slots=True)
class PinLockedOut:
    #: How long PIN entry stays locked (from now, rounded up to a minute).
    minutes: int = LOCKOUT_MINUTES
    #: This PIN set the lock (else the number was locked already).
    new: bool = False


def lockout_minutes(lockouts: int) -> int:
    """How long the ``lockouts``-th lockout since the last right PIN lasts."""
    return min(LOCKOUT_MINUTES << max(0, min(lockouts - 1, 16)), MAX_LOCKOUT_MINUTES)


PinVerdict = PinVerified | PinWrong | PinUnchecked | PinLockedOut


def locked_out_goodbye(minutes: int) -> str:
    """What Twilio says before it hangs up on the last wrong PIN."""
    return (
        "Sorry, that PIN was not right, and PIN entry from this number is now locked for "
        f"{minutes} minutes. Goodbye."
    )


class KeypadPin:
    """The PIN being typed on one call: ``#`` or a pause ends it, ``*`` starts it again.

    Returns effects for the flow to carry out; the digits leave only in ``CheckPin``.
    """

    def __init__(self, *, owner_greeting: str, verified_turn: str) -> None:
        #: The greeting to use instead when the PIN is right before the model greeted.
        self.owner_greeting = owner_greeting
        #: What the model is told once the PIN is right mid-call.
        self.verified_turn = verified_turn
        self._keys: list[str] = []
        #: A PIN is with the PinDesk: keys wait for its verdict (and are dropped).
        self.checking = False

    def key(self, digit: str) -> list[Effect]:
        if self.checking:
            return []
        if digit == "#":
            return self._submit()
        if digit == "*":
            self._keys.clear()
            return [CancelTimer(name=Timer.PIN_PAUSE)]
        if len(self._keys) < _MAX_KEYS:
            self._keys.append(digit)
        return [StartTimer(name=Timer.PIN_PAUSE, delay=PIN_PAUSE_SECONDS)]

    def pause(self) -> list[Effect]:
        """The pause after the last key ran out: that ends the PIN."""
        return [] if self.checking else self._submit()

    def verdict(self) -> None:
        """The PinDesk answered: keys count again."""
        self.checking = False

    def _submit(self) -> list[Effect]:
        if not self._keys:
            return [CancelTimer(name=Timer.PIN_PAUSE)]
        digits = "".join(self._keys)
        self._keys.clear()
        self.checking = True
        return [CancelTimer(name=Timer.PIN_PAUSE), CheckPin(digits=digits)]
