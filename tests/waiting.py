"""Waiting in tests for state that signals nothing (a counter on another thread)."""

from __future__ import annotations

from collections.abc import Callable

from tars_actors.sim._waiting import wait_until

__all__ = ["QUIET", "never", "wait_until"]


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
