"""WebSocket messages handed to their handler as they arrive, without a task hop each.

websockets' asyncio connections parse each read with a chain of generators, queue every
frame in an ``Assembler``, and ``recv()`` takes it from there in the reading task, which
the event loop resumes on a later pass. For a call's audio (50 small messages a second
each way, per call) that machinery is most of what a message costs.

:class:`DirectServerConnection` and :class:`DirectClientConnection` are websockets'
own connections (``create_connection=`` of ``serve`` and ``connect``) with one change:
while :func:`consume` runs, each complete, unfragmented text or binary frame that a read
brings is handed to the handler from ``data_received``. Everything else (control frames,
fragments, a frame split across reads, a text frame that is not UTF-8, anything out of
the ordinary, and messages already queued when delivery started) goes through websockets'
own parser, ``Assembler`` and ``recv()`` as before, and reaches the same handler. The
handler sees every message once, in wire order; websockets still does the handshake,
pings, closing and every error.

Over TLS, :func:`send_text_now` encrypts straight to the socket's transport when asyncio
holds nothing back (:func:`_write_tls`), and the Direct connections' reads end once the
input is used up rather than on an exception (:func:`_read_tls_without_raising`). Both
read asyncio's own TLS state, and leave the work to asyncio wherever it is not as
expected.

What it reaches for, and its twin. websockets: ``Connection.send_in_progress``,
``.paused``, ``.recv_messages.frames.queue``, ``.protocol`` (``state``, ``side``,
``extensions``, ``writes``, ``expect_continuation_frame``, ``parser`` and its generators'
``gi_yieldfrom``, ``reader.buffer``, ``current_size``/``cur_size``, ``max_message_size``/
``max_size``), ``send_data()``, ``process_event()`` and ``data_received()``; asyncio:
``_SSLProtocolTransport._ssl_protocol`` and ``SSLProtocol``'s ``_state``,
``_write_backlog``, ``_ssl_writing_paused``, ``_app_writing_paused``, ``_sslobj``,
``_outgoing``, ``_incoming``, ``_transport``, ``max_size``, ``_app_protocol``,
``_do_read__copied``, ``_call_eof_received``, ``_start_shutdown`` and
``sslproto.SSLProtocolState``. :data:`SWITCH` decides once, before the first Direct
connection is made (the daemon decides when it starts): off when ``TARS_NO_FAST_PATHS``
names ``ws_delivery`` (see :mod:`tars_actors.net.fast_paths`), or when its self-test
(:mod:`tars_actors.net._ws_delivery_check`: a WebSocket round trip over 127.0.0.1 through
both Direct connections, each direction parsed once by this module and once by websockets,
and an ``SSLProtocol`` started on a memory transport) finds a name missing or not
behaving. Off, a Direct connection is websockets' own connection (its overrides pass
straight through), :func:`writable_now` is False, so that writers await ``send()``, and
:func:`consume` loops on ``recv()``.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import secrets
import ssl
from collections.abc import Callable, Sized
from typing import Any, Final

from websockets.asyncio.client import ClientConnection
from websockets.asyncio.connection import Connection
from websockets.asyncio.server import ServerConnection
from websockets.frames import Frame, Opcode
from websockets.protocol import Protocol, Side, State
from websockets.typing import Data

from tars_actors.net.fast_paths import FastPathSwitch

try:  # the C version, which websockets itself uses when it is built
    from websockets.speedups import apply_mask
except ImportError:  # pragma: no cover (pure-Python installs)
    from websockets.utils import apply_mask

__all__ = [
    "SWITCH",
    "DirectClientConnection",
    "DirectServerConnection",
    "MessageHandler",
    "consume",
    "send_text_now",
    "writable_now",
]

MessageHandler = Callable[[Data], bool]
"""Takes one message; returns True to stop consuming (the message ended the stream)."""

_TEXT, _BINARY = Opcode.TEXT.value, Opcode.BINARY.value

try:  # asyncio's TLS protocol state in which application data is written at once
    from asyncio.sslproto import SSLProtocolState

    _TLS_WRAPPED: object = SSLProtocolState.WRAPPED
except ImportError:  # pragma: no cover (another asyncio: _write_tls always declines)
    _TLS_WRAPPED = object()

#: What ends a TLS read in asyncio (sslproto.SSLAgainErrors): no whole record left.
_TLS_AGAIN: Final = (ssl.SSLWantReadError, ssl.SSLSyscallError)


class _DirectDelivery(Connection):
    """The fast path, shared by both sides; see the module docstring."""

    _direct: Callable[[Data], None] | None = None
    _direct_decode: bool | None = None
    _direct_limit: int | None = None
    #: The Assembler's frame queue: while it holds anything, new messages queue behind.
    _direct_queue: Sized = ()
    #: Known to sit between frames: set after a check, cleared whenever the parser is fed.
    _between_frames = False
    #: Whether this connection takes the fast path: :data:`SWITCH`'s decision when it
    #: was made. Off, every override here passes straight through to websockets.
    fast = False
    #: The self-test's connections take the fast path while it is being decided.
    _trial = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.fast = True if self._trial else SWITCH.status().on
        super().connection_made(transport)
        if self.fast:
            _read_tls_without_raising(transport)

    #: The context ``deliver`` runs in (the consuming task's), set with it.
    _direct_context = contextvars.Context()

    def start_direct(
        self, deliver: Callable[[Data], None], decode: bool | None, context: contextvars.Context
    ) -> None:
        """Hand messages to ``deliver`` from now on, in ``context``, unless this websockets
        does not keep its queue where it can be seen: then everything goes through
        ``recv()``."""
        queue = getattr(getattr(self.recv_messages, "frames", None), "queue", None)
        if not isinstance(queue, Sized):
            return
        self._direct_queue = queue
        self._direct_decode = decode
        self._direct_limit = _message_limit(self.protocol)
        self._direct_context = context
        self._direct = deliver

    def stop_direct(self) -> None:
        self._direct = None

    def write_text_frame(self, data: bytes) -> bool:
        """Write one text message to the transport as a single frame, as
        ``protocol.send_text(data)`` and ``send_data()`` would, without building a Frame
        for it; False, writing nothing, unless the protocol is open and idle."""
        protocol = self.protocol
        if (
            protocol.state is not State.OPEN
            or protocol.expect_continuation_frame
            or protocol.extensions
            or protocol.writes
        ):
            return False
        length = len(data)
        masked = protocol.side is Side.CLIENT
        # FIN and text; then the mask bit (a client's frames, RFC 6455 5.3) and the length.
        second = 0x80 if masked else 0x00
        if length < 126:
            header = bytes((0x81, second | length))
        elif length < 65536:
            header = bytes((0x81, second | 126)) + length.to_bytes(2, "big")
        else:
            header = bytes((0x81, second | 127)) + length.to_bytes(8, "big")
        if masked:
            # A fresh unpredictable key per frame, from the OS's CSPRNG (read 4 KiB at a
            # time rather than one system call per frame).
            keys, at = self._mask_keys, self._mask_key_at
            if at + 4 > len(keys):
                keys, at = secrets.token_bytes(4096), 0
                self._mask_keys = keys
            self._mask_key_at = at + 4
            key = keys[at : at + 4]
            frame = header + key + apply_mask(data, key)
        else:
            frame = header + data
        if not _write_tls(self.transport, frame):
            self.transport.write(frame)
        return True

    _mask_keys = b""
    _mask_key_at = 0

    def data_received(self, data: bytes) -> None:
        if self._direct is not None and (self._between_frames or self._check_between_frames()):
            # One context switch per read, not per message.
            taken = self._direct_context.run(self._take_frames, data)
            if taken == len(data):
                return
            data = data[taken:]
        self._between_frames = False
        super().data_received(data)

    def _check_between_frames(self) -> bool:
        self._between_frames = _between_frames(self.protocol)
        return self._between_frames

    def _take_frames(self, data: bytes) -> int:
        """Hand over the complete, unfragmented data frames at the start of ``data``;
        returns how many bytes they took. What follows is left to websockets' parser,
        which then starts on a frame border, as it expects."""
        protocol = self.protocol
        masked = protocol.side is Side.SERVER
        limit = self._direct_limit
        queue = self._direct_queue
        end = len(data)
        taken = 0
        while end - taken >= 2:
            head, size = data[taken], data[taken + 1]
            opcode = head & 0x0F
            # FIN set, no reserved bit (no extension is negotiated), text or binary,
            # masked exactly when a client sent it (RFC 6455, 5.2).
            if head & 0xF0 != 0x80 or opcode not in (_TEXT, _BINARY):
                break
            if (size >= 0x80) is not masked:
                break
            length = size & 0x7F
            start = taken + 2
            if length == 126:
                length = int.from_bytes(data[start : start + 2], "big")
                start += 2
            elif length == 127:
                length = int.from_bytes(data[start : start + 8], "big")
                start += 8
            if masked:
                start += 4
            stop = start + length
            deliver = self._direct
            if (
                stop > end
                or (limit is not None and length > limit)
                or deliver is None
                or protocol.state is not State.OPEN
                or len(queue)  # what recv() has yet to take goes first
            ):
                break
            payload = data[start:stop]
            if masked:
                payload = apply_mask(payload, data[start - 4 : start])
            message = _message(payload, opcode == _TEXT, self._direct_decode)
            if message is None:
                break  # websockets closes the connection with the right code
            taken = stop
            deliver(message)
        return taken

    def process_event(self, event: Any) -> None:
        # Frames that websockets' parser read (those the fast path left to it) skip the
        # Assembler too, when nothing is queued before them.
        deliver = self._direct
        if (
            deliver is not None
            and not len(self._direct_queue)
            and isinstance(event, Frame)
            and event.fin
            and (event.opcode is Opcode.TEXT or event.opcode is Opcode.BINARY)
        ):
            message = _message(bytes(event.data), event.opcode is Opcode.TEXT, self._direct_decode)
            if message is not None:
                self._direct_context.run(deliver, message)
                return
            # Not UTF-8: recv() closes the connection with the right code.
        super().process_event(event)


def _message(payload: bytes, text: bool, decode: bool | None) -> Data | None:
    """A frame's payload as ``recv(decode)`` returns it; None for text that is not UTF-8."""
    if not (decode or (decode is None and text)):
        return payload
    try:
        return payload.decode()
    except UnicodeDecodeError:
        return None


