"""Notes for a call's model: queued in order, drained as one turn, each message taken once."""

from __future__ import annotations

from tars_actors.actor_messages import TextTurn
from tars_actors.call.notes import NoteQueue


def test_notes_drain_as_one_turn_in_arrival_order_with_their_message_ids() -> None:
    notes = NoteQueue()
    assert not notes
    assert notes.take(7, "first")
    notes.instruct("[System note] voicemail")
    assert notes.take(8, "second")
    assert notes
    assert notes.pending_ids() == [7, 8]
    assert notes.drain() == TextTurn(
        text="first\n\n[System note] voicemail\n\nsecond", note_ids=(7, 8)
    )
    assert not notes
    assert notes.pending_ids() == []


def test_a_message_is_taken_once_even_after_it_went_out() -> None:
    notes = NoteQueue()
    assert notes.take(7, "first")
    assert not notes.take(7, "first")
    assert notes.pending_ids() == [7]
    notes.drain()
    assert not notes.take(7, "first")
    assert not notes


def test_instructions_are_never_repeats() -> None:
    notes = NoteQueue()
    notes.instruct("same")
    notes.instruct("same")
    assert notes.drain() == TextTurn(text="same\n\nsame", note_ids=())


def test_draining_ends_the_wait_for_the_caller() -> None:
    notes = NoteQueue()
    notes.take(7, "note")
    notes.waiting = True
    notes.wait_over = True
    notes.drain()
    assert not notes.waiting
    assert not notes.wait_over
