"""Admission control: places for calls, the owner's reserved places and the limits one
unknown number meets, on a fake clock."""

from __future__ import annotations

from tars_actors.call.admission import PIN_DEADLINE_SECONDS, AdmissionLimits, CallAdmission, Refusal

OWNER = "+15555550100"
STRANGER = "+15555550777"
OTHER = "+15555550778"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def admission(
    max_concurrent: int = 4,
    *,
    owner_reserved: int = 0,
    max_per_caller: int = 10,
    calls_per_hour: int = 100,
    clock: Clock | None = None,
) -> CallAdmission:
    limits = AdmissionLimits(
        max_concurrent=max_concurrent,
        owner_reserved=owner_reserved,
        max_per_caller=max_per_caller,
        calls_per_hour=calls_per_hour,
    )
    return CallAdmission(limits, clock=clock or Clock())


def test_places_are_reserved_by_the_webhook_and_taken_by_the_stream() -> None:
    places = admission(2)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    assert places.reserve("CA2", OTHER, owner=False) is None
    # Full: both places are promised.
    assert places.reserve("CA3", OWNER, owner=True) is Refusal.OVER_CAPACITY
    assert places.activate("CA1", STRANGER, owner=False)
    assert places.live == 1
    assert places.reserve("CA1", STRANGER, owner=False) is None  # a retried webhook


def test_a_reservation_whose_stream_never_comes_expires_after_ten_seconds() -> None:
    clock = Clock()
    places = admission(1, clock=clock)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    clock.now = 9.9
    assert places.reserve("CA2", OTHER, owner=False) is Refusal.OVER_CAPACITY
    clock.now = 10.0
    assert places.reserve("CA2", OTHER, owner=False) is None
    assert not places.activate("CA1", STRANGER, owner=False)  # too late: the place is CA2's


def test_a_proven_stream_without_a_reservation_takes_a_free_place() -> None:
    places = admission(1)
    # TARS placed the call, or restarted since the webhook: the token proved it.
    assert places.activate("CA1", OWNER, owner=True)
    assert not places.activate("CA2", OWNER, owner=True)  # no place left


def test_a_second_start_for_a_live_call_is_refused_and_changes_nothing() -> None:
    places = admission(3)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    assert places.activate("CA1", STRANGER, owner=False)
    assert not places.activate("CA1", STRANGER, owner=False)
    assert places.live == 1
    assert places.is_live("CA1")


def test_releasing_a_call_frees_its_place() -> None:
    places = admission(1)
    assert places.activate("CA1", STRANGER, owner=False)
    assert places.reserve("CA2", OTHER, owner=False) is Refusal.OVER_CAPACITY
    places.release("CA1")
    assert places.live == 0
    assert places.reserve("CA2", OTHER, owner=False) is None


def test_a_call_that_ended_before_its_stream_gives_its_place_back() -> None:
    places = admission(1)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    places.cancel_reservation("CA1")
    assert places.reserve("CA2", OTHER, owner=False) is None
    places.cancel_reservation("CA9")  # unknown: nothing happens
    assert places.reserve("CA3", OWNER, owner=True) is Refusal.OVER_CAPACITY


def test_the_owners_reserved_places_are_the_owners_alone() -> None:
    places = admission(3, owner_reserved=2)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    assert places.reserve("CA2", OTHER, owner=False) is Refusal.OVER_CAPACITY
    assert places.reserve("CA3", OWNER, owner=True) is None
    assert places.reserve("CA4", OWNER, owner=True) is None
    assert places.reserve("CA5", OWNER, owner=True) is Refusal.OVER_CAPACITY


def test_the_owner_may_take_an_unreserved_place_too() -> None:
    places = admission(2, owner_reserved=1)
    assert places.activate("CA1", OWNER, owner=True)
    assert places.reserve("CA2", STRANGER, owner=False) is None  # the one open place
    assert places.reserve("CA3", OTHER, owner=False) is Refusal.OVER_CAPACITY


def test_one_place_always_stays_open_to_everyone() -> None:
    places = admission(1, owner_reserved=1)
    assert places.limits.reserved == 0
    assert places.reserve("CA1", STRANGER, owner=False) is None


def test_one_number_holds_at_most_max_per_caller_calls() -> None:
    places = admission(5, max_per_caller=1)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    assert places.reserve("CA2", STRANGER, owner=False) is Refusal.CALLER_BUSY
    assert places.activate("CA1", STRANGER, owner=False)
    assert places.reserve("CA2", STRANGER, owner=False) is Refusal.CALLER_BUSY
    assert places.reserve("CA3", OTHER, owner=False) is None
    places.release("CA1")
    assert places.reserve("CA2", STRANGER, owner=False) is None


