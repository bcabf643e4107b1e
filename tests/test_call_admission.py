"""Admission control: how many calls are live or about to be."""

from __future__ import annotations

from actors.call_supervisor import CallAdmission


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_places_are_reserved_by_the_webhook_and_taken_by_the_stream() -> None:
    admission = CallAdmission(2, clock=Clock())
    assert admission.reserve("CA1")
    assert admission.reserve("CA2")
    assert not admission.reserve("CA3")  # full: both places are promised
    assert admission.activate("CA1")
    assert admission.live == 1
    assert admission.reserve("CA1")  # a retried webhook of a live call is fine


def test_a_reservation_whose_stream_never_comes_expires() -> None:
    clock = Clock()
    admission = CallAdmission(1, reservation_seconds=30, clock=clock)
    assert admission.reserve("CA1")
    assert not admission.reserve("CA2")
    clock.now = 31.0
    assert admission.reserve("CA2")
    assert not admission.activate("CA1")  # too late: its place went to CA2


def test_releasing_a_call_frees_its_place() -> None:
    admission = CallAdmission(1, clock=Clock())
    assert admission.activate("CA1")
    assert not admission.reserve("CA2")
    admission.release("CA1")
    assert admission.live == 0
    assert admission.reserve("CA2")


def test_a_call_that_ended_before_its_stream_gives_its_place_back() -> None:
    admission = CallAdmission(1, clock=Clock())
    assert admission.reserve("CA1")
    admission.cancel_reservation("CA1")
    assert admission.reserve("CA2")
    admission.cancel_reservation("CA9")  # unknown: nothing happens
    assert not admission.reserve("CA3")
