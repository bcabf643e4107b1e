"""Gemini Live without I/O: the connection config a call asks for, server messages translated
into TARS's model events, and the google-genai client built from settings.
"""

from __future__ import annotations

import base64
import binascii
import math
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from types import MappingProxyType
from typing import Any

from google import genai
from google.genai import types

from tars_actors.actor_messages import (
    FunctionCall,
    GoAway,
    InputTranscript,
    Interrupted,
    ModelAudio,
    ModelServerEvent,
    OutputTranscript,
    ResumptionHandle,
    ToolCallCancelled,
    ToolCallRequest,
    TurnComplete,
)
from tars_actors.net._ws_delivery import DirectClientConnection
from tars_actors.runtime.settings import Settings, SettingsError

__all__ = [
    "INPUT_AUDIO_MIME",
    "ModelProfile",
    "live_config",
    "make_client",
    "parse_duration",
    "translate",
]

#: What the model is sent: PCM16 LE mono at 16 kHz.
INPUT_AUDIO_MIME = "audio/pcm;rate=16000"

# google.protobuf.Duration in JSON: seconds with up to nine decimals and an "s" suffix.
_DURATION = re.compile(r"\s*(-?\d+(?:\.\d*)?|-?\.\d+)\s*s?\s*")


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelProfile:
    """What one call asks of the model: who it is, how it sounds, which tools it may call.

    ``function_declarations`` are ``types.FunctionDeclaration`` values, as the tool
    registry builds them; they are shared between threads and never modified.
    """

    model: str
    voice: str
    #: BCP-47 tag of the language the model speaks, e.g. ``en-US``.
    language: str
    system_instruction: str
    function_declarations: tuple[types.FunctionDeclaration, ...] = ()
    input_transcription: bool = True
    output_transcription: bool = True
    #: Without compression, audio-only sessions end after about 15 minutes.
    context_window_compression: bool = True


def live_config(profile: ModelProfile, *, resumption_handle: str | None) -> types.LiveConnectConfig:
    """The ``LiveConnectConfig`` for one connection of a call.

    Session resumption is always requested, so that the server issues handles; with
    ``resumption_handle`` the connection continues the session that issued it.
    """
    tools: types.ToolListUnion | None = (
        [types.Tool(function_declarations=list(profile.function_declarations))]
        if profile.function_declarations
        else None
    )
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        speech_config=types.SpeechConfig(
            voice_config=types.VoiceConfig(
                prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=profile.voice)
            ),
            language_code=profile.language,
        ),
        system_instruction=(
            types.Content(parts=[types.Part(text=profile.system_instruction)])
            if profile.system_instruction
            else None
        ),
        tools=tools,
        input_audio_transcription=(
            types.AudioTranscriptionConfig() if profile.input_transcription else None
        ),
        output_audio_transcription=(
            types.AudioTranscriptionConfig() if profile.output_transcription else None
        ),
        context_window_compression=(
            types.ContextWindowCompressionConfig(sliding_window=types.SlidingWindow())
            if profile.context_window_compression
            else None
        ),
        session_resumption=types.SessionResumptionConfig(handle=resumption_handle),
    )


def parse_duration(value: str | timedelta | float | None) -> float:
    """Seconds in a ``goAway.timeLeft``: ``"10s"``, ``"0.5s"``, a timedelta or a number.

    A missing or unreadable value counts as 0: the connection may end at any moment, so the
    caller should move to a new one at once rather than trust a guess.
    """
    match value:
        case timedelta():
            seconds = value.total_seconds()
        case bool() | None:
            return 0.0
        case int() | float():
            seconds = float(value)
        case str():
            found = _DURATION.fullmatch(value)
            if found is None:
                return 0.0
            seconds = float(found.group(1))
    if not math.isfinite(seconds):
        return 0.0
    return max(0.0, seconds)


def translate(message: types.LiveServerMessage) -> list[ModelServerEvent]:
    """The model events one server message carries, in the order they should be handled.

    Within ``serverContent``: what the caller said, then the model's audio and its
    transcription, then ``interrupted`` (which drops audio queued before it, including
    this message's), then ``turnComplete``. ``setupComplete``, usage metadata and voice
    activity signals carry nothing a call acts on and yield no events.
    """
    events: list[ModelServerEvent] = []
    content = message.server_content
    if content is not None:
        if content.input_transcription is not None and content.input_transcription.text:
            events.append(InputTranscript(text=content.input_transcription.text))
        audio = _audio_of(content.model_turn)
        if audio:
            events.append(ModelAudio(pcm=audio))
        if content.output_transcription is not None and content.output_transcription.text:
            events.append(OutputTranscript(text=content.output_transcription.text))
        if content.interrupted:
            events.append(Interrupted())
        if content.turn_complete:
            events.append(TurnComplete())
    if message.tool_call is not None and message.tool_call.function_calls:
        events.append(
            ToolCallRequest(
                calls=tuple(
                    FunctionCall(
                        call_id=call.id or "",
                        name=call.name or "",
                        # A read-only copy: the request crosses into the session's thread.
                        args=MappingProxyType(dict(call.args or {})),
                    )
                    for call in message.tool_call.function_calls
                )
            )
        )
    cancellation = message.tool_call_cancellation
    if cancellation is not None and cancellation.ids:
        events.append(ToolCallCancelled(call_ids=tuple(cancellation.ids)))
    update = message.session_resumption_update
    if update is not None and update.new_handle:
        # The server leaves the handle empty when it is not resumable; an explicit
        # ``resumable: false`` beside a handle is still honoured.
        resumable = True if update.resumable is None else bool(update.resumable)
        events.append(ResumptionHandle(handle=update.new_handle, resumable=resumable))
    if message.go_away is not None:
        # Last: everything else in the message happened on a connection that still works.
        events.append(GoAway(time_left=parse_duration(message.go_away.time_left)))
    return events


