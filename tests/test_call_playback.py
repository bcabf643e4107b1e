"""The model's turn as the caller hears it: marks, interruptions, and cutting a finished turn."""

from __future__ import annotations

from tars_actors.call.playback import BARGE_IN_MIN_SECONDS, TurnPlayback


def never_asked() -> float:
    raise AssertionError("unplayed audio is asked only between turns")


def test_a_turn_with_audio_ends_with_a_mark_named_after_it() -> None:
    playback = TurnPlayback()
    playback.begin()
    assert playback.complete() == "turn-1"
    playback.begin()
    assert playback.complete() == "turn-2"
    assert not playback.has_audio


def test_a_turn_without_audio_has_no_mark_and_does_not_count() -> None:
    playback = TurnPlayback()
    assert playback.complete() is None
    playback.begin()
    assert playback.complete() == "turn-1"


def test_an_interrupted_turn_has_no_mark_and_the_next_turn_plays_again() -> None:
    playback = TurnPlayback()
    playback.begin()
    playback.interrupt()
    assert playback.suppressed
    assert playback.complete() is None
    assert not playback.suppressed
    playback.begin()
    assert playback.complete() == "turn-2"


def test_the_caller_talking_mid_turn_is_left_to_the_models_interrupted() -> None:
    playback = TurnPlayback()
    playback.begin()
    assert not playback.cuts_finished_turn(never_asked)


def test_the_caller_talking_over_a_finished_turn_cuts_it_when_enough_is_still_queued() -> None:
    playback = TurnPlayback()
    playback.begin()
    playback.complete()
    assert playback.cuts_finished_turn(lambda: BARGE_IN_MIN_SECONDS)
    assert playback.cuts_finished_turn(lambda: 3.0)


def test_a_nearly_played_finished_turn_is_left_to_finish() -> None:
    playback = TurnPlayback()
    playback.begin()
    playback.complete()
    assert not playback.cuts_finished_turn(lambda: BARGE_IN_MIN_SECONDS - 0.01)
    assert not playback.cuts_finished_turn(lambda: 0.0)


def test_a_socket_that_cannot_tell_what_is_unplayed_is_never_cut() -> None:
    assert not TurnPlayback().cuts_finished_turn(None)
