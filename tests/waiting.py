"""Waiting in tests for state that signals nothing (a counter on another thread)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Check ``predicate`` every few milliseconds until it holds; TimeoutError after
    ``timeout`` seconds, naming ``what``. For state that no event announces."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.005)


#: How long a test watches for something that must not happen (a duplicate SMS, say).
QUIET = 1.0


def never(wait: Callable[[], object], what: str) -> None:
    """``wait`` (a stand-in's wait_for_… with a short timeout) must time out: the thing it
    waits for must not happen. For checks of absence, which no event can announce."""
    try:
        wait()
    except TimeoutError:
        return
    raise AssertionError(f"{what} happened")
