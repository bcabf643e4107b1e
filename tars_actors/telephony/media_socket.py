"""The server's side of one Media Stream: caller frames to the call's session and relay,
the call's audio, marks and ``clear`` back to Twilio through a paced writer."""

from __future__ import annotations

import asyncio
import contextlib
import enum
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import pykka
import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tars_actors.actor_messages import CallerEvent, SocketClosed
from tars_actors.audio.pacing import PlayoutMark, PlayoutPacer
from tars_actors.call.relay import AudioRelay, LatencyHistogram
from tars_actors.net._ws_delivery import send_text_now, writable_now
from tars_actors.telephony import stream_codec
from tars_actors.telephony.connections import host_of, remote_of
from tars_actors.telephony.stream_codec import Dtmf, Media, Start

__all__ = ["MediaStreamSocket", "SocketCloseReason"]

# The server's logger: stream lines read the same wherever the code lives.
log = structlog.get_logger("tars.server")

#: Caller events kept for a session that has not attached yet (20 s of 20 ms media).
_PENDING_EVENTS: Final = 1000


class SocketCloseReason(enum.StrEnum):
    """The ``reason`` of :class:`~tars_actors.actor_messages.SocketClosed`."""

    STOP = "stop"
    """Twilio sent ``stop``: the call hung up or the stream was stopped."""
    CALLER_CLOSED = "caller_closed"
    """Twilio closed the socket without ``stop``."""
    CONNECTION_LOST = "connection_lost"
    """The socket failed (no close handshake, protocol error, keepalive timeout)."""
    CLOSED = "closed"
    """The session called :meth:`MediaStreamSocket.close`."""
    SHUTDOWN = "shutdown"
    """The server is stopping."""
    ERROR = "error"
    """TARS failed handling the stream (a bug; logged with its traceback)."""


@dataclass(frozen=True, slots=True)
class _ClearFrame:
    """The outbox entry for Twilio ``clear``."""


_CLEAR: Final = _ClearFrame()


#: The event loop's clock, called directly: asyncio's ``loop.time()`` is
#: ``time.monotonic()``, one Python call fewer each time the pacer asks (several times a
#: frame). Pacing timers are set with ``loop.call_at`` on the same clock.
_now: Final = time.monotonic


