"""Actor observability: mailbox snapshots, actor.stats, the stuck-actor watchdog, SIGUSR1."""

from __future__ import annotations

import io
import json
import os
import queue
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import pykka
import pytest

from actors.monitor import TRIM_EVERY_SECONDS, ActorMonitor
from tars_actors.ops import bench_mailbox as benchmarks
from tars_actors.runtime.actor import TarsActor
from tars_actors.runtime.events import EventBus
from tars_actors.runtime.log import configure_logging, reset_logging
from tars_actors.runtime.mailbox import Mailbox
from tars_actors.runtime.observability import (
    ActorSnapshot,
    ActorStats,
    ActorStuck,
    CheckStuck,
    ReportStats,
    StatsReporter,
    StuckWatch,
    ThreadsDumped,
    install_stack_dump_signal,
    snapshot_actors,
)
from tars_actors.runtime.timers import ManualTimers

WAIT = 5.0


@pytest.fixture(autouse=True)
def _clean_actors_and_logging() -> Iterator[None]:
    yield
    for ref in pykka.ActorRegistry.get_all():
        ref.stop(block=True, timeout=WAIT)
    reset_logging()


@pytest.fixture
def log_out() -> io.StringIO:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    return out


def lines_of(out: io.StringIO, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line["event"] == event]


# -- a worker actor ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Count:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    entered: threading.Event
    release: threading.Event


def hold_the_line(release: threading.Event) -> None:
    """Where a blocked worker waits: the name the watchdog's stack must show."""
    release.wait(WAIT)


class Worker(TarsActor):
    """Counts messages; blocks on Block until released, like a handler stuck on I/O."""

    actor_kind = "CallSession"

    def __init__(self, session: str = "Caller 1", call_sid: str = "CA1") -> None:
        super().__init__()
        self._fields = {"session": session, "call_sid": call_sid}
        self.count = 0

    def log_context(self) -> dict[str, Any]:
        return {**super().log_context(), **self._fields}

    def on_receive(self, message: Any) -> Any:
        match message:
            case Count():
                self.count += 1
                return self.count
            case Block(entered=entered, release=release):
                entered.set()
                hold_the_line(release)
                return None
        return super().on_receive(message)


def block(ref: pykka.ActorRef[Any]) -> threading.Event:
    """Make ``ref`` hold a Block message; return the event that releases it."""
    entered, release = threading.Event(), threading.Event()
    ref.tell(Block(entered=entered, release=release))
    assert entered.wait(WAIT)
    return release


def short_id(ref: pykka.ActorRef[Any]) -> str:
    """The id a TarsActor outside a supervisor logs: the start of its URN."""
    return ref.actor_urn.rsplit(":", 1)[-1][:8]


def snapshot_of(ref: pykka.ActorRef[Any]) -> ActorSnapshot:
    (snap,) = [s for s in snapshot_actors() if s.urn == ref.actor_urn]
    return snap


def start_monitor(timers: ManualTimers, **kwargs: Any) -> pykka.ActorRef[Any]:
    monitor = ActorMonitor.start(timers=timers, **kwargs)
    settle(monitor)
    return monitor


def settle(monitor: pykka.ActorRef[Any]) -> tuple[ActorStuck, ...]:
    """Wait until the monitor has handled everything told to it so far.

    Messages are handled in order, so once this ask returns, every tick a timer told the
    monitor before it has been handled (and the next tick scheduled).
    """
    result: tuple[ActorStuck, ...] = monitor.ask(CheckStuck(), block=True, timeout=WAIT)
    return result


# -- snapshots -------------------------------------------------------------------------------


def test_snapshot_reads_depth_peak_handled_and_the_message_in_hand() -> None:
    ref = Worker.start(session="Owner", call_sid="CA9")
    release = block(ref)
    for _ in range(3):
        ref.tell(Count())

    snap = snapshot_of(ref)
    assert (snap.kind, snap.actor_id) == ("CallSession", short_id(ref))
    assert snap.labels["session"] == "Owner"
    assert snap.labels["call_sid"] == "CA9"
    assert (snap.depth, snap.peak, snap.handled) == (3, 3, 0)
    assert snap.current == "Block"
    assert snap.current_seconds > 0
    assert snap.alive
    assert snap.thread_ident is not None

    release.set()
    second_release = block(ref)
    snap = snapshot_of(ref)
    assert (snap.depth, snap.handled) == (0, 4)
    assert snap.peak >= 3  # the second Block may have been queued behind the counts
    assert snap.busy_seconds > 0
    second_release.set()


def test_snapshot_skips_plain_pykka_actors_which_count_nothing() -> None:
    class Plain(pykka.ThreadingActor):
        pass

    Plain.start()
    ref = Worker.start()
    ref.ask(Count(), timeout=WAIT)

    assert [s.urn for s in snapshot_actors()] == [ref.actor_urn]


def test_mailbox_get_keeps_queue_semantics_off_the_fast_path() -> None:
    mailbox = Mailbox()
    with pytest.raises(queue.Empty):
        mailbox.get(block=False)
    mailbox.put("a")
    mailbox.put("b")

    assert mailbox.get(block=False) == "a"
    assert mailbox.get(timeout=WAIT) == "b"
    stats = mailbox.stats()
    assert (stats.handled, stats.current, stats.peak_depth, stats.depth) == (1, "str", 2, 0)


