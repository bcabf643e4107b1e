"""A local stand-in for Gemini Live and the text API, spoken to by the real google-genai client.

One aiohttp server on 127.0.0.1 over TLS serves both the Live WebSocket
(``/ws/google.ai.generativelanguage.{version}.GenerativeService.BidiGenerateContent``) and
``POST /{version}/models/{model}:generateContent``: the websockets server cannot read request
bodies, and the SDK dials both from one ``base_url``. The server runs its own event loop on a
background thread, so blocking tests and asyncio code (the demo, the load tool) drive it alike.

Each accepted connection is a :class:`LiveConnection`: it records what the client sent and can
be scripted (echo, audio, transcriptions, tool calls, ``interrupted``, ``goAway``, resumption
handles, closes) from any thread. Client setup::

    client = genai.Client(api_key="test-key", http_options=model.http_options())
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
import json
import socket
import threading
import time
from array import array
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt
from aiohttp import WSMsgType, web
from google.genai import types

from tars_actors.net.loop import LoopThread
from tars_actors.sim._waiting import Changes
from tars_actors.sim.tls import LocalCertificate

__all__ = [
    "DEFAULT_REPLY",
    "MODEL_AUDIO_MIME",
    "MODEL_AUDIO_RATE",
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

MODEL_AUDIO_RATE = 24_000
MODEL_AUDIO_MIME = f"audio/pcm;rate={MODEL_AUDIO_RATE}"
LIVE_SERVICE_PREFIX = "google.ai.generativelanguage."
LIVE_SERVICE_SUFFIX = ".GenerativeService.BidiGenerateContent"


def tone(frequency: float = 440.0, seconds: float = 0.5, *, rate: int = MODEL_AUDIO_RATE) -> bytes:
    """PCM16 LE mono samples of a sine tone: recognisable, deterministic model speech."""
    samples = np.arange(round(seconds * rate), dtype=np.float64)
    wave = 8000.0 * np.sin(2.0 * np.pi * frequency * samples / rate)
    return wave.astype("<i2").tobytes()


@dataclass(frozen=True, slots=True, kw_only=True)
class ScriptedReply:
    """A model turn: PCM16 24 kHz audio, its output transcription, then ``turnComplete``."""

    transcript: str
    audio: bytes
    chunk_bytes: int = 4800  # 100 ms; the real model also sends faster than real time


DEFAULT_REPLY = ScriptedReply(transcript="Hello from the stand-in model.", audio=tone(440.0, 0.5))


@dataclass(frozen=True, slots=True, kw_only=True)
class LiveBehaviour:
    """What a connection does on its own, without a test scripting it.

    ``echo``: every received audio chunk comes back as 24 kHz model audio; every
    ``echo_turn_frames`` chunks make one turn (``outputTranscription`` with ``echo_transcript``
    at its start, ``turnComplete`` at its end). ``turn_reply``: answered to each
    ``client_content`` with ``turnComplete`` (a greeting instruction); ``None`` stays silent.
    ``resumption_updates``: after each ``turnComplete`` a ``sessionResumptionUpdate`` with a new
    handle, when the client's setup asked for session resumption. ``reject_unknown_handles``:
    a setup resuming from a handle this server never issued is closed with 1008.
    ``record_audio=False`` only counts received audio (long load runs).
    """

    echo: bool = False
    echo_turn_frames: int = 50
    echo_transcript: str = "(echo)"
    turn_reply: ScriptedReply | None = DEFAULT_REPLY
    resumption_updates: bool = True
    reject_unknown_handles: bool = False
    record_audio: bool = True


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


@dataclass(frozen=True, slots=True, kw_only=True)
class TextRequest:
    """One ``generateContent`` call: the model and the text of its contents."""

    model: str
    text: str
    api_key: str | None
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class TextReply:
    """A scripted ``generateContent`` outcome: ``text`` with 200, or an HTTP error."""

    text: str = ""
    status: int = 200
    error_status: str = "RESOURCE_EXHAUSTED"
    error_message: str = "Resource has been exhausted (e.g. check quota)."


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class _Abort:
    pass


@dataclass(frozen=True, slots=True)
class _Echo:
    """Echoed audio, and how much received audio it completes (for timing the echo)."""

    frame: str
    received_total: int


_Outbound = str | _Echo | _Close | _Abort


def _pick(message: Mapping[str, Any], snake: str, camel: str) -> Any:
    """The SDK sends snake_case at the top and camelCase inside; accept either everywhere."""
    value = message.get(snake)
    return message.get(camel) if value is None else value


def _decode_base64(data: str) -> bytes:
    # The SDK encodes with the URL-safe alphabet; others use the standard one.
    text = data.replace("-", "+").replace("_", "/")
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _rate_of(mime_type: str) -> int:
    for parameter in mime_type.split(";")[1:]:
        name, _, value = parameter.strip().partition("=")
        if name == "rate" and value.isdigit():
            return int(value)
    return 16_000


# Per output sample: the input sample before it, the one after it, and the weight of "after".
_Plan = tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], npt.NDArray[np.float32]]


class _EchoResampler:
    """Linear interpolation to 24 kHz, per chunk: crude, but enough for an echo tests can hear.

    Chunks almost always have the same length, so the sample positions and weights for each
    (length, rate) are computed once; the hot path is then two gathers and a multiply-add.
    """

    __slots__ = ("_plans",)

    def __init__(self) -> None:
        self._plans: dict[tuple[int, int], _Plan] = {}

    def to_model_rate(self, pcm: bytes, rate: int) -> bytes:
        if rate == MODEL_AUDIO_RATE:
            return pcm
        samples = np.frombuffer(pcm, dtype="<i2", count=len(pcm) // 2)
        if samples.size == 0:
            return b""
        plan = self._plans.get((samples.size, rate))
        if plan is None:
            plan = self._plan(samples.size, rate)
        before, after, weight = plan
        first: npt.NDArray[np.float32] = samples[before].astype(np.float32)
        resampled: npt.NDArray[np.float32] = first + (samples[after] - first) * weight
        return bytes(np.rint(resampled).astype("<i2").tobytes())

    def _plan(self, size: int, rate: int) -> _Plan:
        count = size * MODEL_AUDIO_RATE // rate
        positions = np.arange(count, dtype=np.float64) * (rate / MODEL_AUDIO_RATE)
        before = np.minimum(np.floor(positions).astype(np.intp), size - 1)
        after = np.minimum(before + 1, size - 1)
        weight = (positions - before).astype(np.float32)
        plan: _Plan = (before, after, weight)
        self._plans[(size, rate)] = plan
        return plan


def _texts_of(content: Any) -> list[str]:
    if not isinstance(content, Mapping):
        return []
    parts = content.get("parts") or []
    return [part["text"] for part in parts if isinstance(part, Mapping) and "text" in part]


def _audio_frame(pcm: bytes) -> str:
    # The hot path of echo mode: formatted directly instead of through json.dumps.
    data = base64.b64encode(pcm).decode("ascii")
    return (
        '{"serverContent":{"modelTurn":{"parts":[{"inlineData":'
        f'{{"mimeType":"{MODEL_AUDIO_MIME}","data":"{data}"}}}}]}}}}}}'
    )


class LiveConnection:
    """The stand-in's side of one Live connection: what it received, and a script handle.

    Recorded state is read from any thread; ``send_*``, ``reply``, ``close`` and ``abort`` may
    be called from any thread or loop, never block, and reach the client in call order.
    """

    def __init__(
        self,
        *,
        index: int,
        server: GeminiLiveStandIn,
        setup: Mapping[str, Any],
        api_key: str | None,
        behaviour: LiveBehaviour,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.index = index
        self._server = server
        self._setup = setup
        self._api_key = api_key
        self._loop = loop
        self._loop_thread_id = threading.get_ident()
        self._queue: asyncio.Queue[_Outbound] = asyncio.Queue()
        self._changes = Changes()
        self._behaviour = behaviour
        self._audio: list[bytes] = []
        self._audio_bytes = 0
        self._audio_chunks = 0
        self._audio_mime_type: str | None = None
        # When each audio chunk arrived and the audio byte count after it: what a load
        # benchmark needs to time every caller frame's trip without keeping the audio.
        self._arrival_times = array("d")
        self._arrival_totals = array("q")
        # When each echo went out, and the received audio byte count it echoes up to.
        self._echo_times = array("d")
        self._echo_totals = array("q")
        self._client_contents: list[ClientContent] = []
        self._tool_responses: list[ToolResponse] = []
        self._realtime_texts: list[str] = []
        self._other_messages: list[Mapping[str, Any]] = []
        self._issued_handles: list[str] = []
        self._tool_call_ids = itertools.count(1)
        self._echo_frames = 0
        self._frames_sent = 0
        self._ending = False
        self._closed = False
        self._close_code: int | None = None
        self._server_close_code: int | None = None
        self._go_away_timer: asyncio.TimerHandle | None = None

    # -- what was received ------------------------------------------------------------------

    @property
    def setup(self) -> Mapping[str, Any]:
        """The ``setup`` object of the first client message, as sent (camelCase keys)."""
        return self._setup

    @property
    def api_key(self) -> str | None:
        return self._api_key

    @property
    def model(self) -> str:
        return str(self._setup.get("model", ""))

    @property
    def resumption_handle(self) -> str | None:
        """The session-resumption handle this connection resumed from, if any."""
        resumption = _pick(self._setup, "session_resumption", "sessionResumption")
        if not isinstance(resumption, Mapping):
            return None
        handle = resumption.get("handle")
        return str(handle) if handle else None

    @property
    def system_instruction(self) -> str:
        instruction = _pick(self._setup, "system_instruction", "systemInstruction")
        return "\n".join(_texts_of(instruction))

    @property
    def function_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for tool in self._setup.get("tools") or []:
            declarations = _pick(tool, "function_declarations", "functionDeclarations") or []
            names.extend(str(declaration.get("name")) for declaration in declarations)
        return tuple(names)

    @property
    def audio(self) -> bytes:
        """Realtime audio received, concatenated (PCM16 LE as sent; empty unless recorded)."""
        with self._changes.lock:
            joined = b"".join(self._audio)
            self._audio = [joined]
            return joined

    @property
    def audio_bytes(self) -> int:
        return self._audio_bytes

    @property
    def audio_chunks(self) -> int:
        return self._audio_chunks

    @property
    def audio_arrivals(self) -> tuple[array[float], array[int]]:
        """(arrival time, audio bytes received so far) for every audio chunk, in order."""
        with self._changes.lock:
            return array("d", self._arrival_times), array("q", self._arrival_totals)

    @property
    def echo_departures(self) -> tuple[array[float], array[int]]:
        """(send time, received audio bytes echoed so far) for every echoed chunk."""
        with self._changes.lock:
            return array("d", self._echo_times), array("q", self._echo_totals)

    @property
    def audio_mime_type(self) -> str | None:
        return self._audio_mime_type

    @property
    def client_contents(self) -> list[ClientContent]:
        with self._changes.lock:
            return list(self._client_contents)

    @property
    def tool_responses(self) -> list[ToolResponse]:
        with self._changes.lock:
            return list(self._tool_responses)

    @property
    def realtime_texts(self) -> list[str]:
        with self._changes.lock:
            return list(self._realtime_texts)

    @property
    def other_messages(self) -> list[Mapping[str, Any]]:
        """Client messages that were not audio, text, client content or tool responses."""
        with self._changes.lock:
            return list(self._other_messages)

    @property
    def issued_handles(self) -> list[str]:
        """Resumption handles sent on this connection, oldest first."""
        with self._changes.lock:
            return list(self._issued_handles)

    @property
    def frames_sent(self) -> int:
        return self._frames_sent

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def close_code(self) -> int | None:
        """The WebSocket close code, once closed (1006 when the transport was aborted)."""
        return self._close_code

    # -- waiting ------------------------------------------------------------------------------

    def wait_for(
        self,
        predicate: Callable[[LiveConnection], bool],
        timeout: float = 5.0,
        what: str = "a condition on a Live connection",
    ) -> None:
        self._changes.wait(lambda: predicate(self), timeout, what)

    async def wait_for_async(
        self,
        predicate: Callable[[LiveConnection], bool],
        timeout: float = 5.0,
        what: str = "a condition on a Live connection",
    ) -> None:
        await self._changes.wait_async(lambda: predicate(self), timeout, what)

    def wait_for_audio(self, min_bytes: int, timeout: float = 5.0) -> bytes:
        self.wait_for(lambda c: c.audio_bytes >= min_bytes, timeout, f"{min_bytes} audio bytes")
        return self.audio

    def wait_for_client_content(self, count: int = 1, timeout: float = 5.0) -> ClientContent:
        """Wait until ``count`` client_content messages arrived; return the ``count``-th."""
        return self._changes.wait_nth(
            lambda: self._client_contents, count, timeout, f"{count} client_content"
        )

    def wait_for_realtime_text(self, count: int = 1, timeout: float = 5.0) -> str:
        return self._changes.wait_nth(
            lambda: self._realtime_texts, count, timeout, f"{count} texts"
        )

    def wait_for_tool_response(self, call_id: str, timeout: float = 5.0) -> ToolResponse:
        self.wait_for(
            lambda c: c._tool_response(call_id) is not None,
            timeout,
            f"the tool response to {call_id}",
        )
        response = self._tool_response(call_id)
        assert response is not None
        return response

    async def wait_for_tool_response_async(
        self, call_id: str, timeout: float = 5.0
    ) -> ToolResponse:
        await self.wait_for_async(
            lambda c: c._tool_response(call_id) is not None,
            timeout,
            f"the tool response to {call_id}",
        )
        response = self._tool_response(call_id)
        assert response is not None
        return response

    def wait_closed(self, timeout: float = 5.0) -> int | None:
        self.wait_for(lambda c: c.closed, timeout, f"Live connection {self.index} to close")
        return self._close_code

    def _tool_response(self, call_id: str) -> ToolResponse | None:
        with self._changes.lock:
            for response in self._tool_responses:
                if response.id == call_id:
                    return response
        return None

    # -- scripting ----------------------------------------------------------------------------

    def set_behaviour(self, behaviour: LiveBehaviour) -> None:
        self._behaviour = behaviour

    @property
    def behaviour(self) -> LiveBehaviour:
        return self._behaviour

    def send_raw(self, message: Mapping[str, Any]) -> None:
        """Send any server message as is; keys the SDK does not know crash the client."""
        self._enqueue(json.dumps(message, separators=(",", ":")))

    def send_audio(self, pcm24k: bytes, *, chunk_bytes: int = 4800) -> None:
        """Model audio (PCM16 LE 24 kHz), in ``serverContent.modelTurn`` chunks."""
        for start in range(0, len(pcm24k), chunk_bytes):
            self._enqueue(_audio_frame(pcm24k[start : start + chunk_bytes]))

    def send_output_transcription(self, text: str) -> None:
        self.send_raw({"serverContent": {"outputTranscription": {"text": text}}})

    def send_input_transcription(self, text: str) -> None:
        self.send_raw({"serverContent": {"inputTranscription": {"text": text}}})

    def send_interrupted(self) -> None:
        self.send_raw({"serverContent": {"interrupted": True}})

    def send_turn_complete(self) -> None:
        """``turnComplete``, then a resumption update if the behaviour and setup call for one."""
        self.send_raw({"serverContent": {"turnComplete": True}})
        if self._behaviour.resumption_updates and self._wants_resumption():
            self.send_resumption_update()

    def reply(self, reply: ScriptedReply = DEFAULT_REPLY) -> None:
        """A whole model turn: transcript, audio, ``turnComplete``."""
        self.send_output_transcription(reply.transcript)
        self.send_audio(reply.audio, chunk_bytes=reply.chunk_bytes)
        self.send_turn_complete()

    def send_tool_call(
        self, name: str, args: Mapping[str, Any] | None = None, *, call_id: str | None = None
    ) -> str:
        """Ask the client to run a function; returns the call id its response must carry."""
        call_id = call_id or f"call-{self.index}-{next(self._tool_call_ids)}"
        call = {"id": call_id, "name": name, "args": dict(args or {})}
        self.send_raw({"toolCall": {"functionCalls": [call]}})
        return call_id

    def send_tool_call_cancellation(self, call_ids: Sequence[str]) -> None:
        self.send_raw({"toolCallCancellation": {"ids": list(call_ids)}})

    def send_resumption_update(self, handle: str | None = None, *, resumable: bool = True) -> str:
        """Issue a resumption handle (a fresh one unless given); later setups may resume it."""
        handle = handle or self._server._new_handle(self.index)
        with self._changes.lock:
            self._issued_handles.append(handle)
        self._changes.notify()
        self.send_raw({"sessionResumptionUpdate": {"newHandle": handle, "resumable": resumable}})
        return handle

    def send_go_away(
        self, time_left: float = 10.0, *, close_after: bool = True, close_code: int = 1000
    ) -> None:
        """``goAway`` with ``timeLeft``; unless told otherwise, close when that time is up."""
        self.send_raw({"goAway": {"timeLeft": f"{time_left:g}s"}})
        if close_after:
            self._call_in_loop(self._schedule_go_away_close, time_left, close_code)

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame carrying ``code`` (after what was queued before)."""
        self._enqueue(_Close(code, reason))

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (after what was queued before)."""
        self._enqueue(_Abort())

    # -- loop side ------------------------------------------------------------------------------

    def _wants_resumption(self) -> bool:
        return _pick(self._setup, "session_resumption", "sessionResumption") is not None

    def _call_in_loop(self, callback: Callable[..., object], *args: object) -> None:
        if threading.get_ident() == self._loop_thread_id:
            callback(*args)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _enqueue(self, item: _Outbound) -> None:
        self._call_in_loop(self._queue.put_nowait, item)

    def _schedule_go_away_close(self, delay: float, code: int) -> None:
        if self._go_away_timer is not None:
            self._go_away_timer.cancel()
        self._go_away_timer = self._loop.call_later(
            delay, self._queue.put_nowait, _Close(code, "session time limit reached")
        )

    async def _write(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        while True:
            item = await self._queue.get()
            if self._ending:
                return
            if isinstance(item, str | _Echo):
                try:
                    await ws.send_str(item if isinstance(item, str) else item.frame)
                except (ConnectionError, RuntimeError):
                    return
                self._frames_sent += 1
                if isinstance(item, _Echo):
                    with self._changes.lock:
                        self._echo_times.append(time.monotonic())
                        self._echo_totals.append(item.received_total)
            elif isinstance(item, _Close):
                self._ending = True
                self._server_close_code = item.code
                await ws.close(code=item.code, message=item.reason.encode())
                return
            else:
                self._ending = True
                self._server_close_code = 1006
                if transport is not None:
                    transport.abort()
                return

    def _receive(self, message: Mapping[str, Any]) -> None:
        realtime = _pick(message, "realtime_input", "realtimeInput")
        if isinstance(realtime, Mapping):
            self._receive_realtime(realtime)
            return
        content = _pick(message, "client_content", "clientContent")
        if isinstance(content, Mapping):
            self._receive_client_content(content)
            return
        tool_response = _pick(message, "tool_response", "toolResponse")
        if isinstance(tool_response, Mapping):
            self._receive_tool_response(tool_response)
            return
        self._record_other(message)

    def _receive_realtime(self, realtime: Mapping[str, Any]) -> None:
        blobs: list[Any] = []
        audio = realtime.get("audio")
        if isinstance(audio, Mapping):
            blobs.append(audio)
        blobs.extend(_pick(realtime, "media_chunks", "mediaChunks") or [])
        text = realtime.get("text")
        for blob in blobs:
            data = blob.get("data")
            if not isinstance(data, str):
                continue
            mime_type = str(_pick(blob, "mime_type", "mimeType") or "audio/pcm;rate=16000")
            try:
                pcm = _decode_base64(data)
            except (binascii.Error, ValueError):
                self._record_other({"realtime_input": dict(realtime)})
                continue
            with self._changes.lock:
                if self._behaviour.record_audio:
                    self._audio.append(pcm)
                self._audio_bytes += len(pcm)
                self._audio_chunks += 1
                self._arrival_times.append(time.monotonic())
                self._arrival_totals.append(self._audio_bytes)
                self._audio_mime_type = mime_type
            if self._behaviour.echo:
                self._echo(pcm, _rate_of(mime_type))
        if isinstance(text, str):
            with self._changes.lock:
                self._realtime_texts.append(text)
        elif not blobs:
            self._record_other({"realtime_input": dict(realtime)})
            return
        self._changes.notify()

    def _echo(self, pcm: bytes, rate: int) -> None:
        behaviour = self._behaviour
        if self._echo_frames == 0:
            self.send_output_transcription(behaviour.echo_transcript)
        frame = _audio_frame(self._server._echo_resampler.to_model_rate(pcm, rate))
        self._queue.put_nowait(_Echo(frame, self._audio_bytes))
        self._echo_frames += 1
        if self._echo_frames >= behaviour.echo_turn_frames:
            self._echo_frames = 0
            self.send_turn_complete()

    def _receive_client_content(self, content: Mapping[str, Any]) -> None:
        turns = content.get("turns") or []
        texts: list[str] = []
        roles: list[str] = []
        for turn in turns:
            texts.extend(_texts_of(turn))
            if isinstance(turn, Mapping) and turn.get("role"):
                roles.append(str(turn["role"]))
        turn_complete = bool(_pick(content, "turn_complete", "turnComplete"))
        record = ClientContent(
            text="\n".join(texts),
            roles=tuple(roles),
            turn_complete=turn_complete,
            at=time.monotonic(),
        )
        with self._changes.lock:
            self._client_contents.append(record)
        self._changes.notify()
        reply = self._behaviour.turn_reply
        if turn_complete and reply is not None:
            self.reply(reply)

    def _receive_tool_response(self, tool_response: Mapping[str, Any]) -> None:
        now = time.monotonic()
        responses = _pick(tool_response, "function_responses", "functionResponses") or []
        records = [
            ToolResponse(
                id=item.get("id"),
                name=item.get("name"),
                response=item.get("response") or {},
                at=now,
            )
            for item in responses
            if isinstance(item, Mapping)
        ]
        with self._changes.lock:
            self._tool_responses.extend(records)
        self._changes.notify()

    def _record_other(self, message: Mapping[str, Any]) -> None:
        with self._changes.lock:
            self._other_messages.append(message)
        self._changes.notify()

    def _mark_closed(self, client_code: int | None) -> None:
        if self._go_away_timer is not None:
            self._go_away_timer.cancel()
        # A close this side started is recorded with its own code: the peer's echo may differ.
        code = self._server_close_code or client_code
        self._ending = True
        # Wake the writer so it returns.
        self._queue.put_nowait(_Abort())
        with self._changes.lock:
            self._closed = True
            self._close_code = code
        self._changes.notify()


class GeminiLiveStandIn:
    """The Gemini stand-in server: start it, point the SDK at :attr:`base_url`, script it."""

    def __init__(
        self,
        certificate: LocalCertificate,
        *,
        behaviour: LiveBehaviour | None = None,
        api_key: str | None = None,
        default_text: str = "Summary from the stand-in model.",
    ) -> None:
        """``api_key``: when set, other keys are rejected as the real service does."""
        self._certificate = certificate
        self._default_behaviour = behaviour or LiveBehaviour()
        self._next_behaviours: deque[LiveBehaviour] = deque()
        self._api_key = api_key
        self._default_text = default_text
        self._text_replies: deque[TextReply] = deque()
        self._text_requests: list[TextRequest] = []
        self._connections: list[LiveConnection] = []
        self._active: set[LiveConnection] = set()
        self._connect_hooks: list[Callable[[LiveConnection], None]] = []
        self._issued_handles: set[str] = set()
        self._handle_counter = itertools.count(1)
        self._refusing = False
        self._refused_attempts = 0
        self._changes = Changes()
        self._echo_resampler = _EchoResampler()
        self._loop_thread: LoopThread | None = None
        self._runner: web.AppRunner | None = None
        self._socket: socket.socket | None = None
        self._port = 0

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> Self:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self._port = self._socket.getsockname()[1]
        self._loop_thread = LoopThread("gemini-live-stand-in")
        self._loop_thread.submit(self._start_site(self._socket)).result(10.0)
        return self

    def stop(self) -> None:
        if self._loop_thread is not None:
            if self._runner is not None and not self._loop_thread.loop.is_closed():
                self._loop_thread.submit(self._stop_site()).result(10.0)
            self._loop_thread.stop()
        if self._socket is not None:
            self._socket.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self._port}"

    @property
    def ca_file(self) -> str:
        """The CA file clients trust (``[gemini] ca_file``)."""
        return str(self._certificate.ca_file)

    def http_options(self) -> types.HttpOptions:
        """``genai.Client(http_options=...)`` that reaches this stand-in and trusts its CA."""
        return types.HttpOptions(
            base_url=self.base_url,
            async_client_args={"ssl": self._certificate.client_context()},
        )

    # -- behaviour ----------------------------------------------------------------------------

    def set_default_behaviour(self, behaviour: LiveBehaviour) -> None:
        self._default_behaviour = behaviour

    def push_behaviour(self, behaviour: LiveBehaviour) -> None:
        """Use ``behaviour`` for the next new connection (first in, first used)."""
        with self._changes.lock:
            self._next_behaviours.append(behaviour)

    def on_connect(self, hook: Callable[[LiveConnection], None]) -> None:
        """Call ``hook(connection)`` on the server's loop after each accepted setup.

        Hooks must not block: use the connection's ``send_*`` methods, which never do.
        """
        self._connect_hooks.append(hook)

    def refuse_connections(self, refuse: bool = True) -> None:
        """While refusing, Live upgrades get HTTP 503: the model is unreachable."""
        self._refusing = refuse

    @property
    def refused_attempts(self) -> int:
        return self._refused_attempts

    # -- connections --------------------------------------------------------------------------

    @property
    def connections(self) -> list[LiveConnection]:
        with self._changes.lock:
            return list(self._connections)

    def wait_for_connection(self, count: int = 1, timeout: float = 5.0) -> LiveConnection:
        """Wait until ``count`` connections completed setup; return the ``count``-th."""
        return self._changes.wait_nth(
            lambda: self._connections, count, timeout, f"Live connection {count}"
        )

    async def wait_for_connection_async(
        self, count: int = 1, timeout: float = 5.0
    ) -> LiveConnection:
        return await self._changes.wait_nth_async(
            lambda: self._connections, count, timeout, f"Live connection {count}"
        )

    def wait_for_refused(self, count: int = 1, timeout: float = 5.0) -> None:
        self._changes.wait(
            lambda: self._refused_attempts >= count, timeout, f"{count} refused connections"
        )

    # -- text API -----------------------------------------------------------------------------

    def queue_text_reply(self, text: str) -> None:
        """The next ``generateContent`` answers ``text``; later ones fall back to the default."""
        with self._changes.lock:
            self._text_replies.append(TextReply(text=text))

    def queue_text_error(
        self,
        status: int = 429,
        *,
        error_status: str = "RESOURCE_EXHAUSTED",
        message: str = "Resource has been exhausted (e.g. check quota).",
    ) -> None:
        """The next ``generateContent`` fails with HTTP ``status`` (Google's error JSON)."""
        with self._changes.lock:
            self._text_replies.append(
                TextReply(status=status, error_status=error_status, error_message=message)
            )

    @property
    def text_requests(self) -> list[TextRequest]:
        with self._changes.lock:
            return list(self._text_requests)

    def wait_for_text_request(self, count: int = 1, timeout: float = 5.0) -> TextRequest:
        return self._changes.wait_nth(
            lambda: self._text_requests, count, timeout, f"{count} generateContent calls"
        )

    # -- server internals ---------------------------------------------------------------------

    def _new_handle(self, index: int) -> str:
        handle = f"stand-in-handle-{index}-{next(self._handle_counter)}"
        with self._changes.lock:
            self._issued_handles.add(handle)
        return handle

    async def _start_site(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_get("/ws/{service}", self._live)
        app.router.add_post("/{version}/models/{model_method}", self._generate)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, ssl_context=self._certificate.server_context())
        await site.start()

    async def _stop_site(self) -> None:
        for connection in list(self._active):
            connection.abort()
        if self._runner is not None:
            await self._runner.cleanup()

    def _key_of(self, request: web.Request) -> str | None:
        return request.headers.get("x-goog-api-key") or request.query.get("key")

    async def _live(self, request: web.Request) -> web.StreamResponse:
        service = request.match_info["service"]
        if not (service.startswith(LIVE_SERVICE_PREFIX) and service.endswith(LIVE_SERVICE_SUFFIX)):
            return web.Response(status=404, text=f"unknown Live service {service!r}")
        if self._refusing:
            with self._changes.lock:
                self._refused_attempts += 1
            self._changes.notify()
            return web.Response(status=503, text="the stand-in model is unreachable")

        # No compression: audio does not compress, and inflating costs both sides CPU.
        ws = web.WebSocketResponse(compress=False, decode_text=False, max_msg_size=16 << 20)
        await ws.prepare(request)
        first = await ws.receive()
        setup = self._parse_setup(first)
        if setup is None:
            await ws.close(code=1007, message=b"the first message must be a setup message")
            return ws
        api_key = self._key_of(request)
        if self._api_key is not None and api_key != self._api_key:
            await ws.close(code=1007, message=b"API key not valid. Please pass a valid API key.")
            return ws

        with self._changes.lock:
            behaviour = (
                self._next_behaviours.popleft()
                if self._next_behaviours
                else self._default_behaviour
            )
            index = len(self._connections) + 1
        connection = LiveConnection(
            index=index,
            server=self,
            setup=setup,
            api_key=api_key,
            behaviour=behaviour,
            loop=asyncio.get_running_loop(),
        )
        handle = connection.resumption_handle
        if (
            handle is not None
            and behaviour.reject_unknown_handles
            and handle not in self._issued_handles
        ):
            await ws.close(code=1008, message=b"invalid session resumption handle")
            return ws

        connection.send_raw({"setupComplete": {}})
        writer = asyncio.create_task(connection._write(ws, request.transport))
        with self._changes.lock:
            self._connections.append(connection)
            self._active.add(connection)
        self._changes.notify()
        for hook in self._connect_hooks:
            hook(connection)
        try:
            await self._read(ws, connection)
        finally:
            connection._mark_closed(int(ws.close_code) if ws.close_code is not None else 1006)
            with self._changes.lock:
                self._active.discard(connection)
            await writer
        return ws

    @staticmethod
    def _parse_setup(message: Any) -> Mapping[str, Any] | None:
        if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
            return None
        try:
            parsed = json.loads(message.data)
        except ValueError:
            return None
        setup = parsed.get("setup") if isinstance(parsed, dict) else None
        return setup if isinstance(setup, Mapping) else None

    async def _read(self, ws: web.WebSocketResponse, connection: LiveConnection) -> None:
        async for message in ws:
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            try:
                parsed = json.loads(message.data)
            except ValueError:
                text = bytes(message.data).decode(errors="replace")
                connection._record_other({"unparsable": text})
                continue
            if isinstance(parsed, dict):
                connection._receive(parsed)
            else:
                connection._record_other({"unexpected": parsed})

    async def _generate(self, request: web.Request) -> web.Response:
        model, _, method = request.match_info["model_method"].rpartition(":")
        if method != "generateContent" or not model:
            return _google_error(404, "NOT_FOUND", f"unknown method {method!r}")
        api_key = self._key_of(request)
        if self._api_key is not None and api_key != self._api_key:
            return _google_error(400, "INVALID_ARGUMENT", "API key not valid.")
        try:
            body = await request.json()
        except ValueError:
            return _google_error(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")
        texts: list[str] = []
        for content in body.get("contents") or []:
            texts.extend(_texts_of(content))
        with self._changes.lock:
            self._text_requests.append(
                TextRequest(model=model, text="\n".join(texts), api_key=api_key, body=body)
            )
            reply = (
                self._text_replies.popleft()
                if self._text_replies
                else TextReply(text=self._default_text)
            )
        self._changes.notify()
        if reply.status != 200:
            return _google_error(reply.status, reply.error_status, reply.error_message)
        return web.json_response(
            {
                "candidates": [
                    {
                        "content": {"parts": [{"text": reply.text}], "role": "model"},
                        "finishReason": "STOP",
                        "index": 0,
                    }
                ],
                "modelVersion": model.removeprefix("models/"),
            }
        )


def _google_error(status: int, status_text: str, message: str) -> web.Response:
    return web.json_response(
        {"error": {"code": status, "message": message, "status": status_text}}, status=status
    )
