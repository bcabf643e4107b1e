"""The Media Streams codec: PROTOCOLS.md's samples, every rejection, exact outbound frames."""

from __future__ import annotations

import base64
import json
import random
from typing import Any

import pytest

from tars_actors.telephony.stream_codec import (
    MAX_FRAME_SIZE,
    Connected,
    Dtmf,
    FrameRejected,
    Mark,
    Media,
    MediaFormat,
    MediaStreamDecoder,
    Start,
    Stop,
    clear,
    mark,
    media,
)

SID = "MZ18ad3ab5a668481ce02b83e7395059f0"
AUDIO = bytes(range(256))[:160]
PAYLOAD = base64.b64encode(AUDIO).decode()

# The samples of PROTOCOLS.md, with its placeholders filled in.
CONNECTED = '{"event":"connected","protocol":"Call","version":"1.0.0"}'
START = (
    '{"event":"start","sequenceNumber":"1","streamSid":"' + SID + '","start":'
    '{"accountSid":"AC123","streamSid":"' + SID + '","callSid":"CA456",'
    '"tracks":["inbound"],"customParameters":{"from":"+15550001111"},'
    '"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}'
)
MEDIA = (
    '{"event":"media","sequenceNumber":"3","streamSid":"' + SID + '","media":'
    '{"track":"inbound","chunk":"1","timestamp":"5","payload":"' + PAYLOAD + '"}}'
)
DTMF = (
    '{"event":"dtmf","sequenceNumber":"5","streamSid":"' + SID + '",'
    '"dtmf":{"track":"inbound_track","digit":"1"}}'
)
MARK = '{"event":"mark","sequenceNumber":"4","streamSid":"' + SID + '","mark":{"name":"turn-7"}}'
STOP = (
    '{"event":"stop","sequenceNumber":"9","streamSid":"' + SID + '",'
    '"stop":{"accountSid":"AC123","callSid":"CA456"}}'
)


def started() -> MediaStreamDecoder:
    decoder = MediaStreamDecoder()
    assert isinstance(decoder.decode(CONNECTED), Connected)
    assert isinstance(decoder.decode(START), Start)
    return decoder


def edited(frame: str, path: tuple[str, ...], value: Any = ..., *, delete: bool = False) -> str:
    """``frame`` with the field at ``path`` replaced, or deleted."""
    message = json.loads(frame)
    parent = message
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return json.dumps(message)


def rejected(decoder: MediaStreamDecoder, frame: str | bytes) -> FrameRejected:
    result = decoder.decode(frame)
    assert isinstance(result, FrameRejected), result
    return result


# --- Good frames ---------------------------------------------------------------------


def test_decodes_every_sample_frame_of_a_stream() -> None:
    decoder = MediaStreamDecoder()
    assert decoder.decode(CONNECTED) == Connected(protocol="Call", version="1.0.0")
    start = decoder.decode(START)
    assert start == Start(
        sequence_number=1,
        stream_sid=SID,
        call_sid="CA456",
        account_sid="AC123",
        tracks=("inbound",),
        custom_parameters={"from": "+15550001111"},
        media_format=MediaFormat(encoding="audio/x-mulaw", sample_rate=8000, channels=1),
    )
    assert decoder.stream_sid == SID
    assert decoder.start is start
    assert decoder.decode(MEDIA) == Media(
        sequence_number=3, track="inbound", chunk=1, timestamp=5, payload=AUDIO
    )
    assert decoder.decode(DTMF) == Dtmf(sequence_number=5, track="inbound_track", digit="1")
    assert decoder.decode(MARK) == Mark(sequence_number=4, name="turn-7")
    assert decoder.decode(STOP) == Stop(sequence_number=9, call_sid="CA456", account_sid="AC123")
    assert decoder.stopped
    assert decoder.rejections == {}
    assert decoder.rejected_total == 0


def test_start_custom_parameters_cannot_be_changed() -> None:
    start = MediaStreamDecoder().decode(START)
    assert isinstance(start, Start)
    with pytest.raises(TypeError):
        start.custom_parameters["from"] = "+1999"  # type: ignore[index]


def test_numbers_may_arrive_as_json_numbers_too() -> None:
    decoder = started()
    frame = edited(edited(MEDIA, ("media", "chunk"), 7), ("sequenceNumber",), 8)
    result = decoder.decode(frame)
    assert isinstance(result, Media)
    assert (result.chunk, result.sequence_number) == (7, 8)