def test_a_live_call_counts_for_the_number_its_webhook_reserved_with() -> None:
    # The call's record may keep a shortened number (a long SIP caller ID); the stream's
    # start then names that one. The place still counts against the webhook's number.
    long_number = "sip:" + "a" * 40 + "@example.net"
    places = admission(5, max_per_caller=1)
    assert places.reserve("CA1", long_number, owner=False) is None
    assert places.activate("CA1", long_number[:32], owner=False)
    assert places.reserve("CA2", long_number, owner=False) is Refusal.CALLER_BUSY


def test_the_owner_is_not_limited_per_caller_or_per_hour() -> None:
    places = admission(5, max_per_caller=1, calls_per_hour=1)
    for n in range(3):
        assert places.reserve(f"CA{n}", OWNER, owner=True) is None


def test_one_number_gets_calls_per_hour_admitted_webhooks_in_any_hour() -> None:
    clock = Clock()
    places = admission(5, max_per_caller=1, calls_per_hour=2, clock=clock)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    places.cancel_reservation("CA1")
    clock.now = 1000.0
    assert places.reserve("CA2", STRANGER, owner=False) is None
    places.cancel_reservation("CA2")
    # Refusals do not count: only admitted webhooks do.
    assert places.reserve("CA3", STRANGER, owner=False) is Refusal.HOURLY_LIMIT
    assert places.reserve("CA3", STRANGER, owner=False) is Refusal.HOURLY_LIMIT
    assert places.reserve("CA4", OTHER, owner=False) is None
    clock.now = 3600.0  # the first admitted webhook is an hour old
    assert places.reserve("CA5", STRANGER, owner=False) is None


def test_a_flood_from_one_number_leaves_the_owner_a_place() -> None:
    clock = Clock()
    places = admission(3, owner_reserved=1, max_per_caller=1, calls_per_hour=10, clock=clock)
    refusals = [places.reserve(f"CA{n}", STRANGER, owner=False) for n in range(200)]
    assert refusals.count(None) == 1
    assert places.reserve("CAowner", OWNER, owner=True) is None


def test_new_limits_apply_to_the_next_call() -> None:
    places = admission(1)
    assert places.activate("CA1", STRANGER, owner=False)
    places.use(AdmissionLimits(max_concurrent=2, owner_reserved=0))
    assert places.reserve("CA2", OTHER, owner=False) is None


def test_waiting_for_idle_returns_once_the_last_call_is_released() -> None:
    places = admission(2)
    assert places.wait_idle(0.0)
    assert places.activate("CA1", STRANGER, owner=False)
    assert not places.wait_idle(0.0)
    places.release("CA1")
    assert places.wait_idle(0.0)


# --- the owner's number, still to type the PIN -------------------------------------------------


def test_a_pin_pending_owner_call_may_take_a_reserved_place() -> None:
    places = admission(3, owner_reserved=2)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    # Only the owner's reserved places are left, and the unproven call may take one.
    assert places.reserve("CA2", OWNER, owner=True, proven=False) is None
    assert places.reserve("CA3", OTHER, owner=False) is Refusal.OVER_CAPACITY


def test_one_pin_pending_call_at_a_time_but_a_proven_owner_call_still_gets_in() -> None:
    places = admission(4, owner_reserved=3, max_per_caller=1)
    assert places.reserve("CA1", OWNER, owner=True, proven=False) is None
    assert places.reserve("CA2", OWNER, owner=True, proven=False) is Refusal.CALLER_BUSY
    assert places.activate("CA1", OWNER, owner=True)
    assert places.reserve("CA2", OWNER, owner=True, proven=False) is Refusal.CALLER_BUSY
    # The attested owner is not held back by a faked call from their number.
    assert places.reserve("CA3", OWNER, owner=True) is None
    assert places.reserve("CA4", STRANGER, owner=False) is None
    places.release("CA1")
    places.release("CA3")
    assert places.reserve("CA5", OWNER, owner=True, proven=False) is None


def test_a_flood_of_pin_pending_calls_leaves_the_owner_the_reserved_places() -> None:
    places = admission(4, owner_reserved=3, max_per_caller=1)
    results = [places.reserve(f"CA{n}", OWNER, owner=True, proven=False) for n in range(50)]
    assert results.count(None) == 1
    assert places.reserve("CAowner1", OWNER, owner=True) is None
    assert places.reserve("CAowner2", OWNER, owner=True) is None


