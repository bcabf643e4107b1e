"""WebSocket messages handed over as they arrive (ws_delivery): every message once, in
wire order, whichever path it takes; and audio frames written straight to the socket."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError, InvalidState
from websockets.frames import Frame, Opcode
from websockets.typing import Data

from tars_actors.ws_delivery import (
    DirectClientConnection,
    DirectServerConnection,
    consume,
    send_text_now,
)

T = TypeVar("T")
Scenario = Callable[[ServerConnection, ClientConnection], Awaitable[T]]


async def _bounded(awaitable: Awaitable[T], seconds: float = 10.0) -> T:
    async with asyncio.timeout(seconds):
        return await awaitable


def _run(scenario: Scenario[T]) -> T:
    """``scenario(server side, client)`` over a real loopback connection."""

    async def main() -> T:
        accepted: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()

        async def handler(connection: ServerConnection) -> None:
            accepted.set_result(connection)
            await connection.wait_closed()

        async with serve(
            handler,
            "127.0.0.1",
            0,
            create_connection=DirectServerConnection,
            compression=None,
            max_size=2**20,
        ) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}", compression=None) as client:
                return await scenario(await accepted, client)

    return asyncio.run(_bounded(main()))


def _client_frame(opcode: Opcode, data: bytes, *, fin: bool = True) -> bytes:
    """A frame as a client sends it (masked)."""
    return Frame(opcode, data, fin).serialize(mask=True)


class _Collector:
    """A handler that keeps what it is handed and stops after ``until`` messages."""

    def __init__(self, until: int) -> None:
        self.messages: list[Data] = []
        self.until = until

    def __call__(self, message: Data) -> bool:
        self.messages.append(message)
        return len(self.messages) >= self.until


def _count_parser_feeds(connection: Connection) -> list[int]:
    fed = [0]
    protocol = connection.protocol
    original = protocol.receive_data

    def receive_data(data: bytes | bytearray) -> None:
        fed[0] += 1
        original(data)

    protocol.receive_data = receive_data  # type: ignore[method-assign]
    return fed


def test_messages_are_handed_over_in_order_without_the_websockets_parser() -> None:
    async def scenario(
        server: ServerConnection, client: ClientConnection
    ) -> tuple[list[Data], int]:
        fed = _count_parser_feeds(server)
        collector = _Collector(until=20)
        consuming = asyncio.ensure_future(consume(server, collector))
        await asyncio.sleep(0)  # consume() has started its fast path
        for index in range(10):
            await client.send(f"text {index}")
            await client.send(f"binary {index}".encode())
        await consuming
        return collector.messages, fed[0]

    messages, fed = _run(scenario)
    expected: list[Data] = []
    for index in range(10):
        expected += [f"text {index}", f"binary {index}".encode()]
    assert messages == expected
    assert fed == 0


def test_messages_queued_before_consume_come_first() -> None:
    async def scenario(server: ServerConnection, client: ClientConnection) -> list[Data]:
        for index in range(3):
            await client.send(f"early {index}")
        async with asyncio.timeout(5):
            while len(server.recv_messages.frames) < 3:
                await asyncio.sleep(0)  # yields to the loop until the reads are queued
        collector = _Collector(until=6)
        consuming = asyncio.ensure_future(consume(server, collector))
        for index in range(3):
            await client.send(f"late {index}")
        await consuming
        return collector.messages

    assert _run(scenario) == [f"early {index}" for index in range(3)] + [
        f"late {index}" for index in range(3)
    ]


def test_frames_split_across_reads_or_sharing_one_come_whole_and_in_order() -> None:
    long_text = "x" * 1400  # a 16-bit length
    longer = "y" * 70000  # a 64-bit length
    frames = [_client_frame(Opcode.TEXT, f"m{index}".encode()) for index in range(3)]
    long_frame = _client_frame(Opcode.TEXT, long_text.encode())
    longer_frame = _client_frame(Opcode.TEXT, longer.encode())
    reads = [
        frames[0] + frames[1] + frames[2][:1],  # two whole frames and one byte of a third
        frames[2][1:] + long_frame[:3],  # the third's rest; a header cut in two
        long_frame[3:700],
        long_frame[700:] + longer_frame,
        _client_frame(Opcode.PING, b"are you there")
        + _client_frame(Opcode.TEXT, b"after the ping"),
    ]

    async def scenario(server: ServerConnection, client: ClientConnection) -> list[Data]:
        collector = _Collector(until=6)
        consuming = asyncio.ensure_future(consume(server, collector))
        await asyncio.sleep(0)
        for data in reads:
            server.data_received(data)
        await consuming
        await client.ping()  # the connection still answers pings and pongs
        return collector.messages

    assert _run(scenario) == ["m0", "m1", "m2", long_text, longer, "after the ping"]


def test_a_fragmented_message_between_others_is_reassembled_in_place() -> None:
    reads = [
        _client_frame(Opcode.TEXT, b"before"),
        _client_frame(Opcode.TEXT, b"frag", fin=False),
        _client_frame(Opcode.CONT, b"mented"),
        _client_frame(Opcode.TEXT, b"after"),
    ]

    async def scenario(server: ServerConnection, client: ClientConnection) -> list[Data]:
        collector = _Collector(until=3)
        consuming = asyncio.ensure_future(consume(server, collector))
        await asyncio.sleep(0)
        server.data_received(b"".join(reads))
        await consuming
        return collector.messages

    assert _run(scenario) == ["before", "fragmented", "after"]


def test_invalid_utf8_closes_with_1007_after_the_messages_before_it() -> None:
    async def scenario(
        server: ServerConnection, client: ClientConnection
    ) -> tuple[list[Data], ConnectionClosedError]:
        collector = _Collector(until=99)
        consuming = asyncio.ensure_future(consume(server, collector))
        await asyncio.sleep(0)
        server.data_received(
            _client_frame(Opcode.TEXT, b"fine") + _client_frame(Opcode.TEXT, b"\xff\xfe")
        )
        with pytest.raises(ConnectionClosedError) as raised:
            await consuming
        return collector.messages, raised.value

    messages, error = _run(scenario)
    assert messages == ["fine"]
    assert error.sent is not None
    assert error.sent.code == 1007


def test_a_handler_that_stops_or_fails_ends_consume_and_sees_no_more() -> None:
    async def stops(server: ServerConnection, client: ClientConnection) -> list[Data]:
        collector = _Collector(until=2)
        consuming = asyncio.ensure_future(consume(server, collector))
        await asyncio.sleep(0)
        server.data_received(b"".join(_client_frame(Opcode.TEXT, b"%d" % i) for i in range(5)))
        await consuming
        return collector.messages

    assert _run(stops) == ["0", "1"]

    async def fails(server: ServerConnection, client: ClientConnection) -> list[Data]:
        seen: list[Data] = []

        def handle(message: Data) -> bool:
            seen.append(message)
            raise ValueError(f"cannot take {message!r}")

        consuming = asyncio.ensure_future(consume(server, handle))
        await asyncio.sleep(0)
        server.data_received(b"".join(_client_frame(Opcode.TEXT, b"%d" % i) for i in range(3)))
        with pytest.raises(ValueError, match="cannot take '0'"):
            await consuming
        return seen

    assert _run(fails) == ["0"]


def test_the_handler_runs_in_the_consuming_tasks_context() -> None:
    call = contextvars.ContextVar[str]("call", default="none")

    async def scenario(server: ServerConnection, client: ClientConnection) -> list[str]:
        seen: list[str] = []

        def handle(message: Data) -> bool:
            seen.append(call.get())
            return len(seen) == 2

        async def consuming() -> None:
            call.set("CA123")
            await consume(server, handle)

        task = asyncio.ensure_future(consuming())
        await asyncio.sleep(0)
        await client.send("one")
        await client.send("two")
        await task
        return seen

    assert _run(scenario) == ["CA123", "CA123"]


def test_a_direct_client_takes_the_servers_unmasked_frames_as_bytes() -> None:
    async def main() -> tuple[list[Data], int]:
        async def handler(connection: ServerConnection) -> None:
            for index in range(5):
                await connection.send(f'{{"n":{index}}}')
            await connection.wait_closed()

        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(
                f"ws://127.0.0.1:{port}", create_connection=DirectClientConnection
            ) as client:
                fed = _count_parser_feeds(client)
                collector = _Collector(until=5)
                await consume(client, collector, decode=False)
                return collector.messages, fed[0]

    messages, _ = asyncio.run(_bounded(main()))
    assert messages == [b'{"n":%d}' % index for index in range(5)]


# --- send_text_now ---------------------------------------------------------------------


def _writes(connection: Connection) -> list[bytes]:
    """Every write the connection makes to its transport from now on, in order."""
    writes: list[bytes] = []
    transport = connection.transport
    original = transport.write

    def write(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        original(data)

    transport.write = write  # type: ignore[method-assign]
    return writes


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_send_text_now_from_the_server_arrives_whole(size: int) -> None:
    text = "".join(chr(ord("a") + index % 26) for index in range(size))

    async def main() -> list[Data]:
        accepted: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()

        async def handler(connection: ServerConnection) -> None:
            accepted.set_result(connection)
            await connection.wait_closed()

        async with serve(
            handler, "127.0.0.1", 0, create_connection=DirectServerConnection, compression=None
        ) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(f"ws://127.0.0.1:{port}", max_size=None, compression=None) as client:
                connection = await accepted
                send_text_now(connection, text.encode())
                send_text_now(connection, b"after")
                return [await client.recv(), await client.recv()]

    assert asyncio.run(_bounded(main())) == [text, "after"]


def test_send_text_now_from_a_client_is_masked_with_a_fresh_key_per_frame() -> None:
    count = 1500  # past one 4 KiB batch of keys (1,024 frames)

    async def main() -> tuple[list[Data], list[bytes]]:
        received: list[Data] = []
        finished = asyncio.Event()

        async def handler(connection: ServerConnection) -> None:
            async for message in connection:
                received.append(message)
                if len(received) == count:
                    finished.set()

        async with serve(handler, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            async with connect(
                f"ws://127.0.0.1:{port}", create_connection=DirectClientConnection
            ) as client:
                writes = _writes(client)
                for index in range(count):
                    send_text_now(client, f"frame {index}".encode())
                await finished.wait()
                return received, list(writes)  # before the close frame

    received, writes = asyncio.run(_bounded(main()))
    # websockets' server closes with 1002 on an unmasked client frame.
    assert received == [f"frame {index}" for index in range(count)]
    assert len(writes) == count
    assert all(write[1] & 0x80 for write in writes)
    assert len({write[2:6] for write in writes}) > count - 5  # 32-bit random keys


def test_send_text_now_after_close_raises_as_websockets_does() -> None:
    async def scenario(server: ServerConnection, client: ClientConnection) -> None:
        await server.close()
        with pytest.raises(InvalidState):
            send_text_now(server, b"too late")

    _run(scenario)


def test_send_text_now_works_on_a_plain_connection() -> None:
    async def scenario(server: ServerConnection, client: ClientConnection) -> Data:
        send_text_now(client, b"plain")
        collector = _Collector(until=1)
        await consume(server, collector)
        return collector.messages[0]

    assert _run(scenario) == "plain"