def _between_frames(protocol: Protocol) -> bool:
    """Whether websockets' parser holds no part of a frame or of a fragmented message.

    Between frames, the parser waits in its reader's ``at_eof()`` with an empty buffer.
    Anywhere else (a frame's header read, its payload not yet), it must be fed the rest
    before any new frame.
    """
    # The innermost generator the parser waits in: the handshake's parser delegates to
    # the frame parser, which delegates to its reader.
    waiting_in = getattr(protocol, "parser", None)
    while (inner := getattr(waiting_in, "gi_yieldfrom", None)) is not None:
        waiting_in = inner
    return (
        getattr(waiting_in, "__name__", None) == "at_eof"
        and not protocol.reader.buffer
        and getattr(protocol, "current_size", getattr(protocol, "cur_size", 0)) is None
    )


def _message_limit(protocol: Protocol) -> int | None:
    """The largest message the protocol accepts (``max_size``), in bytes."""
    limits = [
        getattr(protocol, name, None)
        for name in ("max_message_size", "max_fragment_size", "max_size")
    ]
    sizes = [limit for limit in limits if isinstance(limit, int)]
    return min(sizes) if sizes else None


def _write_tls(transport: Any, data: bytes) -> bool:
    """Encrypt ``data`` and hand it to the socket's transport in one step, as asyncio's
    TLS transport would when nothing is waiting before it; False, writing nothing, when
    ``transport`` is not that transport in that state (then ``transport.write`` does).

    asyncio's ``_SSLProtocolTransport.write`` goes through seven Python calls per message
    (backlog, state and flow-control bookkeeping) before the one that encrypts. This
    reads the same state asyncio keeps (Python 3.11 to 3.13 keep it alike), which
    :data:`SWITCH`'s self-test found before any connection used it.
    """
    protocol = getattr(transport, "_ssl_protocol", None)  # None: not a TLS transport
    if protocol is None:
        return False
    if (
        protocol._state is not _TLS_WRAPPED
        or protocol._write_backlog
        or protocol._ssl_writing_paused
        or protocol._app_writing_paused
    ):
        return False
    sslobj, outgoing, raw = protocol._sslobj, protocol._outgoing, protocol._transport
    try:
        # Whole or not at all: Python's ssl module does not enable OpenSSL's partial writes.
        sslobj.write(data)
    except ssl.SSLError:
        return False  # nothing was written: asyncio's own path queues it and retries
    # Everything encrypted is handed over: asyncio's TLS-level flow control, which counts
    # what is not, has nothing to count.
    raw.write(outgoing.read())
    return True


