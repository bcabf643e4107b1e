"""Caller identification: who is calling and at what level, from plain values."""

from __future__ import annotations

from tars_actors.call.identity import (
    CallerClaims,
    ContactRecord,
    GoalRecord,
    ReminderRecord,
    identify,
)
from tars_actors.call.owner_pin import OwnerCheck, Standing
from tars_actors.call.permissions import Permission
from tars_actors.call.persona import Caller

OWNER = "+15555550100"
GOAL = GoalRecord(goal_id=4, phone="+15555550123", contact_name="Dr. Lee", objective="Book me in")
ANNA = ContactRecord(name="Anna", relation="sister")


def claims(**parameters: str) -> CallerClaims:
    """Claims as a record holds them, named as the old stream parameters were."""
    return CallerClaims(
        goal_id=parameters.get("goal_id", ""),
        reminder_id=parameters.get("reminder_id", ""),
        number=parameters.get("from", "") or "unknown",
    )


def test_claims_of_a_call_record_name_only_numeric_rows() -> None:
    assert CallerClaims.of_call(number="") == CallerClaims(
        goal_id="", reminder_id="", number="unknown"
    )
    assert CallerClaims.of_call(number="+1555", goal_id=12, reminder_id=3) == CallerClaims(
        goal_id="12", reminder_id="3", number="+1555"
    )
    assert claims(goal_id="12", reminder_id="3").goal_key == 12
    assert claims(goal_id="12", reminder_id="3").reminder_key == 3
    assert claims(goal_id="x12", reminder_id="-3").goal_key is None
    assert claims(goal_id="x12", reminder_id="-3").reminder_key is None


def test_the_owner_number_is_the_owner() -> None:
    identified = identify(claims(**{"from": OWNER}), owner_phone=OWNER, contact=ANNA)
    assert identified.caller == Caller(number=OWNER, permission=Permission.OWNER)
    assert identified.warnings == ()


def test_a_contact_number_is_a_contact_with_name_and_relation() -> None:
    identified = identify(claims(**{"from": "+15555550777"}), owner_phone=OWNER, contact=ANNA)
    assert identified.caller == Caller(
        number="+15555550777",
        permission=Permission.CONTACT,
        contact_name="Anna",
        contact_relation="sister",
    )


def test_anyone_else_is_unknown_and_a_missing_caller_id_reads_unknown() -> None:
    identified = identify(claims(**{"from": "+15555550999"}), owner_phone=OWNER)
    assert identified.caller == Caller(number="+15555550999", permission=Permission.UNKNOWN)
    assert identify(claims(), owner_phone=OWNER).caller == Caller(
        number="unknown", permission=Permission.UNKNOWN
    )


def test_a_goal_call_takes_whom_and_what_for_from_the_goal_row() -> None:
    identified = identify(
        claims(goal_id="4", **{"from": OWNER}), owner_phone=OWNER, goal=GOAL, contact=ANNA
    )
    assert identified.caller == Caller(
        number="+15555550123",
        permission=Permission.GOAL,
        contact_name="Dr. Lee",
        objective="Book me in",
        goal_id=4,
    )
    assert identified.warnings == ()


def test_a_goal_id_with_no_row_is_warned_of_and_the_caller_id_decides() -> None:
    identified = identify(claims(goal_id="99", **{"from": "+15555550777"}), owner_phone=OWNER)
    assert identified.caller.permission is Permission.UNKNOWN
    assert identified.warnings == (("calls.unknown_goal", {"goal_id": "99"}),)


def test_a_reminder_call_is_the_owner_with_the_reminder_title() -> None:
    identified = identify(
        claims(reminder_id="3", **{"from": "+15555550999"}),
        owner_phone=OWNER,
        reminder=ReminderRecord(title="Call mum"),
    )
    assert identified.caller == Caller(
        number=OWNER, permission=Permission.OWNER, reminder="Call mum"
    )
    assert identified.warnings == ()


def test_a_reminder_id_with_no_row_is_warned_of_and_the_caller_id_decides() -> None:
    identified = identify(
        claims(reminder_id="3", **{"from": "+15555550777"}), owner_phone=OWNER, contact=ANNA
    )
    assert identified.caller.permission is Permission.CONTACT
    assert identified.warnings == (("calls.unknown_reminder", {"reminder_id": "3"}),)


