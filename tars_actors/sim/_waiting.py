"""A change signal that both blocking test code and asyncio tasks can wait on with a timeout.

Stand-ins record what they see on their own thread or loop; tests ask "wait until this holds".
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")

__all__ = ["Changes", "wait_until"]


class _AsyncWaiter:
    __slots__ = ("future", "loop", "predicate")

    def __init__(
        self,
        predicate: Callable[[], bool],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[None],
    ) -> None:
        self.predicate = predicate
        self.loop = loop
        self.future = future


def _resolve(future: asyncio.Future[None], error: BaseException | None) -> None:
    if future.done():
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


class Changes:
    """A lock over some recorded state plus a "the state changed" signal.

    Writers mutate the state under :attr:`lock` and call :meth:`notify`. Readers wait for a
    predicate over that state, evaluated under the lock, from any thread (:meth:`wait`) or
    from any event loop (:meth:`wait_async`).
    """

    __slots__ = ("_async_waiters", "_condition", "lock")

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self._condition = threading.Condition(self.lock)
        self._async_waiters: list[_AsyncWaiter] = []

    def notify(self) -> None:
        """Wake every waiter so it re-checks its predicate; safe from any thread."""
        with self.lock:
            self._condition.notify_all()
            if not self._async_waiters:
                return
            # Predicates are evaluated here, on the writer's thread, so a waiting loop is
            # woken only when its condition holds rather than on every recorded frame.
            still_waiting: list[_AsyncWaiter] = []
            for waiter in self._async_waiters:
                if waiter.future.done():
                    continue
                try:
                    satisfied = waiter.predicate()
                except Exception as error:  # noqa: BLE001 - handed to the waiter, not swallowed
                    waiter.loop.call_soon_threadsafe(_resolve, waiter.future, error)
                    continue
                if satisfied:
                    waiter.loop.call_soon_threadsafe(_resolve, waiter.future, None)
                else:
                    still_waiting.append(waiter)
            self._async_waiters = still_waiting

    def wait(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Block until ``predicate()`` holds; raise :class:`TimeoutError` naming ``what``."""
        with self.lock:
            if not self._condition.wait_for(predicate, timeout):
                raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")

    async def wait_async(self, predicate: Callable[[], bool], timeout: float, what: str) -> None:
        """Like :meth:`wait`, without blocking the calling event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self.lock:
            if predicate():
                return
            waiter = _AsyncWaiter(predicate, loop, future)
            self._async_waiters.append(waiter)
        try:
            async with asyncio.timeout(timeout):
                await future
        except TimeoutError:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}") from None
        finally:
            with self.lock:
                if waiter in self._async_waiters:
                    self._async_waiters.remove(waiter)

    def wait_nth(
        self, items: Callable[[], Sequence[T]], count: int, timeout: float, what: str
    ) -> T:
        """Block until ``items()`` holds ``count`` entries; return the ``count``-th."""
        self.wait(lambda: len(items()) >= count, timeout, what)
        with self.lock:
            return items()[count - 1]

    async def wait_nth_async(
        self, items: Callable[[], Sequence[T]], count: int, timeout: float, what: str
    ) -> T:
        """Like :meth:`wait_nth`, without blocking the calling event loop."""
        await self.wait_async(lambda: len(items()) >= count, timeout, what)
        with self.lock:
            return items()[count - 1]


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Check ``predicate`` every few milliseconds until it holds; TimeoutError after
    ``timeout`` seconds, naming ``what``. For state that no event announces (a row in the
    database, a counter on another thread)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)
