"""An asyncio event loop on its own thread, for the parts of TARS that are asyncio-only.

The websockets server and the google-genai Live client are asyncio libraries; actors are
threads. Actors hand work to a :class:`LoopThread` with :meth:`LoopThread.call_soon` or
:meth:`LoopThread.submit` and get results back as ``tell`` messages: nothing on the loop
ever waits on a pykka future, which would block every other connection on the loop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread:
    """Owns one event loop running forever on a daemon thread until :meth:`stop`."""

    def __init__(self, name: str = "tars-asyncio") -> None:
        self.name = name
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