def _audio_of(turn: types.Content | None) -> bytes:
    if turn is None or not turn.parts:
        return b""
    # Parts of one message are consecutive speech: one event for all of them.
    chunks = [
        part.inline_data.data
        for part in turn.parts
        if part.inline_data is not None
        and part.inline_data.data
        and (part.inline_data.mime_type or "audio/").startswith("audio/")
    ]
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


# --- The audio hot path ------------------------------------------------------------------
#
# Audio is 50 messages a second each way for every call. Through google-genai's public
# methods each one is built and parsed as pydantic models (measured: ~33 µs per send and
# ~100 µs per receive of fixed cost). These two functions write and read exactly the JSON
# the SDK does for audio; every other message still goes through the SDK's own parsing.


def realtime_audio_message(pcm: bytes) -> str:
    """The frame ``send_realtime_input(audio=Blob(pcm, "audio/pcm;rate=16000"))`` sends."""
    data = base64.urlsafe_b64encode(pcm).decode("ascii")
    return f'{{"realtime_input":{{"audio":{{"data":"{data}","mime_type":"{INPUT_AUDIO_MIME}"}}}}}}'


def audio_only(message: Mapping[str, Any]) -> bytes | None:
    """The audio of a server message that carries nothing but model audio, else None.

    Anything else (transcriptions, turn ends, tool calls, unknown fields) returns None, so
    that the message is parsed by the SDK and translated by :func:`translate`.
    """
    content = message.get("serverContent") if len(message) == 1 else None
    if type(content) is not dict or len(content) != 1:
        return None
    turn = content.get("modelTurn")
    if type(turn) is not dict or len(turn) != 1:
        return None
    parts = turn.get("parts")
    if type(parts) is not list or not parts:
        return None
    chunks: list[bytes] = []
    for part in parts:
        blob = part.get("inlineData") if type(part) is dict and len(part) == 1 else None
        if type(blob) is not dict:
            return None
        data = blob.get("data")
        if type(data) is not str or not str(blob.get("mimeType", "audio/")).startswith("audio/"):
            return None
        audio = _base64_audio(data)
        if audio is None:
            return None
        chunks.append(audio)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _base64_audio(data: str) -> bytes | None:
    """Base64 in either alphabet (the API sends the standard one, the SDK accepts both);
    None if it is not valid base64."""
    if "-" in data or "_" in data:
        data = data.replace("-", "+").replace("_", "/")
    try:
        return binascii.a2b_base64(data, strict_mode=True)
    except (binascii.Error, ValueError):
        return None


def make_client(settings: Settings) -> genai.Client:
    """The google-genai client for ``[gemini]``: its base URL and CA file, if set, and the
    API key from ``GEMINI_API_KEY``.

    Raises :class:`~tars_actors.runtime.settings.SettingsError` naming the key when the API key is
    missing or the CA file cannot be loaded.
    """
    api_key = settings.secrets.gemini_api_key
    if not api_key:
        raise SettingsError(
            ["GEMINI_API_KEY is not set in the environment: the Gemini Live model needs it"]
        )
    gemini = settings.gemini
    # The SDK hands the keys of these that websockets' connect() takes to the Live
    # WebSocket, and leaves them out of its HTTP clients. DirectClientConnection hands
    # model audio over as it is parsed (see net/_ws_delivery). No permessage-deflate: base64
    # audio hardly compresses, and deflating it would cost CPU on every message.
    async_client_args: dict[str, object] = {
        "create_connection": DirectClientConnection,
        "compression": None,
    }
    client_args: dict[str, object] | None = None
    if gemini.ca_file:
        try:
            context = ssl.create_default_context(cafile=gemini.ca_file)
        except OSError as error:  # ssl.SSLError included: the file is not PEM
            raise SettingsError(
                [f"[gemini] ca_file: cannot load {gemini.ca_file!r} as PEM certificates: {error}"]
            ) from error
        # The SDK uses this context for the Live WebSocket and for asynchronous HTTP
        # requests alike; synchronous requests (the text model's summaries, made on a
        # worker thread) go through httpx, which takes it as ``verify``.
        async_client_args["ssl"] = context
        client_args = {"verify": context}
    options = types.HttpOptions(
        base_url=gemini.base_url or None,
        async_client_args=async_client_args,
        client_args=client_args,
    )
    # vertexai=False: GOOGLE_GENAI_USE_VERTEXAI in the environment must not reroute calls.
    return genai.Client(vertexai=False, api_key=api_key, http_options=options)