def test_unknown_extra_keys_from_twilio_are_ignored() -> None:
    decoder = started()
    result = decoder.decode(edited(MEDIA, ("media", "future"), {"x": 1}))
    assert isinstance(result, Media)


def test_stop_without_account_sid_is_accepted() -> None:
    decoder = started()
    result = decoder.decode(edited(STOP, ("stop", "accountSid"), delete=True))
    assert result == Stop(sequence_number=9, call_sid="CA456", account_sid=None)


def test_empty_media_payload_is_empty_audio() -> None:
    result = started().decode(edited(MEDIA, ("media", "payload"), ""))
    assert isinstance(result, Media)
    assert result.payload == b""


# --- Rejections ----------------------------------------------------------------------

REJECTIONS_AFTER_START: list[tuple[str, str | bytes, str, str]] = [
    ("binary frame", MEDIA.encode(), "binary_frame", "binary"),
    ("oversize", MEDIA[:-2] + " " * MAX_FRAME_SIZE + "}}", "oversize", "exceeds"),
    ("bad json", MEDIA[:-1], "bad_json", "not JSON"),
    ("json array", "[1, 2]", "bad_json", "list"),
    ("deep nesting", "[" * 60000, "bad_json", "recursion"),
    ("huge integer", '{"event": ' + "9" * 5000 + "}", "bad_json", "digits"),
    ("no event", edited(MEDIA, ("event",), delete=True), "missing_field", "event"),
    ("unknown event", edited(MEDIA, ("event",), "dance"), "unknown_event", "'dance'"),
    ("event not a string", edited(MEDIA, ("event",), 3), "unknown_event", "3"),
    ("no streamSid", edited(MEDIA, ("streamSid",), delete=True), "missing_field", "streamSid"),
    ("other stream", edited(MEDIA, ("streamSid",), "MZother"), "wrong_stream_sid", "MZother"),
    ("no media", edited(MEDIA, ("media",), delete=True), "missing_field", "media"),
    ("media not object", edited(MEDIA, ("media",), "x"), "bad_field", "media"),
    ("no payload", edited(MEDIA, ("media", "payload"), delete=True), "missing_field", "payload"),
    ("payload number", edited(MEDIA, ("media", "payload"), 5), "bad_field", "media.payload"),
    ("payload alphabet", edited(MEDIA, ("media", "payload"), "ab$d"), "bad_base64", "payload"),
    ("payload padding", edited(MEDIA, ("media", "payload"), "abc"), "bad_base64", "payload"),
    ("payload unicode", edited(MEDIA, ("media", "payload"), "ab\u00e9d"), "bad_base64", "payload"),
    ("no chunk", edited(MEDIA, ("media", "chunk"), delete=True), "missing_field", "media.chunk"),
    ("chunk text", edited(MEDIA, ("media", "chunk"), "one"), "bad_field", "media.chunk"),
    ("chunk negative", edited(MEDIA, ("media", "chunk"), -1), "bad_field", "media.chunk"),
    ("chunk float", edited(MEDIA, ("media", "chunk"), 1.5), "bad_field", "media.chunk"),
    ("chunk bool", edited(MEDIA, ("media", "chunk"), True), "bad_field", "media.chunk"),
    ("chunk unicode digit", edited(MEDIA, ("media", "chunk"), "\u00b2"), "bad_field", "chunk"),
    ("timestamp long", edited(MEDIA, ("media", "timestamp"), "9" * 30), "bad_field", "timestamp"),
    ("no track", edited(MEDIA, ("media", "track"), delete=True), "missing_field", "media.track"),
    ("no sequence", edited(MEDIA, ("sequenceNumber",), delete=True), "missing_field", "sequence"),
    ("no mark name", edited(MARK, ("mark", "name"), delete=True), "missing_field", "mark.name"),
    ("mark name list", edited(MARK, ("mark", "name"), ["a"]), "bad_field", "mark.name"),
    ("no digit", edited(DTMF, ("dtmf", "digit"), delete=True), "missing_field", "dtmf.digit"),
    ("bad digit", edited(DTMF, ("dtmf", "digit"), "x"), "bad_field", "dtmf.digit"),
    ("no call sid", edited(STOP, ("stop", "callSid"), delete=True), "missing_field", "callSid"),
    ("account sid int", edited(STOP, ("stop", "accountSid"), 1), "bad_field", "accountSid"),
    ("second start", START, "duplicate_start", "start"),
    ("connected field", edited(CONNECTED, ("version",), 1), "bad_field", "version"),
]


