"""The owner's PIN on its own: who must type it (owner_standing), the keys of one call
(KeypadPin) and the desk that checks it and keeps the lockouts (PinDesk, on SQLite)."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import pytest

from tars_actors.call.effects import CancelTimer, CheckPin, Effect, StartTimer, Timer
from tars_actors.call.owner_pin import (
    ATTESTED,
    LOCKOUT_MINUTES,
    MAX_LOCKOUT_MINUTES,
    MAX_WRONG_PINS,
    PIN_PAUSE_SECONDS,
    KeypadPin,
    OwnerCheck,
    PinLockedOut,
    PinVerified,
    PinWrong,
    Standing,
    lockout_minutes,
    owner_standing,
)
from tars_actors.call.pin_desk import PinDesk
from tars_actors.call.records import owner_check
from tars_actors.runtime.settings import parse_settings
from tars_actors.store import PinLockout, Store
from tars_actors.telephony.stream_codec import Dtmf
from tars_actors.telephony.stream_tokens import CallRecord
from tests.logs import log_events

pytest_plugins = ("tests.pg",)

OWNER = "+15555550100"
STRANGER = "+15555550777"
#: The owner's PIN, and a wrong one; neither is a substring of the numbers or times above.
PIN = "2468"
WRONG = "8642097"
T0 = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


# --- owner_standing ------------------------------------------------------------------------


def standing(
    *,
    number: str = OWNER,
    trust: str = "attested",
    stir_verstat: str | None = None,
    placed: bool = False,
    pin_set: bool = True,
    locked: bool = False,
) -> OwnerCheck:
    return owner_standing(
        number=number,
        owner_phone=OWNER,
        trust=trust,
        stir_verstat=stir_verstat,
        placed=placed,
        pin_set=pin_set,
        locked=locked,
    )


@pytest.mark.parametrize("trust", ["attested", "pin", "number"])
def test_another_number_is_never_the_owner_whatever_the_trust_or_attestation(trust: str) -> None:
    check = standing(number=STRANGER, trust=trust, stir_verstat=ATTESTED, placed=True)
    assert check == OwnerCheck(Standing.NOT_OWNER, "another number")


@pytest.mark.parametrize("trust", ["attested", "pin", "number"])
def test_a_call_tars_placed_to_the_owner_is_the_owner_under_every_trust(trust: str) -> None:
    check = standing(trust=trust, placed=True, pin_set=True, locked=True)
    assert check == OwnerCheck(Standing.PROVEN, "placed by TARS")


@pytest.mark.parametrize("verstat", [None, "TN-Validation-Failed", "No-TN-Validation"])
def test_number_trust_takes_the_caller_id_at_its_word(verstat: str | None) -> None:
    check = standing(trust="number", stir_verstat=verstat, pin_set=False)
    assert check == OwnerCheck(Standing.PROVEN, "caller_id_trust number")


def test_full_attestation_proves_the_owner_under_attested_trust() -> None:
    assert standing(stir_verstat=ATTESTED) == OwnerCheck(Standing.PROVEN, "attested")
    # Not even a lockout or a missing PIN matters: the carrier vouched for the number.
    assert standing(stir_verstat=ATTESTED, locked=True).standing is Standing.PROVEN
    assert standing(stir_verstat=ATTESTED, pin_set=False).standing is Standing.PROVEN


@pytest.mark.parametrize(
    "verstat",
    [
        None,
        "TN-Validation-Passed-B",
        "TN-Validation-Passed-C",
        "TN-Validation-Failed-A",
        "No-TN-Validation",
        "tn-validation-passed-a",
        "",
    ],
)
def test_anything_short_of_full_attestation_leaves_the_pin_to_type(verstat: str | None) -> None:
    assert standing(stir_verstat=verstat) == OwnerCheck(Standing.PIN_PENDING, "PIN to be typed")


def test_without_attestation_and_without_a_pin_the_owners_number_is_unproven_and_says_why() -> None:
    check = standing(stir_verstat="TN-Validation-Passed-B", pin_set=False)
    assert check.standing is Standing.UNPROVEN
    assert check.why == "not attested and no owner PIN is set"


def test_a_locked_number_is_unproven_rather_than_asked_for_the_pin() -> None:
    check = standing(locked=True)
    assert check == OwnerCheck(Standing.UNPROVEN, "PIN entry locked after wrong PINs")


def test_pin_trust_ignores_the_attestation() -> None:
    assert standing(trust="pin", stir_verstat=ATTESTED).standing is Standing.PIN_PENDING
    assert standing(trust="pin", stir_verstat=ATTESTED, locked=True).standing is (Standing.UNPROVEN)


# --- KeypadPin ------------------------------------------------------------------------------


def keypad() -> KeypadPin:
    return KeypadPin(owner_greeting="OWNER GREETING", verified_turn="VERIFIED")


def press(pin: KeypadPin, keys: str) -> list[Effect]:
    effects: list[Effect] = []
    for key in keys:
        effects += pin.key(key)
    return effects


def checks(effects: list[Effect]) -> list[str]:
    return [e.digits for e in effects if isinstance(e, CheckPin)]


def test_digits_then_hash_ask_for_those_digits_to_be_checked() -> None:
    pin = keypad()
    assert checks(press(pin, PIN)) == []
    effects = pin.key("#")
    assert effects == [CancelTimer(name=Timer.PIN_PAUSE), CheckPin(digits=PIN)]
    assert pin.checking


def test_every_digit_restarts_the_pause_and_the_pause_ends_the_pin() -> None:
    pin = keypad()
    for digit in PIN:
        assert pin.key(digit) == [StartTimer(name=Timer.PIN_PAUSE, delay=PIN_PAUSE_SECONDS)]
    assert checks(pin.pause()) == [PIN]


def test_star_starts_the_pin_again() -> None:
    pin = keypad()
    press(pin, "999")
    assert pin.key("*") == [CancelTimer(name=Timer.PIN_PAUSE)]
    assert checks(press(pin, PIN + "#")) == [PIN]


def test_hash_or_a_pause_with_nothing_typed_submits_nothing() -> None:
    pin = keypad()
    assert pin.key("#") == [CancelTimer(name=Timer.PIN_PAUSE)]
    assert checks(pin.pause()) == []
    press(pin, "12*")
    assert checks(pin.key("#")) == []
    assert not pin.checking


def test_keys_while_a_pin_is_checked_are_dropped_until_the_verdict() -> None:
    pin = keypad()
    assert checks(press(pin, "1111#")) == ["1111"]
    assert press(pin, "2222#") == []
    assert pin.pause() == []
    pin.verdict()
    # The keys typed meanwhile are gone: only the ones after the verdict count.
    assert checks(press(pin, PIN + "#")) == [PIN]


def test_a_long_string_of_keys_is_bounded_and_checked_as_one_wrong_pin() -> None:
    pin = keypad()
    effects = press(pin, "7" * 10_000)
    assert len(effects) == 10_000  # each key still restarts the pause
    [typed] = checks(pin.key("#"))
    assert typed == "7" * 32


def test_the_typed_digits_never_show_in_a_repr() -> None:
    assert repr(CheckPin(digits=WRONG)) == "CheckPin()"
    assert WRONG not in str(CheckPin(digits=WRONG))
    key = Dtmf(sequence_number=5, track="inbound_track", digit="7")
    assert "7" not in repr(key)
    assert "digit" not in repr(key)


# --- PinDesk --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, minutes: float) -> None:
        self.now += timedelta(minutes=minutes)


@pytest.fixture
def store(make_url: Callable[[], str]) -> Iterator[Store]:
    """A migrated store, once on SQLite and once on PostgreSQL (row locks differ)."""
    store = Store.open(make_url())
    store.migrate()
    yield store
    store.shutdown()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def desk(store: Store, clock: Clock, pin: str = PIN) -> PinDesk:
    return PinDesk(store, pin, clock=clock)


def test_the_right_pin_is_verified_and_a_wrong_one_counts_down(store: Store, clock: Clock) -> None:
    pins = desk(store, clock)
    assert pins.pin_set
    assert pins.check(OWNER, PIN) == PinVerified()
    assert pins.check(OWNER, WRONG) == PinWrong(tries_left=2)
    assert pins.check(OWNER, PIN[:-1]) == PinWrong(tries_left=1)
    assert pins.check(OWNER, PIN + "0") == PinLockedOut(minutes=LOCKOUT_MINUTES, new=True)
    assert MAX_WRONG_PINS == 3


def test_a_locked_number_is_refused_even_the_right_pin_until_the_lock_expires(
    store: Store, clock: Clock
) -> None:
    pins = desk(store, clock)
    for _ in range(MAX_WRONG_PINS):
        pins.check(OWNER, WRONG)
    assert pins.locked(OWNER)
    assert not pins.locked(STRANGER)
    clock.advance(LOCKOUT_MINUTES - 0.5)
    assert pins.check(OWNER, PIN) == PinLockedOut(minutes=1)  # not new: the owner is not told
    assert pins.locked(OWNER)
    clock.advance(0.5)
    assert not pins.locked(OWNER)
    assert pins.check(OWNER, PIN) == PinVerified()


def test_after_a_lockout_the_number_has_fresh_tries(store: Store, clock: Clock) -> None:
    pins = desk(store, clock)
    for _ in range(MAX_WRONG_PINS):
        pins.check(OWNER, WRONG)
    clock.advance(LOCKOUT_MINUTES)
    assert pins.check(OWNER, WRONG) == PinWrong(tries_left=2)


def test_each_lockout_before_a_right_pin_lasts_twice_as_long_up_to_a_day(
    store: Store, clock: Clock
) -> None:
    """Three guesses per lockout: a 4-digit PIN would fall in weeks at a steady 15 minutes."""
    pins = desk(store, clock)
    lengths = []
    for _ in range(9):
        for _ in range(MAX_WRONG_PINS - 1):
            pins.check(OWNER, WRONG)
        verdict = pins.check(OWNER, WRONG)
        assert isinstance(verdict, PinLockedOut)
        assert verdict.new
        lengths.append(verdict.minutes)
        clock.advance(verdict.minutes)
    assert lengths == [15, 30, 60, 120, 240, 480, 960, 1440, 1440]
    assert lockout_minutes(100) == MAX_LOCKOUT_MINUTES
    # A right PIN starts over at 15 minutes.
    assert pins.check(OWNER, PIN) == PinVerified()
    for _ in range(MAX_WRONG_PINS - 1):
        pins.check(OWNER, WRONG)
    assert pins.check(OWNER, WRONG) == PinLockedOut(minutes=LOCKOUT_MINUTES, new=True)


def test_misses_count_until_a_right_pin_however_far_apart(store: Store, clock: Clock) -> None:
    """Two guesses every quarter of an hour would otherwise never lock."""
    pins = desk(store, clock)
    assert pins.check(OWNER, WRONG) == PinWrong(tries_left=2)
    clock.advance(60 * 24)
    assert pins.check(OWNER, WRONG) == PinWrong(tries_left=1)
    clock.advance(60 * 24)
    assert pins.check(OWNER, WRONG) == PinLockedOut(minutes=LOCKOUT_MINUTES, new=True)


def test_the_right_pin_clears_the_count(store: Store, clock: Clock) -> None:
    pins = desk(store, clock)
    pins.check(OWNER, WRONG)
    pins.check(OWNER, WRONG)
    assert pins.check(OWNER, PIN) == PinVerified()
    assert pins.check(OWNER, WRONG) == PinWrong(tries_left=2)
    with store.connection():
        assert PinLockout.select().count() == 1


def test_each_number_has_its_own_count(store: Store, clock: Clock) -> None:
    pins = desk(store, clock)
    pins.check(OWNER, WRONG)
    pins.check(OWNER, WRONG)
    assert pins.check(STRANGER, WRONG) == PinWrong(tries_left=2)
    assert pins.check(OWNER, WRONG) == PinLockedOut(minutes=LOCKOUT_MINUTES, new=True)
    assert not pins.locked(STRANGER)


def test_a_restart_hands_no_fresh_tries(store: Store, clock: Clock) -> None:
    desk(store, clock).check(OWNER, WRONG)
    desk(store, clock).check(OWNER, WRONG)
    after_restart = desk(store, clock)
    assert after_restart.check(OWNER, WRONG) == PinLockedOut(minutes=LOCKOUT_MINUTES, new=True)
    assert desk(store, clock).locked(OWNER)
    assert desk(store, clock).check(OWNER, PIN) == PinLockedOut(minutes=LOCKOUT_MINUTES)


def test_calls_checking_at_once_each_spend_their_own_try(store: Store, clock: Clock) -> None:
    """Three calls from one number typing a wrong PIN at the same moment: three tries gone,
    one lockout, never a lost count (the row is locked while it is read and written)."""
    checker = desk(store, clock)
    ready = threading.Barrier(3)
    verdicts: list[object] = []

    def check() -> None:
        ready.wait(timeout=10)
        verdicts.append(checker.check(OWNER, WRONG))

    threads = [threading.Thread(target=check) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert sorted(map(repr, verdicts)) == sorted(
        map(
            repr,
            [PinWrong(tries_left=2), PinWrong(tries_left=1), PinLockedOut(minutes=15, new=True)],
        )
    )
    assert checker.locked(OWNER)


def test_without_a_pin_set_nothing_typed_is_right(store: Store, clock: Clock) -> None:
    pins = desk(store, clock, pin="")
    assert not pins.pin_set
    assert pins.check(OWNER, "") == PinWrong(tries_left=2)
    assert pins.check(OWNER, PIN) == PinWrong(tries_left=1)


def test_the_lockout_is_logged_once_as_a_warning_without_the_digits(
    store: Store, clock: Clock, logs: io.StringIO
) -> None:
    pins = desk(store, clock)
    pins.check(OWNER, WRONG)
    pins.check(OWNER, WRONG)
    assert log_events(logs, "owner.pin_locked") == []
    pins.check(OWNER, WRONG)
    pins.check(OWNER, WRONG)  # refused while locked: not logged again
    pins.check(OWNER, PIN)
    [line] = log_events(logs, "owner.pin_locked")
    assert line["level"] == "warning"
    assert line["phone"] == OWNER
    assert line["wrong_pins"] == MAX_WRONG_PINS
    assert line["minutes"] == LOCKOUT_MINUTES
    assert datetime.fromisoformat(line["until"]) == T0 + timedelta(minutes=LOCKOUT_MINUTES)
    # Every line but its timestamp (whose microseconds are any digits at all).
    for text in logs.getvalue().splitlines():
        record = json.loads(text)
        record.pop("timestamp", None)
        shown = json.dumps(record)
        assert WRONG not in shown
        assert PIN not in shown


def test_only_a_call_tars_placed_for_a_goal_or_a_reminder_counts_as_placed(
    store: Store, clock: Clock
) -> None:
    """An outbound leg to the owner's number that TARS did not place (a <Dial> of some other
    TwiML on the account, say) has to be proven like any call from the owner's number."""
    settings = parse_settings({"owner": {"phone": OWNER}}, environ={"TARS_OWNER_PIN": PIN})
    pins = desk(store, clock)
    leg = CallRecord(
        call_sid="CA" + "1" * 32,
        account_sid="AC" + "1" * 32,
        from_number="+15555550999",
        to_number=OWNER,
        direction="outbound-dial",
    )
    assert owner_check(settings, leg, pins).standing is Standing.PIN_PENDING
    reminder_call = dataclasses.replace(leg, direction="outbound-api", reminder_id=7)
    assert owner_check(settings, reminder_call, pins) == OwnerCheck(
        Standing.PROVEN, "placed by TARS"
    )
