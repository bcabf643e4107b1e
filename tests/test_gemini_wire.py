"""The audio hot path writes and reads exactly what google-genai itself would."""

from __future__ import annotations

import base64
import json
from typing import Any

from google.genai import _common, types
from google.genai import _live_converters as live_converters

from tars_actors.actor_messages import ModelAudio, TurnComplete
from tars_actors.model.wire import INPUT_AUDIO_MIME, audio_only, realtime_audio_message, translate

PCM = bytes(range(256)) * 3  # every byte value, so both base64 alphabets differ


def sdk_realtime_audio(pcm: bytes) -> dict[str, object]:
    """What AsyncSession.send_realtime_input(audio=...) puts on the wire (live.py)."""
    parameters = types.LiveSendRealtimeInputParameters.model_validate(
        {"audio": types.Blob(data=pcm, mime_type=INPUT_AUDIO_MIME)}
    )
    converted = live_converters._LiveSendRealtimeInputParameters_to_mldev(from_object=parameters)
    converted = _common.encode_unserializable_types(_common.convert_to_dict(converted))
    return {"realtime_input": converted}


def sdk_parse(message: Any) -> types.LiveServerMessage:
    converted = live_converters._LiveServerMessage_from_mldev(message)
    return types.LiveServerMessage._from_response(
        response=converted, kwargs=types.LiveServerMessage().model_dump()
    )


def test_realtime_audio_message_is_byte_for_byte_what_the_sdk_sends() -> None:
    assert json.loads(realtime_audio_message(PCM)) == sdk_realtime_audio(PCM)


def test_plain_model_audio_is_read_as_the_sdk_would_read_it() -> None:
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        message = {
            "serverContent": {
                "modelTurn": {
                    "parts": [
                        {
                            "inlineData": {
                                "mimeType": "audio/pcm;rate=24000",
                                "data": encode(PCM).decode(),
                            }
                        }
                    ]
                }
            }
        }
        assert audio_only(message) == PCM
        assert translate(sdk_parse(message)) == [ModelAudio(pcm=PCM)]


def test_anything_beyond_plain_audio_is_left_to_the_sdk() -> None:
    data = base64.b64encode(PCM).decode()
    audio_part = {"inlineData": {"mimeType": "audio/pcm;rate=24000", "data": data}}
    for message in (
        {"serverContent": {"modelTurn": {"parts": [audio_part]}, "turnComplete": True}},
        {"serverContent": {"turnComplete": True}},
        {"serverContent": {"modelTurn": {"parts": [audio_part, {"text": "hi"}]}}},
        {"serverContent": {"modelTurn": {"parts": [audio_part]}}, "usageMetadata": {}},
        {"serverContent": {"modelTurn": {"parts": [{"inlineData": {"data": "%%%"}}]}}},
        {"toolCall": {"functionCalls": [{"id": "1", "name": "end_call", "args": {}}]}},
        {},
    ):
        assert audio_only(message) is None, message
    mixed = {"serverContent": {"modelTurn": {"parts": [audio_part]}, "turnComplete": True}}
    assert translate(sdk_parse(mixed)) == [ModelAudio(pcm=PCM), TurnComplete()]
