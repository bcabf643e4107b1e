"""The ActorMonitor: logs ``actor.stats`` for every actor periodically and reports actors
stuck on one message (``actor.stuck``, with the thread's stack), from its own thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import structlog

from tars_actors.runtime import _malloc_trim
from tars_actors.runtime.actor import TarsActor, teller
from tars_actors.runtime.events import EventBus
from tars_actors.runtime.observability import (
    ActorStats,
    ActorStuck,
    CheckStuck,
    ReportStats,
    StatsReporter,
    StuckWatch,
    snapshot_actors,
    stuck_report,
)
from tars_actors.runtime.timers import TimerHandle, Timers

__all__ = ["TRIM_EVERY_SECONDS", "ActorMonitor"]

log = structlog.get_logger("tars.monitor")

#: The watchdog looks at most this far apart, however long its threshold.
_MAX_WATCHDOG_INTERVAL_SECONDS = 1.0
#: How often freed memory is given back to the system (at the first stats tick after).
TRIM_EVERY_SECONDS = 300.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _StatsTick:
    """Sent by the timer; unlike :class:`ReportStats` it schedules the next one."""


@dataclass(frozen=True, slots=True, kw_only=True)
class _WatchdogTick:
    """Sent by the timer; unlike :class:`CheckStuck` it schedules the next one."""


class ActorMonitor(TarsActor):
    """Reads every actor's mailbox figures on a schedule and logs what it finds.

    Every ``stats_interval`` seconds it logs one ``actor.stats`` line per actor. Every
    ``watchdog_interval`` seconds (by default half the threshold, at most 1 s) it logs
    ``actor.stuck`` once for each actor that has held one message for
    ``watchdog_seconds`` or more, and publishes the :class:`ActorStuck` to ``events``.
    ``ReportStats`` and ``CheckStuck`` do the same on demand and reply with the results.

    The next tick is scheduled when one is handled, not when it is sent, so a monitor
    that falls behind never piles ticks up in its own mailbox.
    """

    def __init__(
        self,
        *,
        stats_interval: float = 30.0,
        watchdog_seconds: float = 10.0,
        watchdog_interval: float | None = None,
        timers: Timers,
        events: EventBus | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        if stats_interval <= 0:
            raise ValueError(f"stats_interval must be positive, not {stats_interval}")
        watch = StuckWatch(watchdog_seconds)
        if watchdog_interval is None:
            watchdog_interval = min(_MAX_WATCHDOG_INTERVAL_SECONDS, watchdog_seconds / 2)
        if watchdog_interval <= 0:
            raise ValueError(f"watchdog_interval must be positive, not {watchdog_interval}")
        super().__init__()
        self._stats_interval = stats_interval
        self._watchdog_interval = watchdog_interval
        self._timers = timers
        self._events = events
        # Busy ratios divide the mailboxes' perf_counter figures, so the same clock.
        self._clock = clock
        self._watch = watch
        self._reporter: StatsReporter | None = None
        self._stats_timer: TimerHandle | None = None
        self._watchdog_timer: TimerHandle | None = None
        self._trimmed_at: float | None = None

    # -- lifecycle (monitor thread) -------------------------------------------------------

    def on_start(self) -> None:
        self._reporter = StatsReporter(snapshot_actors(), self._clock())
        self._schedule_stats()
        self._schedule_watchdog()
        log.info(
            "monitor.started",
            stats_interval=self._stats_interval,
            watchdog_seconds=self._watch.threshold_seconds,
            watchdog_interval=self._watchdog_interval,
        )

    def on_stop(self) -> None:
        self._cancel_timers()

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._cancel_timers()

    def on_receive(self, message: Any) -> Any:
        match message:
            case _StatsTick():
                self._schedule_stats()
                self._report_stats()
                self._trim_memory()
                return None
            case ReportStats():
                return self._report_stats()
            case _WatchdogTick():
                self._schedule_watchdog()
                self._check_stuck()
                return None
            case CheckStuck():
                return self._check_stuck()
            case _:
                return super().on_receive(message)

    # -- work (monitor thread) ------------------------------------------------------------

    def _report_stats(self) -> tuple[ActorStats, ...]:
        assert self._reporter is not None
        stats = tuple(self._reporter.report(snapshot_actors(), self._clock()))
        for line in stats:
            log.info("actor.stats", **line.log_fields())
        return stats

    def _trim_memory(self) -> None:
        """Freed memory back to the system (glibc keeps it otherwise), every few minutes:
        each trim holds the allocator's locks while it walks the free memory."""
        now = self._timers.monotonic()
        # Half a tick early is on time: ticks drift by milliseconds, and a tick found a
        # hair short of the period would put the trim off by a whole tick (with 300 s
        # ticks, to every 10 minutes).
        due = TRIM_EVERY_SECONDS - self._stats_interval / 2
        if self._trimmed_at is not None and now - self._trimmed_at < due:
            return
        self._trimmed_at = now
        trimmed = _malloc_trim.trim()
        if trimmed is not None:
            log.info(
                "memory.trimmed",
                released=trimmed.released,
                ms=round(trimmed.milliseconds, 2),
                rss_before_mb=trimmed.rss_before_mb,
                rss_after_mb=trimmed.rss_after_mb,
            )

    def _check_stuck(self) -> tuple[ActorStuck, ...]:
        snapshots = [s for s in snapshot_actors() if s.urn != self.actor_urn]
        reports = tuple(
            stuck_report(snap, held)
            for snap, held in self._watch.check(snapshots, self._timers.monotonic())
        )
        for report in reports:
            log.warning("actor.stuck", **report.log_fields())
            if self._events is not None:
                self._events.publish(report)
        return reports

    # -- timers ---------------------------------------------------------------------------

    def _schedule_stats(self) -> None:
        self._stats_timer = self._timers.call_later(
            self._stats_interval, teller(self.actor_ref, _StatsTick())
        )

    def _schedule_watchdog(self) -> None:
        self._watchdog_timer = self._timers.call_later(
            self._watchdog_interval, teller(self.actor_ref, _WatchdogTick())
        )

    def _cancel_timers(self) -> None:
        for handle in (self._stats_timer, self._watchdog_timer):
            if handle is not None:
                handle.cancel()
