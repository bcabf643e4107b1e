"""Timers that actors use to schedule messages to themselves, with a clock tests can drive.

Actors never sleep: they ask a :class:`Timers` to run a callback later, and the callback
only ``tell``s the actor a message. :class:`ThreadTimers` runs every timer of the process on
one thread; :class:`ManualTimers` fires timers when a test advances its clock.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog

__all__ = ["ManualTimers", "ThreadTimers", "TimerHandle", "Timers"]

log = structlog.get_logger("tars.timers")


def _nothing() -> None:
    return None


class TimerHandle:
    """A scheduled callback; ``cancel`` is idempotent and safe from any thread."""

    __slots__ = ("_cancelled", "callback", "due", "seq")

    def __init__(self, due: float, seq: int, callback: Callable[[], None]) -> None:
        self.due = due
        self.seq = seq
        self.callback = callback
        self._cancelled = False

    def cancel(self) -> None:
        self._cancelled = True
        # What the callback holds (an actor's ref, its message) goes now, not when the
        # handle leaves the heap at its due time (a call's longest timer is half an hour).
        self.callback = _nothing

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def __lt__(self, other: TimerHandle) -> bool:
        return (self.due, self.seq) < (other.due, other.seq)


class Timers(Protocol):
    """What actors need of time: a monotonic clock, wall time, and delayed callbacks."""

    def monotonic(self) -> float: ...

    def wall_now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle: ...


class ThreadTimers:
    """All timers of the process on one daemon thread, ordered by a heap.

    Callbacks run on the timer thread and must be quick (a ``tell``); an exception in one
    is logged and does not stop the others.
    """

    def __init__(self, name: str = "tars-timers") -> None:
        self._heap: list[TimerHandle] = []
        self._seq = itertools.count()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def monotonic(self) -> float:
        return time.monotonic()

    def wall_now(self) -> datetime:
        return datetime.now(UTC)

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        handle = TimerHandle(time.monotonic() + max(0.0, delay), next(self._seq), callback)
        with self._cond:
            heapq.heappush(self._heap, handle)
            if self._heap[0] is handle:
                self._cond.notify()
        return handle

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=2.0)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._closed:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    head = self._heap[0]
                    if head.cancelled:
                        heapq.heappop(self._heap)
                        continue
                    wait = head.due - time.monotonic()
                    if wait <= 0:
                        heapq.heappop(self._heap)
                        break
                    self._cond.wait(wait)
                if self._closed:
                    return
            _fire(head)


class ManualTimers:
    """A clock that only moves when a test calls :meth:`advance`; due timers fire then.

    Callbacks run synchronously in the thread that advances the clock, in due order.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._now = 0.0
        self._wall0 = start or datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
        self._heap: list[TimerHandle] = []
        self._seq = itertools.count()
        self._lock = threading.RLock()

    def monotonic(self) -> float:
        return self._now

    def wall_now(self) -> datetime:
        return self._wall0 + timedelta(seconds=self._now)

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        with self._lock:
            handle = TimerHandle(self._now + max(0.0, delay), next(self._seq), callback)
            heapq.heappush(self._heap, handle)
            return handle

    def pending(self) -> list[float]:
        """Delays from now of the timers not yet fired or cancelled, soonest first."""
        with self._lock:
            return sorted(h.due - self._now for h in self._heap if not h.cancelled)

    def advance(self, seconds: float) -> None:
        with self._lock:
            target = self._now + seconds
            while self._heap and self._heap[0].due <= target:
                handle = heapq.heappop(self._heap)
                if handle.cancelled:
                    continue
                self._now = max(self._now, handle.due)
                _fire(handle)
            self._now = target


def _fire(handle: TimerHandle) -> None:
    if handle.cancelled:
        return
    try:
        handle.callback()
    except Exception:
        # A timer's target may be gone (an actor that stopped); others must still fire.
        log.exception("timer.callback_failed", callback=repr(handle.callback))
