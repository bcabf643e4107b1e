"""The Supervisor actor: starts children from specs, restarts them by strategy, escalates.

The rules live in :mod:`tars_actors.runtime.supervision`; this actor carries them out on its own
thread and learns of child exits from the :class:`~tars_actors.runtime.actor.ExitLink` each child
is started under.
"""

from __future__ import annotations

import contextlib
import functools
import random
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, NoReturn

import pykka
import structlog

from tars_actors.runtime.actor import ActorExit, ExitLink, ExitReason, TarsActor, linked
from tars_actors.runtime.events import EventBus
from tars_actors.runtime.supervision import (
    ChildInfo,
    ChildSpec,
    ChildStartError,
    ReachedMaxRestartIntensity,
    Restart,
    RestartDue,
    RestartIntensity,
    SupervisorEvent,
    SupervisorEventName,
    SupervisorFlags,
    SupervisorStartError,
)
from tars_actors.runtime.timers import TimerHandle, Timers

__all__ = ["RootWatch", "Supervisor", "start_root", "supervisor_spec"]

log = structlog.get_logger("tars.supervisor")

_Level = Literal["info", "warning", "error"]


class _ExitWatch:
    """A child instance's exit, filled in on the child's own thread as it ends.

    The supervisor waits on ``exited`` when it stops the child itself, and is also told
    the :class:`ActorExit` so that an exit it did not cause reaches its mailbox.
    """

    __slots__ = ("exited", "reason", "supervisor")

    def __init__(self, supervisor: pykka.ActorRef[Any]) -> None:
        self.supervisor = supervisor
        self.exited = threading.Event()
        self.reason: ExitReason | None = None

    def __call__(self, exit_: ActorExit) -> None:
        self.reason = exit_.reason
        # Tell before setting ``exited``: once a supervisor that waited on the exit moves
        # on, the exit is already in its mailbox, ahead of anything told after.
        _tell_if_alive(self.supervisor, exit_)
        self.exited.set()


@dataclass(slots=True)
class _Instance:
    """One running actor of a child."""

    ref: pykka.ActorRef[Any]
    link: ExitLink
    watch: _ExitWatch
    started_at: float


@dataclass(slots=True)
class _Child:
    """The supervisor's mutable record of one child id; only its own thread touches it."""

    spec: ChildSpec
    instance: _Instance | None = None
    restarts: int = 0
    #: Restarts in a row without staying up longer than the period; drives the backoff.
    consecutive: int = 0
    #: Bumped whenever a pending restart is superseded, so a stale RestartDue is ignored.
    generation: int = 0
    restarting: bool = False
    pending: TimerHandle | None = None


