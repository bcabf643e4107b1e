"""Caller audio written and server messages parsed beside google-genai's Live session.

The SDK's ``send_realtime_input`` builds a pydantic model, converts it and serialises it
for every 20 ms of caller audio, and its ``receive()`` parses every server message into a
``LiveServerMessage`` in a task of its own. The bypass writes the audio frame itself
(:func:`~tars_actors.model.wire.realtime_audio_message`) on the session's WebSocket,
hands plain model audio over without building a model, and parses every other message
exactly as the SDK's receive does.

What it reaches for in google-genai: ``AsyncSession._ws`` and ``._api_client.vertexai``,
``_live_converters._LiveServerMessage_from_mldev`` and ``_from_vertex``, and
``LiveServerMessage._from_response``. :data:`SWITCH` decides once, at the first connection
(the daemon decides when it starts): off when ``TARS_NO_FAST_PATHS`` names
``genai_bypass`` (see :mod:`tars_actors.net.fast_paths`), or when its self-test finds a
name missing, or a session over a recorded socket that parses known messages, or sends
caller audio, unlike the SDK's public ``receive()`` and ``send_realtime_input()``. Off,
the connection uses those public calls.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from typing import Any, Final, NoReturn

import websockets
from google.genai import errors, types
from google.genai.live import AsyncSession
from websockets.asyncio.connection import Connection

from tars_actors.model.wire import INPUT_AUDIO_MIME, realtime_audio_message
from tars_actors.net.fast_paths import FastPathSwitch

__all__ = ["SWITCH", "parse", "raise_api_error", "socket_of"]

_Converter = Callable[[Any], dict[str, Any]]


def _converters() -> tuple[_Converter, _Converter] | None:
    """The SDK's server-message converters (mldev, vertex), if this SDK has them."""
    try:
        from google.genai import _live_converters as live_converters
    except ImportError:
        return None
    mldev = getattr(live_converters, "_LiveServerMessage_from_mldev", None)
    vertex = getattr(live_converters, "_LiveServerMessage_from_vertex", None)
    return (mldev, vertex) if callable(mldev) and callable(vertex) else None


_CONVERTERS: tuple[_Converter, _Converter] | None = None


def socket_of(session: AsyncSession) -> Connection | None:
    """The session's WebSocket: None off the bypass (or for an SDK that keeps none)."""
    if not SWITCH.on:
        return None
    ws = session._ws
    return ws if isinstance(ws, Connection) else None


def parse(session: AsyncSession, message: dict[str, Any]) -> types.LiveServerMessage:
    """A server message other than plain audio, parsed exactly as the SDK's receive() does.

    Only on the bypass (:data:`SWITCH` on), whose self-test found the names used here.
    """
    converters = _CONVERTERS
    assert converters is not None
    converted = converters[1 if session._api_client.vertexai else 0](message)
    if not converted and message:
        errors.APIError.raise_error(int(message.get("code") or 0), message, None)
    return types.LiveServerMessage._from_response(
        response=converted, kwargs=types.LiveServerMessage().model_dump()
    )


def raise_api_error(error: websockets.ConnectionClosed) -> NoReturn:
    """A close raised as google-genai raises it (APIError), with its code and reason."""
    code = error.rcvd.code if error.rcvd is not None else 1006
    reason = error.rcvd.reason if error.rcvd is not None else "Abnormal closure."
    errors.APIError.raise_error(code, reason, None)
    raise error  # raise_error always raises; this keeps the type checker informed


# --- the start-up check ------------------------------------------------------------------

#: Server messages as the API sends them; receive() ends its iteration at turnComplete.
_KNOWN_MESSAGES: Final = (
    {
        "serverContent": {
            "modelTurn": {
                "parts": [{"inlineData": {"data": "AAECAw==", "mimeType": "audio/pcm;rate=24000"}}]
            }
        }
    },
    {"serverContent": {"inputTranscription": {"text": "hello"}}},
    {"toolCall": {"functionCalls": [{"id": "c1", "name": "end_call", "args": {"a": 1}}]}},
    {"sessionResumptionUpdate": {"newHandle": "h1", "resumable": True}},
    {"goAway": {"timeLeft": "1.5s"}},
    {"serverContent": {"interrupted": True}},
    {"serverContent": {"turnComplete": True}},
)
_TRIAL_PCM: Final = bytes(range(256)) * 4


class _RecordedSocket:
    """A WebSocket stand-in: replays ``incoming`` to recv() and records send()."""

    def __init__(self, incoming: list[bytes]) -> None:
        self.incoming = incoming
        self.sent: list[str | bytes] = []

    async def recv(self, decode: bool | None = None) -> bytes:
        return self.incoming.pop(0)

    async def send(self, message: str | bytes) -> None:
        self.sent.append(message)


class _ApiClient:
    vertexai = False


async def _trial() -> str | None:
    raw = [json.dumps(message).encode() for message in _KNOWN_MESSAGES]
    recorded = _RecordedSocket(list(raw))
    ws: Any = recorded
    api_client: Any = _ApiClient()
    session = AsyncSession(api_client=api_client, websocket=ws)
    if getattr(session, "_ws", None) is not ws:
        return "AsyncSession keeps its WebSocket elsewhere than _ws"
    if getattr(getattr(session, "_api_client", None), "vertexai", None) is not False:
        return "AsyncSession keeps its client elsewhere than _api_client"
    if not callable(getattr(types.LiveServerMessage, "_from_response", None)):
        return "LiveServerMessage has no _from_response"
    public = [message async for message in session.receive()]
    ours = [parse(session, json.loads(message)) for message in raw]
    if ours != public:
        return "messages parsed beside the SDK differ from its receive()"
    await session.send_realtime_input(audio=types.Blob(data=_TRIAL_PCM, mime_type=INPUT_AUDIO_MIME))
    sent = recorded.sent[-1] if recorded.sent else None
    if sent is None or json.loads(sent) != json.loads(realtime_audio_message(_TRIAL_PCM)):
        return "the audio frame written beside the SDK differs from send_realtime_input()'s"
    return None


def _self_test() -> str | None:
    global _CONVERTERS  # noqa: PLW0603 (decided once: the converters parse() then calls)
    _CONVERTERS = _converters()
    if _CONVERTERS is None:
        return "google.genai._live_converters has no _LiveServerMessage_from_mldev/_vertex"
    outcome: list[str | None] = []

    def run() -> None:
        # A loop of its own, on a thread of its own: the first connection may ask from
        # the running loop.
        try:
            outcome.append(asyncio.run(_trial()))
        except Exception as error:  # noqa: BLE001 (the reason the public calls are used)
            outcome.append(f"self-test failed: {type(error).__name__}: {error}")

    thread = threading.Thread(target=run, name="genai-bypass-self-test", daemon=True)
    thread.start()
    thread.join(10.0)
    return outcome[0] if outcome else "self-test did not finish"


SWITCH: Final = FastPathSwitch("genai_bypass", _self_test)
