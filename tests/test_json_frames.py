"""json_frames.loads: json.loads's result and errors, without its layers on clean frames."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tars_actors.net import _json_frames as json_frames

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