class MediaStreamSocket:
    """The server's side of one Media Stream: the :class:`~tars_actors.actor_messages.CallSocket`.

    Public methods are thread-safe and never raise once the socket is closed. Everything
    else runs on the server's event loop: outbound frames go through a
    :class:`~tars_actors.audio.pacing.PlayoutPacer` driven by ``loop.call_at`` timers into a
    writer task, so a 2-minute answer is not handed to Twilio at once and ``clear`` stops
    it at once.
    """

    def __init__(
        self,
        *,
        start: Start,
        connection: ServerConnection,
        loop: asyncio.AbstractEventLoop,
        lead: float,
        frames_rejected: int = 0,
    ) -> None:
        self._start = start
        self._stream_sid = start.stream_sid
        self._connection = connection
        self._loop = loop
        # Refill in 40 ms steps: a timer every two payloads or so, not one per payload.
        self._pacer = PlayoutPacer(lead=lead, refill=min(0.04, lead / 2))
        # [payloads left, time TARS took before the pacer, whether it is the model's audio]
        # per send_audio call, in order: the writer times each payload it sends against it.
        self._stamps: deque[list[Any]] = deque()
        # (when the pacer released it, payloads joined in it) for each audio message
        # not yet sent, in order.
        self._released: deque[tuple[float, int]] = deque()
        #: From reading the model's audio to writing it to Twilio, less the pacing wait.
        self.latency_out = LatencyHistogram()
        #: When the stream's ``start`` reached TARS: the socket is made as it is read.
        self.started_at = _now()
        #: When the first of the model's audio was written to Twilio (keypad tones TARS
        #: plays are not the model's), if it was.
        self.first_audio_at: float | None = None
        # What the writer sends next, encoded as it goes out: a clear must be able to
        # find the marks among what is still waiting.
        self._outbox: deque[bytes | PlayoutMark | _ClearFrame] = deque()
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._writer_idle = False
        self._writer = loop.create_task(self._write(), name=f"media-writer-{self._stream_sid}")
        self._close_task: asyncio.Task[None] | None = None
        self.close_requested = False
        # Read from other threads: single attribute reads and writes are atomic.
        self._closed = False
        self._frames_rejected = frames_rejected
        self.frames_in = 0
        self.frames_out = 0
        # Delivery to the session may be set up from any thread, so it has its own lock;
        # a tell is a queue put, cheap enough to do under it.
        self._delivery = threading.Lock()
        self._session: pykka.ActorRef[Any] | None = None
        self._relay: AudioRelay | None = None
        self._attached = False
        self._loop_thread = threading.get_ident()  # built by the stream handler, on the loop
        self._session_gone = False
        self._pending: deque[CallerEvent] = deque()
        self._pending_dropped = 0
        self._close_reason: str | None = None
        self._close_told = False

    # -- CallSocket (any thread) --------------------------------------------------------

    @property
    def stream_sid(self) -> str:
        return self._stream_sid

    @property
    def call_sid(self) -> str:
        return self._start.call_sid

    @property
    def remote(self) -> str:
        """The peer's ``host:port``, for log lines about this stream."""
        return remote_of(self._connection)

    @property
    def host(self) -> str:
        """The peer's address without its port: the source that per-source limits count."""
        return host_of(self._connection)

    @property
    def frames_rejected(self) -> int:
        return self._frames_rejected

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def attached(self) -> bool:
        """Whether a session ever took this stream's events."""
        return self._attached

    def attach(self, session: Any, relay: AudioRelay | None = None) -> None:
        """Deliver this stream's events to ``session``: first those buffered, in order.

        With a ``relay``, caller audio goes to it on the loop instead of to the session.
        """
        with self._delivery:
            self._session = session
            self._attached = True
            self._relay = relay
            self._session_gone = False
        try:
            # The buffered events are routed on the loop, where the relay lives; events
            # arriving meanwhile queue up behind them (see deliver).
            self._loop.call_soon_threadsafe(self._drain_pending)
        except RuntimeError:  # the loop is closed: so is the stream, nothing runs there
            self._drain_pending()

    def _drain_pending(self) -> None:
        with self._delivery:
            while self._pending:
                if not self._route(self._pending.popleft()):
                    self._pending.clear()
                    return
            self._tell_closed_if_due()

    def send_audio(
        self, frames: Sequence[bytes], since: float = 0.0, *, tones: bool = False
    ) -> None:
        """``since``: when the audio reached TARS (time.monotonic()), to time the trip;
        ``tones``: keypad tones, not the model's audio."""
        if not self._closed:
            # A tuple, so a list the caller goes on filling does not change under the loop.
            self._on_loop(self._enqueue, tuple(frames), since, tones)

    def send_mark(self, name: str) -> None:
        if not self._closed:
            self._on_loop(self._mark, name)

    def clear(self) -> None:
        if not self._closed:
            self._on_loop(self._clear)

    def close(self) -> None:
        if not self._closed:
            self._on_loop(self._close)

    def _on_loop(self, callback: Any, *args: Any) -> None:
        if threading.get_ident() == self._loop_thread:
            # Already on the loop (the audio relay): run now, in order, with no hand-off.
            callback(*args)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closed: so is the socket
            self._loop.call_soon_threadsafe(callback, *args)

    # -- delivery (loop thread, and attach's thread) ---------------------------------------

    def caller_audio(self, payload: bytes, received_at: float) -> bool:
        """Caller audio straight to the relay; False, doing nothing, when it must go as an
        event through :meth:`deliver` (no relay yet, or events still queued before it)."""
        with self._delivery:
            return (
                self._session is not None
                and not self._pending
                and self._to_relay(payload, received_at)
            )

    def deliver(self, event: CallerEvent) -> None:
        with self._delivery:
            if self._session is not None and not self._pending:
                self._route(event)
                return
            if self._session_gone:
                return
            if len(self._pending) >= _PENDING_EVENTS:
                self._pending.popleft()
                self._pending_dropped += 1
                if self._pending_dropped == 1:
                    log.warning("stream.unattached_buffer_full", kept=_PENDING_EVENTS)
            self._pending.append(event)

    def _route(self, event: CallerEvent) -> bool:
        """Caller audio to the relay, everything else to the session; holds ``_delivery``."""
        if isinstance(event.event, Media) and self._to_relay(
            event.event.payload, event.received_at
        ):
            return True
        if isinstance(event.event, Dtmf) and self._relay is not None:
            self._relay.keypad_pressed(event.received_at)
        return self._tell(event)

    def _to_relay(self, payload: bytes, received_at: float) -> bool:
        """Caller audio to the relay, if there is one; holds ``_delivery``."""
        relay = self._relay
        if relay is None or self._session_gone:
            return False
        relay.caller_audio(payload, received_at)
        return True

    def _tell(self, message: CallerEvent | SocketClosed) -> bool:
        """Tell the session; the caller holds ``_delivery``. False once the session died."""
        session = self._session
        if session is None or self._session_gone:
            return False
        try:
            session.tell(message)
        except pykka.ActorDeadError:
            self._session = None
            self._session_gone = True
            log.info("stream.session_gone", call_sid=self.call_sid, stream_sid=self._stream_sid)
            return False
        return True

    def _tell_closed_if_due(self) -> None:
        if self._close_reason is not None and not self._close_told and self._session is not None:
            self._close_told = True
            self._tell(SocketClosed(reason=self._close_reason))

    # -- inbound bookkeeping (loop thread) --------------------------------------------------

    def count_rejected(self) -> int:
        self._frames_rejected += 1
        return self._frames_rejected

    def finish(self, reason: SocketCloseReason) -> None:
        """The socket is closed: drop what was queued and tell the session, once."""
        if self._closed:
            return
        self._closed = True
        self._cancel_timer()
        self._pacer.clear()
        self._outbox.clear()
        self._stamps.clear()
        self._released.clear()
        self._writer.cancel()
        with self._delivery:
            self._close_reason = reason.value
            self._tell_closed_if_due()

    # -- outbound (loop thread) ---------------------------------------------------------

    def _enqueue(self, frames: tuple[bytes, ...], since: float = 0.0, tones: bool = False) -> None:
        if self._closed:
            return
        # Time spent before the pacer: what TARS took to get the audio here.
        self._stamps.append([len(frames), _now() - since if since else None, not tones])
        self._pacer.enqueue(frames)
        if self._timer is None:
            # Otherwise the pacer is holding audio back: the refill timer sends this
            # with the rest, in one message, rather than a message per arrival.
            self._pump(_now())

    def _mark(self, name: str) -> None:
        if self._closed:
            return
        self._pacer.mark(name)
        if self._timer is None:
            self._pump(_now())

    def _clear(self) -> None:
        if self._closed:
            return
        self._cancel_timer()
        outbox = self._outbox
        # Marks whose audio is dropped still go out, after the clear: Twilio echoes them at
        # once, so the session gets back every mark it sent ("flushed", not "heard").
        unsent_marks = [item for item in outbox if isinstance(item, PlayoutMark)]
        unsent_marks += self._pacer.clear()
        outbox.clear()
        self._stamps.clear()
        self._released.clear()
        outbox.append(_CLEAR)
        outbox.extend(unsent_marks)
        self._wake.set()

    def _close(self) -> None:
        if self._closed or self.close_requested:
            return
        self.close_requested = True
        self._close_task = self._loop.create_task(self._connection.close())

    def _on_timer(self, when: float) -> None:
        self._timer = None
        # A timer may run a hair before its time (the loop's clock resolution); the pacer
        # must see at least the time it asked for or it would ask for the same one again.
        self._pump(max(_now(), when))

    def _pump(self, now: float) -> None:
        items: list[bytes | PlayoutMark] = []
        audio: list[bytes] = []
        for item in (*self._pacer.due(now), None):
            if isinstance(item, bytes):
                audio.append(item)
                continue
            if audio:
                # Payloads released together play back to back: one media message.
                items.append(b"".join(audio))
                self._released.append((now, len(audio)))
                audio.clear()
            if item is not None:
                items.append(item)
        if items and (self._outbox or not self._writer_idle or not self._write_now(items)):
            self._outbox.extend(items)
            self._wake.set()
        when = self._pacer.next_due(now)
        timer = self._timer
        if when is None:
            self._cancel_timer()
        elif timer is None or timer.when() > when:
            self._cancel_timer()
            self._timer = self._loop.call_at(when, self._on_timer, when)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def unplayed_seconds(self) -> float:
        """Audio queued or sent but not yet played by the caller (estimated; loop only)."""
        pacer = self._pacer
        return pacer.queued_seconds + pacer.in_flight_seconds(_now())

    def _timed_audio_sent(self) -> None:
        """One audio message went out: for each payload in it, add what TARS took before
        the pacer to what it took after the pacer released it. The pacer's own wait is
        left out: it only keeps audio in step with the caller's playback, and the audio
        would otherwise wait just as long in Twilio's buffer."""
        stamps, released = self._stamps, self._released
        if not released:
            return
        released_at, payloads = released.popleft()
        now = _now()
        if self.first_audio_at is None:
            self._note_first_audio(payloads, now)
        after_pacer = now - released_at
        for _ in range(payloads):
            if not stamps:
                return
            stamp = stamps[0]
            stamp[0] -= 1
            if stamp[1] is not None:
                self.latency_out.add(stamp[1] + after_pacer)
            if stamp[0] <= 0:
                stamps.popleft()

    def _note_first_audio(self, payloads: int, now: float) -> None:
        """The audio message just written holds the next ``payloads`` payloads: if one of
        them is the model's, it is the first of the model's audio the caller gets."""
        for left, _, model_audio in self._stamps:
            if model_audio:
                self.first_audio_at = now
                return
            payloads -= left
            if payloads <= 0:
                return

    @property
    def first_audio_ms(self) -> int | None:
        """Milliseconds from the stream's ``start`` to the first of the model's audio
        written to Twilio (any thread); None until then."""
        written = self.first_audio_at
        return None if written is None else round((written - self.started_at) * 1000)

    def _encode(self, item: bytes | PlayoutMark | _ClearFrame) -> str:
        sid = self._stream_sid
        match item:
            case bytes() as audio:
                return stream_codec.media(sid, audio)
            case PlayoutMark(name=name):
                return stream_codec.mark(sid, name)
            case _ClearFrame():
                return stream_codec.clear(sid)

    def _write_now(self, items: list[bytes | PlayoutMark]) -> bool:
        """Write ``items`` at once when the socket can take them without waiting.

        Most payloads arrive one at a time to an idle socket; handing each to the writer
        task costs a wake-up and a task step per payload, measurably more than the write.
        Anything that would wait (a send in progress, a full transport buffer, a closing
        socket) goes the writer's way instead, which keeps the order.
        """
        connection = self._connection
        if not writable_now(connection):
            return False
        try:
            for item in items:
                send_text_now(connection, self._encode(item).encode())
                self.frames_out += 1
                if isinstance(item, bytes):
                    self._timed_audio_sent()
        except Exception:  # noqa: BLE001 (the writer's next send reports the closed socket)
            self._wake.set()
        return True

    async def _write(self) -> None:
        outbox = self._outbox
        try:
            while True:
                if not outbox:
                    self._wake.clear()
                    self._writer_idle = True
                    await self._wake.wait()
                    self._writer_idle = False
                    continue
                item = outbox.popleft()
                await self._connection.send(self._encode(item))
                self.frames_out += 1
                if isinstance(item, bytes):
                    self._timed_audio_sent()
        except ConnectionClosed:
            return
