"""The server's TCP connections: how many are open (handshakes included) against ``[server]
max_connections``, and who is at the other end."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection

from tars_actors.net._ws_delivery import DirectServerConnection

__all__ = ["ConnectionGate", "host_of", "remote_of"]


class ConnectionGate:
    """Counts the server's TCP connections, handshakes in progress included, and closes a
    new one at once while ``limit`` are open. Used on the server's loop thread only.

    A refused connection is closed before its request is read: websockets answers an HTTP
    request only once it has read it (``process_request``), and reading it is what a slow
    client makes expensive. Twilio treats a closed connection as a failed request and
    retries or uses the number's fallback URL, as it would for a 503.
    """

    def __init__(self, limit: int, refused: Callable[[ServerConnection], None]) -> None:
        self.limit = limit
        self.open = 0
        self.refused = 0
        self._on_refused = refused

    def enter(self, connection: ServerConnection) -> bool:
        if self.open >= self.limit:
            self.refused += 1
            self._on_refused(connection)
            return False
        self.open += 1
        return True

    def leave(self) -> None:
        self.open -= 1

    def connection_class(self) -> type[DirectServerConnection]:
        """The connection ``serve`` creates for each accepted socket, counted by this gate."""
        gate = self

        class CountedConnection(DirectServerConnection):
            _counted = False

            def connection_made(self, transport: asyncio.BaseTransport) -> None:
                # websockets starts the connection's handler here; refused, that handler
                # sees the connection lost before any request and ends.
                super().connection_made(transport)
                if gate.enter(self):
                    self._counted = True
                else:
                    transport.close()

            def connection_lost(self, exc: Exception | None) -> None:
                super().connection_lost(exc)
                if self._counted:
                    self._counted = False
                    gate.leave()

        return CountedConnection


def host_of(connection: ServerConnection) -> str:
    """The peer's address without its port: one source whatever port it connects from."""
    address = connection.remote_address
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


def remote_of(connection: ServerConnection) -> str:
    address = connection.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)