class Supervisor(TarsActor):
    """Starts its children in order, restarts them by its strategy, stops them in reverse.

    ``start_child``, ``terminate_child`` and ``which_children`` are called through the
    actor (``ref.proxy().which_children().get(timeout=...)``). They block the supervisor for
    at most one child's start or shutdown timeout, and the supervisor never waits on a
    child's reply, so calling them from another actor cannot deadlock; a child must not call
    them on itself synchronously (``terminate_child`` of its own id waits out its shutdown
    timeout) nor ask its supervisor anything from ``on_start``.
    """

    def __init__(
        self,
        name: str,
        flags: SupervisorFlags,
        children: Sequence[ChildSpec] = (),
        *,
        timers: Timers,
        events: EventBus | None = None,
        rng: random.Random | None = None,
    ) -> None:
        ids = [spec.id for spec in children]
        duplicates = sorted({child_id for child_id in ids if ids.count(child_id) > 1})
        if duplicates:
            raise ValueError(f"supervisor {name!r}: duplicate child ids {duplicates}")
        super().__init__()
        self._name = name
        self._flags = flags
        self._initial = tuple(children)
        self._timers = timers
        self._events = events
        self._rng = rng if rng is not None else random.Random()
        self._intensity = RestartIntensity(flags.max_restarts, flags.period_seconds)
        # Insertion order is start order: static children first, dynamic ones appended.
        self._children: dict[str, _Child] = {}
        self._down = False

    def log_context(self) -> dict[str, Any]:
        return {**super().log_context(), "supervisor": self._name}

    # -- lifecycle (supervisor thread) ------------------------------------------------

    def on_start(self) -> None:
        for spec in self._initial:
            child = _Child(spec=spec)
            self._children[spec.id] = child
            failure = self._start_instance(child)
            if failure is not None:
                del self._children[spec.id]
                # OTP: a supervisor whose child fails to start stops the ones it started
                # and fails to start itself, so its parent sees a start error.
                self._shut_down("failed_to_start_child")
                raise SupervisorStartError(
                    f"supervisor {self._name!r}: child {spec.id!r} failed to start: {failure}"
                )
        self._report("supervisor.started")

    def on_stop(self) -> None:
        self._shut_down("shutdown")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # After escalating, the children are already down; after a bug, they must not
        # outlive their supervisor.
        self._shut_down(f"{getattr(exception_type, '__name__', 'Exception')}: {exception_value}")

    def on_receive(self, message: Any) -> Any:
        match message:
            case ActorExit():
                self._on_child_exit(message)
            case RestartDue(targets=targets):
                self._on_restart_due(targets)
            case _:
                return super().on_receive(message)
        return None

    # -- dynamic children (called through the actor) -----------------------------------

    def start_child(self, spec: ChildSpec) -> pykka.ActorRef[Any]:
        """Start a child from ``spec`` after the others; raise if the id is taken or it fails."""
        if spec.id in self._children:
            raise ValueError(f"supervisor {self._name!r} already has a child {spec.id!r}")
        child = _Child(spec=spec)
        self._children[spec.id] = child
        failure = self._start_instance(child)
        if failure is not None:
            del self._children[spec.id]
            raise ChildStartError(spec.id, str(failure))
        assert child.instance is not None
        return child.instance.ref

    def terminate_child(self, child_id: str) -> None:
        """Stop a child within its shutdown timeout and forget it; it is not restarted."""
        child = self._children.get(child_id)
        if child is None:
            raise LookupError(f"supervisor {self._name!r} has no child {child_id!r}")
        self._cancel_restart(child)
        self._stop_instance(child)
        del self._children[child_id]

    def which_children(self) -> list[ChildInfo]:
        """Every child in start order, with its current instance (None while restarting)."""
        return [
            ChildInfo(
                id=child_id,
                ref=child.instance.ref if child.instance is not None else None,
                restart=child.spec.restart,
                restarts=child.restarts,
                alive=child.instance is not None and child.instance.ref.is_alive(),
                restarting=child.restarting,
            )
            for child_id, child in self._children.items()
        ]

    # -- restarts ----------------------------------------------------------------------

    def _on_child_exit(self, exit_: ActorExit) -> None:
        child = self._children.get(exit_.child_id)
        instance = child.instance if child is not None else None
        if child is None or instance is None or instance.ref.actor_urn != exit_.actor_urn:
            # An instance this supervisor already stopped, abandoned or replaced.
            return
        child.instance = None
        reason = exit_.reason
        self._report(
            "supervisor.child_exited",
            child,
            error_context="child_terminated",
            reason=str(reason),
            actor_urn=exit_.actor_urn,
            level="error" if reason.abnormal else "info",
        )
        if not child.spec.restart.after_exit(abnormal=reason.abnormal):
            if child.spec.restart is Restart.TEMPORARY:
                del self._children[child.spec.id]
            return
        self._restart_after(child, uptime=self._timers.monotonic() - instance.started_at)

    def _restart_after(self, child: _Child, *, uptime: float, retry: bool = False) -> None:
        """Restart ``child`` and the siblings its strategy takes along, now or after backoff.

        Runs in a ``tell`` handler: when the intensity is exceeded it raises, which ends
        this supervisor abnormally so that its own parent applies its strategy.
        """
        if uptime > self._flags.period_seconds:
            child.consecutive = 0
        if not self._intensity.record(self._timers.monotonic()):
            self._give_up()
        affected = self._flags.strategy.affected(list(self._children), child.spec.id)
        for child_id in reversed(affected):
            sibling = self._children[child_id]
            if sibling is child:
                continue
            self._stop_instance(sibling)
            if sibling.spec.restart is Restart.TEMPORARY:
                del self._children[child_id]
        targets: list[tuple[str, int]] = []
        for child_id in affected:
            if (member := self._children.get(child_id)) is not None:
                member.generation += 1
                member.restarting = True
                targets.append((child_id, member.generation))
        due = RestartDue(targets=tuple(targets))
        child.consecutive += 1
        backoff = child.spec.backoff
        delay = backoff.delay(child.consecutive, self._rng) if backoff is not None else 0.0
        if delay > 0:
            handle = self._timers.call_later(
                delay, functools.partial(_tell_if_alive, self.actor_ref, due)
            )
            for child_id, _ in targets:
                self._children[child_id].pending = handle
            self._report(
                "supervisor.restart_scheduled",
                child,
                restart_count=child.restarts + 1,
                delay=delay,
            )
        elif retry:
            # After a failed start, go through the mailbox rather than recurse, so that a
            # stop request or an exit already queued is handled between attempts.
            self.actor_ref.tell(due)
        else:
            self._on_restart_due(due.targets)

    def _on_restart_due(self, targets: tuple[tuple[str, int], ...]) -> None:
        current = [
            child
            for child_id, generation in targets
            if (child := self._children.get(child_id)) is not None
            and child.generation == generation
            and child.restarting
        ]
        for child in current:
            child.pending = None
            child.restarts += 1
            self._report("supervisor.restarting", child)
            if self._start_instance(child) is not None:
                # A failed restart counts like a crash; those after it stay pending.
                self._restart_after(child, uptime=0.0, retry=True)
                return

    def _cancel_restart(self, child: _Child) -> None:
        # A shared group timer is not cancelled: the generation bump makes it stale for
        # this child while its siblings still need it.
        child.generation += 1
        child.restarting = False
        child.pending = None

    def _give_up(self) -> NoReturn:
        self._shut_down("reached_max_restart_intensity")
        raise ReachedMaxRestartIntensity(
            f"supervisor {self._name!r}: more than {self._flags.max_restarts} restart(s)"
            f" in {self._flags.period_seconds:g}s"
        )

    # -- starting and stopping one child -----------------------------------------------

    def _start_instance(self, child: _Child) -> ExitReason | None:
        """Start one instance of ``child`` and wait for its ``on_start``; None on success."""
        spec = child.spec
        watch = _ExitWatch(self.actor_ref)
        link = ExitLink(spec.id, watch)
        try:
            with linked(link):
                ref = spec.start()
        except Exception as exc:  # noqa: BLE001 (any error of the start callable is a start error)
            return self._start_failed(child, f"{type(exc).__name__}: {exc}")
        if not issubclass(ref.actor_class, TarsActor):
            ref.stop(block=False)
            return self._start_failed(
                child,
                f"start returned a {ref.actor_class.__name__}, which is not a TarsActor"
                " and cannot report its exit",
            )
        failure = link.wait_started(spec.start_timeout)
        if failure is not None:
            # After a start timeout on_start is still running: stop it once it returns.
            link.stopping = True
            ref.stop(block=False)
            return self._start_failed(child, failure)
        child.instance = _Instance(
            ref=ref, link=link, watch=watch, started_at=self._timers.monotonic()
        )
        child.restarting = False
        self._report("supervisor.child_started", child, actor_urn=ref.actor_urn)
        return None

    def _start_failed(self, child: _Child, failure: ExitReason | str) -> ExitReason:
        if isinstance(failure, str):
            failure = ExitReason(kind="error", phase="start", error=failure)
        self._report(
            "supervisor.child_start_failed",
            child,
            error_context="start_error",
            reason=str(failure),
            level="error",
        )
        return failure

    def _stop_instance(self, child: _Child) -> None:
        """Stop ``child``'s instance, waiting at most its shutdown timeout, then abandon it."""
        instance = child.instance
        if instance is None:
            return
        child.instance = None
        instance.link.stopping = True
        instance.ref.stop(block=False)
        timeout = child.spec.shutdown_timeout
        urn = instance.ref.actor_urn
        if instance.watch.exited.wait(timeout):
            reason = instance.watch.reason
            abnormal = reason is not None and reason.abnormal
            self._report(
                "supervisor.child_stopped",
                child,
                error_context="shutdown_error" if abnormal else "shutdown",
                reason=str(reason),
                actor_urn=urn,
                level="warning" if abnormal else "info",
            )
            return
        # Python cannot kill a thread: a child stuck in a handler keeps its thread, and the
        # supervisor moves on rather than hang with it.
        self._report(
            "supervisor.child_abandoned",
            child,
            error_context="shutdown_error",
            reason="shutdown_timeout",
            actor_urn=urn,
            level="error",
        )

    def _shut_down(self, reason: str) -> None:
        """Stop every child in reverse start order; runs once, however the supervisor ends."""
        if self._down:
            return
        self._down = True
        self._report(
            "supervisor.shutdown",
            reason=reason,
            restart_count=self._intensity.recent(),
            level="info" if reason == "shutdown" else "error",
        )
        for child in reversed(list(self._children.values())):
            if child.pending is not None:
                child.pending.cancel()
            self._cancel_restart(child)
            self._stop_instance(child)
        self._report("supervisor.stopped", reason=reason)

    # -- reporting ---------------------------------------------------------------------

    def _report(
        self,
        event: SupervisorEventName,
        child: _Child | None = None,
        *,
        error_context: str | None = None,
        reason: str | None = None,
        restart_count: int | None = None,
        delay: float | None = None,
        actor_urn: str | None = None,
        level: _Level = "info",
    ) -> None:
        """Log a decision with OTP's supervisor report fields and publish it."""
        if restart_count is None:
            restart_count = child.restarts if child is not None else 0
        fields: dict[str, Any] = {"supervisor": self._name, "restart_count": restart_count}
        if child is not None:
            fields["child_id"] = child.spec.id
            fields["restart_type"] = str(child.spec.restart)
            fields["shutdown_timeout"] = child.spec.shutdown_timeout
        if error_context is not None:
            fields["errorContext"] = error_context
        if reason is not None:
            fields["reason"] = reason
        if delay is not None:
            fields["delay"] = round(delay, 3)
        if actor_urn is not None:
            fields["actor_urn"] = actor_urn
        getattr(log, level)(event, **fields)
        if self._events is not None:
            self._events.publish(
                SupervisorEvent(
                    supervisor=self._name,
                    event=event,
                    child_id=child.spec.id if child is not None else None,
                    error_context=error_context,
                    reason=reason,
                    restart_count=restart_count,
                    delay=delay,
                    actor_urn=actor_urn,
                )
            )


