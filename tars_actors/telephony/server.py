"""The one HTTP and WebSocket server Twilio talks to: voice and status webhooks, health, and
the Media Streams socket of every call, each with its own paced writer.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import enum
import http
import json
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol
from urllib.parse import parse_qsl, urlsplit

import pykka
import structlog
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse
from websockets.asyncio.server import Server as WebSocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from websockets.http11 import Request, Response

from tars_actors.actor_messages import (
    CallerEvent,
    CallStatusChanged,
    CallStreamStarted,
    SocketClosed,
)
from tars_actors.audio.pipeline import PlayoutMark, PlayoutPacer
from tars_actors.call.relay import AudioRelay, LatencyHistogram
from tars_actors.net._ws_delivery import (
    DirectServerConnection,
    consume,
    send_text_now,
    writable_now,
)
from tars_actors.net.loop import LoopThread
from tars_actors.runtime.settings import Settings
from tars_actors.telephony import stream_codec as twilio_stream
from tars_actors.telephony.stream_codec import (
    Connected,
    FrameRejected,
    Media,
    MediaStreamDecoder,
    Start,
    Stop,
)

__all__ = [
    "HEALTH_PATH",
    "MEDIA_PATH",
    "STATUS_PATH",
    "VOICE_PATH",
    "Admission",
    "Connect",
    "Draining",
    "MediaStreamSocket",
    "OverCapacity",
    "Server",
    "ServerHooks",
    "SocketCloseReason",
    "connect_twiml",
    "goodbye_twiml",
    "stream_url",
]

log = structlog.get_logger("tars.server")

VOICE_PATH: Final = "/twilio/voice"
STATUS_PATH: Final = "/twilio/status"
MEDIA_PATH: Final = "/twilio/media"
HEALTH_PATH: Final = "/healthz"

_SIGNATURE_HEADER: Final = "X-Twilio-Signature"
#: Malformed frames logged one by one per stream; past this a flood costs one more line.
_REJECTIONS_LOGGED: Final = 20
#: Caller events kept for a session that has not attached yet (20 s of 20 ms media).
_PENDING_EVENTS: Final = 1000


# --- What the server asks of the rest of TARS ----------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    """Admit the call: connect its Media Stream with these extra ``<Parameter>``s."""

    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class OverCapacity:
    """Too many calls: apologise and hang up."""

    apology: str = "Sorry, all lines are busy right now. Please call again in a few minutes."
    #: BCP-47 tag for ``<Say language>``; None leaves Twilio's default.
    language: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Draining:
    """TARS is restarting: say so and hang up."""

    notice: str = "Sorry, the assistant is restarting. Please call again in a minute."
    language: str | None = None


Admission = Connect | OverCapacity | Draining


class ServerHooks(Protocol):
    """What the server calls, on its event loop: each method must be quick and thread-safe.

    None of them may block (no pykka ``ask``, no I/O): every call on the server waits on them.
    """

    def admit_call(self, params: Mapping[str, str]) -> Admission:
        """Decide what a signed voice webhook (its query parameters) is answered with."""
        ...

    def stream_started(self, message: CallStreamStarted) -> None:
        """A Media Stream sent ``start``; someone must ``attach`` a session to its socket."""
        ...

    def status_changed(self, message: CallStatusChanged) -> None:
        """A signed status callback arrived."""
        ...

    def health(self) -> Mapping[str, Any]:
        """JSON-able readiness figures; ``ready`` false makes ``/healthz`` answer 503."""
        ...


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


# --- TwiML ---------------------------------------------------------------------------


def connect_twiml(stream_url: str, parameters: Mapping[str, str]) -> str:
    """``<Connect><Stream url=…>`` with one ``<Parameter>`` per item; nothing after it, so
    closing the socket hangs up."""
    response = VoiceResponse()
    stream = response.connect().stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    return str(response.to_xml())


def stream_url(public_url: str) -> str:
    """The ``wss://`` Media Streams URL for ``[server] public_url``: what ``<Stream url>``
    names (inbound and outbound calls alike) and what the upgrade's signature covers."""
    public = urlsplit(public_url)
    return f"wss://{public.netloc}{public.path}{MEDIA_PATH}"


def goodbye_twiml(text: str, language: str | None = None) -> str:
    """``<Say>`` then ``<Hangup/>``: refusing a call, or ending one the model cannot serve."""
    response = VoiceResponse()
    response.say(text, language=language)
    response.hangup()
    return str(response.to_xml())


