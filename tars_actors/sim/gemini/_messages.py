"""The Live and text API wire format as the stand-in reads and writes it.

Pure helpers: the SDK's JSON shapes (snake_case and camelCase), base64 audio, the model audio
frame, and the records of what a client sent.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import WSMessage, WSMsgType, web

__all__ = [
    "LIVE_SERVICE_PREFIX",
    "LIVE_SERVICE_SUFFIX",
    "MODEL_AUDIO_MIME",
    "MODEL_AUDIO_RATE",
    "ClientContent",
    "ToolResponse",
    "api_key_of",
    "audio_frame",
    "client_content_of",
    "decode_base64",
    "pick",
    "rate_of",
    "setup_of",
    "texts_of",
    "tool_responses_of",
]

MODEL_AUDIO_RATE = 24_000
MODEL_AUDIO_MIME = f"audio/pcm;rate={MODEL_AUDIO_RATE}"
LIVE_SERVICE_PREFIX = "google.ai.generativelanguage."
LIVE_SERVICE_SUFFIX = ".GenerativeService.BidiGenerateContent"


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientContent:
    """A ``client_content`` message: the text parts of its turns and whether it ends the turn."""

    text: str
    roles: tuple[str, ...]
    turn_complete: bool
    at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResponse:
    """One function response from a ``tool_response`` message."""

    id: str | None
    name: str | None
    response: Mapping[str, Any]
    at: float


def pick(message: Mapping[str, Any], snake: str, camel: str) -> Any:
    """The SDK sends snake_case at the top and camelCase inside; accept either everywhere."""
    value = message.get(snake)
    return message.get(camel) if value is None else value


def decode_base64(data: str) -> bytes:
    # The SDK encodes with the URL-safe alphabet; others use the standard one.
    text = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def rate_of(mime_type: str) -> int:
    for parameter in mime_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name == "rate" and value.isdigit():
            return int(value)
    return 16_000


def texts_of(content: Any) -> list[str]:
    if not isinstance(content, Mapping):
        return []
    parts = content.get("parts") or []
    return [part["text"] for part in parts if isinstance(part, Mapping) and "text" in part]


def audio_frame(pcm: bytes) -> str:
    # The hot path of echo mode: formatted directly instead of through json.dumps.
    data = base64.b64encode(pcm).decode("ascii")
    return (
        '{"serverContent":{"modelTurn":{"parts":[{"inlineData":'
        f'{{"mimeType":"{MODEL_AUDIO_MIME}","data":"{data}"}}}}]}}}}}}'
    )


def setup_of(message: WSMessage) -> Mapping[str, Any] | None:
    """The ``setup`` object of a Live connection's first message, or None if it has none."""
    if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        return None
    try:
        parsed = json.loads(message.data)
    except ValueError:
        return None
    setup = parsed.get("setup") if isinstance(parsed, dict) else None
    return setup if isinstance(setup, Mapping) else None


def api_key_of(request: web.Request) -> str | None:
    """The API key the SDK sends: a header, or the ``key`` query parameter."""
    return request.headers.get("x-goog-api-key") or request.query.get("key")


def client_content_of(content: Mapping[str, Any], *, at: float) -> ClientContent:
    """A ``client_content`` message's turns: their texts, roles and whether the turn ends."""
    texts: list[str] = []
    roles: list[str] = []
    for turn in content.get("turns") or []:
        texts.extend(texts_of(turn))
        if isinstance(turn, Mapping) and turn.get("role"):
            roles.append(str(turn["role"]))
    return ClientContent(
        text="\n".join(texts),
        roles=tuple(roles),
        turn_complete=bool(pick(content, "turn_complete", "turnComplete")),
        at=at,
    )


def tool_responses_of(tool_response: Mapping[str, Any], *, at: float) -> list[ToolResponse]:
    """The function responses of a ``tool_response`` message (entries that are not objects skip)."""
    responses = pick(tool_response, "function_responses", "functionResponses") or []
    return [
        ToolResponse(
            id=item.get("id"),
            name=item.get("name"),
            response=item.get("response") or {},
            at=at,
        )
        for item in responses
        if isinstance(item, Mapping)
    ]