def _tell_if_alive(ref: pykka.ActorRef[Any], message: object) -> None:
    # The supervisor may be gone (stopped, or gave up): nobody is left to tell.
    with contextlib.suppress(pykka.ActorDeadError):
        ref.tell(message)


def supervisor_spec(
    child_id: str,
    flags: SupervisorFlags,
    children: Sequence[ChildSpec] = (),
    *,
    timers: Timers,
    events: EventBus | None = None,
    rng: random.Random | None = None,
    name: str | None = None,
    restart: Restart = Restart.PERMANENT,
    start_timeout: float | None = None,
) -> ChildSpec:
    """A child spec that starts a nested supervisor named ``name`` (default: ``child_id``).

    Its parent waits for its whole shutdown (OTP's ``infinity`` for supervisors: its own
    children's timeouts bound it) and, by default, for all its children to start.
    """
    if start_timeout is None:
        start_timeout = 1.0 + sum(
            spec.start_timeout + (spec.shutdown_timeout or 0.0) for spec in children
        )
    specs = tuple(children)
    return ChildSpec(
        id=child_id,
        start=lambda: Supervisor.start(
            name or child_id, flags, specs, timers=timers, events=events, rng=rng
        ),
        restart=restart,
        shutdown_timeout=None,
        start_timeout=start_timeout,
    )