@pytest.mark.parametrize(
    ("frame", "reason", "detail"),
    [case[1:] for case in REJECTIONS_AFTER_START],
    ids=[case[0] for case in REJECTIONS_AFTER_START],
)
def test_rejects_malformed_frame_and_keeps_going(
    frame: str | bytes, reason: str, detail: str
) -> None:
    decoder = started()
    result = rejected(decoder, frame)
    assert result.reason == reason
    assert detail.lower() in result.detail.lower()
    assert len(result.detail) < 300
    assert decoder.rejections == {reason: 1}
    # The stream is unharmed: the next good frame decodes.
    assert isinstance(decoder.decode(MEDIA), Media)


REJECTED_STARTS: list[tuple[str, str, str, str]] = [
    ("no start body", edited(START, ("start",), delete=True), "missing_field", "start"),
    ("no callSid", edited(START, ("start", "callSid"), delete=True), "missing_field", "callSid"),
    ("no accountSid", edited(START, ("start", "accountSid"), delete=True), "missing_field", "acc"),
    ("no inner sid", edited(START, ("start", "streamSid"), delete=True), "missing_field", "stream"),
    ("sids differ", edited(START, ("streamSid",), "MZx"), "wrong_stream_sid", "MZx"),
    # A SID is letters and digits, at most 64: anything else would ride in every log line.
    (
        "long callSid",
        edited(START, ("start", "callSid"), "CA" + "f" * 60_000),
        "bad_field",
        "callS",
    ),
    ("callSid text", edited(START, ("start", "callSid"), "CA1\n[x]"), "bad_field", "callSid"),
    ("accountSid text", edited(START, ("start", "accountSid"), "AC 1"), "bad_field", "account"),
    ("tracks string", edited(START, ("start", "tracks"), "inbound"), "bad_field", "tracks"),
    ("tracks of ints", edited(START, ("start", "tracks"), [1]), "bad_field", "tracks"),
    ("no tracks", edited(START, ("start", "tracks"), delete=True), "missing_field", "tracks"),
    ("params list", edited(START, ("start", "customParameters"), []), "bad_field", "custom"),
    ("param number", edited(START, ("start", "customParameters", "n"), 1), "bad_field", "custom"),
    ("no format", edited(START, ("start", "mediaFormat"), delete=True), "missing_field", "media"),
    (
        "pcm format",
        edited(START, ("start", "mediaFormat", "encoding"), "audio/l16"),
        "bad_media_format",
        "audio/l16",
    ),
    (
        "16 kHz",
        edited(START, ("start", "mediaFormat", "sampleRate"), 16000),
        "bad_media_format",
        "16000",
    ),
    ("stereo", edited(START, ("start", "mediaFormat", "channels"), 2), "bad_media_format", "x2"),
    (
        "rate text",
        edited(START, ("start", "mediaFormat", "sampleRate"), "fast"),
        "bad_field",
        "sampleRate",
    ),
]


@pytest.mark.parametrize(
    ("frame", "reason", "detail"),
    [case[1:] for case in REJECTED_STARTS],
    ids=[case[0] for case in REJECTED_STARTS],
)
def test_rejects_malformed_start_and_stays_unstarted(frame: str, reason: str, detail: str) -> None:
    decoder = MediaStreamDecoder()
    result = rejected(decoder, frame)
    assert (result.reason, detail.lower() in result.detail.lower()) == (reason, True)
    assert decoder.stream_sid is None
    assert rejected(decoder, MEDIA).reason == "before_start"
    assert isinstance(decoder.decode(START), Start)


def test_start_accepts_numbers_as_strings_in_media_format() -> None:
    frame = edited(START, ("start", "mediaFormat", "sampleRate"), "8000")
    result = MediaStreamDecoder().decode(frame)
    assert isinstance(result, Start)
    assert result.media_format.sample_rate == 8000


