"""Supervision as data and pure rules: child specs, strategies, restart types, intensity, backoff.

The :class:`~actors.supervisor.Supervisor` actor carries these decisions out; nothing here
touches threads or actors, so the rules are tested with plain values and a fake clock.
"""

from __future__ import annotations

import enum
import math
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    # Only for annotations: the rules themselves never touch an actor.
    import pykka

__all__ = [
    "Backoff",
    "ChildInfo",
    "ChildSpec",
    "ChildStartError",
    "ReachedMaxRestartIntensity",
    "Restart",
    "RestartDue",
    "RestartIntensity",
    "Strategy",
    "SupervisorEvent",
    "SupervisorEventName",
    "SupervisorFlags",
    "SupervisorStartError",
]


class Strategy(enum.StrEnum):
    """Which children a supervisor restarts when one of them has to be restarted (OTP)."""

    #: Only the child that exited.
    ONE_FOR_ONE = "one_for_one"
    #: Every child: the others are stopped in reverse start order, then all restart.
    ONE_FOR_ALL = "one_for_all"
    #: The child that exited and every child started after it.
    REST_FOR_ONE = "rest_for_one"

    def affected(self, order: Sequence[str], failed: str) -> list[str]:
        """The ids to restart, in start order, when ``failed`` must be restarted."""
        match self:
            case Strategy.ONE_FOR_ONE:
                return [failed]
            case Strategy.ONE_FOR_ALL:
                return list(order)
            case Strategy.REST_FOR_ONE:
                return list(order[order.index(failed) :])