# --- One call's stream -----------------------------------------------------------------


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
    :class:`~tars_actors.audio.pipeline.PlayoutPacer` driven by ``loop.call_at`` timers into a
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
        # [payloads left, when their audio reached TARS] per send_audio call, in order:
        # the writer times each payload it sends against it.
        self._stamps: deque[list[Any]] = deque()
        # (when the pacer released it, payloads joined in it) for each audio message
        # not yet sent, in order.
        self._released: deque[tuple[float, int]] = deque()
        #: From reading the model's audio to writing it to Twilio, less the pacing wait.
        self.latency_out = LatencyHistogram()
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
    def frames_rejected(self) -> int:
        return self._frames_rejected

    @property
    def closed(self) -> bool:
        return self._closed

    def attach(self, session: Any, relay: AudioRelay | None = None) -> None:
        """Deliver this stream's events to ``session``: first those buffered, in order.

        With a ``relay``, caller audio goes to it on the loop instead of to the session.
        """
        with self._delivery:
            self._session = session
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

    def send_audio(self, frames: Sequence[bytes], since: float = 0.0) -> None:
        """``since``: when the audio reached TARS (time.monotonic()), to time the trip."""
        if not self._closed:
            # A tuple, so a list the caller goes on filling does not change under the loop.
            self._on_loop(self._enqueue, tuple(frames), since)

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

    def _enqueue(self, frames: tuple[bytes, ...], since: float = 0.0) -> None:
        if self._closed:
            return
        # Time spent before the pacer: what TARS took to get the audio here.
        self._stamps.append([len(frames), _now() - since if since else None])
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
        after_pacer = _now() - released_at
        for _ in range(payloads):
            if not stamps:
                return
            stamp = stamps[0]
            stamp[0] -= 1
            if stamp[1] is not None:
                self.latency_out.add(stamp[1] + after_pacer)
            if stamp[0] <= 0:
                stamps.popleft()

    def _encode(self, item: bytes | PlayoutMark | _ClearFrame) -> str:
        sid = self._stream_sid
        match item:
            case bytes() as audio:
                return twilio_stream.media(sid, audio)
            case PlayoutMark(name=name):
                return twilio_stream.mark(sid, name)
            case _ClearFrame():
                return twilio_stream.clear(sid)

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


# --- The server -----------------------------------------------------------------------


