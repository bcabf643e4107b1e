"""json_frames.loads: json.loads's result and errors, without its layers on clean frames."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from tars_actors.net import _json_frames as json_frames
from tars_actors.net.fast_paths import ENVIRONMENT_SWITCH, FastPath

FRAMES: list[str | bytes] = [
    '{"event":"media","streamSid":"MZ1","media":{"payload":"/w=="}}',
    '{"serverContent":{"modelTurn":{"parts":[{"inlineData":{"data":"AAA="}}]}}}',
    b'{"serverContent":{"turnComplete":true}}',
    '{"a": [1, 2.5, -3e2, null, true, false, "\\u00e9\\ud83d\\ude00"]}',
    '  {"a":1}',
    '{"a":1}\n',
    '\t{"a":1}\r\n',
    b'\xef\xbb\xbf{"a":1}',  # UTF-8 with a byte order mark: json.loads accepts it
    '{"a":1}'.encode("utf-16"),
    '{"a":1}'.encode("utf-16-le"),  # valid UTF-8 too, but not JSON as UTF-8
    '{"a":1}'.encode("utf-32"),
    "[1,2]",
    '"text"',
    "3",
    '{"a":NaN,"b":-Infinity}',
    '{"a":1,"a":2}',
    '{"a":"\\ud800"}',
    "",
    " ",
    "{",
    '{"a":}',
    '{"a":1}x',
    '{"a":1}{"b":2}',
    "\ufeff{}",
    b"\xff\xfe\x00",
    b'{"a":"\xc3"}',
    "nul",
]


def _outcome(parse: Any, frame: str | bytes) -> tuple[str, Any]:
    try:
        return "value", repr(parse(frame))
    except Exception as error:  # compared: its type and message
        return type(error).__name__, str(error)


@pytest.mark.parametrize("frame", FRAMES, ids=repr)
def test_same_value_or_same_error_as_json_loads(frame: str | bytes) -> None:
    assert _outcome(json_frames.loads, frame) == _outcome(json.loads, frame)


def test_deep_nesting_fails_as_json_loads_does() -> None:
    frame = "[" * 100_000 + "]" * 100_000
    with pytest.raises(RecursionError):
        json.loads(frame)
    with pytest.raises(RecursionError):
        json_frames.loads(frame)


@pytest.mark.parametrize("frame", [FRAMES[0], FRAMES[1], FRAMES[2]], ids=repr)
def test_a_compact_frame_does_not_go_through_json_loads(
    frame: str | bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[object] = []
    loads = json.loads

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return loads(*args, **kwargs)

    monkeypatch.setattr(json, "loads", counted)
    assert json_frames.loads(frame) == loads(frame)
    assert calls == []


@pytest.fixture
def decided_again() -> Iterator[None]:
    """Whatever a test changes, the fast path is decided again afterwards (list it before
    ``monkeypatch``, so that this runs once the environment is restored)."""
    yield
    json_frames.SWITCH.decide()


@pytest.mark.parametrize("frame", FRAMES, ids=repr)
def test_the_public_twin_gives_the_same_value_or_error(
    frame: str | bytes, decided_again: None
) -> None:
    assert json_frames.SWITCH.status().on
    fast = _outcome(json_frames.loads, frame)
    json_frames.SWITCH.force(False)
    assert _outcome(json_frames.loads, frame) == fast


def test_the_scanner_is_used_where_it_is_found_and_behaves() -> None:
    assert json_frames.SWITCH.decide() == FastPath("json_frames", True)


def test_without_the_scanner_the_twin_is_chosen_and_parses_every_frame(
    decided_again: None,
) -> None:
    class WithoutScanner(json.JSONDecoder):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            del self.scan_once

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json, "JSONDecoder", WithoutScanner)
        decided = json_frames.SWITCH.decide()
    assert decided == FastPath("json_frames", False, "json.JSONDecoder has no scan_once")
    for frame in FRAMES:
        assert _outcome(json_frames.loads, frame) == _outcome(json.loads, frame)


def test_a_scanner_that_misparses_is_not_used(decided_again: None) -> None:
    class Misparsing(json.JSONDecoder):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.scan_once = lambda text, at: ({}, len(text))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(json, "JSONDecoder", Misparsing)
        decided = json_frames.SWITCH.decide()
    assert not decided.on
    assert decided.reason is not None
    assert "unlike json.loads" in decided.reason


@pytest.mark.parametrize("value", ["1", "all", "json_frames", "libsoxr, json_frames"])
def test_the_environment_switch_turns_it_off(
    value: str, decided_again: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENVIRONMENT_SWITCH, value)
    assert json_frames.SWITCH.decide() == FastPath(
        "json_frames", False, "switched off by TARS_NO_FAST_PATHS"
    )
    assert json_frames.loads(FRAMES[0]) == json.loads(FRAMES[0])


def test_the_environment_switch_leaves_other_paths_alone(
    decided_again: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENVIRONMENT_SWITCH, "libsoxr,ws_delivery")
    assert json_frames.SWITCH.decide().on


def test_after_the_tests_above_the_fast_path_is_on_again() -> None:
    assert json_frames.SWITCH.on
