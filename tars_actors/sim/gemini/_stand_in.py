"""The Gemini stand-in server: one aiohttp app on 127.0.0.1 over TLS for Live and the text API.

The Live WebSocket and ``generateContent`` share one server because the websockets server
cannot read request bodies and the SDK dials both from one ``base_url``. The server runs its
own event loop on a background thread, so blocking tests and asyncio code drive it alike.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Final, Self

from aiohttp import WSMsgType, web
from google.genai import types

from tars_actors.net.loop import LoopThread
from tars_actors.sim._waiting import Changes
from tars_actors.sim.gemini._connection import LiveConnection
from tars_actors.sim.gemini._echo import EchoResampler
from tars_actors.sim.gemini._messages import (
    LIVE_SERVICE_PREFIX,
    LIVE_SERVICE_SUFFIX,
    api_key_of,
    setup_of,
)
from tars_actors.sim.gemini._script import LiveBehaviour
from tars_actors.sim.gemini._text_api import TextApi, TextRequest
from tars_actors.sim.tls import LocalCertificate

__all__ = ["GeminiLiveStandIn"]


#: The close reason of a setup over the project's concurrent Live sessions.
QUOTA_EXCEEDED: Final = (
    "RESOURCE_EXHAUSTED: You exceeded your current quota of concurrent sessions; "
    "please check your plan and billing details."
)


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
        self._connections: list[LiveConnection] = []
        self._active: set[LiveConnection] = set()
        self._connect_hooks: list[Callable[[LiveConnection], None]] = []
        self._issued_handles: set[str] = set()
        self._handle_counter = itertools.count(1)
        self._refusing = False
        self._refused_attempts = 0
        # Live sessions allowed at once (None: any number), as a project's quota does.
        self._session_limit: int | None = None
        self._changes = Changes()
        self._text = TextApi(changes=self._changes, api_key=api_key, default_text=default_text)
        self._echo_resampler = EchoResampler()
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

    def limit_sessions(self, limit: int | None) -> None:
        """Allow at most ``limit`` Live sessions at once (None: any number). A setup beyond
        it is closed as the real service closes it: code 1011, RESOURCE_EXHAUSTED."""
        self._session_limit = limit

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
        self._text.queue_reply(text)

    def queue_text_error(
        self,
        status: int = 429,
        *,
        error_status: str = "RESOURCE_EXHAUSTED",
        message: str = "Resource has been exhausted (e.g. check quota).",
    ) -> None:
        """The next ``generateContent`` fails with HTTP ``status`` (Google's error JSON)."""
        self._text.queue_error(status, error_status=error_status, message=message)

    @property
    def text_requests(self) -> list[TextRequest]:
        return self._text.requests

    def wait_for_text_request(self, count: int = 1, timeout: float = 5.0) -> TextRequest:
        return self._text.wait_for_request(count, timeout)

    # -- server internals ---------------------------------------------------------------------

    def _new_handle(self, index: int) -> str:
        handle = f"stand-in-handle-{index}-{next(self._handle_counter)}"
        with self._changes.lock:
            self._issued_handles.add(handle)
        return handle

    async def _start_site(self, sock: socket.socket) -> None:
        app = web.Application()
        app.router.add_get("/ws/{service}", self._live)
        app.router.add_post("/{version}/models/{model_method}", self._text.generate)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.SockSite(self._runner, sock, ssl_context=self._certificate.server_context())
        await site.start()

    async def _stop_site(self) -> None:
        for connection in list(self._active):
            connection.abort()
        if self._runner is not None:
            await self._runner.cleanup()

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
        setup = setup_of(first)
        if setup is None:
            await ws.close(code=1007, message=b"the first message must be a setup message")
            return ws
        api_key = api_key_of(request)
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

        limit = self._session_limit
        if limit is not None and len(self._active) >= limit:
            with self._changes.lock:
                self._refused_attempts += 1
            self._changes.notify()
            await ws.close(code=1011, message=QUOTA_EXCEEDED.encode())
            return ws

        if behaviour.setup_delay > 0:
            await asyncio.sleep(behaviour.setup_delay)  # the model setting up, as told
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