def test_a_goal_found_wins_over_a_reminder_and_an_unknown_goal_falls_to_the_reminder() -> None:
    reminder = ReminderRecord(title="Call mum")
    found = identify(
        claims(goal_id="4", reminder_id="3"), owner_phone=OWNER, goal=GOAL, reminder=reminder
    )
    assert found.caller.permission is Permission.GOAL
    missing = identify(claims(goal_id="4", reminder_id="3"), owner_phone=OWNER, reminder=reminder)
    assert missing.caller == Caller(number=OWNER, permission=Permission.OWNER, reminder="Call mum")
    assert missing.warnings == (("calls.unknown_goal", {"goal_id": "4"}),)


def test_both_ids_naming_no_row_warn_twice_in_order() -> None:
    identified = identify(claims(goal_id="x", reminder_id="y"), owner_phone=OWNER)
    assert [event for event, _ in identified.warnings] == [
        "calls.unknown_goal",
        "calls.unknown_reminder",
    ]
    assert identified.caller == Caller(number="unknown", permission=Permission.UNKNOWN)


# --- how far the record proves the owner ---------------------------------------------------


def test_a_proven_owner_number_is_the_owner() -> None:
    identified = identify(
        claims(**{"from": OWNER}), owner_phone=OWNER, owner=OwnerCheck(Standing.PROVEN, "attested")
    )
    assert identified.caller == Caller(number=OWNER, permission=Permission.OWNER)
    assert identified.warnings == ()


def test_the_owner_number_still_to_type_the_pin_is_unknown_until_then() -> None:
    identified = identify(
        claims(**{"from": OWNER}),
        owner_phone=OWNER,
        contact=ANNA,
        owner=OwnerCheck(Standing.PIN_PENDING, "PIN to be typed"),
    )
    assert identified.caller == Caller(
        number=OWNER, permission=Permission.UNKNOWN, pin_pending=True
    )
    assert identified.warnings == ()


def test_an_unproven_owner_number_is_unknown_and_the_log_says_why() -> None:
    why = "not attested and no owner PIN is set"
    identified = identify(
        claims(**{"from": OWNER}),
        owner_phone=OWNER,
        contact=ANNA,
        owner=OwnerCheck(Standing.UNPROVEN, why),
    )
    assert identified.caller == Caller(number=OWNER, permission=Permission.UNKNOWN)
    assert not identified.caller.pin_pending
    assert identified.warnings == (("calls.owner_unproven", {"why": why}),)


def test_the_owner_check_of_another_number_changes_nothing() -> None:
    identified = identify(
        claims(**{"from": "+15555550777"}),
        owner_phone=OWNER,
        contact=ANNA,
        owner=OwnerCheck(Standing.NOT_OWNER, "another number"),
    )
    assert identified.caller.permission is Permission.CONTACT
    assert identified.warnings == ()


def test_a_goal_or_reminder_row_decides_before_the_owner_check() -> None:
    unproven = OwnerCheck(Standing.UNPROVEN, "PIN entry locked after wrong PINs")
    goal = identify(
        claims(goal_id="4", **{"from": OWNER}), owner_phone=OWNER, goal=GOAL, owner=unproven
    )
    assert goal.caller.permission is Permission.GOAL
    assert goal.warnings == ()
    reminder = identify(
        claims(reminder_id="3", **{"from": OWNER}),
        owner_phone=OWNER,
        reminder=ReminderRecord(title="Call mum"),
        owner=OwnerCheck(Standing.PIN_PENDING, "PIN to be typed"),
    )
    assert reminder.caller == Caller(number=OWNER, permission=Permission.OWNER, reminder="Call mum")
    assert reminder.warnings == ()


def test_a_reminder_id_naming_no_row_falls_to_the_owner_check() -> None:
    identified = identify(
        claims(reminder_id="3", **{"from": OWNER}),
        owner_phone=OWNER,
        owner=OwnerCheck(Standing.PIN_PENDING, "PIN to be typed"),
    )
    assert identified.caller == Caller(
        number=OWNER, permission=Permission.UNKNOWN, pin_pending=True
    )
    assert identified.warnings == (("calls.unknown_reminder", {"reminder_id": "3"}),)
