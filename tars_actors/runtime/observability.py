"""Actor observability: mailbox snapshots of every live actor, the rules of the stats report
and of the stuck-actor watchdog, and a SIGUSR1 dump of every thread's stack.
"""

from __future__ import annotations

import signal
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import FrameType, MappingProxyType
from typing import Any

import pykka
import structlog

from tars_actors.runtime.events import EventBus
from tars_actors.runtime.mailbox import Mailbox

__all__ = [
    "ActorSnapshot",
    "ActorStats",
    "ActorStuck",
    "CheckStuck",
    "ReportStats",
    "StatsReporter",
    "StuckWatch",
    "ThreadStack",
    "ThreadsDumped",
    "dump_threads",
    "install_stack_dump_signal",
    "snapshot_actors",
    "stuck_report",
    "thread_stacks",
]

log = structlog.get_logger("tars.observability")

_NO_LABELS: Mapping[str, Any] = MappingProxyType({})


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorSnapshot:
    """One actor's mailbox figures at one moment, read without stopping the actor."""

    kind: str
    actor_id: str
    urn: str
    #: The actor's bound log context (actor, actor_id, session, call_sid...), read-only.
    labels: Mapping[str, Any]
    depth: int
    peak: int
    handled: int
    busy_seconds: float
    #: Type name of the message in hand (``ProxyCall:method`` for proxy calls), or None.
    current: str | None
    current_seconds: float
    alive: bool
    #: The thread consuming the mailbox, once it has started.
    thread_ident: int | None

    @property
    def context(self) -> dict[str, Any]:
        """Log fields naming the actor: its labels, with kind and id always present."""
        return {**self.labels, "actor": self.kind, "actor_id": self.actor_id}


def snapshot_actors() -> list[ActorSnapshot]:
    """Snapshots of every registered actor that has an instrumented :class:`Mailbox`.

    Cheap and safe from any thread: it reads counters the mailboxes keep anyway.
    Plain pykka actors are left out, since they count nothing.
    """
    snapshots = []
    for ref in pykka.ActorRegistry.get_all():
        inbox = ref.actor_inbox
        if not isinstance(inbox, Mailbox):
            continue
        stats = inbox.stats()
        labels = inbox.labels
        snapshots.append(
            ActorSnapshot(
                kind=str(labels.get("actor", ref.actor_class.__name__)),
                actor_id=str(labels.get("actor_id", _short_urn(ref.actor_urn))),
                urn=ref.actor_urn,
                labels=MappingProxyType(dict(labels)) if labels else _NO_LABELS,
                depth=stats.depth,
                peak=stats.peak_depth,
                handled=stats.handled,
                busy_seconds=stats.busy_seconds,
                current=stats.current,
                current_seconds=stats.current_seconds,
                alive=ref.is_alive(),
                thread_ident=inbox.thread_ident,
            )
        )
    return snapshots


def _short_urn(urn: str) -> str:
    # The same short form TarsActor.actor_id uses for actors without a supervisor.
    return urn.rsplit(":", 1)[-1][:8]


# -- actor.stats ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportStats:
    """Ask the monitor to log ``actor.stats`` now; the reply is the reported stats."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorStats:
    """One ``actor.stats`` line: cumulative counts, and the busy ratio since the last one."""

    actor: str
    actor_id: str
    labels: Mapping[str, Any]
    mailbox_depth: int
    peak_depth: int
    handled: int
    busy_ms: float
    #: Share of the time since the previous report spent on messages, 0.0 to 1.0.
    busy_ratio: float
    current: str | None
    current_ms: float

    def log_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            **self.labels,
            "actor": self.actor,
            "actor_id": self.actor_id,
            "mailbox_depth": self.mailbox_depth,
            "peak_depth": self.peak_depth,
            "handled": self.handled,
            "busy_ms": round(self.busy_ms, 3),
            "busy_ratio": round(self.busy_ratio, 4),
        }
        if self.current is not None:
            fields["current"] = self.current
            fields["current_ms"] = round(self.current_ms, 3)
        return fields


class StatsReporter:
    """Turns successive snapshots into :class:`ActorStats`, remembering each actor's busy time.

    ``now`` must be on the clock the mailboxes measure busy time with
    (``time.perf_counter``), since the ratio divides one by the other. An actor first seen
    in a report started after the previous one, so its whole busy time counts against
    that interval.
    """

    def __init__(self, baseline: Iterable[ActorSnapshot], now: float) -> None:
        self._last_at = now
        self._busy: dict[str, float] = {s.urn: _busy_so_far(s) for s in baseline}

    def report(self, snapshots: Iterable[ActorSnapshot], now: float) -> list[ActorStats]:
        elapsed = now - self._last_at
        busy_now: dict[str, float] = {}
        stats = []
        for snap in snapshots:
            busy = _busy_so_far(snap)
            busy_now[snap.urn] = busy
            delta = busy - self._busy.get(snap.urn, 0.0)
            # Clamped: the counters are read without locks, so a message finishing
            # between two reads can briefly count twice.
            ratio = min(1.0, max(0.0, delta / elapsed)) if elapsed > 0 else 0.0
            stats.append(
                ActorStats(
                    actor=snap.kind,
                    actor_id=snap.actor_id,
                    labels=snap.labels,
                    mailbox_depth=snap.depth,
                    peak_depth=snap.peak,
                    handled=snap.handled,
                    busy_ms=busy * 1000.0,
                    busy_ratio=ratio,
                    current=snap.current,
                    current_ms=snap.current_seconds * 1000.0,
                )
            )
        # Rebuilt, not updated: actors that stopped are forgotten.
        self._busy = busy_now
        self._last_at = now
        return stats


def _busy_so_far(snap: ActorSnapshot) -> float:
    # The message in hand counts too, or an actor stuck on one message would look idle.
    return snap.busy_seconds + snap.current_seconds


# -- watchdog --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckStuck:
    """Ask the monitor to run the watchdog now; the reply is the newly stuck actors."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ActorStuck:
    """An actor has been busy with one message for too long (published once per message)."""

    actor: str
    actor_id: str
    urn: str
    labels: Mapping[str, Any]
    message: str
    seconds: float
    thread: str | None
    #: The actor thread's stack when it was found stuck, innermost call last.
    stack: str

    def log_fields(self) -> dict[str, Any]:
        return {
            **self.labels,
            "actor": self.actor,
            "actor_id": self.actor_id,
            "message": self.message,
            "busy_seconds": round(self.seconds, 3),
            "thread": self.thread,
            "stack": self.stack,
        }


