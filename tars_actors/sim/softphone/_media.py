"""The Media Streams messages as Twilio's side writes and checks them.

Twilio sends ``connected``, ``start``, ``media``, ``mark``, ``dtmf`` and ``stop``; it accepts
only ``media``, ``mark`` and ``clear``, each with exactly Twilio's keys. Pure functions: the
softphone does the I/O.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONNECTED_FRAME",
    "FRAME_BYTES",
    "FRAME_SECONDS",
    "MULAW_RATE",
    "MULAW_SILENCE",
    "SILENT_FRAME",
    "MediaFrames",
    "ServerClear",
    "ServerFrame",
    "ServerMark",
    "ServerMedia",
    "Violation",
    "event_frame",
    "read_server_frame",
    "start_frame",
]

FRAME_BYTES = 160  # 20 ms of μ-law at 8 kHz
FRAME_SECONDS = 0.02
MULAW_RATE = 8000
MULAW_SILENCE = 0xFF
SILENT_FRAME = bytes([MULAW_SILENCE]) * FRAME_BYTES

CONNECTED_FRAME = '{"event":"connected","protocol":"Call","version":"1.0.0"}'


def start_frame(
    *,
    sequence: int,
    account_sid: str,
    stream_sid: str,
    call_sid: str,
    custom_parameters: Mapping[str, str],
) -> str:
    """``start``: the stream's identity, its custom parameters and the μ-law 8 kHz format."""
    start = {
        "accountSid": account_sid,
        "streamSid": stream_sid,
        "callSid": call_sid,
        "tracks": ["inbound"],
        "customParameters": custom_parameters,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": str(sequence),
            "streamSid": stream_sid,
            "start": start,
        }
    )


def event_frame(event: str, *, sequence: int, stream_sid: str, body: Mapping[str, Any]) -> str:
    """Any other event (``mark``, ``dtmf``, ``stop``), its body under the event's name."""
    frame = {
        "event": event,
        "sequenceNumber": str(sequence),
        "streamSid": stream_sid,
        event: body,
    }
    return json.dumps(frame)


class MediaFrames:
    """``media`` frames of one stream, formatted directly: 50 a second per call under load."""

    __slots__ = ("_middle", "_prefix")

    def __init__(self, stream_sid: str) -> None:
        self._prefix = '{"event":"media","sequenceNumber":"'
        self._middle = f'","streamSid":"{stream_sid}","media":{{"track":"inbound","chunk":"'

    def frame(self, *, sequence: int, chunk: int, mulaw: bytes) -> str:
        """Chunk numbers start at 1; the timestamp is the chunk's start in milliseconds."""
        payload = base64.b64encode(mulaw).decode("ascii")
        timestamp = (chunk - 1) * 20
        return (
            f'{self._prefix}{sequence}{self._middle}{chunk}","timestamp":"{timestamp}",'
            f'"payload":"{payload}"}}}}'
        )


@dataclass(frozen=True, slots=True)
class ServerMedia:
    audio: bytes


@dataclass(frozen=True, slots=True)
class ServerMark:
    name: str


@dataclass(frozen=True, slots=True)
class ServerClear:
    pass


@dataclass(frozen=True, slots=True)
class Violation:
    """Something the server sent that Twilio would reject, described."""

    what: str


ServerFrame = ServerMedia | ServerMark | ServerClear | Violation


def read_server_frame(message: str | bytes, stream_sid: str) -> ServerFrame:
    """What a message from the server asks of Twilio, or why Twilio would reject it."""
    if isinstance(message, bytes):
        return Violation("binary frame (Twilio accepts text frames only)")
    try:
        frame = json.loads(message)
    except ValueError:
        return Violation(f"not JSON: {message[:80]!r}")
    if not isinstance(frame, dict):
        return Violation(f"not a JSON object: {message[:80]!r}")
    event = frame.get("event")
    if frame.get("streamSid") != stream_sid:
        return Violation(f"{event} with streamSid {frame.get('streamSid')!r}")
    match event:
        case "media":
            shape = _unexpected_shape(frame, {"event", "streamSid", "media"}, "media", {"payload"})
            return shape or _media(frame["media"]["payload"])
        case "mark":
            shape = _unexpected_shape(frame, {"event", "streamSid", "mark"}, "mark", {"name"})
            if shape is not None:
                return shape
            name = frame["mark"]["name"]
            if isinstance(name, str):
                return ServerMark(name)
            return Violation(f"mark name is not a string: {name!r}")
        case "clear":
            if set(frame) == {"event", "streamSid"}:
                return ServerClear()
            return Violation(f"clear with keys {sorted(frame)}")
        case _:
            return Violation(f"unknown event {event!r}")


def _unexpected_shape(
    frame: Mapping[str, Any], keys: set[str], inner: str, inner_keys: set[str]
) -> Violation | None:
    body = frame.get(inner)
    if set(frame) != keys or not isinstance(body, dict) or set(body) != inner_keys:
        shape = {k: sorted(v) if isinstance(v, dict) else None for k, v in frame.items()}
        return Violation(f"{inner} with keys {shape}")
    return None


def _media(payload: object) -> ServerMedia | Violation:
    if not isinstance(payload, str):
        return Violation("media payload is not a string")
    try:
        return ServerMedia(base64.b64decode(payload, validate=True))
    except (binascii.Error, ValueError):
        return Violation("media payload is not base64")
