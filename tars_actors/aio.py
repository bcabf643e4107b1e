"""An asyncio event loop on its own thread, for the parts of TARS that are asyncio-only.

The websockets server and the google-genai Live client are asyncio libraries; actors are
threads. Actors hand work to a :class:`LoopThread` with :meth:`LoopThread.call_soon` or
:meth:`LoopThread.submit` and get results back as ``tell`` messages: nothing on the loop
ever waits on a pykka future, which would block every other connection on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import selectors
import threading
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = ["BatchingSelector", "LoopThread"]

T = TypeVar("T")


class BatchingSelector(selectors.BaseSelector):
    """A selector that lets readiness gather for up to ``interval`` seconds before a poll.

    A loop carrying many calls' audio wakes for nearly every frame of every call: with
    50 calls, a few hundred times a second, and each wake-up (the poll, the scheduler,
    one pass of the loop) costs more than the frame it brings. When the loop would block,
    this selector first waits until ``interval`` has passed since its last poll, then
    polls without blocking, so that what arrived meanwhile is handled in one pass; only if
    nothing did does it block for the rest of the timeout. A poll the loop asks for
    without blocking (it has callbacks ready) happens at once, and the wait never runs
    past the timeout, so timers fire on time. What it costs: an event that arrives on an
    idle loop, or a callback handed over from another thread, waits up to ``interval``.
    """

    def __init__(
        self,
        interval: float,
        *,
        inner: selectors.BaseSelector | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be positive, got {interval!r}")
        self.interval = interval
        self._inner = inner if inner is not None else selectors.DefaultSelector()
        self._clock = clock
        self._sleep = sleep
        self._last_poll = -math.inf

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout > 0:
            hold = self._last_poll + self.interval - self._clock()
            if hold > 0:
                if timeout is not None and hold >= timeout:
                    self._sleep(timeout)
                    return self._poll(0)
                self._sleep(hold)
                ready = self._poll(0)
                if ready:
                    return ready
                if timeout is not None:
                    timeout -= hold
        return self._poll(timeout)

    def _poll(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        try:
            return self._inner.select(timeout)
        finally:
            self._last_poll = self._clock()

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()


class LoopThread:
    """Owns one event loop running forever on a daemon thread until :meth:`stop`.

    ``batch_interval``: if positive, the loop polls through a :class:`BatchingSelector`
    with that interval (for a loop whose work is many small, steady events).
    """

    def __init__(self, name: str = "tars-asyncio", *, batch_interval: float = 0.0) -> None:
        self.name = name
        self.batch_interval = batch_interval
        if batch_interval > 0:
            self.loop: asyncio.AbstractEventLoop = asyncio.SelectorEventLoop(
                BatchingSelector(batch_interval)
            )
        else:
            self.loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        self._ready.wait()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        try:
            self.loop.run_forever()
        finally:
            self._cancel_remaining()
            self.loop.close()

    def _cancel_remaining(self) -> None:
        tasks = [t for t in asyncio.all_tasks(self.loop) if not t.done()]
        for task in tasks:
            task.cancel()
        if tasks:
            self.loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())

    @property
    def in_loop_thread(self) -> bool:
        return threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``coro`` on the loop; the returned future may be waited on off the loop."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call_soon(self, callback: Callable[..., object], *args: Any) -> None:
        """Run ``callback(*args)`` on the loop thread soon; safe from any thread."""
        if self.in_loop_thread:
            self.loop.call_soon(callback, *args)
        else:
            self.loop.call_soon_threadsafe(callback, *args)

    def stop(self, timeout: float = 5.0) -> None:
        """Cancel every task, stop the loop and wait for the thread to end."""
        if self.loop.is_closed():
            return
        if not self.in_loop_thread:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout)
        else:
            self.loop.stop()

    def __enter__(self) -> LoopThread:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