# -- actor.stats -----------------------------------------------------------------------------


def test_stats_lines_carry_correct_counts_after_n_messages(log_out: io.StringIO) -> None:
    timers = ManualTimers()
    ref = Worker.start(session="Caller 7", call_sid="CA7")
    monitor = start_monitor(timers, stats_interval=10.0, watchdog_seconds=60.0)
    for _ in range(25):
        ref.tell(Count())
    release = block(ref)  # the 25 counts are done once the worker holds the Block

    timers.advance(10.0)
    settle(monitor)

    stats = lines_of(log_out, "actor.stats")
    assert sorted(line["actor"] for line in stats) == ["ActorMonitor", "CallSession"]
    (line,) = [line for line in stats if line["actor"] == "CallSession"]
    assert line["actor_id"] == short_id(ref)
    assert (line["session"], line["call_sid"]) == ("Caller 7", "CA7")
    assert line["handled"] == 25
    assert line["mailbox_depth"] == 0
    assert 1 <= line["peak_depth"] <= 26
    assert line["current"] == "Block"
    assert line["busy_ms"] > 0
    assert 0.0 < line["busy_ratio"] <= 1.0

    for _ in range(5):
        ref.tell(Count())
    release.set()
    second_release = block(ref)
    timers.advance(10.0)
    settle(monitor)

    stats = [line for line in lines_of(log_out, "actor.stats") if line["actor"] == "CallSession"]
    assert [line["handled"] for line in stats] == [25, 31]
    second_release.set()


def test_stats_are_reported_every_interval_and_on_request() -> None:
    timers = ManualTimers()
    ref = Worker.start()
    monitor = start_monitor(timers, stats_interval=30.0, watchdog_seconds=10.0)
    ref.ask(Count(), timeout=WAIT)

    # The watchdog looks at half its threshold, at most every second.
    assert timers.pending() == [1.0, 30.0]
    reported: tuple[ActorStats, ...] = monitor.ask(ReportStats(), block=True, timeout=WAIT)
    assert {(s.actor, s.actor_id) for s in reported} == {
        ("CallSession", short_id(ref)),
        ("ActorMonitor", short_id(monitor)),
    }
    timers.advance(30.0)
    settle(monitor)
    assert timers.pending() == [1.0, 30.0]
    monitor.stop(block=True, timeout=WAIT)
    assert timers.pending() == []  # stopping cancels both timers


def _snap(urn: str, *, busy: float, current: float = 0.0, handled: int = 0) -> ActorSnapshot:
    return ActorSnapshot(
        kind="Router",
        actor_id=urn,
        urn=urn,
        labels=MappingProxyType({"actor": "Router", "actor_id": urn}),
        depth=0,
        peak=1,
        handled=handled,
        busy_seconds=busy,
        current="Route" if current else None,
        current_seconds=current,
        alive=True,
        thread_ident=None,
    )


def test_busy_ratio_is_the_share_of_the_interval_spent_on_messages() -> None:
    reporter = StatsReporter([_snap("a", busy=1.0)], now=100.0)

    first = reporter.report([_snap("a", busy=4.0, current=1.0)], now=110.0)
    second = reporter.report([_snap("a", busy=6.0), _snap("b", busy=2.0)], now=120.0)

    assert [s.busy_ratio for s in first] == [pytest.approx(0.4)]
    assert first[0].busy_ms == pytest.approx(5000.0)
    assert first[0].current_ms == pytest.approx(1000.0)
    # a: 6 - 5 over 10 s; b appeared after the last report, so all of its 2 s count.
    assert [s.busy_ratio for s in second] == [pytest.approx(0.1), pytest.approx(0.2)]


# -- watchdog --------------------------------------------------------------------------------


def test_watchdog_reports_a_blocked_actor_once_with_its_stack(log_out: io.StringIO) -> None:
    timers = ManualTimers()
    bus = EventBus()
    stuck_events = bus.subscribe(lambda e: isinstance(e, ActorStuck))
    ref = Worker.start(session="Unknown caller", call_sid="CA5")
    monitor = start_monitor(
        timers, stats_interval=60.0, watchdog_seconds=2.0, watchdog_interval=1.0, events=bus
    )
    release = block(ref)

    for _ in range(2):  # first seen at t=1; at t=2 it has been held 1 s
        timers.advance(1.0)
        assert settle(monitor) == ()
    assert stuck_events.drain() == []
    timers.advance(1.0)
    report = stuck_events.wait_for(lambda e: True, timeout=WAIT)
    for _ in range(5):
        timers.advance(1.0)
        settle(monitor)

    assert stuck_events.drain() == []
    assert (report.actor, report.actor_id, report.message) == (
        "CallSession",
        short_id(ref),
        "Block",
    )
    assert report.seconds >= 2.0
    assert "in hold_the_line" in report.stack
    assert report.thread is not None
    assert report.thread.startswith("Worker-")
    (line,) = lines_of(log_out, "actor.stuck")
    assert line["level"] == "warning"
    assert line["logger"] == "tars.monitor"
    assert (line["actor"], line["actor_id"]) == ("CallSession", short_id(ref))
    assert (line["session"], line["call_sid"]) == ("Unknown caller", "CA5")
    assert line["message"] == "Block"
    assert line["busy_seconds"] >= 2.0
    assert "hold_the_line" in line["stack"]

    release.set()
    ref.ask(Count(), timeout=WAIT)
    second_release = block(ref)  # a new message is a new case, reported again
    for _ in range(3):
        timers.advance(1.0)
        settle(monitor)
    again = stuck_events.wait_for(lambda e: True, timeout=WAIT)
    assert again.actor_id == short_id(ref)
    assert len(lines_of(log_out, "actor.stuck")) == 2
    second_release.set()


