"""The one HTTP and WebSocket server Twilio talks to: voice and status webhooks, health, and
the Media Streams WebSocket of every call, each handed over as a :class:`MediaStreamSocket`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import json
import logging
import os
import re
import resource
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Final, cast
from urllib.parse import parse_qsl

import structlog
from twilio.request_validator import RequestValidator
from websockets.asyncio.server import Server as WebSocketServer
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK
from websockets.http11 import Request, Response

from tars_actors.actor_messages import CallerEvent, CallStatusChanged, CallStreamStarted
from tars_actors.net._ws_delivery import consume
from tars_actors.net.loop import LoopThread
from tars_actors.runtime.ratelimit import DEFAULT_INTERVAL_SECONDS, LogRateLimiter
from tars_actors.runtime.settings import Settings
from tars_actors.telephony.connections import ConnectionGate, host_of, remote_of
from tars_actors.telephony.hooks import Connect, Draining, OverCapacity, ServerHooks
from tars_actors.telephony.media_socket import MediaStreamSocket, SocketCloseReason
from tars_actors.telephony.stream_codec import (
    Connected,
    FrameRejected,
    MediaStreamDecoder,
    Start,
    Stop,
)
from tars_actors.telephony.twiml import (
    HEALTH_PATH,
    MEDIA_PATH,
    STATUS_PATH,
    VOICE_PATH,
    connect_twiml,
    goodbye_twiml,
    stream_url,
)

__all__ = ["Server"]

log = structlog.get_logger("tars.server")

#: What may follow ``/twilio/media/``: a call's SID, as a balancer's routing key.
_STREAM_KEY = re.compile(r"[A-Za-z0-9]{1,64}")
#: Twilio's CallSid.
_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")

_SIGNATURE_HEADER: Final = "X-Twilio-Signature"
#: Seconds a connection gets to complete its HTTP request or WebSocket handshake: Twilio's
#: take milliseconds, and a slow, half-open one holds a place under [server] max_connections.
HANDSHAKE_TIMEOUT_SECONDS: Final = 5.0
#: Descriptors the rest of TARS holds besides the server's connections, at the least (model
#: and database connections, logs, event loops): below max_connections plus this, a flood
#: would make the process run out of files before the cap refuses anything.
_OTHER_OPEN_FILES: Final = 256


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
        handshake_timeout: float = HANDSHAKE_TIMEOUT_SECONDS,
        log_interval: float = DEFAULT_INTERVAL_SECONDS,
        log_clock: Callable[[], float] = time.monotonic,
        stream_per_call: bool = False,
        reuse_port: bool = False,
    ) -> None:
        """``stream_per_call``: each call's ``<Stream url>`` ends in its CallSid
        (``/twilio/media/CA…``), so that a balancer in front of several daemons can send its
        stream where it sent its webhook (by hashing the CallSid of both). ``reuse_port``:
        bind with SO_REUSEPORT, so that several TARS processes share ``[server] port`` and
        the kernel spreads the connections among them (``/healthz`` then says which process
        answered, as ``pid``)."""
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
        self._stream_per_call = stream_per_call
        self._pacing_lead = pacing_lead
        self._start_timeout = start_timeout
        self._reuse_port = reuse_port
        self._own_loop = loop_thread is None
        self._loop_thread = loop_thread
        self._ws_server: WebSocketServer | None = None
        self._port: int | None = None
        self._stopping = False
        self._streams: set[MediaStreamSocket] = set()
        self._frames_rejected = 0
        # What a peer can repeat is logged once, then counted (per address, or per stream).
        self._log_interval = log_interval
        self._log_clock = log_clock
        self._noise = LogRateLimiter(interval=log_interval, clock=log_clock)
        self._stream_noise: weakref.WeakKeyDictionary[ServerConnection, LogRateLimiter] = (
            weakref.WeakKeyDictionary()
        )
        self._handshake_timeout = handshake_timeout
        self._noise_sweep: asyncio.Task[None] | None = None
        self._gate = ConnectionGate(settings.server.max_connections, self._connection_refused)

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

    @property
    def open_connections(self) -> int:
        """TCP connections held now: handshakes in progress, webhooks and streams."""
        return self._gate.open

    @property
    def connections_refused(self) -> int:
        """Connections closed unanswered since the start: [server] max_connections were open."""
        return self._gate.refused

    async def _serve(self) -> None:
        host, port = self._settings.server.host, self._settings.server.port
        self._ws_server = await serve(
            self._media_handler,
            host,
            port,
            process_request=self._process_request,
            # Twilio does not negotiate permessage-deflate; not offering it saves CPU.
            compression=None,
            create_connection=self._gate.connection_class(),
            # A slow, half-open connection gives its place back quickly.
            open_timeout=self._handshake_timeout,
            server_header=None,
            # Passed on to loop.create_server: the workers of `run.py --workers` share a port.
            reuse_port=self._reuse_port,
        )
        self._port = int(self._ws_server.sockets[0].getsockname()[1])
        if self._validator is None:
            log.warning(
                "server.signatures_not_validated",
                hint="[twilio] validate_signatures = false: anyone can start calls; "
                "use only for local experiments",
            )
        self._check_open_files_limit()
        self._noise_sweep = asyncio.get_running_loop().create_task(self._sweep_noise())
        log.info(
            "server.listening",
            host=host,
            port=self._port,
            reuse_port=self._reuse_port,
            public_url=self._public_url,
            stream_url=self.stream_url,
        )

    def _check_open_files_limit(self) -> None:
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        needed = self._gate.limit + _OTHER_OPEN_FILES
        if soft != resource.RLIM_INFINITY and soft < needed:
            log.warning(
                "server.open_files_low",
                limit=soft,
                needed=needed,
                max_connections=self._gate.limit,
                hint="raise the open files limit (LimitNOFILE= in the unit `python run.py "
                "service` prints) or lower [server] max_connections",
            )

    async def _close(self) -> None:
        self._stopping = True
        if self._noise_sweep is not None:
            self._noise_sweep.cancel()
        server = self._ws_server
        if server is not None:
            server.close()
            await server.wait_closed()

    # -- HTTP (loop thread) -------------------------------------------------------------

    def _process_request(
        self, connection: ServerConnection, request: Request
    ) -> Response | Coroutine[Any, Any, Response] | None:
        # The raw target, split by hand: the query must be validated byte for byte as
        # Twilio signed it, and urlsplit would read "//host/..." as a network location.
        path, _, query = request.path.partition("?")
        # A call's own stream path (``/twilio/media/CA…``) is a routing key for a balancer,
        # nothing more: the stream's token says which call it is.
        stream_key = ""
        if path.startswith(f"{MEDIA_PATH}/") and _STREAM_KEY.fullmatch(path[len(MEDIA_PATH) + 1 :]):
            stream_key, path = path[len(MEDIA_PATH) + 1 :], MEDIA_PATH
        if path not in (VOICE_PATH, STATUS_PATH, MEDIA_PATH, HEALTH_PATH):
            return _response(http.HTTPStatus.NOT_FOUND, "Not Found\n")
        if request.method != "GET":
            response = _response(http.HTTPStatus.METHOD_NOT_ALLOWED, "Method Not Allowed\n")
            response.headers["Allow"] = "GET"
            return response
        if path == HEALTH_PATH:
            return self._health()
        signed_url = (
            self.stream_url + (f"/{stream_key}" if stream_key else "")
            if path == MEDIA_PATH
            else f"{self._public_url}{path}" + (f"?{query}" if query else "")
        )
        if not self._signature_valid(signed_url, request.headers):
            self.warn_per_source(
                "server.bad_signature",
                connection,
                path=path,
                signature="missing" if _SIGNATURE_HEADER not in request.headers else "invalid",
            )
            return _response(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
        if path == MEDIA_PATH:
            if stream_key and self._hooks.stream_elsewhere(stream_key):
                # Draining, and another daemon serves: the balancer tries the next one.
                log.info("server.stream_passed_on", call_sid=stream_key)
                return _response(http.HTTPStatus.SERVICE_UNAVAILABLE, "Draining\n")
            return None  # the WebSocket handshake goes on
        params = dict(parse_qsl(query, keep_blank_values=True))
        if path == VOICE_PATH:
            return self._voice(params)  # a coroutine: websockets awaits it
        try:
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

    async def _voice(self, params: dict[str, str]) -> Response:
        call_sid = params.get("CallSid", "")
        if not call_sid:
            return _response(http.HTTPStatus.BAD_REQUEST, "CallSid is missing\n")
        try:
            # Admitting a call records it in the store: off the loop that serves every call.
            admission = await asyncio.to_thread(self._hooks.admit_call, params)
        except Exception:
            log.exception("server.webhook_failed", path=VOICE_PATH, call_sid=call_sid)
            return _response(http.HTTPStatus.INTERNAL_SERVER_ERROR, "Internal Server Error\n")
        match admission:
            case Connect(parameters=parameters):
                # Only what the hooks give (the stream token): who is calling is what the
                # webhook said, recorded by the hooks, never what the stream repeats.
                own = self._stream_per_call and _CALL_SID.fullmatch(call_sid)
                url = f"{self.stream_url}/{call_sid}" if own else self.stream_url
                twiml = connect_twiml(url, parameters)
                log.info("server.call_admitted", call_sid=call_sid)
            case OverCapacity(apology=text, language=language, why=why):
                twiml = goodbye_twiml(text, language)
                log.warning("server.call_refused", call_sid=call_sid, why=why)
            case Draining(elsewhere=True):
                log.info("server.call_refused", call_sid=call_sid, why="draining", passed_on=True)
                return _response(http.HTTPStatus.SERVICE_UNAVAILABLE, "Draining\n")
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
        if self._reuse_port:
            figures["pid"] = os.getpid()
        status = http.HTTPStatus.OK if figures.get("ready") else http.HTTPStatus.SERVICE_UNAVAILABLE
        body = json.dumps(figures, default=str, sort_keys=True)
        return _response(status, body, content_type="application/json")

    # -- Media Streams (loop thread, one task per connection) ------------------------------

    async def _media_handler(self, connection: ServerConnection) -> None:
        # The handler runs in its own task, so what is bound here tags only this stream.
        structlog.contextvars.bind_contextvars(remote=remote_of(connection))
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
                            self._log_rejection(result, connection)
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
        # Debug: every stream is told once at info by what comes of it (call.started, or a
        # rate-limited calls.stream_refused), so a replayed upgrade buys no lines of its own.
        log.debug("stream.started", tracks=list(start.tracks))
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
                socket.count_rejected()
                self._log_rejection(result, connection)
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
            # A stream that never carried a call (refused before any session) closes quietly.
            log.log(
                logging.INFO if socket.attached else logging.DEBUG,
                "stream.closed",
                reason=reason.value,
                seconds=round(time.monotonic() - opened_at, 3),
                frames_in=socket.frames_in,
                frames_out=socket.frames_out,
                frames_rejected=socket.frames_rejected,
                rejections=decoder.rejections,
            )

    def _log_rejection(self, rejected: FrameRejected, connection: ServerConnection) -> None:
        self._frames_rejected += 1
        # Per stream and reason: each kind of bad frame is told once, a flood of it counted.
        limiter = self._stream_noise.get(connection)
        if limiter is None:
            limiter = LogRateLimiter(
                interval=self._log_interval, max_sources=64, clock=self._log_clock
            )
            self._stream_noise[connection] = limiter
        suppressed = limiter.allow(rejected.reason)
        if suppressed is not None:
            log.warning(
                "stream.frame_rejected",
                reason=rejected.reason,
                detail=rejected.detail,
                suppressed=suppressed,
            )

    # -- what a peer can repeat (loop thread) ---------------------------------------------

    def warn_per_source(self, event: str, connection: ServerConnection, **fields: object) -> None:
        """Log a warning about ``connection``'s request, at most once per interval per
        remote address and event, with ``suppressed``: how many were not logged since."""
        suppressed = self._noise.allow((event, host_of(connection)))
        if suppressed is not None:
            log.warning(event, remote=remote_of(connection), suppressed=suppressed, **fields)

    async def _sweep_noise(self) -> None:
        """Every interval, the counts of floods that stopped: a source's suppressed lines
        are otherwise told only by its next line, which may never come."""
        while True:
            # A zero interval logs every line: nothing to sweep, but no busy loop either.
            await asyncio.sleep(max(self._log_interval, 0.05))
            for source, suppressed in self._noise.due():
                event, host = cast(tuple[str, str], source)
                log.warning(event, remote=host, suppressed=suppressed, last=True)

    def _connection_refused(self, connection: ServerConnection) -> None:
        self.warn_per_source(
            "server.connection_refused",
            connection,
            open=self._gate.open,
            max_connections=self._gate.limit,
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
