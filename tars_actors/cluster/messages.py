"""Messages the cluster's member actor tells the daemon's other actors."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["StreamElsewhere", "TakeUp"]


@dataclass(frozen=True, slots=True)
class TakeUp:
    """Look again for work no live daemon holds and carry it out: told when a member was
    found gone (``gone`` names them), when one left, and when the wake-up channel
    (re)connects (notifications sent meanwhile are not replayed); the Router is also told
    at every heartbeat, a sweep that bounds how long anything can wait."""

    reason: str
    gone: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class StreamElsewhere:
    """A call this daemon started at its webhook has its stream on another daemon: the
    session waiting here for it ends now and frees its model connection."""

    call_sid: str
