"""An in-process bus on which actors publish what they decided, for tests and tools to wait on.

Publishing never blocks and never fails the publisher: each subscriber has its own
queue. Events are frozen dataclasses; the bus is created by whoever builds the actor tree
and passed to actors (there is no global bus).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["EventBus", "Subscription"]

E = TypeVar("E")


class Subscription:
    """Events published after :meth:`EventBus.subscribe`, kept until read."""

    def __init__(self, bus: EventBus, accept: Callable[[Any], bool] | None) -> None:
        self._bus = bus
        self._accept = accept
        self._events: deque[Any] = deque(maxlen=10_000)
        self._cond = threading.Condition()

    def _offer(self, event: Any) -> None:
        if self._accept is not None and not self._accept(event):
            return
        with self._cond:
            self._events.append(event)
            self._cond.notify_all()

    def wait_for(
        self,
        predicate: Callable[[Any], bool],
        timeout: float,
        *,
        of_type: type[E] | None = None,
    ) -> Any:
        """Return (and consume) the first event matching; raise TimeoutError otherwise."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for event in self._events:
                    if (of_type is None or isinstance(event, of_type)) and predicate(event):
                        self._events.remove(event)
                        return event
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = ", ".join(repr(e) for e in list(self._events)[-5:])
                    raise TimeoutError(f"no matching event within {timeout:g}s; last: {seen}")
                self._cond.wait(remaining)

    def drain(self) -> list[Any]:
        """Everything received and not yet consumed."""
        with self._cond:
            events = list(self._events)
            self._events.clear()
            return events

    def close(self) -> None:
        self._bus.unsubscribe(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of published events to every current subscription."""

    def __init__(self) -> None:
        self._subs: tuple[Subscription, ...] = ()
        self._lock = threading.Lock()

    def subscribe(self, accept: Callable[[Any], bool] | None = None) -> Subscription:
        sub = Subscription(self, accept)
        with self._lock:
            self._subs = (*self._subs, sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def publish(self, event: object) -> None:
        # Copy-on-write tuple: publishing reads it without taking the lock.
        for sub in self._subs:
            sub._offer(event)