def test_pin_pending_calls_do_not_count_against_the_hourly_limit() -> None:
    clock = Clock()
    places = admission(5, max_per_caller=1, calls_per_hour=1, clock=clock)
    for n in range(5):
        assert places.reserve(f"CA{n}", OWNER, owner=True, proven=False) is None
        places.cancel_reservation(f"CA{n}")
        clock.now += 60.0
    # Nor do they use up the hour of a call the owner's number makes unproven later
    # (a locked number is treated as anyone's).
    assert places.reserve("CA9", OWNER, owner=False) is None
    places.cancel_reservation("CA9")
    assert places.reserve("CA10", OWNER, owner=False) is Refusal.HOURLY_LIMIT


def test_a_call_still_to_type_the_pin_after_a_minute_makes_way_for_a_new_one() -> None:
    """A faker who calls from the owner's number and stays silent cannot keep the owner's
    own unattested calls out for longer than the PIN deadline."""
    clock = Clock()
    places = admission(4, owner_reserved=1, max_per_caller=1, clock=clock)
    assert places.reserve("CAfaker", OWNER, owner=True, proven=False) is None
    assert places.activate("CAfaker", OWNER, owner=True, pending=True)
    clock.now += PIN_DEADLINE_SECONDS - 1.0
    assert places.reserve("CAowner", OWNER, owner=True, proven=False) is Refusal.CALLER_BUSY
    assert places.take_evicted() == []
    clock.now += 1.0
    assert places.reserve("CAowner", OWNER, owner=True, proven=False) is None
    assert places.take_evicted() == ["CAfaker"]
    assert places.live == 0
    assert places.activate("CAowner", OWNER, owner=True, pending=True)
    # Once the PIN is typed the call keeps its place, whatever comes after.
    places.proven("CAowner")
    clock.now += PIN_DEADLINE_SECONDS * 10
    assert places.reserve("CAnext", OWNER, owner=True, proven=False) is Refusal.CALLER_BUSY
    assert places.take_evicted() == []


def test_a_proven_owner_finding_every_place_taken_takes_a_pending_calls_place() -> None:
    places = admission(3, owner_reserved=1, max_per_caller=1)
    assert places.reserve("CAfaker", OWNER, owner=True, proven=False) is None
    assert places.activate("CAfaker", OWNER, owner=True)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    assert places.reserve("CA2", OTHER, owner=False) is None
    assert places.reserve("CA3", "+15555550779", owner=False) is Refusal.OVER_CAPACITY
    assert places.reserve("CAowner", OWNER, owner=True) is None
    assert places.take_evicted() == ["CAfaker"]
    assert places.activate("CAowner", OWNER, owner=True)
    # Strangers' calls are never taken for the owner.
    assert places.reserve("CAowner2", OWNER, owner=True) is Refusal.OVER_CAPACITY
    assert places.take_evicted() == []


def test_a_pending_call_evicted_before_its_stream_starts_finds_no_place() -> None:
    places = admission(2, owner_reserved=1, max_per_caller=1)
    assert places.reserve("CAfaker", OWNER, owner=True, proven=False) is None
    assert places.reserve("CA1", STRANGER, owner=False) is None
    assert places.reserve("CAowner", OWNER, owner=True) is None
    assert places.take_evicted() == ["CAfaker"]
    places.release("CA1")  # a place is free again, but not for the evicted call
    assert not places.activate("CAfaker", OWNER, owner=True, pending=True)


def test_a_call_started_at_its_webhook_takes_its_reservation_or_nothing() -> None:
    places = admission(2, owner_reserved=1, max_per_caller=1)
    assert places.reserve("CAfaker", OWNER, owner=True, proven=False) is None
    assert places.reserve("CA1", STRANGER, owner=False) is None
    assert places.reserve("CAowner", OWNER, owner=True) is None
    assert places.take_evicted() == ["CAfaker"]
    # The evicted call's session would start at its webhook: no place, and the eviction
    # still stands for its stream once another place is free.
    assert not places.activate("CAfaker", OWNER, owner=True, pending=True, reserved_only=True)
    places.release("CA1")
    assert not places.activate("CAfaker", OWNER, owner=True, pending=True)


def test_a_call_that_ended_before_its_session_started_takes_no_place() -> None:
    places = admission(2)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    places.ended("CA1")  # Twilio's final status came first
    assert not places.activate("CA1", STRANGER, owner=False, reserved_only=True)
    assert places.live == 0


def test_a_final_status_frees_a_live_calls_place_at_once() -> None:
    places = admission(1, max_per_caller=1)
    assert places.reserve("CA1", STRANGER, owner=False) is None
    assert places.activate("CA1", STRANGER, owner=False, reserved_only=True)
    assert places.reserve("CA2", STRANGER, owner=False) is Refusal.CALLER_BUSY
    places.ended("CA1")  # its session is still closing down
    assert places.reserve("CA2", STRANGER, owner=False) is None
