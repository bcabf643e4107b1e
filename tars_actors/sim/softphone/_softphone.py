"""One call's Twilio side on the running asyncio loop: its webhooks, then its Media Stream.

The stream sends ``connected``/``start`` and 20 ms μ-law ``media`` frames paced in real time,
plays what the server sends through Twilio's playout buffer and records everything that
Twilio would reject. Times are ``time.monotonic()`` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from array import array
from collections.abc import Callable, Mapping
from typing import Any, Literal

import websockets
from websockets.asyncio.client import ClientConnection
from websockets.asyncio.client import connect as ws_connect

from tars_actors.sim._waiting import Changes
from tars_actors.sim.softphone._media import (
    CONNECTED_FRAME,
    FRAME_BYTES,
    FRAME_SECONDS,
    ServerClear,
    ServerMark,
    ServerMedia,
    Violation,
    event_frame,
    read_server_frame,
    start_frame,
)
from tars_actors.sim.softphone._pacer import MediaPacer
from tars_actors.sim.softphone._playout import PlayoutBuffer
from tars_actors.sim.softphone._records import (
    Clear,
    MarkReturn,
    PlayedAudio,
    ReceivedMedia,
    StreamRejected,
)
from tars_actors.sim.softphone._twiml import Twiml, TwimlError, parse_twiml
from tars_actors.sim.softphone._webhooks import FULL_ATTESTATION, WebhookCaller

__all__ = ["Softphone"]


class Softphone(WebhookCaller):
    """One call's Twilio side, on the running asyncio loop.

    ``server_url`` is where the server really listens (``http://127.0.0.1:PORT``);
    ``public_url`` is ``[server] public_url``, which every signature is computed over.
    ``frame_source(chunk)`` (chunk numbers start at 1) supplies each 160-byte μ-law frame,
    e.g. with a frame counter for latency measurements; without it, audio given to
    :meth:`say` is sent, then silence (0xFF). The playout buffer counts a gap (an underrun)
    when audio arrives more than ``gap_tolerance`` seconds after the buffer ran dry: network
    jitter below that is what Twilio's own jitter buffer absorbs. :meth:`call` opens the
    stream ``stream_delay`` seconds after the voice webhook was answered, as Twilio does
    (some hundreds of milliseconds on the real network).
    """

    def __init__(
        self,
        *,
        server_url: str,
        public_url: str,
        auth_token: str,
        account_sid: str = "ACtest00000000000000000000000000",
        call_sid: str | None = None,
        from_number: str = "+15550123456",
        to_number: str = "+15550100000",
        direction: Literal["inbound", "outbound-api"] = "inbound",
        stir_verstat: str | None = FULL_ATTESTATION,
        frame_source: Callable[[int], bytes] | None = None,
        record_audio: bool = True,
        gap_tolerance: float = FRAME_SECONDS / 2,
        stream_delay: float = 0.0,
    ) -> None:
        super().__init__(
            server_url=server_url,
            public_url=public_url,
            auth_token=auth_token,
            account_sid=account_sid,
            call_sid=call_sid,
            from_number=from_number,
            to_number=to_number,
            direction=direction,
            stir_verstat=stir_verstat,
        )
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self.stream_delay = stream_delay
        #: When :meth:`call`'s voice webhook was answered.
        self.answered_at: float | None = None
        self._changes = Changes()
        self._pacer = MediaPacer(changes=self._changes, frame_source=frame_source)
        self._ws: ClientConnection | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._mark_sends: set[asyncio.Task[None]] = set()
        self._sequence = itertools.count(1)
        self._hanging_up = False
        self._sending = False
        self._media_stopped = False
        # Receiving and playout.
        self._playout = PlayoutBuffer(
            changes=self._changes,
            echo_mark=self._echo_mark,
            gap_tolerance=gap_tolerance,
            record_audio=record_audio,
        )
        self._violations: list[str] = []
        # Closing.
        self._closed = False
        self._close_code: int | None = None
        self._close_reason = ""
        self._closed_by: Literal["softphone", "server"] | None = None

    # -- the stream ---------------------------------------------------------------------------

    async def call(self) -> Twiml:
        """Dial the voice webhook and, if the TwiML connects a stream, open it."""
        twiml = await self.dial()
        self.answered_at = time.monotonic()
        if twiml.stream is not None:
            if self.stream_delay > 0:
                await asyncio.sleep(self.stream_delay)  # Twilio taking its time, as told
            await self.connect(twiml)
        return twiml

    async def pick_up(self, twiml: Twiml | str) -> None:
        """Answer a call TARS placed, as Twilio reports it: the ``answered`` status callback
        (``CallStatus=in-progress``) at once, then the stream of ``twiml`` (the inline TwiML
        given to ``calls.create``) ``stream_delay`` seconds later."""
        reply = await self.send_status("in-progress")
        self.answered_at = time.monotonic()
        if reply.status >= 400:
            raise TwimlError(f"the answered status callback got HTTP {reply.status}")
        if self.stream_delay > 0:
            await asyncio.sleep(self.stream_delay)  # Twilio taking its time, as told
        await self.connect(twiml)

    async def connect(
        self,
        twiml: Twiml | str,
        *,
        signature: str | None = None,
        sign: bool = True,
        open_timeout: float = 10.0,
    ) -> None:
        """Open the ``<Stream>`` of ``twiml`` (a parsed response or raw XML, e.g. from
        ``calls.create(twiml=...)``), send ``connected`` and ``start``, start sending media."""
        if self._ws is not None:
            raise RuntimeError(f"call {self.call_sid} already has a stream")
        if isinstance(twiml, str):
            twiml = parse_twiml(twiml)
        if twiml.stream is None:
            raise TwimlError("the TwiML connects no <Stream>")
        stream = twiml.stream
        headers = {}
        if signature is not None:
            headers["X-Twilio-Signature"] = signature
        elif sign:
            headers["X-Twilio-Signature"] = self.sign(stream.url)
        try:
            self._ws = await ws_connect(
                self._local_ws_url(stream.url),
                additional_headers=headers,
                user_agent_header="Twilio.TmeWs/1.0",
                # Compression would cost both ends CPU for audio that does not compress.
                compression=None,
                proxy=None,
                open_timeout=open_timeout,
                ping_interval=None,
                max_queue=None,
            )
        except websockets.InvalidStatus as refused:
            response = refused.response
            raise StreamRejected(
                response.status_code, response.body.decode(errors="replace")
            ) from None
        self._connected_at = time.monotonic()
        ws = self._ws
        await ws.send(CONNECTED_FRAME)
        await ws.send(
            start_frame(
                sequence=next(self._sequence),
                account_sid=self.account_sid,
                stream_sid=self.stream_sid,
                call_sid=self.call_sid,
                custom_parameters=stream.custom_parameters,
            )
        )
        self._sending = True
        self._tasks = [
            asyncio.create_task(self._send_media(ws), name=f"softphone-send-{self.call_sid}"),
            asyncio.create_task(self._receive(ws), name=f"softphone-receive-{self.call_sid}"),
        ]

    def say(self, mulaw: bytes) -> None:
        """Queue μ-law audio to be sent as the caller's voice, after what is already queued."""
        self._pacer.say(mulaw)

    @property
    def speaking(self) -> bool:
        """Whether audio given to :meth:`say` is still waiting to be sent."""
        return self._pacer.speaking

    async def send_dtmf(self, digit: str) -> None:
        await self._send_event("dtmf", {"track": "inbound_track", "digit": digit})

    async def send_raw(self, frame: str | bytes) -> None:
        """Send anything, e.g. malformed frames, as is."""
        if self._ws is None:
            raise RuntimeError("the stream is not connected")
        await self._ws.send(frame)

    async def hang_up(self) -> None:
        """The caller hangs up: ``stop``, then the socket closes. Idempotent."""
        ws = self._ws
        if ws is None or self._closed or self._hanging_up:
            return
        self._hanging_up = True
        try:
            await self._send_event(
                "stop", {"accountSid": self.account_sid, "callSid": self.call_sid}
            )
            await ws.close()
        except websockets.ConnectionClosed:
            pass
        await self._join_tasks()

    def stop_media(self) -> None:
        """Send no more media frames; the stream stays open and audio still plays.

        Not something Twilio does (it streams for as long as the call lasts): a load test
        stops the callers so that everything in flight can arrive before it counts.
        """
        self._media_stopped = True

    async def close(self) -> None:
        """Release the stream without the protocol's goodbye (tests' cleanup)."""
        if self._ws is not None:
            self._hanging_up = True
            await self._ws.close()
        await self._join_tasks()

    async def _join_tasks(self) -> None:
        """Wait for the stream's tasks; re-raise what broke them (a failing ``frame_source``)."""
        current = asyncio.current_task()
        tasks = [task for task in [*self._tasks, *self._mark_sends] if task is not current]
        outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome

    async def _send_event(self, event: str, body: Mapping[str, Any]) -> None:
        if self._ws is None:
            raise RuntimeError("the stream is not connected")
        frame = event_frame(
            event, sequence=next(self._sequence), stream_sid=self.stream_sid, body=body
        )
        await self._ws.send(frame)

    # -- sending media ------------------------------------------------------------------------

    async def _send_media(self, ws: ClientConnection) -> None:
        try:
            await self._pacer.run(
                ws, stream_sid=self.stream_sid, sequence=self._sequence, stopped=self._media_done
            )
        finally:
            with self._changes.lock:
                self._sending = False
            self._changes.notify()

    def _media_done(self) -> bool:
        return self._closed or self._hanging_up or self._media_stopped

    # -- what the server sends ----------------------------------------------------------------

    async def _receive(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                self._on_message(message)
        except websockets.ConnectionClosed:
            pass
        finally:
            self._on_closed(ws)

    def _on_message(self, message: str | bytes) -> None:
        match read_server_frame(message, self.stream_sid):
            case ServerMedia(audio):
                self._playout.media(audio)
            case ServerMark(name):
                self._playout.mark(name)
            case ServerClear():
                self._playout.clear()
            case Violation(what):
                with self._changes.lock:
                    self._violations.append(what)
                self._changes.notify()

    def _echo_mark(self, name: str) -> None:
        """Send a returned mark back, as Twilio does once the audio before it has played."""
        if self._ws is None or self._closed:
            return
        frame = event_frame(
            "mark", sequence=next(self._sequence), stream_sid=self.stream_sid, body={"name": name}
        )
        # websockets writes a whole text message before its first await, so frames leave
        # in the order their sequence numbers were taken.
        task = asyncio.create_task(self._send_quietly(frame))
        self._mark_sends.add(task)
        task.add_done_callback(self._mark_sends.discard)

    async def _send_quietly(self, frame: str) -> None:
        if self._ws is None:
            return
        with contextlib.suppress(websockets.ConnectionClosed):
            await self._ws.send(frame)

    def _on_closed(self, ws: ClientConnection) -> None:
        self._playout.close(asyncio.get_running_loop().time())
        with self._changes.lock:
            self._closed = True
            self._close_code = ws.close_code if ws.close_code is not None else 1006
            self._close_reason = ws.close_reason or ""
            self._closed_by = "softphone" if self._hanging_up else "server"
        self._changes.notify()

    # -- records ------------------------------------------------------------------------------

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def connected_at(self) -> float | None:
        """When the stream's WebSocket opened (``connected`` and ``start`` follow at once)."""
        return self._connected_at

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def sending(self) -> bool:
        """Whether media frames are still being sent (false after hang-up, close or an error)."""
        return self._sending

    @property
    def close_code(self) -> int | None:
        return self._close_code

    @property
    def close_reason(self) -> str:
        return self._close_reason

    @property
    def closed_by(self) -> Literal["softphone", "server"] | None:
        return self._closed_by

    @property
    def frames_sent(self) -> int:
        return self._pacer.frames_sent

    @property
    def send_times(self) -> array[float]:
        """When media chunk ``n`` was sent is ``send_times[n - 1]``."""
        return self._pacer.send_times

    @property
    def late_frames(self) -> int:
        """Frames sent more than half a frame after their due time (the sender fell behind)."""
        return self._pacer.late_frames

    @property
    def max_send_lag(self) -> float:
        return self._pacer.max_send_lag

    @property
    def frames_received(self) -> int:
        return self._playout.frames_received

    @property
    def bytes_received(self) -> int:
        return self._playout.bytes_received

    @property
    def received(self) -> list[ReceivedMedia]:
        """Every ``media`` frame received, in order (empty when ``record_audio`` is off)."""
        return self._playout.received

    @property
    def received_audio(self) -> bytes:
        return self._playout.received_audio

    def played(self) -> list[PlayedAudio]:
        """Audio that has played by now, cut short where a ``clear`` interrupted it."""
        return self._playout.played(time.monotonic())

    def played_audio(self) -> bytes:
        return b"".join(segment.audio for segment in self.played())

    @property
    def buffered_seconds(self) -> float:
        """Audio received but not yet played."""
        return self._playout.buffered_seconds(time.monotonic())

    @property
    def underruns(self) -> int:
        """Gaps: audio arrived ``gap_tolerance`` after the buffer had run dry (not after a clear).

        Pauses between model turns count too; with an echoing far end every gap is a glitch.
        """
        return self._playout.underruns

    @property
    def underrun_seconds(self) -> float:
        return self._playout.underrun_seconds

    def echo_frames_missing(self) -> int:
        """For an echoing far end, once the echo drained: frames sent but not heard back."""
        return max(0, self.frames_sent - self._playout.bytes_received // FRAME_BYTES)

    @property
    def marks(self) -> list[MarkReturn]:
        return self._playout.marks

    @property
    def clears(self) -> list[Clear]:
        return self._playout.clears

    @property
    def violations(self) -> list[str]:
        """Everything the server sent that Twilio would reject."""
        with self._changes.lock:
            return list(self._violations)

    # -- waiting ------------------------------------------------------------------------------

    def _audio_done(self, min_bytes: int) -> Callable[[], bool]:
        return lambda: self._playout.bytes_received >= min_bytes

    def _mark_done(self, name: str) -> Callable[[], bool]:
        return lambda: self._playout.has_mark(name)

    def _clear_done(self, count: int) -> Callable[[], bool]:
        return lambda: self._playout.clear_count >= count

    def _find_mark(self, name: str) -> MarkReturn:
        return next(mark for mark in self.marks if mark.name == name)

    async def wait_for_audio(self, min_bytes: int, timeout: float = 5.0) -> bytes:
        """Wait until ``min_bytes`` of μ-law arrived; return all received audio."""
        await self._changes.wait_async(
            self._audio_done(min_bytes), timeout, f"{min_bytes} bytes of audio"
        )
        return self.received_audio

    async def wait_for_mark(self, name: str, timeout: float = 5.0) -> MarkReturn:
        await self._changes.wait_async(self._mark_done(name), timeout, f"mark {name!r}")
        return self._find_mark(name)

    async def wait_for_clear(self, timeout: float = 5.0, *, count: int = 1) -> Clear:
        await self._changes.wait_async(self._clear_done(count), timeout, f"{count} clear(s)")
        return self.clears[count - 1]

    async def wait_closed(self, timeout: float = 5.0) -> int | None:
        await self._changes.wait_async(lambda: self._closed, timeout, "the stream to close")
        return self._close_code

    async def wait_for(
        self, predicate: Callable[[Softphone], bool], timeout: float = 5.0, what: str = "it"
    ) -> None:
        await self._changes.wait_async(lambda: predicate(self), timeout, what)
