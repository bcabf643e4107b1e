"""What the Live stand-in sends on one connection: frames queued from any thread or loop, in
call order, and one writer task on the server's loop that puts them on the WebSocket."""

from __future__ import annotations

import asyncio
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from tars_actors.sim._waiting import Changes

__all__ = ["Outbox"]


@dataclass(frozen=True, slots=True)
class _Close:
    code: int
    reason: str


@dataclass(frozen=True, slots=True)
class _Abort:
    pass


@dataclass(frozen=True, slots=True)
class _Echo:
    """Echoed audio, and how much received audio it completes (for timing the echo)."""

    frame: str
    received_total: int


_Outbound = str | _Echo | _Close | _Abort


class Outbox:
    """One connection's outgoing frames; made on the server's loop, fed from anywhere.

    ``send``, ``close``, ``abort`` and ``close_after`` never block; ``send_echo`` runs on the
    loop. ``changes`` is the connection's: the echo departures are recorded under its lock.
    """

    def __init__(self, *, loop: asyncio.AbstractEventLoop, changes: Changes) -> None:
        self._loop = loop
        self._loop_thread_id = threading.get_ident()
        self._queue: asyncio.Queue[_Outbound] = asyncio.Queue()
        self._changes = changes
        # When each echo went out, and the received audio byte count it echoes up to.
        self._echo_times = array("d")
        self._echo_totals = array("q")
        self._frames_sent = 0
        self._ending = False
        self._server_close_code: int | None = None
        self._close_timer: asyncio.TimerHandle | None = None

    @property
    def frames_sent(self) -> int:
        return self._frames_sent

    @property
    def echo_departures(self) -> tuple[array[float], array[int]]:
        """(send time, received audio bytes echoed so far) for every echoed chunk."""
        with self._changes.lock:
            return array("d", self._echo_times), array("q", self._echo_totals)

    def send(self, frame: str) -> None:
        self._enqueue(frame)

    def send_echo(self, frame: str, received_total: int) -> None:
        """Echoed audio, queued on the loop as it arrives (the connection's reader runs there)."""
        self._queue.put_nowait(_Echo(frame, received_total))

    def close(self, code: int, reason: str) -> None:
        """Close with a close frame carrying ``code`` (after what was queued before)."""
        self._enqueue(_Close(code, reason))

    def abort(self) -> None:
        """Drop the TCP connection without a close frame (after what was queued before)."""
        self._enqueue(_Abort())

    def close_after(self, delay: float, code: int, reason: str) -> None:
        """Close ``delay`` seconds from now; a later call replaces the earlier deadline."""
        self._call_in_loop(self._schedule_close, delay, code, reason)

    def end(self) -> int | None:
        """The connection closed: stop the writer; return the close code this side sent, if any."""
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._ending = True
        # Wake the writer so it returns.
        self._queue.put_nowait(_Abort())
        return self._server_close_code

    async def write(self, ws: web.WebSocketResponse, transport: asyncio.Transport | None) -> None:
        """The writer task: send what is queued until a close, an abort or the end."""
        while True:
            item = await self._queue.get()
            if self._ending:
                return
            if isinstance(item, str | _Echo):
                try:
                    await ws.send_str(item if isinstance(item, str) else item.frame)
                except (ConnectionError, RuntimeError):
                    return
                self._frames_sent += 1
                if isinstance(item, _Echo):
                    with self._changes.lock:
                        self._echo_times.append(time.monotonic())
                        self._echo_totals.append(item.received_total)
            elif isinstance(item, _Close):
                self._ending = True
                self._server_close_code = item.code
                await ws.close(code=item.code, message=item.reason.encode())
                return
            else:
                self._ending = True
                self._server_close_code = 1006
                if transport is not None:
                    transport.abort()
                return

    def _call_in_loop(self, callback: Callable[..., object], *args: object) -> None:
        if threading.get_ident() == self._loop_thread_id:
            callback(*args)
        elif not self._loop.is_closed():
            self._loop.call_soon_threadsafe(callback, *args)

    def _enqueue(self, item: _Outbound) -> None:
        self._call_in_loop(self._queue.put_nowait, item)

    def _schedule_close(self, delay: float, code: int, reason: str) -> None:
        if self._close_timer is not None:
            self._close_timer.cancel()
        self._close_timer = self._loop.call_later(
            delay, self._queue.put_nowait, _Close(code, reason)
        )