def test_stuck_watch_uses_the_mailbox_figure_when_it_is_longer() -> None:
    watch = StuckWatch(threshold_seconds=5.0)

    assert watch.check([_snap("a", busy=0.0, current=4.0, handled=3)], now=0.0) == []
    (found,) = watch.check([_snap("a", busy=0.0, current=6.0, handled=3)], now=1.0)
    assert found[1] == 6.0
    assert watch.check([_snap("a", busy=0.0, current=7.0, handled=3)], now=2.0) == []
    # Idle, then a new message held long enough: reported again.
    assert watch.check([_snap("a", busy=7.0, handled=4)], now=3.0) == []
    assert len(watch.check([_snap("a", busy=7.0, current=9.0, handled=4)], now=4.0)) == 1


def test_monitor_rejects_a_non_positive_threshold() -> None:
    with pytest.raises(ValueError, match="watchdog threshold must be positive"):
        ActorMonitor(timers=ManualTimers(), watchdog_seconds=0.0)


# -- SIGUSR1 ---------------------------------------------------------------------------------


def test_sigusr1_logs_every_threads_stack(log_out: io.StringIO) -> None:
    bus = EventBus()
    dumps = bus.subscribe(lambda e: isinstance(e, ThreadsDumped))
    ref = Worker.start(session="Owner", call_sid="CA3")
    release = block(ref)
    previous = install_stack_dump_signal(signal.SIGUSR1, events=bus)
    try:
        os.kill(os.getpid(), signal.SIGUSR1)
        dumped = dumps.wait_for(lambda e: True, timeout=WAIT)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        release.set()

    assert dumped.reason == "SIGUSR1"
    (line,) = lines_of(log_out, "threads.dump")
    names = {thread["name"] for thread in line["threads"]}
    assert "MainThread" in names
    assert line["thread_count"] == len(line["threads"]) == len(dumped.threads) >= 2
    (worker,) = [t for t in line["threads"] if t.get("actor_id") == short_id(ref)]
    assert worker["actor"] == "CallSession"
    assert "hold_the_line" in worker["stack"]
    (main,) = [t for t in line["threads"] if t["name"] == "MainThread"]
    assert "test_sigusr1_logs_every_threads_stack" in main["stack"]


# -- benchmark -------------------------------------------------------------------------------


def test_mailbox_benchmark_prints_both_actors_as_json() -> None:
    out = io.StringIO()

    code = benchmarks.main(
        ["mailbox", "--messages", "2000", "--repeats", "2", "--json"], stdout=out
    )

    result = json.loads(out.getvalue())
    assert result["benchmark"] == "mailbox"
    assert (result["messages"], result["repeats"]) == (2000, 2)
    assert len(result["plain_ns"]) == len(result["tars_ns"]) == 2
    assert result["plain_messages_per_second"] > 0
    assert result["tars_messages_per_second"] > 0
    assert result["limit_percent"] == 15.0
    assert code == (0 if result["within_limit"] else 1)
    assert pykka.ActorRegistry.get_all() == []


def test_mailbox_benchmark_table_names_both_actors_and_the_overhead() -> None:
    result = benchmarks.mailbox_overhead(messages=1000, repeats=1)

    table = benchmarks.render_table(result)

    assert "pykka.ThreadingActor" in table
    assert "TarsActor (instrumented Mailbox)" in table
    assert f"{result.overhead_percent:+.1f} %" in table


def test_freed_memory_goes_back_every_few_minutes_and_the_log_says_so(
    log_out: io.StringIO,
) -> None:
    timers = ManualTimers()
    monitor = start_monitor(timers, stats_interval=10.0, watchdog_seconds=60.0)
    assert lines_of(log_out, "memory.trimmed") == []

    timers.advance(10.0)
    settle(monitor)
    assert len(lines_of(log_out, "memory.trimmed")) == 1  # at the first stats tick
    timers.advance(TRIM_EVERY_SECONDS - 10.0)
    settle(monitor)
    assert len(lines_of(log_out, "memory.trimmed")) == 1  # not at every tick
    timers.advance(10.0)
    settle(monitor)

    trimmed = lines_of(log_out, "memory.trimmed")
    assert len(trimmed) == 2
    assert all(line["ms"] >= 0 for line in trimmed)
    assert all(line["rss_after_mb"] > 0 for line in trimmed)
