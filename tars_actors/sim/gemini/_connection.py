"""The stand-in's side of one Live connection: what the client sent, and a script handle."""

from __future__ import annotations

import asyncio
import binascii
import itertools
import json
import time
from array import array
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from tars_actors.sim._waiting import Changes
from tars_actors.sim.gemini._messages import (
    ClientContent,
    ToolResponse,
    audio_frame,
    client_content_of,
    decode_base64,
    pick,
    rate_of,
    texts_of,
    tool_responses_of,
)
from tars_actors.sim.gemini._outbox import Outbox
from tars_actors.sim.gemini._script import DEFAULT_REPLY, LiveBehaviour, ScriptedReply

if TYPE_CHECKING:
    from tars_actors.sim.gemini._stand_in import GeminiLiveStandIn

__all__ = ["LiveConnection"]


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
        self._changes = Changes()
        self._loop = loop
        self._outbox = Outbox(loop=loop, changes=self._changes)
        self._behaviour = behaviour
        self._audio: list[bytes] = []
        self._audio_bytes = 0
        self._audio_chunks = 0
        self._audio_mime_type: str | None = None
        # When each audio chunk arrived and the audio byte count after it: what a load
        # benchmark needs to time every caller frame's trip without keeping the audio.
        self._arrival_times = array("d")
        self._arrival_totals = array("q")
        self._client_contents: list[ClientContent] = []
        self._tool_responses: list[ToolResponse] = []
        self._realtime_texts: list[str] = []
        self._other_messages: list[Mapping[str, Any]] = []
        self._issued_handles: list[str] = []
        self._tool_call_ids = itertools.count(1)
        self._echo_frames = 0
        self._closed = False
        self._close_code: int | None = None

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
        resumption = pick(self._setup, "session_resumption", "sessionResumption")
        if not isinstance(resumption, Mapping):
            return None
        handle = resumption.get("handle")
        return str(handle) if handle else None

    @property
    def system_instruction(self) -> str:
        instruction = pick(self._setup, "system_instruction", "systemInstruction")
        return "\n".join(texts_of(instruction))

    @property
    def function_names(self) -> tuple[str, ...]:
        names: list[str] = []
        for tool in self._setup.get("tools") or []:
            declarations = pick(tool, "function_declarations", "functionDeclarations") or []
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
        return self._outbox.echo_departures

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
        return self._outbox.frames_sent

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
        self._outbox.send(json.dumps(message, separators=(",", ":")))

    def send_audio(self, pcm24k: bytes, *, chunk_bytes: int = 4800) -> None:
        """Model audio (PCM16 LE 24 kHz), in ``serverContent.modelTurn`` chunks."""
        for start in range(0, len(pcm24k), chunk_bytes):
            self._outbox.send(audio_frame(pcm24k[start : start + chunk_bytes]))

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
            self._outbox.close_after(time_left, close_code, "session time limit reached")

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close with a close frame carrying ``code`` (after what was queued before)."""
        self._outbox.close(code, reason)

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (after what was queued before)."""
        self._outbox.abort()

    # -- loop side ------------------------------------------------------------------------------

    def _wants_resumption(self) -> bool:
        return pick(self._setup, "session_resumption", "sessionResumption") is not None

    async def _write(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        await self._outbox.write(ws, transport)

    def _receive(self, message: Mapping[str, Any]) -> None:
        realtime = pick(message, "realtime_input", "realtimeInput")
        if isinstance(realtime, Mapping):
            self._receive_realtime(realtime)
            return
        content = pick(message, "client_content", "clientContent")
        if isinstance(content, Mapping):
            self._receive_client_content(content)
            return
        tool_response = pick(message, "tool_response", "toolResponse")
        if isinstance(tool_response, Mapping):
            self._receive_tool_response(tool_response)
            return
        self._record_other(message)

    def _receive_realtime(self, realtime: Mapping[str, Any]) -> None:
        blobs: list[Any] = []
        audio = realtime.get("audio")
        if isinstance(audio, Mapping):
            blobs.append(audio)
        blobs.extend(pick(realtime, "media_chunks", "mediaChunks") or [])
        text = realtime.get("text")
        for blob in blobs:
            data = blob.get("data")
            if not isinstance(data, str):
                continue
            mime_type = str(pick(blob, "mime_type", "mimeType") or "audio/pcm;rate=16000")
            try:
                pcm = decode_base64(data)
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
                self._echo(pcm, rate_of(mime_type))
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
        frame = audio_frame(self._server._echo_resampler.to_model_rate(pcm, rate))
        self._outbox.send_echo(frame, self._audio_bytes)
        self._echo_frames += 1
        if self._echo_frames >= behaviour.echo_turn_frames:
            self._echo_frames = 0
            self.send_turn_complete()

    def _receive_client_content(self, content: Mapping[str, Any]) -> None:
        record = client_content_of(content, at=time.monotonic())
        with self._changes.lock:
            self._client_contents.append(record)
        self._changes.notify()
        reply = self._behaviour.turn_reply
        if record.turn_complete and reply is not None:
            delay = self._behaviour.reply_delay
            if delay > 0:
                # The model's time to its first audio, from each turn.
                self._loop.call_later(delay, self.reply, reply)
            else:
                self.reply(reply)

    def _receive_tool_response(self, tool_response: Mapping[str, Any]) -> None:
        records = tool_responses_of(tool_response, at=time.monotonic())
        with self._changes.lock:
            self._tool_responses.extend(records)
        self._changes.notify()

    def _record_other(self, message: Mapping[str, Any]) -> None:
        with self._changes.lock:
            self._other_messages.append(message)
        self._changes.notify()

    def _mark_closed(self, client_code: int | None) -> None:
        server_code = self._outbox.end()
        # A close this side started is recorded with its own code: the peer's echo may differ.
        code = server_code or client_code
        with self._changes.lock:
            self._closed = True
            self._close_code = code
        self._changes.notify()