@pytest.mark.parametrize("frame", [MEDIA, DTMF, MARK, STOP])
def test_stream_frames_before_start_are_rejected(frame: str) -> None:
    decoder = MediaStreamDecoder()
    decoder.decode(CONNECTED)
    result = rejected(decoder, frame)
    assert result.reason == "before_start"
    assert json.loads(frame)["event"] in result.detail


def test_frames_after_stop_are_rejected() -> None:
    decoder = started()
    decoder.decode(STOP)
    assert rejected(decoder, MEDIA).reason == "after_stop"
    assert rejected(decoder, STOP).reason == "after_stop"


def test_rejections_are_counted_by_reason() -> None:
    decoder = started()
    frames: list[str | bytes] = [b"x", b"y", "nope", edited(MEDIA, ("streamSid",), "MZ1")]
    for frame in frames:
        decoder.decode(frame)
    decoder.decode(MEDIA)
    assert decoder.rejections == {"binary_frame": 2, "bad_json": 1, "wrong_stream_sid": 1}
    assert decoder.rejected_total == 4
    decoder.rejections["bad_json"] = 99  # a copy: the decoder's counts are its own
    assert decoder.rejections["bad_json"] == 1


def test_frame_at_the_size_limit_is_parsed() -> None:
    padding = MAX_FRAME_SIZE - len(MEDIA)
    frame = MEDIA[:-2] + " " * padding + "}}"
    assert len(frame) == MAX_FRAME_SIZE
    assert isinstance(started().decode(frame), Media)


def test_rejection_detail_stays_short_for_huge_values() -> None:
    decoder = started()
    result = rejected(decoder, edited(MEDIA, ("streamSid",), "M" * 50000))
    assert result.reason == "wrong_stream_sid"
    assert len(result.detail) < 200


def garbage_frames(rng: random.Random, count: int) -> list[str | bytes]:
    good = [CONNECTED, START, MEDIA, DTMF, MARK, STOP]
    values: list[Any] = [None, True, 0, -1, 1.5, "", "x", "12", [], {}, [1], {"a": None}, "\u00e9"]
    frames: list[str | bytes] = []
    for _ in range(count):
        kind = rng.randrange(6)
        if kind == 0:
            frames.append(bytes(rng.randrange(256) for _ in range(rng.randrange(40))))
        elif kind == 1:
            text = "".join(chr(rng.randrange(0x20, 0x3000)) for _ in range(rng.randrange(40)))
            frames.append(text)
        elif kind == 2:
            frame = rng.choice(good)
            cut = rng.randrange(len(frame))
            frames.append(frame[:cut] + rng.choice(['"', "{", "}", ",", "]", ":"]) + frame[cut:])
        else:
            message = json.loads(rng.choice(good))
            for _ in range(rng.randrange(1, 4)):
                node = message
                while node:
                    key = rng.choice(list(node))
                    if isinstance(node[key], dict) and node[key] and rng.random() < 0.6:
                        node = node[key]
                        continue
                    if rng.random() < 0.3:
                        del node[key]
                    else:
                        node[key] = rng.choice(values)
                    break
            frames.append(json.dumps(message))
    return frames


def test_random_garbage_only_ever_yields_events_or_rejections() -> None:
    rng = random.Random(20240607)
    reasons: set[str] = set()
    for attempt in range(40):
        decoder = MediaStreamDecoder()
        if attempt % 2:
            decoder.decode(START)
        for frame in garbage_frames(rng, 100):
            result = decoder.decode(frame)
            assert isinstance(
                result, Connected | Start | Media | Dtmf | Mark | Stop | FrameRejected
            )
            if isinstance(result, FrameRejected):
                reasons.add(result.reason)
                assert result.detail
    # The garbage really exercised the rejection paths.
    assert {"binary_frame", "bad_json", "missing_field", "bad_field"} <= reasons


# --- Twilio's own layout, read without the general decoder ---------------------------


def test_media_payload_reads_twilios_layout_as_decode_does() -> None:
    decoder = started()
    assert decoder.media_payload(MEDIA) == AUDIO
    event = decoder.decode(MEDIA)
    assert isinstance(event, Media)
    assert event.payload == AUDIO
    empty = MEDIA.replace(PAYLOAD, "")
    assert decoder.media_payload(empty) == b""