class RootWatch:
    """How the process that starts the root supervisor learns that it ended, and why.

    The root has no parent to escalate to; when it gives up, ``gave_up`` turns true and
    the daemon exits non-zero so that its service manager restarts it.
    """

    def __init__(self, name: str, on_exit: Callable[[ActorExit], None] | None = None) -> None:
        self._exited = threading.Event()
        self._exit: ActorExit | None = None
        self._on_exit = on_exit
        self.link = ExitLink(name, self._record)

    def _record(self, exit_: ActorExit) -> None:
        self._exit = exit_
        self._exited.set()
        if self._on_exit is not None:
            self._on_exit(exit_)

    def wait(self, timeout: float | None = None) -> ActorExit | None:
        """Wait for the root to end; its exit, or None if it is still running."""
        self._exited.wait(timeout)
        return self._exit

    @property
    def exit(self) -> ActorExit | None:
        return self._exit

    @property
    def gave_up(self) -> bool:
        """The root ended abnormally (it reached its restart intensity, or crashed)."""
        return self._exit is not None and self._exit.reason.abnormal


def start_root(
    name: str,
    flags: SupervisorFlags,
    children: Sequence[ChildSpec] = (),
    *,
    timers: Timers,
    events: EventBus | None = None,
    rng: random.Random | None = None,
    start_timeout: float = 30.0,
    on_exit: Callable[[ActorExit], None] | None = None,
) -> tuple[pykka.ActorRef[Supervisor], RootWatch]:
    """Start the root supervisor under a :class:`RootWatch` and wait until it has started.

    Raises :class:`SupervisorStartError` when a child fails to start (the children already
    started are stopped first). Stop the tree with ``ref.stop(block=True, timeout=...)``.
    """
    watch = RootWatch(name, on_exit)
    with linked(watch.link):
        ref = Supervisor.start(name, flags, children, timers=timers, events=events, rng=rng)
    failure = watch.link.wait_started(start_timeout)
    if failure is not None:
        watch.link.stopping = True
        ref.stop(block=False)
        raise SupervisorStartError(f"root supervisor {name!r} did not start: {failure}")
    return ref, watch