def _read_tls_without_raising(transport: Any) -> None:
    """Have asyncio's TLS transport under ``transport`` (if it is one) end each read once
    the data it was given is decrypted, rather than on the ``SSLWantReadError`` that
    one more read raises: an exception per message (about 1.6 µs), on every read.

    asyncio's ``SSLProtocol._do_read__copied`` reads records until OpenSSL has nothing
    whole left. :func:`_read_records` does the same and stops when nothing is left at
    all: neither undecrypted input (``MemoryBIO.pending``; OpenSSL takes from it one
    record at a time) nor decrypted bytes not yet read (``SSLObject.pending()``). A
    record cut short still ends on the exception, as before. Where asyncio's protocol
    lacks what this reads (Python 3.11 to 3.13 have it), reads stay as they are.
    """
    protocol = getattr(transport, "_ssl_protocol", None)
    if protocol is None or not all(
        hasattr(protocol, name)
        for name in (
            "_do_read__copied",
            "_sslobj",
            "_incoming",
            "max_size",
            "_app_protocol",
            "_call_eof_received",
            "_start_shutdown",
        )
    ):
        return
    protocol._do_read__copied = functools.partial(_read_records, protocol)


def _read_records(protocol: Any) -> None:
    """``SSLProtocol._do_read__copied``, stopping where nothing is left to decrypt."""
    sslobj, incoming = protocol._sslobj, protocol._incoming
    chunks: list[bytes] = []
    chunk = b"1"
    try:
        while True:
            chunk = sslobj.read(protocol.max_size)
            if not chunk:
                break  # close_notify
            chunks.append(chunk)
            if not incoming.pending and not sslobj.pending():
                break
    except _TLS_AGAIN:
        pass
    if chunks:
        protocol._app_protocol.data_received(chunks[0] if len(chunks) == 1 else b"".join(chunks))
    if not chunk:
        protocol._call_eof_received()
        protocol._start_shutdown()


