"""Keypad tones: made to Q.23 for keys TARS presses, heard back by the Goertzel detector; a
goal call gets through a two-level phone menu with press_keys."""

from __future__ import annotations

import numpy as np
import pytest

from tars_actors.audio.dtmf import DtmfDetector, tones
from tars_actors.audio.g711 import samples_to_ulaw, ulaw_to_pcm16
from tars_actors.sim.softphone import MenuNode, PhoneMenu
from tars_actors.sim.world import LocalWorld
from tests.test_goals import call_tool, goal_call_answered, goal_row

WAIT = 15.0


def heard(audio: bytes, piece: int = 160) -> str:
    detector = DtmfDetector()
    for at in range(0, len(audio), piece):
        detector.feed(audio[at : at + piece])
    return detector.keys


def test_every_key_is_heard_back_whatever_the_pieces_it_arrives_in() -> None:
    keys = "0123456789*#"
    audio = tones(keys)
    assert heard(audio) == keys
    assert heard(audio, piece=37) == keys
    assert heard(audio, piece=len(audio)) == keys


def test_a_key_pressed_twice_is_two_keys_and_w_pauses_half_a_second() -> None:
    assert heard(tones("11")) == "11"
    assert len(tones("1w1")) - len(tones("11")) == 4000  # 0.5 s at 8 kHz
    assert heard(tones("1w1")) == "11"


def test_tones_last_100_ms_with_100_ms_of_silence_at_the_q24_levels() -> None:
    audio = tones("5")
    assert len(audio) == 1600
    pcm = np.frombuffer(ulaw_to_pcm16(audio), dtype=np.int16).astype(np.float64)
    tone, gap = pcm[:800], pcm[800:]
    assert np.abs(gap).max() < 10
    time = np.arange(len(tone)) / 8000

    def amplitude(frequency: float) -> float:
        # The tone's own frequency, not the nearest FFT bin.
        return float(np.abs(np.dot(tone, np.exp(-2j * np.pi * frequency * time))) * 2 / len(tone))

    low, high = amplitude(770.0), amplitude(1336.0)
    full_scale_dbm0 = 3.17
    assert 20 * np.log10(low / 32767) + full_scale_dbm0 == pytest.approx(-9.0, abs=0.5)
    assert 20 * np.log10(high / 32767) + full_scale_dbm0 == pytest.approx(-7.0, abs=0.5)


def test_speech_like_noise_and_music_are_no_keys() -> None:
    rng = np.random.default_rng(7)
    noise = rng.normal(0, 4000, 16000).clip(-32768, 32767).astype(np.int16)
    time = np.arange(16000) / 8000
    chord = 6000 * np.sin(2 * np.pi * 440 * time) + 5000 * np.sin(2 * np.pi * 1000 * time)
    for samples in (noise, chord.astype(np.int16)):
        assert heard(bytes(samples_to_ulaw(samples))) == ""


def test_keys_outside_the_keypad_are_refused() -> None:
    for keys in ("", "12a", "1" * 33, "1 2"):
        with pytest.raises(ValueError, match="keys must match"):
            tones(keys)


MENU = MenuNode(
    prompt="Welcome to Dr Smith's office. For appointments press 1, for billing press 2.",
    choices={
        "1": MenuNode(
            prompt="For a new appointment press 1, to change one press 2.",
            choices={"1": MenuNode(prompt="Please hold for the front desk.")},
        ),
        "2": MenuNode(prompt="Billing is open on weekdays."),
    },
)


def test_a_goal_call_gets_through_a_two_level_phone_menu_with_press_keys(
    world: LocalWorld,
) -> None:
    goal_id, callee, goal_model = goal_call_answered(world)
    menu = PhoneMenu(MENU)
    assert "press_keys" in goal_model.function_names

    goal_model.send_input_transcription(MENU.prompt)
    pressed = call_tool(goal_model, "press_keys", {"keys": "1"})
    assert pressed == {"ok": True, "pressed": "1"}
    assert menu.reached(callee.wait_for_keys("1", timeout=WAIT)).prompt == (
        MENU.choices["1"].prompt
    )
    goal_model.send_input_transcription(menu.reached(callee.heard_keys()).prompt)
    call_tool(goal_model, "press_keys", {"keys": "w1"})
    reached = menu.reached(callee.wait_for_keys("11", timeout=WAIT))
    assert reached.prompt == "Please hold for the front desk."

    outcome = call_tool(
        goal_model, "report_goal_outcome", {"outcome": "Reached the front desk", "achieved": True}
    )
    assert outcome["ok"] is True
    assert goal_row(world, goal_id).outcome is not None


def test_press_keys_refuses_what_no_keypad_has(world: LocalWorld) -> None:
    _goal_id, callee, goal_model = goal_call_answered(world)
    refused = call_tool(goal_model, "press_keys", {"keys": "1; DROP"})
    assert "error" in refused
    assert callee.heard_keys() == ""
