"""``json.loads`` for WebSocket frames, without its per-call Python layers.

Audio frames (Twilio media, Gemini Live model audio) arrive 50 times a second each way
per call, each a compact JSON object. ``json.loads`` reaches the C scanner through three
Python calls and two regular-expression matches for surrounding whitespace; calling the
scanner directly halves the cost of a 1 KiB frame (measured: 3.4 → 1.9 µs for model
audio, 2.1 → 1.2 µs for a Twilio media frame). Anything the direct call does not parse
whole and cleanly (whitespace around the value, bytes that are not UTF-8, errors) goes to
``json.loads``, so results and error messages are exactly its own.

The private name it reaches for is ``JSONDecoder().scan_once`` (the C scanner, or its
Python twin). :data:`SWITCH` decides at import whether it is used: off when
``TARS_NO_FAST_PATHS`` names ``json_frames`` (see :mod:`tars_actors.net.fast_paths`) or
when the scanner is missing or does not parse known frames as ``json.loads`` does; then
:func:`loads` is ``json.loads``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tars_actors.net.fast_paths import FastPathSwitch

__all__ = ["SWITCH", "loads"]

# The scanner of json's default decoder: the same settings json.loads uses. It clears
# its memo after every call and runs without releasing the GIL, as json.loads does.
# (getattr: the attribute is missing from the type stubs.)
_Scanner = Callable[[str, int], tuple[Any, int]]
_scan_once: _Scanner | None = None

#: Frames the self-test parses both ways: a media frame, nesting, escapes, numbers.
_KNOWN_FRAMES: tuple[str, ...] = (
    '{"event":"media","media":{"payload":"AAEC/w==","track":"inbound"}}',
    '{"a":[1,2.5,-3e2,true,false,null],"b":"\\u00e9\\n","c":{}}',
    "[]",
)


def _self_test() -> str | None:
    global _scan_once  # noqa: PLW0603 (decided once: the scanner loads() then calls)
    scan = getattr(json.JSONDecoder(), "scan_once", None)
    if not callable(scan):
        return "json.JSONDecoder has no scan_once"
    for frame in _KNOWN_FRAMES:
        if scan(frame, 0) != (json.loads(frame), len(frame)):
            return f"scan_once parses {frame!r} unlike json.loads"
    _scan_once = scan
    return None


SWITCH = FastPathSwitch("json_frames", _self_test)
SWITCH.decide()


def loads(frame: str | bytes) -> Any:
    """``json.loads(frame)``: the same value, or the same exception."""
    scan = _scan_once
    if not SWITCH.on or scan is None:
        return json.loads(frame)
    return _scanned(scan, frame)


def _scanned(scan: _Scanner, frame: str | bytes) -> Any:
    """``json.loads(frame)`` through the scanner where it parses ``frame`` whole."""
    if isinstance(frame, bytes):
        try:
            text = frame.decode()
        except UnicodeDecodeError:
            return json.loads(frame)  # another encoding json accepts, or its error
    else:
        text = frame
    try:
        value, end = scan(text, 0)
    except (StopIteration, ValueError):
        # Leading whitespace, not JSON, or bytes in an encoding json detects (UTF-16 text
        # can be valid UTF-8 too): json.loads decides, and raises its own error.
        return json.loads(frame)
    if end != len(text):
        return json.loads(frame)  # trailing whitespace, or extra data
    return value