@pytest.mark.parametrize(
    "frame",
    [
        json.dumps(json.loads(MEDIA)),  # spaces after the separators
        edited(MEDIA, ("sequenceNumber",), 3).replace(" ", ""),  # a JSON number
        MEDIA.replace('"chunk":"1"', '"chunk":"\\u0031"'),  # an escape
        MEDIA.replace('"timestamp":"5"', '"timestamp":"\u0665"'),  # an Arabic-Indic five
        MEDIA.replace(PAYLOAD, PAYLOAD[:-1]),  # base64 cut short
        MEDIA.replace(PAYLOAD + '"', ""),  # no payload, not even its closing quote
        MEDIA.replace(PAYLOAD, PAYLOAD[:100] + '"}},"more":"' + PAYLOAD[100:]),
        MEDIA.replace(PAYLOAD, PAYLOAD.replace("A", "-", 1)),  # the URL-safe alphabet
        MEDIA.replace(SID, "MZ" + "0" * 32),  # another stream's
        MEDIA.replace('"track":"inbound",', ""),
        MEDIA.replace("media", "stop", 1),
        MEDIA.encode(),
        MEDIA[:-2] + " " * (MAX_FRAME_SIZE - len(MEDIA)) + "}}",
        DTMF,
        MARK,
        STOP,
    ],
)
def test_media_payload_leaves_anything_else_to_decode(frame: str | bytes) -> None:
    assert started().media_payload(frame) is None


def test_media_payload_needs_a_started_stream_that_has_not_stopped() -> None:
    decoder = MediaStreamDecoder()
    assert decoder.media_payload(MEDIA) is None
    decoder.decode(START)
    assert decoder.media_payload(MEDIA) == AUDIO
    decoder.decode(STOP)
    assert decoder.media_payload(MEDIA) is None


def test_media_payload_never_accepts_what_decode_reads_otherwise() -> None:
    # Every one-character deletion, insertion and substitution of a media frame: where
    # the shortcut gives audio, the decoder gives the same audio.
    decoder = started()
    alphabet = ['"', "\\", "{", "}", ":", ",", " ", "0", "9", "a", "Z", "+", "/", "=", "\u0663"]
    frames = [MEDIA[:i] + MEDIA[i + 1 :] for i in range(len(MEDIA))]
    for i in range(len(MEDIA) + 1):
        frames += [MEDIA[:i] + c + MEDIA[i:] for c in alphabet]
        frames += [MEDIA[:i] + c + MEDIA[i + 1 :] for c in alphabet]
    taken = 0
    for frame in frames:
        audio = decoder.media_payload(frame)
        if audio is not None:
            taken += 1
            event = decoder.decode(frame)
            assert isinstance(event, Media), (frame, event)
            assert event.payload == audio, frame
    # Both ways were exercised: digits in numbers and base64 in the payload pass.
    assert 100 < taken < len(frames) // 2


# --- Outbound frames -----------------------------------------------------------------


def test_media_frame_has_exactly_twilios_keys() -> None:
    frame = media(SID, AUDIO)
    assert json.loads(frame) == {"event": "media", "streamSid": SID, "media": {"payload": PAYLOAD}}
    assert " " not in frame
    assert base64.b64decode(json.loads(frame)["media"]["payload"]) == AUDIO


def test_mark_frame_has_exactly_twilios_keys() -> None:
    frame = mark(SID, "turn-7")
    assert frame == '{"event":"mark","streamSid":"' + SID + '","mark":{"name":"turn-7"}}'


def test_clear_frame_has_exactly_twilios_keys() -> None:
    assert clear(SID) == '{"event":"clear","streamSid":"' + SID + '"}'


def test_outbound_text_is_escaped_into_valid_json() -> None:
    name = 'turn "7"\\\n\u00e9'
    assert json.loads(mark(SID, name))["mark"]["name"] == name
    odd_sid = 'MZ"x'
    assert json.loads(clear(odd_sid))["streamSid"] == odd_sid
    assert json.loads(media(odd_sid, b""))["streamSid"] == odd_sid


def test_outbound_frames_round_trip_through_the_softphone_view() -> None:
    # What Twilio parses from our media frame is what we meant to send.
    for size in (0, 1, 2, 3, 160, 4000):
        payload = bytes(range(256)) * (size // 256 + 1)
        frame = json.loads(media(SID, payload[:size]))
        assert base64.b64decode(frame["media"]["payload"], validate=True) == payload[:size]
