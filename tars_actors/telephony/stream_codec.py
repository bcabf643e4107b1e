"""The Twilio Media Streams wire codec, without I/O: frames in → typed events, effects → frames.

A :class:`MediaStreamDecoder` per call turns each WebSocket frame into one event or one
:class:`FrameRejected`; it never raises, so a bad frame costs a log line, not the call.
:func:`media`, :func:`mark` and :func:`clear` are the only frames TARS ever sends.
"""

from __future__ import annotations

import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, TypeAlias

from tars_actors.net import _json_frames as json_frames

__all__ = [
    "MAX_FRAME_SIZE",
    "Connected",
    "Dtmf",
    "FrameRejected",
    "InboundEvent",
    "Mark",
    "Media",
    "MediaFormat",
    "MediaStreamDecoder",
    "Start",
    "Stop",
    "clear",
    "mark",
    "media",
]

MAX_FRAME_SIZE: Final = 64 * 1024
"""Largest text frame accepted, in characters (a 20 ms media frame is about 330)."""

EXPECTED_ENCODING: Final = "audio/x-mulaw"
EXPECTED_SAMPLE_RATE: Final = 8000
EXPECTED_CHANNELS: Final = 1

_DTMF_DIGITS: Final = frozenset("0123456789*#")
# An int64 in decimal; longer digit strings are garbage, and int() on thousands of digits
# costs time before it fails.
_MAX_NUMBER_DIGITS: Final = 19
_DETAIL_VALUE_CHARS: Final = 40

# A media frame exactly as Twilio writes it (PROTOCOLS.md: compact JSON, these keys in this
# order, numbers as decimal strings), up to the payload, which runs to the closing '"}}'.
# Every string in it is plain ASCII without escapes (the payload is strict base64, which
# has neither '"' nor '\\'), so json.loads would read the same values, and each is one
# the full decoder accepts.
_NUMBER: Final = f'"[0-9]{{1,{_MAX_NUMBER_DIGITS}}}"'
_TWILIO_MEDIA_HEAD: Final = re.compile(
    rf'\{{"event":"media","sequenceNumber":{_NUMBER},"streamSid":"([0-9A-Za-z]+)",'
    rf'"media":\{{"track":"[0-9A-Za-z_]+","chunk":{_NUMBER},"timestamp":{_NUMBER},'
    r'"payload":"'
)
_TWILIO_MEDIA_TAIL: Final = '"}}'


# --- Inbound events ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Connected:
    """The first frame on a stream: the socket speaks Media Streams."""

    protocol: str
    version: str


@dataclass(frozen=True, slots=True, kw_only=True)
class MediaFormat:
    encoding: str
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Start:
    """The stream's metadata; every later frame must carry this ``stream_sid``."""

    sequence_number: int
    stream_sid: str
    call_sid: str
    account_sid: str
    tracks: tuple[str, ...]
    custom_parameters: Mapping[str, str]
    media_format: MediaFormat


@dataclass(frozen=True, slots=True, kw_only=True)
class Media:
    """Caller audio: ``payload`` is raw μ-law 8 kHz (already base64-decoded)."""

    sequence_number: int
    track: str
    chunk: int
    timestamp: int
    """Milliseconds since the stream started."""
    payload: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Dtmf:
    sequence_number: int
    track: str
    #: Never in a repr: the keys may be the owner's PIN.
    digit: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Mark:
    """A mark we sent came back: the audio before it was played, or cleared."""

    sequence_number: int
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Stop:
    """Twilio ends the stream (the call hung up or the stream was stopped)."""

    sequence_number: int
    call_sid: str
    account_sid: str | None


InboundEvent: TypeAlias = Connected | Start | Media | Dtmf | Mark | Stop


@dataclass(frozen=True, slots=True, kw_only=True)
class FrameRejected:
    """A frame that was not a valid event in this stream's state; the stream goes on.

    ``reason`` is a short machine word for counting and alerting: ``binary_frame``,
    ``oversize``, ``bad_json``, ``missing_field``, ``bad_field``, ``unknown_event``,
    ``bad_base64``, ``bad_media_format``, ``wrong_stream_sid``, ``before_start``,
    ``duplicate_start`` or ``after_stop``. ``detail`` says which field and why, for people.
    """

    reason: str
    detail: str


