"""The send side of one Gemini Live connection: items from any thread, batched for the loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
from collections import deque
from collections.abc import Callable

from tars_actors.actor_messages import AudioInput, ModelInput

__all__ = ["MAX_AUDIO_BATCH_BYTES", "LiveChannel"]

#: Queued caller audio is sent as one chunk of at most this size (1 s of 16 kHz PCM16).
MAX_AUDIO_BATCH_BYTES = 32_000


class LiveChannel:
    """The send side of one Live connection (a :class:`~tars_actors.actor_messages.ModelChannel`).

    :meth:`send` and :meth:`close` are thread-safe and never block. Items wait in a deque
    shared with the loop under a lock; the loop is woken with ``call_soon_threadsafe`` only
    when it is not already due to look, so a backlog costs one wake-up, not one per item.
    An item leaves the deque only once the SDK's send call for it has returned, so what
    :meth:`shut` returns is exactly what never reached the socket.
    """

    __slots__ = (
        "_closed",
        "_connection_id",
        "_lock",
        "_loop",
        "_loop_thread",
        "_on_close",
        "_pending",
        "_ready",
        "_sender_idle",
        "_wake_due",
        "direct",
    )

    def __init__(
        self,
        connection_id: int,
        loop: asyncio.AbstractEventLoop,
        on_close: Callable[[], None],
    ) -> None:
        """Build on the loop thread: the wake-up event belongs to ``loop``."""
        self._connection_id = connection_id
        self._loop = loop
        self._on_close = on_close
        self._lock = threading.Lock()
        self._pending: deque[ModelInput] = deque()
        self._closed = False
        self._wake_due = False
        self._ready = asyncio.Event()
        self._loop_thread = threading.get_ident()
        self._sender_idle = False
        #: Set by the connection: writes caller audio to an idle socket at once, or
        #: returns False to leave it to the sender task.
        self.direct: Callable[[AudioInput], bool] | None = None

    @property
    def connection_id(self) -> int:
        return self._connection_id

    def send(self, item: ModelInput) -> bool:
        """Queue ``item`` for the model; False once the connection is closed."""
        direct = self.direct
        if (
            direct is not None
            and isinstance(item, AudioInput)
            and threading.get_ident() == self._loop_thread
        ):
            # On the loop, the sender task cannot run meanwhile: if it is idle with
            # nothing queued, writing now keeps the order and saves its wake-up.
            with self._lock:
                if self._closed:
                    return False
                idle = self._sender_idle and not self._pending
            if idle and direct(item):
                return True
        with self._lock:
            if self._closed:
                return False
            self._pending.append(item)
            if not self._wake_due:
                try:
                    if threading.get_ident() == self._loop_thread:
                        # The audio relay, on the loop: no self-pipe write (a syscall).
                        self._loop.call_soon(self._wake)
                    else:
                        self._loop.call_soon_threadsafe(self._wake)
                except RuntimeError:  # the loop is closed: so is this connection
                    self._pending.pop()
                    self._closed = True
                    return False
                self._wake_due = True
        return True

    def close(self) -> None:
        """End the connection on purpose, as stopping its actor does."""
        with self._lock:
            if self._closed:
                return
        with contextlib.suppress(RuntimeError):  # a closed loop has ended the connection
            self._loop.call_soon_threadsafe(self._on_close)

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    # -- loop side ---------------------------------------------------------------------------

    def _wake(self) -> None:
        with self._lock:
            self._wake_due = False
        self._ready.set()

    async def next_batch(self) -> tuple[ModelInput, ...]:
        """The items at the head of the queue that go out in one send call, left queued.

        Consecutive caller audio is one batch (up to :data:`MAX_AUDIO_BATCH_BYTES`): it is
        one continuous stream, and every send call costs the SDK a fixed amount of work.
        """
        while True:
            with self._lock:
                if self._pending:
                    self._sender_idle = False
                    return self._head()
                self._ready.clear()
                self._sender_idle = True
            await self._ready.wait()

    def _head(self) -> tuple[ModelInput, ...]:
        first = self._pending[0]
        if not isinstance(first, AudioInput):
            return (first,)
        batch: list[ModelInput] = [first]
        size = len(first.pcm)
        for item in itertools.islice(self._pending, 1, None):
            if not isinstance(item, AudioInput) or size + len(item.pcm) > MAX_AUDIO_BATCH_BYTES:
                break
            batch.append(item)
            size += len(item.pcm)
        return tuple(batch)

    def commit(self, count: int) -> None:
        """The first ``count`` queued items were sent (or dropped as invalid)."""
        with self._lock:
            for _ in range(min(count, len(self._pending))):
                self._pending.popleft()

    def shut(self) -> tuple[ModelInput, ...]:
        """Refuse further items; return the ones never sent, oldest first."""
        with self._lock:
            self._closed = True
            unsent = tuple(self._pending)
            self._pending.clear()
        return unsent
