"""A caller's keys: one note to the model per burst (keys within 1.5 s of each other), at a
turn boundary; the PIN's keys never; counts, never digits, in the log."""

from __future__ import annotations

from collections.abc import Sequence

from tars_actors.actor_messages import AudioStarted, OutputTranscript, TurnComplete
from tars_actors.call.effects import (
    CancelTimer,
    CheckPin,
    Effect,
    LogEvent,
    StartTimer,
    Timer,
)
from tars_actors.call.flow import CallFlow
from tars_actors.call.keypad import KEY_BURST_SECONDS, MAX_BURST_KEYS
from tars_actors.sim.world import LocalWorld
from tars_actors.telephony.stream_codec import Dtmf
from tests.test_call_flow import greeted_flow, notes_sent, of
from tests.test_call_flow_pin import greeted_pin_flow

BURST = StartTimer(name=Timer.KEY_BURST, delay=KEY_BURST_SECONDS)


def press(flow: CallFlow, keys: str) -> list[Effect]:
    effects: list[Effect] = []
    for number, key in enumerate(keys):
        effects += flow.caller_event(Dtmf(sequence_number=number, track="inbound_track", digit=key))
    return effects


def keypad_notes(effects: Sequence[Effect]) -> list[str]:
    return [turn.text for turn in notes_sent(effects) if "keypad" in turn.text]


def test_a_burst_of_keys_reaches_the_model_once_as_one_note_after_the_pause() -> None:
    flow = greeted_flow()
    typed = press(flow, "12#")
    assert of(StartTimer, typed) == [BURST, BURST, BURST]  # each key restarts the pause
    assert keypad_notes(typed) == []
    over = flow.timer_fired(Timer.KEY_BURST)
    assert keypad_notes(over) == [
        "[System note] The caller pressed these keys on their phone's keypad: 1 2 #"
    ]
    assert keypad_notes(flow.timer_fired(Timer.KEY_BURST)) == []  # told once


def test_two_bursts_are_two_notes() -> None:
    flow = greeted_flow()
    press(flow, "4")
    first = keypad_notes(flow.timer_fired(Timer.KEY_BURST))
    press(flow, "56")
    second = keypad_notes(flow.timer_fired(Timer.KEY_BURST))
    assert [note.rsplit(": ", 1)[1] for note in first + second] == ["4", "5 6"]


def test_a_burst_waits_for_the_turn_boundary_while_the_model_speaks() -> None:
    flow = greeted_flow()
    flow.model_event(1, AudioStarted())
    flow.model_event(1, OutputTranscript(text="Let me see"))
    press(flow, "9")
    assert keypad_notes(flow.timer_fired(Timer.KEY_BURST)) == []
    assert keypad_notes(flow.model_event(1, TurnComplete(mark="turn-2"))) != []


def test_a_caller_who_never_pauses_is_heard_every_so_many_keys() -> None:
    flow = greeted_flow()
    effects = press(flow, "1" * MAX_BURST_KEYS)
    [note] = keypad_notes(effects)
    assert note.endswith(" ".join("1" * MAX_BURST_KEYS))
    assert CancelTimer(name=Timer.KEY_BURST) in effects


def test_the_pins_keys_never_reach_the_model() -> None:
    flow = greeted_pin_flow()
    effects = press(flow, "2468#")
    assert len(of(CheckPin, effects)) == 1
    assert Timer.KEY_BURST not in {e.name for e in of(StartTimer, effects)}
    assert keypad_notes(effects + flow.timer_fired(Timer.KEY_BURST)) == []


def test_keys_pressed_as_the_call_says_goodbye_are_not_told() -> None:
    flow = greeted_flow()
    flow.end_with_notice("Goodbye.", reason="shutdown", grace=5.0)
    assert of(StartTimer, press(flow, "1")) == []


def test_the_log_counts_keys_and_never_shows_them() -> None:
    flow = greeted_flow()
    effects = press(flow, "7") + flow.timer_fired(Timer.KEY_BURST)
    [line] = [e for e in of(LogEvent, effects) if e.event == "call.dtmf"]
    assert line.fields == {"keys": 1}


def test_a_callers_burst_of_keys_reaches_the_model_as_one_note_through_the_server(
    world: LocalWorld,
) -> None:
    caller = world.phone("+15555550777")
    caller.call()
    model = world.gemini.wait_for_connection(1, timeout=15.0)
    caller.wait_for_mark("turn-1", timeout=15.0)
    for key in "31#":
        caller.send_dtmf(key)
    note = model.wait_for_client_content(2, timeout=15.0)
    assert note.text.endswith("keypad: 3 1 #")
    assert [c.text for c in model.client_contents].count(note.text) == 1
