"""How often a repeated log line is written, per source: the first at once, then at most one
per interval carrying how many were not written since.

A peer that can repeat a bad request (a bad signature, a malformed frame, a keypress) must not
be able to buy one log line per packet. :class:`LogRateLimiter` decides, per source (a remote
address, a call), whether this occurrence is written; it logs nothing itself, so each caller
keeps its own event name and fields and adds the count.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_INTERVAL_SECONDS", "DEFAULT_MAX_SOURCES", "LogRateLimiter"]

#: At most one line per source in this many seconds (after the first).
DEFAULT_INTERVAL_SECONDS: Final = 10.0
#: Sources remembered at once; past this the least recently seen one is forgotten.
DEFAULT_MAX_SOURCES: Final = 1024


@dataclass(slots=True)
class _Source:
    logged_at: float
    suppressed: int = 0


class LogRateLimiter:
    """Decides which occurrences of a repeated event are logged, per source. Thread-safe.

    :meth:`allow` answers None (do not log) or the number of occurrences from the same source
    that were not logged since its last line (log it, with that count). At most
    ``max_sources`` sources are remembered, so a peer inventing sources cannot grow memory:
    the least recently seen is forgotten, and what it had not logged is added to
    :attr:`unreported`.
    """

    def __init__(
        self,
        *,
        interval: float = DEFAULT_INTERVAL_SECONDS,
        max_sources: int = DEFAULT_MAX_SOURCES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be at least 0, got {interval}")
        if max_sources < 1:
            raise ValueError(f"max_sources must be at least 1, got {max_sources}")
        self.interval = interval
        self.max_sources = max_sources
        self._clock = clock
        self._lock = threading.Lock()
        # Least recently seen first: eviction pops from the front.
        self._sources: OrderedDict[Hashable, _Source] = OrderedDict()
        self._unreported = 0

    def allow(self, source: Hashable) -> int | None:
        """One occurrence from ``source``: None to drop its line, else how many were dropped
        since the source's last line (0 for its first)."""
        now = self._clock()
        with self._lock:
            state = self._sources.get(source)
            if state is None:
                if len(self._sources) >= self.max_sources:
                    _, evicted = self._sources.popitem(last=False)
                    self._unreported += evicted.suppressed
                self._sources[source] = _Source(logged_at=now)
                return 0
            self._sources.move_to_end(source)
            if now - state.logged_at < self.interval:
                state.suppressed += 1
                return None
            suppressed, state.suppressed, state.logged_at = state.suppressed, 0, now
            return suppressed

    def forget(self, source: Hashable) -> int:
        """Stop tracking ``source`` (its call ended, say); returns how many of its
        occurrences were never logged, for a closing line."""
        with self._lock:
            state = self._sources.pop(source, None)
        return 0 if state is None else state.suppressed

    def due(self) -> list[tuple[Hashable, int]]:
        """Sources whose interval has passed with occurrences not yet logged, with those
        counts; each is then counted as logged now. For a periodic sweep, so that the count of
        a flood that stopped is written too."""
        now = self._clock()
        found: list[tuple[Hashable, int]] = []
        with self._lock:
            for source, state in self._sources.items():
                if state.suppressed and now - state.logged_at >= self.interval:
                    found.append((source, state.suppressed))
                    state.suppressed, state.logged_at = 0, now
        return found

    @property
    def sources(self) -> int:
        """How many sources are tracked now."""
        with self._lock:
            return len(self._sources)

    @property
    def unreported(self) -> int:
        """Occurrences never logged because their source was forgotten to make room."""
        with self._lock:
            return self._unreported