class Server:
    """Serves ``/twilio/voice``, ``/twilio/status``, ``/healthz`` and ``WS /twilio/media``.

    It knows nothing of actors: it calls its :class:`ServerHooks` and hands each stream's
    :class:`MediaStreamSocket` over in :class:`~tars_actors.actor_messages.CallStreamStarted`.
    Runs on a :class:`~tars_actors.net.loop.LoopThread` (its own unless one is given).
    """

    def __init__(
        self,
        settings: Settings,
        hooks: ServerHooks,
        *,
        loop_thread: LoopThread | None = None,
        pacing_lead: float = 0.1,
        start_timeout: float = 10.0,
    ) -> None:
        validate = settings.twilio.validate_signatures
        token = settings.secrets.twilio_auth_token
        if validate and not token:
            raise ValueError(
                "TWILIO_AUTH_TOKEN is not set, so Twilio's signatures cannot be checked; "
                "set it, or set [twilio] validate_signatures = false for local experiments"
            )
        self._settings = settings
        self._hooks = hooks
        self._validator: RequestValidator | None = RequestValidator(token) if validate else None
        self._public_url = settings.server.public_url
        self.stream_url = stream_url(settings.server.public_url)
        """The ``<Stream url>`` TwiML names and the upgrade's signature covers."""
        self._pacing_lead = pacing_lead
        self._start_timeout = start_timeout
        self._own_loop = loop_thread is None
        self._loop_thread = loop_thread
        self._ws_server: WebSocketServer | None = None
        self._port: int | None = None
        self._stopping = False
        self._streams: set[MediaStreamSocket] = set()
        self._frames_rejected = 0

    # -- lifecycle (any thread but the loop's) --------------------------------------------

    def start(self, timeout: float = 10.0) -> None:
        """Bind ``[server] host/port`` and serve; returns once listening."""
        if self._loop_thread is None:
            self._loop_thread = LoopThread("tars-server")
        future = self._loop_thread.submit(self._serve())
        try:
            future.result(timeout)
        except BaseException as error:
            if self._own_loop:
                self._loop_thread.stop()
            if isinstance(error, OSError):
                server = self._settings.server
                raise OSError(
                    error.errno,
                    f"[server] host/port: cannot listen on {server.host}:{server.port}: "
                    f"{error.strerror or error}",
                ) from error
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Close every stream (their sessions get ``SocketClosed("shutdown")``) and stop."""
        thread = self._loop_thread
        if thread is None or thread.loop.is_closed():
            return
        if self._ws_server is not None:
            with contextlib.suppress(TimeoutError, RuntimeError):
                thread.submit(self._close()).result(timeout)
        if self._own_loop:
            thread.stop(timeout)
        log.info("server.stopped")

    def __enter__(self) -> Server:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the one chosen when ``[server] port`` is 0)."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def loop_thread(self) -> LoopThread:
        if self._loop_thread is None:
            raise RuntimeError("the server is not started")
        return self._loop_thread

    @property
    def open_streams(self) -> int:
        """Media Streams currently connected past ``start``."""
        return len(self._streams)

    @property
    def frames_rejected(self) -> int:
        """Malformed Media Streams frames rejected since the server started, on all calls."""
        return self._frames_rejected

    async def _serve(self) -> None:
        host, port = self._settings.server.host, self._settings.server.port
        self._ws_server = await serve(
            self._media_handler,
            host,
            port,
            process_request=self._process_request,
            # Twilio does not negotiate permessage-deflate; not offering it saves CPU.
            compression=None,
            create_connection=DirectServerConnection,
            server_header=None,
        )
        self._port = int(self._ws_server.sockets[0].getsockname()[1])
        if self._validator is None:
            log.warning(
                "server.signatures_not_validated",
                hint="[twilio] validate_signatures = false: anyone can start calls; "
                "use only for local experiments",
            )
        log.info(
            "server.listening",
            host=host,
            port=self._port,
            public_url=self._public_url,
            stream_url=self.stream_url,
        )

    async def _close(self) -> None:
        self._stopping = True
        server = self._ws_server
        if server is not None:
            server.close()
            await server.wait_closed()

    # -- HTTP (loop thread) -------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        # The raw target, split by hand: the query must be validated byte for byte as
        # Twilio signed it, and urlsplit would read "//host/..." as a network location.
        path, _, query = request.path.partition("?")
        if path not in (VOICE_PATH, STATUS_PATH, MEDIA_PATH, HEALTH_PATH):
            return _response(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        if request.method != "GET":
            response = _response(http.HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed\n")
            response.headers["Allow"] = "GET"
            return response
        if path == HEALTH_PATH:
            return self._health()
        signed_url = (
            self.stream_url
            if path == MEDIA_PATH
            else f"{self._public_url}{path}" + (f"?{query}" if query else "")
        )
        if not self._signature_valid(signed_url, request.headers):
            log.warning(
                "server.bad_signature",
                path=path,
                remote=_remote(connection),
                signature="missing" if _SIGNATURE_HEADER not in request.headers else "invalid",
            )
            return _response(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
        if path == MEDIA_PATH:
            return None  # the WebSocket handshake goes on
        params = dict(parse_qsl(query, keep_blank_values=True))
        try:
            if path == VOICE_PATH:
                return self._voice(params)
            return self._status(params)
        except Exception:
            log.exception("server.webhook_failed", path=path)
            return _response(http.HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error\n")

    def _signature_valid(self, url: str, headers: Headers) -> bool:
        if self._validator is None:
            return True
        signatures = headers.get_all(_SIGNATURE_HEADER)
        if len(signatures) != 1:
            return False
        return bool(self._validator.validate(url, {}, signatures[0]))

    def _voice(self, params: dict[str, str]) -> Response:
        call_sid = params.get("CallSid", "")
        if not call_sid:
            return _response(http.HTTPStatus.BAD_REQUEST, "CallSid is missing\n")
        admission = self._hooks.admit_call(params)
        match admission:
            case Connect(parameters=extra):
                parameters = {
                    "from": params.get("From", ""),
                    "to": params.get("To", ""),
                    "direction": params.get("Direction", ""),
                    "call_sid": call_sid,
                    **extra,
                }
                twiml = connect_twiml(self.stream_url, parameters)
                log.info("server.call_admitted", call_sid=call_sid)
            case OverCapacity(apology=text, language=language):
                twiml = goodbye_twiml(text, language)
                log.warning("server.call_refused", call_sid=call_sid, why="over_capacity")
            case Draining(notice=text, language=language):
                twiml = goodbye_twiml(text, language)
                log.info("server.call_refused", call_sid=call_sid, why="draining")
        return _response(http.HTTPStatus.OK, twiml, content_type="text/xml")

    def _status(self, params: dict[str, str]) -> Response:
        call_sid, status = params.get("CallSid", ""), params.get("CallStatus", "")
        if not status and params.get("AnsweredBy"):
            # The asynchronous answering-machine callback: the call is up, a status it has not.
            status = "in-progress"
        if not call_sid or not status:
            return _response(http.HTTPStatus.BAD_REQUEST, "CallSid or CallStatus is missing\n")
        duration = params.get("CallDuration", "")
        message = CallStatusChanged(
            call_sid=call_sid,
            status=status,
            duration_seconds=int(duration) if duration.isdigit() else None,
            answered_by=params.get("AnsweredBy") or None,
            params=params,
        )
        log.info("server.call_status", call_sid=call_sid, status=status)
        self._hooks.status_changed(message)
        return _response(http.HTTPStatus.NO_CONTENT, "")

    def _health(self) -> Response:
        try:
            figures = dict(self._hooks.health())
        except Exception:
            log.exception("server.health_failed")
            figures = {"ready": False, "error": "health check failed"}
        status = http.HTTPStatus.OK if figures.get("ready") else http.HTTPStatus.SERVICE_UNAVAILABLE
        body = json.dumps(figures, default=str, sort_keys=True)
        return _response(status, body, content_type="application/json")

    # -- Media Streams (loop thread, one task per connection) ------------------------------

    async def _media_handler(self, connection: ServerConnection) -> None:
        # The handler runs in its own task, so what is bound here tags only this stream.
        structlog.contextvars.bind_contextvars(remote=_remote(connection))
        decoder = MediaStreamDecoder()
        pre_start_rejections = 0
        try:
            async with asyncio.timeout(self._start_timeout):
                start = None
                async for frame in connection:
                    result = decoder.decode(frame)
                    match result:
                        case Start():
                            start = result
                            break
                        case FrameRejected():
                            pre_start_rejections += 1
                            self._log_rejection(result, pre_start_rejections)
                        case Connected():
                            log.debug("stream.connected", protocol=result.protocol)
                        case _:  # the decoder rejects every other event before start
                            pass
        except TimeoutError:
            log.warning("stream.no_start", waited_seconds=self._start_timeout)
            await connection.close(1008, "no start event")
            return
        except ConnectionClosedError:
            return
        if start is None:
            return
        await self._run_stream(connection, decoder, start, pre_start_rejections)

    async def _run_stream(
        self,
        connection: ServerConnection,
        decoder: MediaStreamDecoder,
        start: Start,
        rejections: int,
    ) -> None:
        structlog.contextvars.bind_contextvars(call_sid=start.call_sid, stream_sid=start.stream_sid)
        socket = MediaStreamSocket(
            start=start,
            connection=connection,
            loop=asyncio.get_running_loop(),
            lead=self._pacing_lead,
            frames_rejected=rejections,
        )
        self._streams.add(socket)
        opened_at = time.monotonic()
        log.info("stream.started", tracks=list(start.tracks))
        reason: SocketCloseReason = SocketCloseReason.CALLER_CLOSED

        def handle(frame: str | bytes) -> bool:
            received_at = time.monotonic()
            socket.frames_in += 1
            # Nearly every frame is caller audio: it skips the event and its routing.
            payload = decoder.media_payload(frame)
            if payload is not None and socket.caller_audio(payload, received_at):
                return False
            result = decoder.decode(frame)
            if isinstance(result, FrameRejected):
                self._log_rejection(result, socket.count_rejected())
                return False
            socket.deliver(CallerEvent(event=result, received_at=received_at))
            return isinstance(result, Stop)

        try:
            self._hooks.stream_started(CallStreamStarted(start=start, socket=socket))
            # Frames are handled as they are parsed (DirectServerConnection), in order.
            await consume(connection, handle)
            reason = SocketCloseReason.STOP
        except ConnectionClosedOK:
            pass  # the caller's side closed the socket cleanly
        except ConnectionClosedError:
            reason = SocketCloseReason.CONNECTION_LOST
        except asyncio.CancelledError:
            reason = SocketCloseReason.SHUTDOWN
            raise
        except Exception:
            log.exception("stream.failed")
            reason = SocketCloseReason.ERROR
            await connection.close(1011, "internal error")
        finally:
            if reason == SocketCloseReason.CALLER_CLOSED:
                if self._stopping:
                    reason = SocketCloseReason.SHUTDOWN
                elif socket.close_requested:
                    reason = SocketCloseReason.CLOSED
            socket.finish(reason)
            self._streams.discard(socket)
            log.info(
                "stream.closed",
                reason=reason.value,
                seconds=round(time.monotonic() - opened_at, 3),
                frames_in=socket.frames_in,
                frames_out=socket.frames_out,
                frames_rejected=socket.frames_rejected,
                rejections=decoder.rejections,
            )

    def _log_rejection(self, rejected: FrameRejected, count: int) -> None:
        self._frames_rejected += 1
        if count <= _REJECTIONS_LOGGED:
            log.warning("stream.frame_rejected", reason=rejected.reason, detail=rejected.detail)
        elif count == _REJECTIONS_LOGGED + 1:
            log.warning(
                "stream.frame_rejections_suppressed",
                after=_REJECTIONS_LOGGED,
                note="further malformed frames on this stream are counted, not logged",
            )


def _response(status: http.HTTPStatus, body: str, *, content_type: str = "") -> Response:
    data = body.encode()
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
        ]
    )
    if status != http.HTTPStatus.NO_CONTENT:
        headers["Content-Length"] = str(len(data))
        headers["Content-Type"] = content_type or "text/plain; charset=utf-8"
    return Response(status.value, status.phrase, headers, data)


def _remote(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
