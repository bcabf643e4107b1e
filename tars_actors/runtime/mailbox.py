"""An actor inbox that counts what passes through it, so actor load is cheap to read.

Every TARS actor uses :class:`Mailbox` instead of pykka's plain ``queue.Queue``. The
counters are updated by the actor's own thread (``get``) or under the queue's mutex
(``_put``), and read without locks by the monitor: a torn read costs one stale figure,
never a crash, which is the right trade for numbers sampled every few seconds.
"""

from __future__ import annotations

import queue
from dataclasses import dataclass
from threading import get_ident
from time import perf_counter_ns
from typing import Any

__all__ = ["Mailbox", "MailboxStats"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MailboxStats:
    """A snapshot of one actor's mailbox."""

    depth: int
    peak_depth: int
    handled: int
    busy_seconds: float
    #: Type name of the message being handled now, or None when idle.
    current: str | None
    #: How long the current message has been in hand, 0.0 when idle.
    current_seconds: float


class Mailbox(queue.Queue[Any]):
    """``queue.Queue`` with depth, peak depth, handled count and busy time.

    Busy time is measured between two ``get`` calls of the owning thread: pykka's loop
    calls ``get`` for the next envelope only once the previous one is handled, so the
    time from one ``get`` returning to the next ``get`` starting is the time spent on
    that message. No per-message wrapper is needed around pykka's private loop.
    """

    def __init__(self) -> None:
        super().__init__()
        self.peak_depth = 0
        self.handled = 0
        self.busy_ns = 0
        self._since_ns = 0
        self._current: Any = None
        #: Ident of the thread that consumes this mailbox, set on its first ``get``.
        self.thread_ident: int | None = None
        #: The owning actor's log context (actor kind, id, session...), for the monitor.
        self.labels: dict[str, Any] = {}

    # Called by Queue.put under its mutex; overriding the hook instead of put() keeps
    # the peak exact without taking a second lock.
    def _put(self, item: Any) -> None:
        self.queue.append(item)
        depth = len(self.queue)
        if depth > self.peak_depth:  # noqa: PLR1730 (cheaper than a max() call per message)
            self.peak_depth = depth

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        # Names imported into the module (perf_counter_ns, get_ident) and locals below
        # save an attribute lookup each: this method runs once per message.
        if self._current is not None:
            self.busy_ns += perf_counter_ns() - self._since_ns
            self.handled += 1
            self._current = None
        else:
            self.thread_ident = get_ident()
        if block and timeout is None:
            # pykka's loop always calls get() like this. Queue.get would also call
            # not_full.notify(), a pure-Python Condition method costing about as much as
            # all the counting above; an unbounded queue never has a putter waiting on
            # not_full, so that call and the _qsize/_get indirections are skipped.
            not_empty = self.not_empty
            with not_empty:
                items = self.queue
                while not items:
                    not_empty.wait()
                envelope = items.popleft()
        else:
            envelope = super().get(block, timeout)
        self._since_ns = perf_counter_ns()
        self._current = envelope
        return envelope

    def stats(self) -> MailboxStats:
        current = self._current
        since = self._since_ns
        if current is None:
            name, held = None, 0.0
        else:
            message = getattr(current, "message", current)
            name = describe_message(message)
            held = (perf_counter_ns() - since) / 1e9
        return MailboxStats(
            # len() of the deque is atomic under the GIL; qsize() would take the mutex
            # the producers and the consumer contend for.
            depth=len(self.queue),
            peak_depth=self.peak_depth,
            handled=self.handled,
            busy_seconds=self.busy_ns / 1e9,
            current=name,
            current_seconds=held,
        )


def describe_message(message: Any) -> str:
    """A short name for a message: the proxied method for proxy calls, else the type."""
    attr_path = getattr(message, "attr_path", None)
    if attr_path:
        return f"{type(message).__name__}:{'.'.join(attr_path)}"
    return type(message).__name__
