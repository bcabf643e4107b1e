"""What the server asks of the rest of TARS: how a voice webhook is answered (admission) and
the hooks it calls, each quick and thread-safe."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tars_actors.actor_messages import CallStatusChanged, CallStreamStarted

__all__ = ["Admission", "Connect", "Draining", "OverCapacity", "ServerHooks"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Connect:
    """Admit the call: connect its Media Stream with these extra ``<Parameter>``s."""

    parameters: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class OverCapacity:
    """No place for this call (too many calls, or too many from its number): apologise and
    hang up."""

    apology: str = "Sorry, all lines are busy right now. Please call again in a few minutes."
    #: BCP-47 tag for ``<Say language>``; None leaves Twilio's default.
    language: str | None = None
    #: Why, for the log line: ``over_capacity``, ``caller_busy``, ``hourly_limit``.
    why: str = "over_capacity"


@dataclass(frozen=True, slots=True, kw_only=True)
class Draining:
    """TARS is restarting: say so and hang up."""

    notice: str = "Sorry, the assistant is restarting. Please call again in a minute."
    language: str | None = None
    #: Other daemons on the same database serve calls: the webhook is refused with 503, so
    #: that the load balancer in front hands it to one of them.
    elsewhere: bool = False


Admission = Connect | OverCapacity | Draining


class ServerHooks(Protocol):
    """What the server calls, on its event loop but for ``admit_call``: each method must be
    quick and thread-safe.

    None of them may block (no pykka ``ask``, no I/O): every call on the server waits on them.
    """

    def admit_call(self, params: Mapping[str, str]) -> Admission:
        """Decide what a signed voice webhook (its query parameters) is answered with.

        The exception: called on a worker thread, as it may record the call in the store.
        """
        ...

    def stream_started(self, message: CallStreamStarted) -> None:
        """A Media Stream sent ``start``; someone must ``attach`` a session to its socket."""
        ...

    def status_changed(self, message: CallStatusChanged) -> None:
        """A signed status callback arrived."""
        ...

    def health(self) -> Mapping[str, Any]:
        """JSON-able readiness figures; ``ready`` false makes ``/healthz`` answer 503."""
        ...

    def stream_elsewhere(self, call_sid: str) -> bool:
        """A stream for ``call_sid`` (from its own stream path) should go to another daemon:
        this one is draining, others serve, and it holds no place for the call."""
        ...
