"""The start-up check of :mod:`tars_actors.net._ws_delivery`: a WebSocket round trip over
127.0.0.1 through both Direct connections, and asyncio's TLS protocol on a memory transport.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections import deque
from typing import Any, Final

from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Data
from websockets.version import version as websockets_version

from tars_actors.net._ws_delivery import (
    _TLS_WRAPPED,
    DirectClientConnection,
    DirectServerConnection,
    _between_frames,
    _DirectDelivery,
    consume,
    send_text_now,
    writable_now,
)

__all__ = ["self_test"]


class _TrialServerConnection(DirectServerConnection):
    _trial = True


class _TrialClientConnection(DirectClientConnection):
    _trial = True


_TRIAL_MESSAGES: Final = ("{}", '{"event":"media","media":{"payload":"/w=="}}', "é" * 200)
_TRIAL_TIMEOUT: Final = 5.0


def self_test() -> str | None:
    """Both checks, on a loop of their own, in a thread of their own (so that the first
    decision may be asked for on a thread whose loop runs)."""
    outcome: list[str | None] = []

    def run() -> None:
        try:
            outcome.append(_check_tls_layer() or asyncio.run(_round_trip()))
        except Exception as error:  # noqa: BLE001 (reported as the reason the twin runs)
            outcome.append(f"self-test failed: {type(error).__name__}: {error}")

    thread = threading.Thread(target=run, name="ws-delivery-self-test", daemon=True)
    thread.start()
    thread.join(_TRIAL_TIMEOUT * 2)
    return outcome[0] if outcome else "self-test did not finish"


async def _round_trip() -> str | None:
    """Client → server parsed by :func:`consume`'s fast path, server → client written by
    ``write_text_frame`` and parsed by websockets' ``recv()``, then a masked
    ``write_text_frame`` from the client parsed by websockets on the server."""
    problems: list[str] = []
    served = asyncio.get_running_loop().create_future()

    async def handler(connection: ServerConnection) -> None:
        try:
            await _serve_trial(connection, problems)
        except Exception as error:  # noqa: BLE001 (the reason the twin runs)
            problems.append(f"{type(error).__name__}: {error}")
        finally:
            served.set_result(None)

    async with serve(
        handler, "127.0.0.1", 0, create_connection=_TrialServerConnection, compression=None
    ) as server:
        port = server.sockets[0].getsockname()[1]
        try:
            async with (
                asyncio.timeout(_TRIAL_TIMEOUT),
                connect(
                    f"ws://127.0.0.1:{port}",
                    create_connection=_TrialClientConnection,
                    compression=None,
                ) as client,
            ):
                for message in _TRIAL_MESSAGES:
                    await client.send(message)
                echoes = [await client.recv() for _ in _TRIAL_MESSAGES]
                if echoes != [f"echo {message!r}" for message in _TRIAL_MESSAGES]:
                    problems.append("websockets parsed the server's direct writes wrongly")
                if not writable_now(client):
                    problems.append("an idle client connection is not writable_now")
                send_text_now(client, "masked é".encode())
                if await client.recv() != "done":
                    problems.append("the exchange did not end as it should")
        except Exception as error:  # noqa: BLE001 (the server side usually says why)
            await asyncio.wait_for(asyncio.shield(served), _TRIAL_TIMEOUT)
            if not problems:
                problems.append(f"{type(error).__name__}: {error}")
        await served
    return "; ".join(problems) or None


async def _serve_trial(connection: ServerConnection, problems: list[str]) -> None:
    """The server's side of :func:`_round_trip`."""
    for name in ("send_in_progress", "paused"):
        if not hasattr(connection, name):
            problems.append(f"websockets {websockets_version}: Connection has no {name}")
            return
    received: list[Data] = []

    def handle(message: Data) -> bool:
        received.append(message)
        if not writable_now(connection):
            problems.append("an idle server connection is not writable_now")
            return True
        send_text_now(connection, f"echo {message!r}".encode())
        return len(received) == len(_TRIAL_MESSAGES)

    assert isinstance(connection, _DirectDelivery)
    await consume(connection, handle)
    if connection._direct_queue == ():
        problems.append("websockets' Assembler queue (recv_messages.frames) not found")
    if not _between_frames(connection.protocol):
        problems.append("websockets' parser state between frames is not recognised")
    if received != list(_TRIAL_MESSAGES):
        problems.append("the fast path parsed the client's frames wrongly")
    if await connection.recv() != "masked é":
        problems.append("the client's direct write did not parse in websockets")
    await connection.send("done")


def _check_tls_layer() -> str | None:
    """Start asyncio's TLS protocol on a memory transport (its handshake goes out, nothing
    comes back) and look for each name :func:`_write_tls` and :func:`_read_records` read."""
    try:
        from asyncio.sslproto import SSLProtocol, SSLProtocolState
    except ImportError:
        return "asyncio.sslproto has no SSLProtocol or SSLProtocolState"
    if not hasattr(SSLProtocolState, "WRAPPED") or _TLS_WRAPPED is not SSLProtocolState.WRAPPED:
        return "asyncio's SSLProtocolState has no WRAPPED"

    class _Sink(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self.written: list[bytes] = []

        def write(self, data: bytes | bytearray | memoryview) -> None:
            self.written.append(bytes(data))

        def get_extra_info(self, name: str, default: Any = None) -> Any:
            return default

    loop = asyncio.new_event_loop()
    try:
        context = ssl.create_default_context()
        no_waiter: Any = None  # nobody waits for this handshake
        protocol = SSLProtocol(
            loop, asyncio.Protocol(), context, no_waiter, server_hostname="localhost"
        )
        app_transport: Any = protocol._app_transport
        sink = _Sink()
        protocol.connection_made(sink)
        checks = {
            "_SSLProtocolTransport._ssl_protocol": getattr(app_transport, "_ssl_protocol", None)
            is protocol,
            "SSLProtocol._state": isinstance(getattr(protocol, "_state", None), SSLProtocolState),
            "SSLProtocol._write_backlog": isinstance(
                getattr(protocol, "_write_backlog", None), deque
            ),
            "SSLProtocol._ssl_writing_paused": isinstance(
                getattr(protocol, "_ssl_writing_paused", None), bool
            ),
            "SSLProtocol._app_writing_paused": isinstance(
                getattr(protocol, "_app_writing_paused", None), bool
            ),
            "SSLProtocol._sslobj": isinstance(getattr(protocol, "_sslobj", None), ssl.SSLObject),
            "SSLProtocol._outgoing": isinstance(
                getattr(protocol, "_outgoing", None), ssl.MemoryBIO
            ),
            "SSLProtocol._incoming": isinstance(
                getattr(protocol, "_incoming", None), ssl.MemoryBIO
            ),
            "SSLProtocol._transport": getattr(protocol, "_transport", None) is sink,
            "SSLProtocol.max_size": isinstance(getattr(protocol, "max_size", None), int),
            "SSLProtocol._app_protocol": isinstance(
                getattr(protocol, "_app_protocol", None), asyncio.Protocol
            ),
            "SSLProtocol._do_read__copied": callable(getattr(protocol, "_do_read__copied", None)),
            "SSLProtocol._call_eof_received": callable(
                getattr(protocol, "_call_eof_received", None)
            ),
            "SSLProtocol._start_shutdown": callable(getattr(protocol, "_start_shutdown", None)),
            "the handshake written to the transport": bool(sink.written),
        }
        protocol.connection_lost(None)
    finally:
        loop.close()
    missing = [name for name, ok in checks.items() if not ok]
    return f"asyncio's TLS layer lacks {', '.join(missing)}" if missing else None