def writable_now(connection: Connection) -> bool:
    """Whether a message written now goes out without waiting: the connection is open,
    no ``send()`` is in progress, and websockets' flow control has not paused writing
    (the transport holds less than the connection's ``write_limit``). Otherwise a
    writer that awaits ``send()`` must take it, which keeps the order. Always False
    off the fast path (see :data:`SWITCH`): every message then goes through ``send()``."""
    return (
        isinstance(connection, _DirectDelivery)
        and connection.fast
        and connection.protocol.state is State.OPEN
        and connection.send_in_progress is None
        and not connection.paused
    )


def send_text_now(connection: Connection, data: bytes) -> None:
    """Send one text message now, on any websockets connection: written as one frame
    straight to the transport when it is a Direct connection that is open and idle,
    else by ``protocol.send_text`` and ``send_data()`` (which raise as they do). The
    caller checks, as for those, that no ``send()`` is in progress: call it only when
    :func:`writable_now` says True."""
    if not (
        isinstance(connection, _DirectDelivery)
        and connection.fast
        and connection.write_text_frame(data)
    ):
        connection.protocol.send_text(data)
        connection.send_data()


class DirectServerConnection(_DirectDelivery, ServerConnection):
    """``serve(create_connection=DirectServerConnection)``: see :func:`consume`."""


class DirectClientConnection(_DirectDelivery, ClientConnection):
    """``connect(create_connection=DirectClientConnection)``: see :func:`consume`."""


async def consume(
    connection: Connection, handle: MessageHandler, *, decode: bool | None = None
) -> None:
    """Hand every message on ``connection`` to ``handle``, in order, until it returns True.

    ``handle`` runs on the loop, in this task's context: from ``data_received`` when the
    connection is a :class:`DirectServerConnection` or :class:`DirectClientConnection`,
    else right after ``recv()``; never concurrently with itself. ``decode`` is
    ``recv()``'s. Returns once ``handle`` returns True; raises what ``handle`` raised, or
    websockets' ``ConnectionClosed`` when the connection closes first. Cancelling it is
    safe: messages not handed over stay queued on the connection.
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    # Off the fast path a Direct connection reads as websockets' own: every message
    # through recv(), none from data_received.
    direct = connection if isinstance(connection, _DirectDelivery) and connection.fast else None
    # data_received runs outside this task: the handler runs in the task's context, so
    # that what it logs carries what the task bound (a call's ids, say).
    context = contextvars.copy_context()

    def finish(error: Exception | None) -> None:
        if direct is not None:
            direct.stop_direct()
        if puller is not asyncio.current_task():
            # Now, before the rest of this read is queued: a recv() that is woken
            # would take a message off the queue that nobody is handed.
            puller.cancel()
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def hand_over(message: Data) -> None:
        if done.done():
            return  # the stream ended here: what follows is not read, as after a recv loop
        try:
            stop = handle(message)
        except Exception as error:  # noqa: BLE001 (raised again from consume, in its task)
            finish(error)
            return
        if stop:
            finish(None)

    async def pull() -> None:
        # Messages left to recv(), handed over in the same step recv() returns them, so
        # that none taken off the queue can wait behind a newer one.
        while not done.done():
            hand_over(await connection.recv(decode))

    puller = loop.create_task(pull(), name="ws-consume")
    if direct is not None:
        direct.start_direct(hand_over, decode, context)
    try:
        await asyncio.wait((puller, done), return_when=asyncio.FIRST_COMPLETED)
    finally:
        if direct is not None:
            direct.stop_direct()
        if not puller.done():
            puller.cancel()
            await asyncio.gather(puller, return_exceptions=True)
    if done.done():
        done.result()
        return
    puller.result()


def _self_test() -> str | None:
    # Imported here: the check builds on this module's connections.
    from tars_actors.net._ws_delivery_check import self_test

    return self_test()


SWITCH: Final = FastPathSwitch("ws_delivery", _self_test)