class Restart(enum.StrEnum):
    """When a child that exited is started again (OTP restart types)."""

    #: Always, whatever the reason it exited.
    PERMANENT = "permanent"
    #: Only after an abnormal exit (an exception); a normal exit leaves it stopped.
    TRANSIENT = "transient"
    #: Never; the child is forgotten once it exits.
    TEMPORARY = "temporary"

    def after_exit(self, *, abnormal: bool) -> bool:
        """Whether a child of this type is restarted after exiting on its own."""
        match self:
            case Restart.PERMANENT:
                return True
            case Restart.TRANSIENT:
                return abnormal
            case Restart.TEMPORARY:
                return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Backoff:
    """Exponential restart delay with jitter, for children that should not restart at once.

    The n-th consecutive restart waits ``min(maximum, initial * multiplier**(n-1))``,
    moved up or down by at most ``jitter`` of itself so that siblings do not retry in step.
    """

    initial: float
    maximum: float
    multiplier: float = 2.0
    jitter: float = 0.1

    def __post_init__(self) -> None:
        if not self.initial > 0:
            raise ValueError(f"backoff initial must be > 0, got {self.initial!r}")
        if not self.maximum >= self.initial:
            raise ValueError(
                f"backoff maximum must be >= initial ({self.initial!r}), got {self.maximum!r}"
            )
        if not self.multiplier >= 1:
            raise ValueError(f"backoff multiplier must be >= 1, got {self.multiplier!r}")
        if not 0 <= self.jitter < 1:
            raise ValueError(f"backoff jitter must be in [0, 1), got {self.jitter!r}")

    def base_delay(self, attempt: int) -> float:
        """The delay before jitter for the ``attempt``-th consecutive restart (from 1)."""
        if attempt < 1:
            raise ValueError(f"restart attempts count from 1, got {attempt!r}")
        if self.multiplier == 1 or self.maximum == self.initial:
            return self.initial
        # Cap the exponent where the maximum is reached: a large attempt count would
        # otherwise overflow the float power long before it mattered.
        steps_to_max = math.ceil(math.log(self.maximum / self.initial, self.multiplier))
        return min(self.maximum, self.initial * self.multiplier ** min(attempt - 1, steps_to_max))

    def delay(self, attempt: int, rng: random.Random) -> float:
        """The jittered delay for the ``attempt``-th consecutive restart."""
        return self.base_delay(attempt) * (1.0 + rng.uniform(-self.jitter, self.jitter))


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildSpec:
    """How a supervisor starts, restarts and stops one child, addressed by a stable id.

    ``start`` starts exactly one :class:`~tars_actors.runtime.actor.TarsActor` (possibly another
    supervisor) and returns its ref, e.g. ``lambda: Router.start(settings)``. A restart
    calls it again: a restart is a new actor, the id is what stays.

    ``shutdown_timeout`` is how long the supervisor waits for the child to stop before it
    abandons it; None waits as long as it takes, which suits a child that is itself a
    supervisor (OTP's ``infinity``), since its own shutdown is bounded by its children's.
    """

    id: str
    start: Callable[[], pykka.ActorRef[Any]]
    restart: Restart = Restart.PERMANENT
    shutdown_timeout: float | None = 5.0
    start_timeout: float = 5.0
    backoff: Backoff | None = None

    def __post_init__(self) -> None:
        if not self.id:
            raise ValueError("child spec id must not be empty")
        if self.shutdown_timeout is not None and not self.shutdown_timeout > 0:
            raise ValueError(
                f"child {self.id!r}: shutdown_timeout must be > 0 or None, "
                f"got {self.shutdown_timeout!r}"
            )
        if not self.start_timeout > 0:
            raise ValueError(
                f"child {self.id!r}: start_timeout must be > 0, got {self.start_timeout!r}"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorFlags:
    """A supervisor's strategy and restart intensity (OTP default: 1 restart in 5 s)."""

    strategy: Strategy
    max_restarts: int = 1
    period_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0:
            raise ValueError(f"max_restarts must be >= 0, got {self.max_restarts!r}")
        if not self.period_seconds > 0:
            raise ValueError(f"period_seconds must be > 0, got {self.period_seconds!r}")


class RestartIntensity:
    """The sliding window of recent restarts that decides when a supervisor gives up.

    Like OTP, a restart that makes more than ``max_restarts`` fall within the last
    ``period_seconds`` is refused. Times come from the caller's monotonic clock.
    """

    def __init__(self, max_restarts: int, period_seconds: float) -> None:
        self.max_restarts = max_restarts
        self.period_seconds = period_seconds
        self._times: deque[float] = deque()

    def record(self, now: float) -> bool:
        """Count a restart at ``now``; False when it exceeds the intensity."""
        self._times.append(now)
        while now - self._times[0] >= self.period_seconds:
            self._times.popleft()
        return len(self._times) <= self.max_restarts

    def recent(self) -> int:
        """Restarts counted in the window as of the last :meth:`record`."""
        return len(self._times)


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartDue:
    """Tells a supervisor that delayed restarts are due.

    Each target is a child id with the generation it had when the restart was scheduled;
    a child terminated, restarted by other means or rescheduled since has moved on to a
    new generation, so a stale timer never starts a second instance.
    """

    targets: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildInfo:
    """One row of ``which_children``: the child as it is now."""

    id: str
    #: The running instance, or None while stopped or waiting to restart.
    ref: pykka.ActorRef[Any] | None
    restart: Restart
    #: How many times the supervisor has restarted this child.
    restarts: int
    alive: bool
    #: A restart is pending (waiting for its backoff delay or its turn).
    restarting: bool = False


SupervisorEventName = Literal[
    "supervisor.started",
    "supervisor.child_started",
    "supervisor.child_start_failed",
    "supervisor.child_exited",
    "supervisor.restarting",
    "supervisor.restart_scheduled",
    "supervisor.child_stopped",
    "supervisor.child_abandoned",
    "supervisor.shutdown",
    "supervisor.stopped",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisorEvent:
    """A supervisor's decision, published as it is logged (OTP's supervisor report fields)."""

    supervisor: str
    event: SupervisorEventName
    child_id: str | None = None
    #: OTP's errorContext: start_error, child_terminated, shutdown_error or shutdown.
    error_context: str | None = None
    reason: str | None = None
    restart_count: int = 0
    #: Seconds until a scheduled restart (restart_scheduled only).
    delay: float | None = None
    #: The child instance concerned, when there is one.
    actor_urn: str | None = None


class ChildStartError(Exception):
    """A child could not be started (its start callable or its ``on_start`` failed)."""

    def __init__(self, child_id: str, reason: str) -> None:
        super().__init__(f"child {child_id!r} failed to start: {reason}")
        self.child_id = child_id
        self.reason = reason


class SupervisorStartError(Exception):
    """A supervisor could not start all its children, so it did not start either."""


class ReachedMaxRestartIntensity(Exception):
    """Raised by a supervisor that gives up, so that it exits abnormally and escalates."""
