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
