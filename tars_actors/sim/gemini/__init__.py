"""A local stand-in for Gemini Live and the text API, spoken to by the real google-genai client.

One aiohttp server on 127.0.0.1 over TLS serves both the Live WebSocket
(``/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent``) and
``POST /{version}/models/{model}:generateContent``. Each accepted connection is a
:class:`LiveConnection`: it records what the client sent and can be scripted (echo, audio,
transcriptions, tool calls, ``interrupted``, ``goAway``, resumption handles, closes) from any
thread. Client setup::

    client = genai.Client(api_key="test-key", http_options=model.http_options())

``_messages`` holds the wire format, ``_script`` the scripted behaviour, ``_connection`` one
Live connection (``_outbox`` its writer, ``_echo`` its echo resampler), ``_text_api`` the text
API and ``_stand_in`` the server that ties them.
"""

from __future__ import annotations

from tars_actors.sim.gemini._connection import LiveConnection
from tars_actors.sim.gemini._messages import (
    MODEL_AUDIO_MIME,
    MODEL_AUDIO_RATE,
    ClientContent,
    ToolResponse,
)
from tars_actors.sim.gemini._script import DEFAULT_REPLY, LiveBehaviour, ScriptedReply, tone
from tars_actors.sim.gemini._stand_in import QUOTA_EXCEEDED, GeminiLiveStandIn
from tars_actors.sim.gemini._text_api import TextReply, TextRequest

__all__ = [
    "DEFAULT_REPLY",
    "MODEL_AUDIO_MIME",
    "MODEL_AUDIO_RATE",
    "QUOTA_EXCEEDED",
    "ClientContent",
    "GeminiLiveStandIn",
    "LiveBehaviour",
    "LiveConnection",
    "ScriptedReply",
    "TextReply",
    "TextRequest",
    "ToolResponse",
    "tone",
]