class _Rejected(Exception):
    """Internal control flow of the decoder; never escapes :meth:`MediaStreamDecoder.decode`."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail


# --- Decoder -------------------------------------------------------------------------


class MediaStreamDecoder:
    """Decodes one stream's frames, enforcing its order: ``connected``, ``start``, …, ``stop``.

    Not thread-safe: the call's actor owns it. A rejected frame leaves the state as it was.
    """

    __slots__ = ("_rejections", "_start", "_stopped")

    def __init__(self) -> None:
        self._start: Start | None = None
        self._stopped = False
        self._rejections: dict[str, int] = {}

    @property
    def start(self) -> Start | None:
        """The accepted ``start`` event, once there is one."""
        return self._start

    @property
    def stream_sid(self) -> str | None:
        return self._start.stream_sid if self._start is not None else None

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def rejections(self) -> dict[str, int]:
        """Rejected frames so far, by reason (a copy)."""
        return dict(self._rejections)

    @property
    def rejected_total(self) -> int:
        return sum(self._rejections.values())

    def media_payload(self, frame: str | bytes) -> bytes | None:
        """The audio of a media frame of this stream laid out as Twilio writes it; None
        for anything else, which :meth:`decode` then accepts or rejects.

        Where this returns audio, :meth:`decode` would return a :class:`Media` with the
        same payload: it is the same check without building the event, for the 50
        frames a second of every call.
        """
        if type(frame) is not str or len(frame) > MAX_FRAME_SIZE:
            return None
        head = _TWILIO_MEDIA_HEAD.match(frame)
        start = self._start
        if (
            head is None
            or start is None
            or self._stopped
            or head[1] != start.stream_sid
            or not frame.endswith(_TWILIO_MEDIA_TAIL)
            or len(frame) < head.end() + len(_TWILIO_MEDIA_TAIL)  # the '"' ending the head
        ):
            return None
        try:
            # Strict: only the base64 alphabet and its padding, so the payload cannot
            # hold the end of a string or an escape.
            return binascii.a2b_base64(
                frame[head.end() : -len(_TWILIO_MEDIA_TAIL)], strict_mode=True
            )
        except ValueError:  # binascii.Error, or a character that is not ASCII
            return None

    def decode(self, frame: str | bytes) -> InboundEvent | FrameRejected:
        """Turn one WebSocket frame into an event, or say why it was rejected."""
        try:
            return self._decode(frame)
        except _Rejected as rejected:
            self._rejections[rejected.reason] = self._rejections.get(rejected.reason, 0) + 1
            return FrameRejected(reason=rejected.reason, detail=rejected.detail)

    def _decode(self, frame: str | bytes) -> InboundEvent:
        if not isinstance(frame, str):
            raise _Rejected("binary_frame", f"binary frame of {len(frame)} bytes")
        if len(frame) > MAX_FRAME_SIZE:
            raise _Rejected("oversize", f"frame of {len(frame)} chars exceeds {MAX_FRAME_SIZE}")
        try:
            message = json_frames.loads(frame)
        except (ValueError, RecursionError) as error:
            raise _Rejected("bad_json", f"not JSON: {error}") from None
        if type(message) is not dict:
            raise _Rejected("bad_json", f"frame is a JSON {type(message).__name__}, not an object")
        event = message.get("event")
        # Media first: it is 50 of every 50-and-a-bit frames a second.
        if event == "media":
            return self._media(message)
        if event == "start":
            return self._start_event(message)
        if event == "mark":
            self._check_stream(message)
            return Mark(
                sequence_number=_number(message, "sequenceNumber", ""),
                name=_string(_object(message, "mark", ""), "name", "mark."),
            )
        if event == "dtmf":
            self._check_stream(message)
            body = _object(message, "dtmf", "")
            digit = _string(body, "digit", "dtmf.")
            if digit not in _DTMF_DIGITS:
                raise _Rejected("bad_field", f"dtmf.digit {_shown(digit)} is not a DTMF digit")
            return Dtmf(
                sequence_number=_number(message, "sequenceNumber", ""),
                track=_string(body, "track", "dtmf."),
                digit=digit,
            )
        if event == "stop":
            self._check_stream(message)
            body = _object(message, "stop", "")
            account_sid = body.get("accountSid")
            if account_sid is not None and type(account_sid) is not str:
                raise _Rejected("bad_field", "stop.accountSid is not a string")
            stop = Stop(
                sequence_number=_number(message, "sequenceNumber", ""),
                call_sid=_string(body, "callSid", "stop."),
                account_sid=account_sid,
            )
            self._stopped = True
            return stop
        if event == "connected":
            return Connected(
                protocol=_string(message, "protocol", ""),
                version=_string(message, "version", ""),
            )
        if event is None:
            raise _Rejected("missing_field", "missing event")
        raise _Rejected("unknown_event", f"unknown event {_shown(event)}")

    def _check_stream(self, message: dict[str, Any]) -> None:
        if self._start is None:
            raise _Rejected("before_start", f"{_shown(message['event'])} before start")
        if self._stopped:
            raise _Rejected("after_stop", f"{_shown(message['event'])} after stop")
        sid = message.get("streamSid")
        if sid != self._start.stream_sid:
            if sid is None:
                raise _Rejected("missing_field", "missing streamSid")
            raise _Rejected(
                "wrong_stream_sid",
                f"streamSid {_shown(sid)} is not this stream's {self._start.stream_sid}",
            )

    def _media(self, message: dict[str, Any]) -> Media:
        self._check_stream(message)
        body = _object(message, "media", "")
        payload = body.get("payload")
        if type(payload) is not str:
            raise _Rejected(*_absent_or_wrong(payload, "media.payload", "a string"))
        try:
            # strict_mode rejects characters outside the alphabet and bad padding, which
            # the lenient default would silently skip and turn into wrong audio.
            audio = binascii.a2b_base64(payload, strict_mode=True)
        except ValueError as error:  # binascii.Error, or non-ASCII text
            raise _Rejected("bad_base64", f"media.payload is not base64: {error}") from None
        return Media(
            sequence_number=_number(message, "sequenceNumber", ""),
            track=_string(body, "track", "media."),
            chunk=_number(body, "chunk", "media."),
            timestamp=_number(body, "timestamp", "media."),
            payload=audio,
        )

    def _start_event(self, message: dict[str, Any]) -> Start:
        if self._start is not None:
            raise _Rejected("duplicate_start", "second start on one stream")
        body = _object(message, "start", "")
        stream_sid = _sid(body, "streamSid", "start.")
        outer_sid = message.get("streamSid", stream_sid)
        if outer_sid != stream_sid:
            raise _Rejected(
                "wrong_stream_sid",
                f"streamSid {_shown(outer_sid)} differs from start.streamSid {_shown(stream_sid)}",
            )
        tracks = body.get("tracks")
        if type(tracks) is not list or not all(type(track) is str for track in tracks):
            raise _Rejected(*_absent_or_wrong(tracks, "start.tracks", "a list of strings"))
        parameters = body.get("customParameters", {})
        if type(parameters) is not dict or not all(
            type(value) is str for value in parameters.values()
        ):
            raise _Rejected("bad_field", "start.customParameters is not an object of strings")
        start = Start(
            sequence_number=_number(message, "sequenceNumber", ""),
            stream_sid=stream_sid,
            call_sid=_sid(body, "callSid", "start."),
            account_sid=_sid(body, "accountSid", "start."),
            tracks=tuple(tracks),
            custom_parameters=MappingProxyType(dict(parameters)),
            media_format=_media_format(_object(body, "mediaFormat", "start.")),
        )
        self._start = start
        return start


def _media_format(body: dict[str, Any]) -> MediaFormat:
    media_format = MediaFormat(
        encoding=_string(body, "encoding", "start.mediaFormat."),
        sample_rate=_number(body, "sampleRate", "start.mediaFormat."),
        channels=_number(body, "channels", "start.mediaFormat."),
    )
    if (media_format.encoding, media_format.sample_rate, media_format.channels) != (
        EXPECTED_ENCODING,
        EXPECTED_SAMPLE_RATE,
        EXPECTED_CHANNELS,
    ):
        raise _Rejected(
            "bad_media_format",
            f"start.mediaFormat is {media_format.encoding} {media_format.sample_rate} Hz "
            f"x{media_format.channels}, not {EXPECTED_ENCODING} "
            f"{EXPECTED_SAMPLE_RATE} Hz x{EXPECTED_CHANNELS}",
        )
    return media_format


def _object(parent: dict[str, Any], key: str, path: str) -> dict[str, Any]:
    value = parent.get(key)
    if type(value) is not dict:
        raise _Rejected(*_absent_or_wrong(value, path + key, "an object"))
    return value


def _string(parent: dict[str, Any], key: str, path: str) -> str:
    value = parent.get(key)
    if type(value) is not str:
        raise _Rejected(*_absent_or_wrong(value, path + key, "a string"))
    return value


#: Twilio's SIDs are two letters and 32 hex digits; anything beyond letters and digits, or
#: longer than this, is not one (and would be carried into every log line of the call).
_SID = re.compile(r"[A-Za-z0-9]{1,64}")


def _sid(parent: dict[str, Any], key: str, path: str) -> str:
    value = _string(parent, key, path)
    if _SID.fullmatch(value) is None:
        raise _Rejected("bad_field", f"{path}{key} {_shown(value)} is not a SID")
    return value


def _number(parent: dict[str, Any], key: str, path: str) -> int:
    """A non-negative integer; Twilio sends most numbers as decimal strings."""
    value = parent.get(key)
    if type(value) is int and value >= 0:
        return value
    if (
        type(value) is str
        and 0 < len(value) <= _MAX_NUMBER_DIGITS
        and value.isascii()
        and value.isdigit()
    ):
        return int(value)
    raise _Rejected(*_absent_or_wrong(value, path + key, "a non-negative integer"))


def _absent_or_wrong(value: object, field: str, expected: str) -> tuple[str, str]:
    if value is None:
        return "missing_field", f"missing {field}"
    return "bad_field", f"{field} is {_shown(value)}, not {expected}"


def _shown(value: object) -> str:
    """A value short enough for a log line: garbage can be 64 KiB long."""
    # Containers are named, not printed: repr of JSON nested nearly as deep as the
    # recursion limit allowed json.loads to go would itself raise RecursionError.
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str) and len(value) > _DETAIL_VALUE_CHARS:
        value = value[:_DETAIL_VALUE_CHARS]
    text = repr(value)
    if len(text) > _DETAIL_VALUE_CHARS:
        return text[:_DETAIL_VALUE_CHARS] + "…"
    return text


# --- Outbound frames -----------------------------------------------------------------


def _json_string(value: str) -> str:
    # Twilio's SIDs are ASCII letters and digits, which need no escaping; the fast path
    # skips json.dumps on the 50-per-second media frames.
    if value.isascii() and value.isalnum():
        return f'"{value}"'
    return json.dumps(value)


def media(stream_sid: str, payload: bytes) -> str:
    """A ``media`` frame carrying raw μ-law 8 kHz audio to the caller."""
    encoded = binascii.b2a_base64(payload, newline=False).decode("ascii")
    return (
        f'{{"event":"media","streamSid":{_json_string(stream_sid)},'
        f'"media":{{"payload":"{encoded}"}}}}'
    )


def mark(stream_sid: str, name: str) -> str:
    """A ``mark`` frame: Twilio echoes it back once the audio sent before it has played."""
    return (
        f'{{"event":"mark","streamSid":{_json_string(stream_sid)},'
        f'"mark":{{"name":{json.dumps(name)}}}}}'
    )


def clear(stream_sid: str) -> str:
    """A ``clear`` frame: Twilio drops the audio it has buffered and returns pending marks."""
    return f'{{"event":"clear","streamSid":{_json_string(stream_sid)}}}'
