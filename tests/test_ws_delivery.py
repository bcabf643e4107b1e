"""ws_delivery: every WebSocket message handed to its handler once, in wire order, whether
the fast path in ``data_received``, websockets' parser or ``recv()`` takes it.

Exact reads are injected with ``connection.data_received(raw)`` on a real loopback
connection, so "split across reads", "several frames in one read" and "a ping between
data frames" are what the test says, not what TCP happened to do.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import random
import ssl
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import pytest
import structlog
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError, ConnectionClosedOK, InvalidState
from websockets.frames import Close, Frame, Opcode
from websockets.typing import Data

from tars_actors.net._ws_delivery import (
    DirectClientConnection,
    DirectServerConnection,
    consume,
    send_text_now,
    writable_now,
)
from tars_actors.sim.tls import LocalCertificate, create_local_certificate

T = TypeVar("T")

#: The most any one test may take, end to end.
WAIT = 5.0

#: Both server connections: the direct one, and websockets' own (consume goes by recv()).
SERVER_CLASSES = [
    pytest.param(DirectServerConnection, id="direct"),
    pytest.param(ServerConnection, id="plain"),
]

# -- harness ---------------------------------------------------------------------------


def _run(main: Coroutine[Any, Any, T]) -> T:
    async def bounded() -> T:
        async with asyncio.timeout(WAIT):
            return await main

    return asyncio.run(bounded())


@asynccontextmanager
async def _link(
    server_class: type[ServerConnection] = DirectServerConnection,
    *,
    max_size: int | tuple[int | None, int | None] | None = 2**20,
    max_queue: int | None = 16,
    client_class: type[ClientConnection] = ClientConnection,
    tls: LocalCertificate | None = None,
) -> AsyncIterator[tuple[ServerConnection, ClientConnection]]:
    """A real loopback connection, over TLS with ``tls``: (the server's side, a client,
    websockets' own unless told)."""
    accepted: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()

    async def handler(connection: ServerConnection) -> None:
        accepted.set_result(connection)
        await connection.wait_closed()

    async with serve(
        handler,
        "127.0.0.1",
        0,
        create_connection=server_class,
        compression=None,
        max_size=max_size,
        max_queue=max_queue,
        ssl=None if tls is None else tls.server_context(),
    ) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(
            f"{'ws' if tls is None else 'wss'}://127.0.0.1:{port}",
            create_connection=client_class,
            compression=None,
            max_size=None,
            ssl=None if tls is None else tls.client_context(),
        ) as client:
            connection = await accepted
            assert type(connection) is server_class
            assert type(client) is client_class
            yield connection, client


async def _until(predicate: Callable[[], bool], what: str) -> None:
    """Yield to the loop until ``predicate`` holds (state that no future announces):
    at once for a while, then every millisecond (not to spin when it never holds)."""
    try:
        async with asyncio.timeout(WAIT / 2):
            passes = 0
            while not predicate():
                passes += 1
                await asyncio.sleep(0 if passes < 1000 else 0.001)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


class Collector:
    """A handler keeping what it is handed; returns True on ``stop_on`` or after
    ``stop_after`` messages; raises ``fail_with`` when handed ``fail_on``."""

    def __init__(
        self,
        *,
        stop_after: int | None = None,
        stop_on: Data | None = None,
        fail_on: Data | None = None,
        fail_with: Exception | None = None,
    ) -> None:
        self.messages: list[Data] = []
        self.stop_after = stop_after
        self.stop_on = stop_on
        self.fail_on = fail_on
        self.fail_with = fail_with
        self._grew = asyncio.Event()

    def __call__(self, message: Data) -> bool:
        self.messages.append(message)
        self._grew.set()
        if self.fail_on is not None and message == self.fail_on:
            assert self.fail_with is not None
            raise self.fail_with
        if self.stop_on is not None and message == self.stop_on:
            return True
        return self.stop_after is not None and len(self.messages) >= self.stop_after

    async def wait_for(self, count: int) -> None:
        while len(self.messages) < count:
            self._grew.clear()
            await self._grew.wait()


class Taps:
    """Counts, from now on, the reads fed to websockets' parser and the frames put in
    the Assembler: neither happens for a message the fast path hands over. (Read the
    counts before the connection closes: its close frame is parsed too.)"""

    def __init__(self, connection: Connection) -> None:
        self.parsed = 0
        self.queued = 0
        protocol = connection.protocol
        receive_data = protocol.receive_data
        frames = connection.recv_messages.frames
        put = frames.put

        def counted_receive_data(data: bytes | bytearray) -> None:
            self.parsed += 1
            receive_data(data)

        def counted_put(frame: Frame) -> None:
            self.queued += 1
            put(frame)

        protocol.receive_data = counted_receive_data  # type: ignore[method-assign]
        frames.put = counted_put  # type: ignore[method-assign,assignment]

    def counts(self) -> tuple[int, int]:
        """(reads parsed, frames queued) so far."""
        return self.parsed, self.queued


def _start(
    connection: Connection, handle: Callable[[Data], bool], *, decode: bool | None = None
) -> asyncio.Task[None]:
    return asyncio.ensure_future(consume(connection, handle, decode=decode))


async def _waiting(connection: Connection) -> None:
    """Until consume's recv() waits on an empty queue (and so the fast path, if any, is on)."""
    await _until(
        lambda: (
            connection.recv_messages.get_in_progress and not len(connection.recv_messages.frames)
        ),
        "consume to wait for messages",
    )


async def _started(connection: Connection, handle: Callable[[Data], bool]) -> asyncio.Task[None]:
    """consume() started, and waiting for messages (so the fast path, if any, is on)."""
    consuming = _start(connection, handle)
    await _waiting(connection)
    return consuming


async def _fed(
    route: str, connection: Connection, handle: Callable[[Data], bool], burst: bytes
) -> asyncio.Task[None]:
    """consume() started, with ``burst`` reaching it by ``route``: already queued before it
    started, read by the fast path, or parsed by websockets (behind a ping)."""
    if route == "queued":
        connection.data_received(burst)
        return _start(connection, handle)
    consuming = await _started(connection, handle)
    connection.data_received(burst if route == "fast" else _frame(Opcode.PING, b"") + burst)
    return consuming


E = TypeVar("E", bound=Exception)

#: In the reads of :func:`_consumed_until`: wait for consume's recv() to wait again.
WAIT_FOR_RECV = None


async def _consumed_until(
    error: type[E],
    connection: Connection,
    reads: Sequence[bytes | None],
    *,
    decode: bool | None = None,
) -> tuple[list[Data], E]:
    """Consume ``connection`` while it is fed ``reads`` (each through ``data_received``)
    until consume raises ``error``: what was handed over, and the error."""
    collector = Collector()
    consuming = _start(connection, collector, decode=decode)
    await _waiting(connection)
    for data in reads:
        if data is WAIT_FOR_RECV:
            await _waiting(connection)
        else:
            connection.data_received(data)
    with pytest.raises(error) as raised:
        await consuming
    return collector.messages, raised.value


def _consume_reads(
    server_class: type[ServerConnection],
    error: type[E],
    reads: Sequence[bytes | None],
    *,
    decode: bool | None = None,
    max_size: int | tuple[int | None, int | None] | None = 2**20,
) -> tuple[list[Data], E]:
    """:func:`_consumed_until` on the server's side of a fresh link."""

    async def main() -> tuple[list[Data], E]:
        async with _link(server_class, max_size=max_size) as (server, _client):
            return await _consumed_until(error, server, reads, decode=decode)

    return _run(main())


def _sent_code(error: ConnectionClosedError) -> int:
    """The close code this side sent."""
    assert error.sent is not None
    return error.sent.code


def _received_code(closed: ConnectionClosedOK) -> int:
    """The close code this side received."""
    assert closed.rcvd is not None
    return closed.rcvd.code


def _delivering(connection: Connection) -> bool:
    """Whether consume() has switched the connection's fast path on."""
    return getattr(connection, "_direct", None) is not None


def _frame(opcode: Opcode, data: bytes, *, fin: bool = True, mask: bool = True) -> bytes:
    """A frame as it is on the wire: masked when a client sends it."""
    return Frame(opcode, data, fin).serialize(mask=mask)


def _text(text: str, *, mask: bool = True) -> bytes:
    return _frame(Opcode.TEXT, text.encode(), mask=mask)


def _binary(data: bytes, *, mask: bool = True) -> bytes:
    return _frame(Opcode.BINARY, data, mask=mask)


def _close(code: int, reason: str = "") -> bytes:
    return _frame(Opcode.CLOSE, Close(code, reason).serialize())


# -- the fast path and ordinary order ---------------------------------------------------


def test_messages_sent_after_consume_starts_arrive_in_order_without_the_parser() -> None:
    expected: list[Data] = []
    for index in range(10):
        expected += [f"text {index} é", f"binary {index}".encode()]
    # Whole frames with 16- and 64-bit lengths, each in a read of its own (injected:
    # TCP may cut a long one).
    long: list[Data] = ["", "m" * 126, b"n" * 1400, "o" * 65535, b"p" * 65536, "q" * 70000]

    async def main() -> tuple[list[Data], tuple[int, int]]:
        async with _link() as (server, client):
            collector = Collector(stop_after=len(expected) + len(long))
            consuming = await _started(server, collector)
            taps = Taps(server)
            for message in expected:
                await client.send(message)
            await collector.wait_for(len(expected))
            for message in long:
                server.data_received(
                    _text(message) if isinstance(message, str) else _binary(message)
                )
            await consuming
            return collector.messages, taps.counts()

    messages, (parsed, queued) = _run(main())
    expected += long
    assert messages == expected
    assert [type(message) for message in messages] == [type(message) for message in expected]
    # Ordinary single-frame messages never reach websockets' parser or the Assembler.
    assert parsed == 0
    assert queued == 0


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_messages_queued_before_consume_come_first(server_class: type[ServerConnection]) -> None:
    async def main() -> list[Data]:
        async with _link(server_class) as (server, client):
            for index in range(3):
                await client.send(f"early {index}")
            await _until(lambda: len(server.recv_messages.frames) == 3, "three queued messages")
            collector = Collector(stop_after=6)
            consuming = _start(server, collector)
            for index in range(3):
                await client.send(f"late {index}")
            await consuming
            return collector.messages

    assert _run(main()) == [f"early {index}" for index in range(3)] + [
        f"late {index}" for index in range(3)
    ]


def test_frames_arriving_while_messages_are_queued_wait_behind_them() -> None:
    async def main() -> tuple[list[Data], tuple[int, int]]:
        async with _link() as (server, _client):
            server.data_received(b"".join(_text(f"early {index}") for index in range(3)))
            assert len(server.recv_messages.frames) == 3
            collector = Collector(stop_after=8)
            consuming = _start(server, collector)
            await _until(lambda: _delivering(server), "the fast path to be on")
            # consume() is delivering, and its recv() has not yet taken the queued three:
            # what arrives now (one read, then another) must not overtake them.
            assert len(server.recv_messages.frames) == 3
            server.data_received(_text("late 0") + _binary(b"late 1"))
            server.data_received(_text("late 2"))
            await collector.wait_for(6)
            await _waiting(server)
            # The queue drained: the fast path takes the next read.
            taps = Taps(server)
            server.data_received(_text("fast 0") + _text("fast 1"))
            await consuming
            return collector.messages, taps.counts()

    messages, (parsed, _queued) = _run(main())
    assert messages == [
        "early 0",
        "early 1",
        "early 2",
        "late 0",
        b"late 1",
        "late 2",
        "fast 0",
        "fast 1",
    ]
    assert parsed == 0


def test_many_queued_messages_that_paused_reading_all_come_in_order() -> None:
    count = 60  # beyond max_queue: the Assembler pauses reading until consume drains it

    async def main() -> list[Data]:
        async with _link(max_queue=4) as (server, client):
            for index in range(count):
                await client.send(f"early {index}")
            await _until(lambda: server.recv_messages.paused, "reading to pause")
            collector = Collector(stop_after=count + 3)
            consuming = _start(server, collector)
            for index in range(3):
                await client.send(f"late {index}")
            await consuming
            return collector.messages

    assert _run(main()) == [f"early {index}" for index in range(count)] + [
        f"late {index}" for index in range(3)
    ]


# -- reads: shared, split, long ----------------------------------------------------------


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_frames_sharing_a_read_or_split_across_reads_come_whole_and_in_order(
    server_class: type[ServerConnection],
) -> None:
    medium = "m" * 1400  # a 16-bit length
    large = bytes(range(256)) * 274  # 70,144 bytes: a 64-bit length
    small = [_text(f"s{index}") for index in range(3)]
    medium_frame = _text(medium)
    large_frame = _binary(large)
    reads = [
        small[0] + small[1] + small[2][:1],  # two whole frames and a third's first byte
        small[2][1:] + medium_frame[:3],  # its rest; a 16-bit length cut in two
        medium_frame[3:6],  # the length's rest, part of the mask key
        medium_frame[6:700],  # the key's rest, half the payload
        medium_frame[700:] + large_frame[:5],  # a 64-bit length cut
        large_frame[5:40000],
        large_frame[40000:] + _text("after the long ones") + _binary(b"\x00\x01"),
        _text("in a read of its own"),
    ]
    expected: list[Data] = [
        "s0",
        "s1",
        "s2",
        medium,
        large,
        "after the long ones",
        b"\x00\x01",
        "in a read of its own",
    ]

    async def main() -> list[Data]:
        async with _link(server_class) as (server, _client):
            collector = Collector(stop_after=len(expected))
            consuming = await _started(server, collector)
            for data in reads:
                server.data_received(data)
            await consuming
            return collector.messages

    assert _run(main()) == expected


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_a_frame_split_at_any_byte_comes_whole_with_the_one_after(
    server_class: type[ServerConnection],
) -> None:
    cases: list[tuple[Data, bytes]] = [
        ("hello", _text("hello")),  # 2-byte header, mask key, payload
        ("x" * 300, _text("x" * 300)),  # a 16-bit length
        (b"y" * 65536, _binary(b"y" * 65536)),  # a 64-bit length
    ]

    async def main() -> list[tuple[int, int | None, list[Data]]]:
        wrong: list[tuple[int, int | None, list[Data]]] = []
        async with _link(server_class) as (server, _client):
            for message, frame in cases:
                # Every cut in the header and mask key, and some in the payload; in two
                # reads or three.
                for first in [*range(1, 16), len(frame) // 2, len(frame) - 1]:
                    for second in (None, first + 1):
                        pieces = [frame[:first], frame[first:]]
                        if second is not None:
                            pieces = [frame[:first], frame[first:second], frame[second:]]
                        pieces[-1] += _text("next")
                        collector = Collector(stop_after=2)
                        consuming = await _started(server, collector)
                        for piece in pieces:
                            server.data_received(piece)
                        await consuming
                        if collector.messages != [message, "next"]:
                            wrong.append((first, second, collector.messages))
        return wrong

    assert _run(main()) == []


# -- fragments and control frames --------------------------------------------------------


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_fragmented_messages_between_others_are_reassembled_in_place(
    server_class: type[ServerConnection],
) -> None:
    euro = "€".encode()  # three bytes, cut between fragments below
    reads = [
        _text("before")
        + _frame(Opcode.TEXT, b"frag", fin=False)
        + _frame(Opcode.CONT, b"men", fin=False)
        + _frame(Opcode.CONT, b"ted")
        + _text("between"),
        _frame(Opcode.BINARY, b"bin", fin=False),  # fragments in reads of their own
        _frame(Opcode.PING, b"inside a message"),  # control frames may come in between
        _frame(Opcode.CONT, b"ary", fin=False),
        _frame(Opcode.CONT, b"") + _text("after") + _frame(Opcode.TEXT, euro[:1], fin=False),
        _frame(Opcode.CONT, euro[1:] + b" sign") + _text("last"),
    ]

    async def main() -> list[Data]:
        async with _link(server_class) as (server, _client):
            collector = Collector(stop_after=7)
            consuming = await _started(server, collector)
            for data in reads:
                server.data_received(data)
            await consuming
            return collector.messages

    assert _run(main()) == [
        "before",
        "fragmented",
        "between",
        b"binary",
        "after",
        "€ sign",
        "last",
    ]


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_a_ping_between_data_frames_is_answered_and_the_data_is_intact(
    server_class: type[ServerConnection],
) -> None:
    async def main() -> tuple[list[Data], list[bytes], tuple[int, int]]:
        async with _link(server_class) as (server, client):
            pongs: list[bytes] = []
            ponged = asyncio.Event()
            process_event = client.process_event

            def watch(event: Any) -> None:
                if isinstance(event, Frame) and event.opcode is Opcode.PONG:
                    pongs.append(bytes(event.data))
                    ponged.set()
                process_event(event)

            client.process_event = watch  # type: ignore[method-assign]
            collector = Collector(stop_after=6)
            consuming = await _started(server, collector)
            taps = Taps(server)
            server.data_received(
                _text("one")
                + _frame(Opcode.PING, b"between")
                + _text("two")
                + _binary(b"three")
                + _frame(Opcode.PONG, b"unsolicited")  # ignored
                + _text("four")
            )
            await ponged.wait()
            # A real ping round trip among real messages, too.
            await client.send("five")
            pong = await client.ping(b"round trip")
            await client.send("six")
            async with asyncio.timeout(WAIT / 2):
                await pong
            await consuming
            return collector.messages, pongs, taps.counts()

    messages, pongs, (parsed, queued) = _run(main())
    assert messages == ["one", "two", b"three", "four", "five", "six"]
    assert pongs[0] == b"between"
    if server_class is DirectServerConnection:
        # The frames after the ping went through websockets' parser, and were handed
        # over from process_event, not queued in the Assembler for recv().
        assert parsed >= 1
        assert queued == 0


# -- what websockets refuses -------------------------------------------------------------

_NOT_UTF8 = _frame(Opcode.TEXT, b"\x80bad")


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
@pytest.mark.parametrize(
    "reads",
    [
        pytest.param(
            [_text("fine") + _frame(Opcode.TEXT, b"bad \xff\xfe") + _text("never")],
            id="in-one-read",
        ),
        pytest.param(
            [_text("fine"), _frame(Opcode.TEXT, b"bad \xc3")],  # a truncated character
            id="a-read-of-its-own",
        ),
        pytest.param(
            [
                _text("fine")
                + _frame(Opcode.PING, b"")
                + _frame(Opcode.TEXT, b"\xed\xa0\x80")  # a UTF-16 surrogate
                + _text("never")
            ],
            id="after-a-ping",
        ),
        pytest.param(
            [_text("fine"), _NOT_UTF8[:4], _NOT_UTF8[4:]],
            id="split",
        ),
        pytest.param(
            [_text("fine") + _frame(Opcode.TEXT, b"ba", fin=False) + _frame(Opcode.CONT, b"\xff")],
            id="fragmented",
        ),
    ],
)
def test_text_that_is_not_utf8_closes_with_1007_after_the_messages_before_it(
    server_class: type[ServerConnection], reads: list[bytes]
) -> None:
    async def main() -> tuple[list[Data], ConnectionClosedError, int | None]:
        async with _link(server_class) as (server, client):
            messages, error = await _consumed_until(ConnectionClosedError, server, reads)
            await client.wait_closed()
            return messages, error, client.close_code

    messages, error, client_saw = _run(main())
    assert messages == ["fine"]
    assert _sent_code(error) == 1007
    assert client_saw == 1007


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
@pytest.mark.parametrize(
    ("max_size", "oversize"),
    [
        pytest.param(1000, _text("x" * 1001), id="16-bit"),
        pytest.param(1000, _text("x" * 1001)[:4], id="16-bit-header-only"),
        pytest.param(1000, _binary(b"x" * 70000), id="64-bit"),
        pytest.param(1000, (b"\x82\xff" + (2**40).to_bytes(8, "big") + b"mask"), id="huge-header"),
        pytest.param((5000, 1000), _text("x" * 1001), id="fragment-limit"),
    ],
)
def test_a_frame_over_max_size_closes_with_1009_after_the_messages_before_it(
    server_class: type[ServerConnection],
    max_size: int | tuple[int, int],
    oversize: bytes,
) -> None:
    reads = [_text("fine") + _text("x" * 1000), oversize + _text("never")]
    messages, error = _consume_reads(server_class, ConnectionClosedError, reads, max_size=max_size)
    assert messages == ["fine", "x" * 1000]
    assert _sent_code(error) == 1009


@pytest.mark.parametrize(
    ("side", "frame"),
    [
        pytest.param("server", _binary(b"unmasked", mask=False), id="unmasked-from-a-client"),
        pytest.param("client", _binary(b"masked!!", mask=True), id="masked-from-a-server"),
        pytest.param(
            "server",
            bytes((0xC2,)) + _binary(b"rsv1")[1:],  # RSV1 set, and no extension negotiated
            id="reserved-bit",
        ),
    ],
)
def test_a_frame_masked_the_wrong_way_or_with_a_reserved_bit_closes_with_1002(
    side: str, frame: bytes
) -> None:
    async def main() -> tuple[list[Data], ConnectionClosedError]:
        async with _direct_client_link(server_class=DirectServerConnection) as (server, client):
            connection: Connection = server if side == "server" else client
            mask = side == "server"
            read = _binary(b"fine", mask=mask) + frame + _binary(b"never" * 4, mask=mask)
            # Bytes, not text: a frame misread as another must not be caught by UTF-8.
            return await _consumed_until(ConnectionClosedError, connection, [read], decode=False)

    messages, error = _run(main())
    assert messages == [b"fine"]
    assert _sent_code(error) == 1002


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_a_new_message_inside_a_fragmented_one_closes_with_1002(
    server_class: type[ServerConnection],
) -> None:
    reads = [
        _text("fine") + _frame(Opcode.TEXT, b"frag", fin=False),
        WAIT_FOR_RECV,  # consume's recv() holds the first fragment: nothing is queued
        _text("not a continuation"),
    ]
    messages, error = _consume_reads(server_class, ConnectionClosedError, reads)
    assert messages == ["fine"]
    assert _sent_code(error) == 1002


# -- decode ------------------------------------------------------------------------------


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
@pytest.mark.parametrize("decode", [None, True, False])
def test_decode_is_recvs_on_every_path(
    server_class: type[ServerConnection], decode: bool | None
) -> None:
    def as_handed(message: Data) -> Data:
        if decode is True:
            return message if isinstance(message, str) else message.decode()
        if decode is False:
            return message.encode() if isinstance(message, str) else message
        return message

    queued: list[Data] = ["queued text", b"queued binary"]
    fast: list[Data] = ["fast text é", b"fast binary"]
    parsed: list[Data] = ["parsed text", b"parsed binary"]

    def frame(message: Data) -> bytes:
        return _text(message) if isinstance(message, str) else _binary(message)

    async def main() -> list[Data]:
        async with _link(server_class) as (server, _client):
            server.data_received(b"".join(frame(message) for message in queued))
            collector = Collector(stop_after=6)
            consuming = _start(server, collector, decode=decode)
            await collector.wait_for(2)
            await _waiting(server)
            server.data_received(b"".join(frame(message) for message in fast))
            server.data_received(
                _frame(Opcode.PING, b"") + b"".join(frame(message) for message in parsed)
            )
            await consuming
            return collector.messages

    expected = [as_handed(message) for message in queued + fast + parsed]
    messages = _run(main())
    assert messages == expected
    assert [type(message) for message in messages] == [type(message) for message in expected]


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_with_decode_false_text_is_not_checked_for_utf8_as_with_recv(
    server_class: type[ServerConnection],
) -> None:
    async def main() -> list[Data]:
        async with _link(server_class) as (server, _client):
            collector = Collector(stop_after=3)
            consuming = _start(server, collector, decode=False)
            await _waiting(server)
            server.data_received(_frame(Opcode.TEXT, b"\xff") + _text("ok"))
            server.data_received(_frame(Opcode.PING, b"") + _frame(Opcode.TEXT, b"\xfe"))
            await consuming
            return collector.messages

    assert _run(main()) == [b"\xff", b"ok", b"\xfe"]


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_with_decode_true_binary_that_is_not_utf8_closes_with_1007(
    server_class: type[ServerConnection],
) -> None:
    read = _binary(b"fine") + _binary(b"\xff") + _binary(b"never")
    messages, error = _consume_reads(server_class, ConnectionClosedError, [read], decode=True)
    assert messages == ["fine"]
    assert _sent_code(error) == 1007


# -- the handler ends it -----------------------------------------------------------------


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
@pytest.mark.parametrize(
    "route",
    ["fast", "parsed", "queued"],
)
def test_a_handler_returning_true_ends_consume_and_is_handed_nothing_more(
    server_class: type[ServerConnection], route: str
) -> None:
    async def main() -> list[Data]:
        async with _link(server_class) as (server, client):
            collector = Collector(stop_on="stop")
            burst = _text("a") + _text("stop") + _text("b") + _text("c")
            consuming = await _fed(route, server, collector, burst)
            await consuming
            # What arrives after it ended is not handed over either.
            server.data_received(_text("d"))
            await client.send("e")
            await (await client.ping())  # the server has read "e"
            return collector.messages

    assert _run(main()) == ["a", "stop"]


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
@pytest.mark.parametrize("route", ["fast", "parsed", "queued"])
def test_a_handler_raising_ends_consume_with_that_exception(
    server_class: type[ServerConnection], route: str
) -> None:
    failure = ValueError("cannot take this one")

    async def main() -> list[Data]:
        async with _link(server_class) as (server, client):
            collector = Collector(fail_on="boom", fail_with=failure)
            burst = _text("a") + _text("boom") + _text("b")
            consuming = await _fed(route, server, collector, burst)
            with pytest.raises(ValueError, match="cannot take this one") as raised:
                await consuming
            assert raised.value is failure
            server.data_received(_text("c"))
            await client.send("d")
            await (await client.ping())  # the server has read "d"
            return collector.messages

    assert _run(main()) == ["a", "boom"]


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
@pytest.mark.parametrize("ending", ["returns-true", "raises"])
@pytest.mark.parametrize("route", ["fast", "parsed", "queued"])
def test_messages_after_the_one_that_ended_consume_stay_on_the_connection(
    server_class: type[ServerConnection], ending: str, route: str
) -> None:
    """As after a recv() loop that stopped: the next recv() (or consume) gets the rest."""

    async def main() -> tuple[list[Data], list[Data]]:
        async with _link(server_class) as (server, _client):
            collector = Collector(stop_on="end", fail_on="end", fail_with=ValueError("end"))
            if ending == "returns-true":
                collector.fail_on = None
            burst = _text("a") + _text("end") + _text("b") + _binary(b"c")
            consuming = await _fed(route, server, collector, burst)
            try:
                await consuming
            except ValueError:
                assert ending == "raises"
            server.data_received(_text("d"))
            rest: list[Data] = []
            while "d" not in rest:
                rest.append(await server.recv())
            return collector.messages, rest

    handed, rest = _run(main())
    assert handed == ["a", "end"]
    assert rest == ["b", b"c", "d"], (
        f"messages read after consume ended: {rest}; 'b' (the one right after the one that "
        "ended consume, in the same read) was taken off the connection and dropped"
    )


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_consume_again_after_it_ended_takes_up_where_it_left_off(
    server_class: type[ServerConnection],
) -> None:
    last = _text("split across the two")

    async def main() -> list[Data]:
        async with _link(server_class) as (server, client):
            first = Collector(stop_on="end")
            consuming = _start(server, first)
            await _waiting(server)
            server.data_received(_text("a") + _text("end"))
            await consuming
            server.data_received(last[:5])  # half a frame, between the two consumes
            second = Collector(stop_after=3)
            consuming = _start(server, second)
            await _waiting(server)
            server.data_received(last[5:] + _text("then"))
            await client.send("and more")
            await consuming
            return first.messages + second.messages

    assert _run(main()) == ["a", "end", "split across the two", "then", "and more"]


# -- closing -----------------------------------------------------------------------------


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_a_normal_close_raises_connection_closed_ok_after_every_message(
    server_class: type[ServerConnection],
) -> None:
    async def main() -> tuple[list[Data], ConnectionClosedOK]:
        async with _link(server_class) as (server, client):
            collector = Collector()
            consuming = await _started(server, collector)
            await client.send("one")
            await client.send(b"two")
            await client.close(1000, "done")
            with pytest.raises(ConnectionClosedOK) as raised:
                await consuming
            return collector.messages, raised.value

    messages, closed = _run(main())
    assert messages == ["one", b"two"]
    assert _received_code(closed) == 1000
    assert closed.rcvd.reason == "done"


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_a_close_frame_in_the_same_read_ends_it_and_what_follows_is_not_handed_over(
    server_class: type[ServerConnection],
) -> None:
    reads = [
        _text("one") + _close(1000, "bye") + _text("after the close"),
        _text("in a read after the close"),
    ]
    messages, closed = _consume_reads(server_class, ConnectionClosedOK, reads)
    assert messages == ["one"]
    assert _received_code(closed) == 1000


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_consume_on_a_closed_connection_hands_over_what_was_queued_then_raises(
    server_class: type[ServerConnection],
) -> None:
    async def main() -> list[Data]:
        async with _link(server_class) as (server, client):
            await client.send("one")
            await client.send("two")
            await client.close()
            await server.wait_closed()
            collector = Collector()
            with pytest.raises(ConnectionClosedOK):
                await consume(server, collector)
            return collector.messages

    assert _run(main()) == ["one", "two"]


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_an_aborted_connection_raises_connection_closed_error(
    server_class: type[ServerConnection],
) -> None:
    async def main() -> tuple[list[Data], ConnectionClosedError]:
        async with _link(server_class) as (server, client):
            collector = Collector()
            consuming = await _started(server, collector)
            await client.send("one")
            await collector.wait_for(1)
            client.transport.abort()
            with pytest.raises(ConnectionClosedError) as raised:
                await consuming
            return collector.messages, raised.value

    messages, error = _run(main())
    assert messages == ["one"]
    assert error.rcvd is None


# -- context -----------------------------------------------------------------------------

CALL = contextvars.ContextVar[str]("CALL", default="unset")


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_the_handler_runs_in_the_context_of_the_task_that_consumes(
    server_class: type[ServerConnection],
) -> None:
    seen: list[tuple[Data, str, object]] = []

    def handle(message: Data) -> bool:
        seen.append((message, CALL.get(), structlog.contextvars.get_contextvars().get("call_sid")))
        return message == "stop"

    async def consuming(server: ServerConnection) -> None:
        CALL.set("consumer")
        structlog.contextvars.bind_contextvars(call_sid="CA123")
        await consume(server, handle)

    async def main() -> None:
        CALL.set("test")  # the task that injects reads (and the server's reader) has its own
        async with _link(server_class) as (server, client):
            server.data_received(_text("queued"))
            task = asyncio.ensure_future(consuming(server))
            await _until(lambda: bool(seen), "the queued message")
            await _waiting(server)
            await client.send("sent")  # read by the loop, off any task
            await _until(lambda: len(seen) == 2, "the sent message")
            server.data_received(_text("injected"))
            server.data_received(_frame(Opcode.PING, b"") + _text("parsed"))
            server.data_received(_text("stop"))
            await task

    _run(main())
    assert seen == [
        (message, "consumer", "CA123")
        for message in ("queued", "sent", "injected", "parsed", "stop")
    ]


# -- cancelling --------------------------------------------------------------------------


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_cancelling_consume_leaves_what_it_did_not_hand_over_on_the_connection(
    server_class: type[ServerConnection],
) -> None:
    async def main() -> tuple[list[Data], list[Data]]:
        async with _link(server_class) as (server, client):
            collector = Collector()
            consuming = await _started(server, collector)
            await client.send("handed over")
            await collector.wait_for(1)
            consuming.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consuming
            server.data_received(_text("one") + _binary(b"two"))
            await client.send("three")
            rest = [await server.recv() for _ in range(3)]
            return collector.messages, rest

    handed, rest = _run(main())
    assert handed == ["handed over"]
    assert rest == ["one", b"two", "three"]


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_cancelling_consume_inside_a_fragmented_message_keeps_its_fragments(
    server_class: type[ServerConnection],
) -> None:
    async def main() -> tuple[list[Data], list[Data]]:
        async with _link(server_class) as (server, _client):
            collector = Collector()
            consuming = await _started(server, collector)
            server.data_received(_frame(Opcode.TEXT, b"frag", fin=False))
            # consume's recv() has taken the first fragment and waits for the next.
            await _waiting(server)
            consuming.cancel()
            with pytest.raises(asyncio.CancelledError):
                await consuming
            server.data_received(_frame(Opcode.CONT, b"mented") + _text("next"))
            rest = [await server.recv(), await server.recv()]
            return collector.messages, rest

    handed, rest = _run(main())
    assert handed == []
    assert rest == ["fragmented", "next"]


# -- the client side ---------------------------------------------------------------------


@asynccontextmanager
async def _direct_client_link(
    sends: list[Data] | None = None,
    server_class: type[ServerConnection] = ServerConnection,
) -> AsyncIterator[tuple[ServerConnection, ClientConnection]]:
    """A websockets server (plain unless told) and a DirectClientConnection; on the
    client's "go" the server sends ``sends``."""
    accepted: asyncio.Future[ServerConnection] = asyncio.get_running_loop().create_future()

    async def handler(connection: ServerConnection) -> None:
        accepted.set_result(connection)
        if sends is not None:
            assert await connection.recv() == "go"
            for message in sends:
                await connection.send(message)
        await connection.wait_closed()

    async with serve(
        handler, "127.0.0.1", 0, create_connection=server_class, compression=None
    ) as server:
        port = server.sockets[0].getsockname()[1]
        async with connect(
            f"ws://127.0.0.1:{port}", create_connection=DirectClientConnection, compression=None
        ) as client:
            assert type(client) is DirectClientConnection
            yield await accepted, client


def test_a_direct_client_takes_the_servers_frames_through_the_fast_path_as_bytes() -> None:
    sends: list[Data] = [f'{{"n":{index}}}' for index in range(20)] + [b"\x00\xffraw"]

    async def main() -> tuple[list[Data], tuple[int, int]]:
        async with _direct_client_link(sends) as (_server, client):
            collector = Collector(stop_after=len(sends))
            consuming = _start(client, collector, decode=False)
            await _waiting(client)
            taps = Taps(client)
            await client.send("go")
            await consuming
            return collector.messages, taps.counts()

    messages, (parsed, queued) = _run(main())
    assert messages == [m.encode() if isinstance(m, str) else m for m in sends]
    assert all(type(message) is bytes for message in messages)
    assert parsed == 0
    assert queued == 0


def test_a_direct_client_takes_split_shared_and_long_unmasked_frames_in_order() -> None:
    large = b"z" * 70000
    first = _text("first", mask=False)
    long = _binary(large, mask=False)
    reads = [
        first + _text("second", mask=False)[:1],
        _text("second", mask=False)[1:] + long[:6],
        long[6:30000],
        long[30000:]
        + _frame(Opcode.PING, b"", mask=False)
        + _frame(Opcode.TEXT, b"frag", fin=False, mask=False),
        _frame(Opcode.CONT, b"mented", mask=False) + _text("last", mask=False),
    ]

    async def main() -> list[Data]:
        async with _direct_client_link() as (_server, client):
            collector = Collector(stop_after=5)
            consuming = _start(client, collector, decode=False)
            await _waiting(client)
            for data in reads:
                client.data_received(data)
            await consuming
            return collector.messages

    assert _run(main()) == [b"first", b"second", large, b"fragmented", b"last"]


# -- everything at once, against websockets' own connection ------------------------------


def _random_wire(rng: random.Random, count: int) -> tuple[list[bytes], list[Data]]:
    """``count`` messages as frames (some fragmented, with control frames in between),
    and the messages a handler must be handed."""
    frames: list[bytes] = []
    messages: list[Data] = []
    alphabet = "abcxyz é€𝄞"
    for _ in range(count):
        kind = rng.choices(["text", "binary", "fragmented", "ping", "pong"], [6, 5, 2, 1, 1])[0]
        size = rng.choices(
            [rng.randrange(0, 126), rng.randrange(126, 3000), rng.randrange(65536, 70000)],
            [30, 6, 1],
        )[0]
        if kind in ("ping", "pong"):
            opcode = Opcode.PING if kind == "ping" else Opcode.PONG
            frames.append(_frame(opcode, rng.randbytes(rng.randrange(0, 126))))
            continue
        if kind == "binary" or (kind == "fragmented" and rng.random() < 0.5):
            payload, opcode = rng.randbytes(size), Opcode.BINARY
            messages.append(payload)
        else:
            text = "".join(rng.choice(alphabet) for _ in range(size // 2))
            payload, opcode = text.encode(), Opcode.TEXT
            messages.append(text)
        if kind != "fragmented":
            frames.append(_frame(opcode, payload))
            continue
        cuts = sorted(rng.sample(range(len(payload) + 1), min(rng.randrange(1, 4), len(payload))))
        pieces = [payload[a:b] for a, b in itertools.pairwise([0, *cuts, len(payload)])]
        for index, piece in enumerate(pieces):
            frames.append(
                _frame(opcode if index == 0 else Opcode.CONT, piece, fin=index == len(pieces) - 1)
            )
            if rng.random() < 0.2:
                frames.append(_frame(Opcode.PING, b"within"))
    return frames, messages


def _random_reads(rng: random.Random, frames: list[bytes]) -> list[bytes]:
    """The frames cut into reads: at some frame borders, and anywhere at all."""
    stream = b"".join(frames)
    borders: list[int] = []
    at = 0
    for frame in frames:
        at += len(frame)
        borders.append(at)
    cuts = {border for border in borders[:-1] if rng.random() < 0.5}
    cuts |= {rng.randrange(1, len(stream)) for _ in range(len(frames) // 3)}
    edges = [0, *sorted(cuts), len(stream)]
    return [stream[a:b] for a, b in itertools.pairwise(edges)]


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("decode", [None, False])
def test_any_mix_of_frames_and_reads_is_handed_over_exactly_once_in_order(
    server_class: type[ServerConnection], seed: int, decode: bool | None
) -> None:
    rng = random.Random(seed)
    frames, expected = _random_wire(rng, 150)
    reads = _random_reads(rng, frames)
    yields = [rng.randrange(3) for _ in reads]  # let consume's recv() run in between, or not
    if decode is False:
        expected = [m.encode() if isinstance(m, str) else m for m in expected]

    async def main() -> list[Data]:
        async with _link(server_class) as (server, _client):
            # Some queued before consume starts.
            server.data_received(_text("queued 0") + _binary(b"queued 1"))
            collector = Collector(stop_after=len(expected) + 2)
            consuming = _start(server, collector, decode=decode)
            for data, pause in zip(reads, yields, strict=True):
                server.data_received(data)
                for _ in range(pause):
                    await asyncio.sleep(0)
            await consuming
            return collector.messages

    queued: list[Data] = [b"queued 0" if decode is False else "queued 0", b"queued 1"]
    messages = _run(main())
    assert len(messages) == len(queued + expected)
    assert messages == queued + expected


# -- send_text_now -----------------------------------------------------------------------


class _Writes:
    """From now on: every write the connection makes to its transport, and how many
    frames websockets' protocol built (none, for a frame send_text_now writes itself)."""

    def __init__(self, connection: Connection) -> None:
        self.writes: list[bytes] = []
        self.frames_built = 0
        transport, protocol = connection.transport, connection.protocol
        write, send_frame = transport.write, protocol.send_frame

        def counted_write(data: bytes | bytearray | memoryview) -> None:
            self.writes.append(bytes(data))
            write(data)

        def counted_send_frame(frame: Frame) -> None:
            self.frames_built += 1
            send_frame(frame)

        transport.write = counted_write  # type: ignore[method-assign]
        protocol.send_frame = counted_send_frame  # type: ignore[method-assign]


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_send_text_now_from_the_server_arrives_whole_without_a_frame_object(size: int) -> None:
    text = "".join(chr(ord("a") + index % 26) for index in range(size))

    async def main() -> tuple[list[Data], int, int]:
        async with _link() as (server, client):
            taps = _Writes(server)
            send_text_now(server, text.encode())
            send_text_now(server, b"after")
            received = [await client.recv(), await client.recv()]
            return received, len(taps.writes), taps.frames_built

    received, writes, frames_built = _run(main())
    assert received == [text, "after"]
    assert writes == 2  # one transport write per message
    assert frames_built == 0


def test_send_text_now_from_a_client_is_masked_with_a_fresh_key_per_frame() -> None:
    count = 1500  # past one 4 KiB batch of keys (1,024 frames)

    async def main() -> tuple[list[Data], list[bytes], int]:
        async with _direct_client_link() as (server, client):
            taps = _Writes(client)
            for index in range(count):
                send_text_now(client, f"frame {index}".encode())
            received = [await server.recv() for _ in range(count)]
            return received, list(taps.writes), taps.frames_built

    received, writes, frames_built = _run(main())
    # websockets' server closes with 1002 on a client frame that is not masked.
    assert received == [f"frame {index}" for index in range(count)]
    assert frames_built == 0
    assert len(writes) == count
    assert all(write[1] & 0x80 for write in writes)
    assert len({write[2:6] for write in writes}) > count - 5  # 32-bit random keys


@pytest.mark.parametrize("server_class", SERVER_CLASSES)
def test_send_text_now_after_close_raises_as_websockets_does(
    server_class: type[ServerConnection],
) -> None:
    async def main() -> None:
        async with _link(server_class) as (server, _client):
            await server.close()
            with pytest.raises(InvalidState):
                send_text_now(server, b"too late")

    _run(main())


def test_send_text_now_on_a_plain_connection_goes_through_websockets() -> None:
    async def main() -> tuple[Data, int]:
        async with _link(ServerConnection) as (server, client):
            taps = _Writes(server)
            send_text_now(server, b"plain")
            return await client.recv(), taps.frames_built

    assert _run(main()) == ("plain", 1)


# -- writable_now ----------------------------------------------------------------------


def test_writable_now_until_the_transport_backs_up_and_again_once_it_drains() -> None:
    chunk = b"x" * (1 << 20)

    async def main() -> tuple[bool, int, bool, int]:
        async with _link() as (server, client):
            idle = writable_now(server)
            written = 0
            # Written without yielding, so the client cannot read: the kernel's buffers
            # fill, then the transport's, and websockets' flow control pauses writing.
            while writable_now(server) and written < 64:
                send_text_now(server, chunk)
                written += 1
            received = [await client.recv() for _ in range(written)]
            await _until(lambda: writable_now(server), "the transport to drain")
            return idle, written, all(len(m) == len(chunk) for m in received), len(received)

    idle, written, whole, received = _run(main())
    assert idle
    assert 0 < written < 64
    assert whole
    assert received == written


def test_not_writable_now_while_a_send_is_in_progress_or_once_closed() -> None:
    async def main() -> tuple[bool, bool, bool]:
        async with _link() as (server, client):
            release = asyncio.Event()

            async def fragments() -> AsyncIterator[str]:
                yield "first "
                await release.wait()
                yield "last"

            sending = asyncio.ensure_future(server.send(fragments()))
            await _until(lambda: server.send_in_progress is not None, "the send to start")
            during = writable_now(server)
            release.set()
            await sending
            assert await client.recv() == "first last"
            after = writable_now(server)
            await server.close()
            return during, after, writable_now(server)

    assert _run(main()) == (False, True, False)


# -- send_text_now over TLS ----------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificate:
    return create_local_certificate(tmp_path_factory.mktemp("tls"))


def _tls_link(
    certificate: LocalCertificate, client_class: type[ClientConnection] = DirectClientConnection
) -> Any:
    """A link over TLS: websockets' own server, a Direct client unless told."""
    return _link(ServerConnection, client_class=client_class, tls=certificate)


class _TlsWrites:
    """From now on: what the connection hands asyncio's TLS transport (``write``), and
    what reaches the socket's own transport underneath (encrypted)."""

    def __init__(self, connection: Connection) -> None:
        self.app_writes = 0
        self.socket_writes = 0
        app_transport = connection.transport
        tls = app_transport._ssl_protocol  # type: ignore[attr-defined]
        app_write, socket_write = app_transport.write, tls._transport.write

        def counted_app_write(data: bytes | bytearray | memoryview) -> None:
            self.app_writes += 1
            app_write(data)

        def counted_socket_write(data: bytes | bytearray | memoryview) -> None:
            self.socket_writes += 1
            socket_write(data)

        app_transport.write = counted_app_write  # type: ignore[method-assign]
        tls._transport.write = counted_socket_write


@pytest.mark.parametrize("size", [0, 125, 16384, 70000])
def test_send_text_now_over_tls_is_encrypted_straight_to_the_socket(
    certificate: LocalCertificate, size: int
) -> None:
    text = "".join(chr(ord("a") + index % 26) for index in range(size))
    count = 20

    async def main() -> tuple[list[Data], int, int]:
        async with _tls_link(certificate) as (server, client):
            taps = _TlsWrites(client)
            for index in range(count):
                send_text_now(client, f"{index}:{text}".encode())
            received = [await server.recv() for _ in range(count)]
            return received, taps.app_writes, taps.socket_writes

    received, app_writes, socket_writes = _run(main())
    assert received == [f"{index}:{text}" for index in range(count)]
    assert app_writes == 0  # asyncio's TLS transport write (and its bookkeeping) skipped
    assert socket_writes == count


def test_send_text_now_over_tls_queues_behind_what_asyncio_holds(
    certificate: LocalCertificate,
) -> None:
    """While the socket's transport is full (asyncio has paused TLS writing), messages go
    through asyncio's queue; once it drains, everything arrives in order."""

    async def main() -> tuple[list[Data], int]:
        async with _tls_link(certificate) as (server, client):
            tls = client.transport._ssl_protocol  # type: ignore[attr-defined]
            taps = _TlsWrites(client)
            send_text_now(client, b"before")
            tls.pause_writing()  # what the socket's transport does above its high water
            send_text_now(client, b"held 1")
            assert tls._outgoing.pending  # encrypted by asyncio and held, not written
            tls.resume_writing()
            send_text_now(client, b"held 2")  # asyncio's queue is flushed first
            send_text_now(client, b"after")
            received = [await server.recv() for _ in range(4)]
            return received, taps.app_writes

    received, app_writes = _run(main())
    assert received == ["before", "held 1", "held 2", "after"]
    assert app_writes == 1  # only "held 1" went through asyncio's TLS transport


# -- reading TLS ---------------------------------------------------------------------------


class _TlsReads:
    """From now on: the connection's reads of decrypted data, and how many ended on
    ``SSLWantReadError`` (nothing whole left to decrypt)."""

    def __init__(self, connection: Connection) -> None:
        self.reads = 0
        self.again = 0
        sslobj = connection.transport._ssl_protocol._sslobj  # type: ignore[attr-defined]
        read = sslobj.read

        def counted_read(*args: Any) -> bytes:
            self.reads += 1
            try:
                return bytes(read(*args))
            except ssl.SSLWantReadError:
                self.again += 1
                raise

        sslobj.read = counted_read


def _tls_raw(connection: Connection, data: bytes) -> bytes:
    """``data`` encrypted by ``connection``'s TLS layer, as it would go on the wire."""
    tls = connection.transport._ssl_protocol  # type: ignore[attr-defined]
    tls._sslobj.write(data)
    return bytes(tls._outgoing.read())


@pytest.mark.parametrize("client_class", [DirectClientConnection, ClientConnection])
def test_tls_reads_end_when_the_input_is_used_up_not_on_an_exception(
    certificate: LocalCertificate, client_class: type[ClientConnection]
) -> None:
    count = 20

    async def main() -> tuple[list[Data], int, int]:
        async with _tls_link(certificate, client_class) as (server, client):
            collector = Collector()
            consuming = _start(client, collector)
            reads = _TlsReads(client)
            for index in range(count):
                await server.send(f"message {index}")
                await collector.wait_for(index + 1)
            await server.close()
            with pytest.raises(ConnectionClosedOK):
                await consuming
            return collector.messages, reads.reads, reads.again

    messages, reads, again = _run(main())
    assert messages == [f"message {index}" for index in range(count)]
    if client_class is DirectClientConnection:
        assert again <= 1  # the close handshake's own read may end on it
        assert reads <= count + 3  # one per message, then the close and close_notify
    else:  # asyncio's own reads: one more per read, which raises
        assert again >= count


@pytest.mark.parametrize("size", [0, 125, 16384, 70000, 300000])
def test_tls_messages_in_bursts_of_records_arrive_whole_and_in_order(
    certificate: LocalCertificate, size: int
) -> None:
    text = "".join(chr(ord("a") + index % 26) for index in range(size))
    count = 12

    async def main() -> list[Data]:
        async with _tls_link(certificate) as (server, client):
            collector = Collector(stop_after=count)
            consuming = _start(client, collector)
            for index in range(count):  # no wait between: reads carry several records
                await server.send(f"{index}:{text}")
            await consuming
            return collector.messages

    assert _run(main()) == [f"{index}:{text}" for index in range(count)]


def test_a_tls_record_cut_across_reads_is_read_once_it_is_whole(
    certificate: LocalCertificate,
) -> None:
    async def main() -> tuple[list[Data], list[Data]]:
        async with _tls_link(certificate) as (server, client):
            collector = Collector()
            consuming = _start(client, collector)
            reads = _TlsReads(client)
            raw = _tls_raw(server, _text("cut in two", mask=False) + _text("next", mask=False))
            socket = server.transport._ssl_protocol._transport  # type: ignore[attr-defined]
            socket.write(raw[:9])  # the record's header and a few bytes
            await _until(lambda: reads.again >= 1, "the client to try the cut record")
            before = list(collector.messages)
            socket.write(raw[9:])
            await collector.wait_for(2)
            consuming.cancel()
            return before, collector.messages

    before, after = _run(main())
    assert before == []
    assert after == ["cut in two", "next"]


def test_a_tls_record_larger_than_one_read_is_read_to_its_end(
    certificate: LocalCertificate,
) -> None:
    # asyncio reads at most max_size bytes at a time; what a record has left after one
    # read is OpenSSL's, not the input's, and must be read too.
    async def main() -> list[Data]:
        async with _tls_link(certificate) as (server, client):
            client.transport._ssl_protocol.max_size = 100  # type: ignore[attr-defined]
            collector = Collector(stop_after=1)
            consuming = _start(client, collector)
            await server.send("x" * 5000)  # and nothing after it to bring the rest
            await consuming
            return collector.messages

    assert _run(main()) == ["x" * 5000]