@dataclass(slots=True)
class _Holding:
    """The message an actor was seen holding, and since when on the watchdog's clock."""

    handled: int
    since: float
    reported: bool = False


class StuckWatch:
    """Decides, check by check, which actors have held one message longer than a limit.

    A message is told apart from the next by the mailbox's handled count, which moves
    whenever the actor takes another message. How long it has been held is the longer
    of the mailbox's own figure and the time since this watch first saw it, so a test
    can drive the watch with a manual clock. Each message is reported once.
    """

    def __init__(self, threshold_seconds: float) -> None:
        if threshold_seconds <= 0:
            raise ValueError(f"watchdog threshold must be positive, not {threshold_seconds}")
        self.threshold_seconds = threshold_seconds
        self._holding: dict[str, _Holding] = {}

    def check(
        self, snapshots: Iterable[ActorSnapshot], now: float
    ) -> list[tuple[ActorSnapshot, float]]:
        """The actors newly found stuck, each with how long it has held its message."""
        stuck = []
        holding: dict[str, _Holding] = {}
        for snap in snapshots:
            if snap.current is None:
                continue
            seen = self._holding.get(snap.urn)
            if seen is None or seen.handled != snap.handled:
                seen = _Holding(handled=snap.handled, since=now)
            holding[snap.urn] = seen
            held = max(snap.current_seconds, now - seen.since)
            if not seen.reported and held >= self.threshold_seconds:
                seen.reported = True
                stuck.append((snap, held))
        # Idle and stopped actors drop out, so their next long message is reported anew.
        self._holding = holding
        return stuck


def stuck_report(snap: ActorSnapshot, seconds: float) -> ActorStuck:
    """Describe a stuck actor, with its thread's stack as of now."""
    thread = None
    stack = "(the actor's thread is not running)"
    if snap.thread_ident is not None:
        frame = sys._current_frames().get(snap.thread_ident)
        if frame is not None:
            stack = "".join(traceback.format_stack(frame))
        thread = _thread_names().get(snap.thread_ident)
    return ActorStuck(
        actor=snap.kind,
        actor_id=snap.actor_id,
        urn=snap.urn,
        labels=snap.labels,
        message=snap.current or "?",
        seconds=seconds,
        thread=thread,
        stack=stack,
    )


# -- thread dumps ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadStack:
    """One thread's stack, with the actor running on it if any."""

    name: str
    ident: int
    daemon: bool
    actor: str | None
    actor_id: str | None
    stack: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadsDumped:
    """Published after a ``threads.dump`` line was written."""

    reason: str
    threads: tuple[ThreadStack, ...]


def thread_stacks() -> list[ThreadStack]:
    """Every thread's current stack, named, with the actor each actor thread runs."""
    frames = sys._current_frames()
    names = {t.ident: t for t in threading.enumerate()}
    actors = {s.thread_ident: s for s in snapshot_actors() if s.thread_ident is not None}
    stacks = []
    for ident, frame in frames.items():
        thread = names.get(ident)
        snap = actors.get(ident)
        stacks.append(
            ThreadStack(
                name=thread.name if thread is not None else f"thread-{ident}",
                ident=ident,
                daemon=thread.daemon if thread is not None else False,
                actor=snap.kind if snap is not None else None,
                actor_id=snap.actor_id if snap is not None else None,
                stack="".join(traceback.format_stack(frame)),
            )
        )
    return sorted(stacks, key=lambda s: s.name)


def dump_threads(reason: str, events: EventBus | None = None) -> ThreadsDumped:
    """Log one ``threads.dump`` event with every thread's stack, and publish it."""
    stacks = tuple(thread_stacks())
    log.warning(
        "threads.dump",
        reason=reason,
        thread_count=len(stacks),
        threads=[
            {
                "name": s.name,
                "ident": s.ident,
                "daemon": s.daemon,
                **({"actor": s.actor, "actor_id": s.actor_id} if s.actor else {}),
                "stack": s.stack,
            }
            for s in stacks
        ],
    )
    dumped = ThreadsDumped(reason=reason, threads=stacks)
    if events is not None:
        events.publish(dumped)
    return dumped


_SignalHandler = Callable[[int, FrameType | None], Any] | int | None


def install_stack_dump_signal(
    signum: int = signal.SIGUSR1, *, events: EventBus | None = None
) -> _SignalHandler:
    """Log every thread's stack when ``signum`` arrives; returns the previous handler.

    Call from the main thread (Python runs signal handlers there). The handler only
    formats the stacks and writes one line; it never raises into the code it interrupted.
    """
    reason = signal.Signals(signum).name

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        try:
            dump_threads(reason, events)
        except Exception:  # noqa: BLE001 (raising here would raise inside whatever was interrupted)
            return

    return signal.signal(signum, on_signal)


def _thread_names() -> dict[int | None, str]:
    return {t.ident: t.name for t in threading.enumerate()}
