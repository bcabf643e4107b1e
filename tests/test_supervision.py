"""Supervision: the pure rules, and the Supervisor actor restarting, escalating and stopping."""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pykka
import pytest
from structlog.testing import capture_logs

from actors.supervisor import Supervisor, start_root, supervisor_spec
from tars_actors.runtime.actor import TarsActor
from tars_actors.runtime.events import EventBus, Subscription
from tars_actors.runtime.supervision import (
    Backoff,
    ChildInfo,
    ChildSpec,
    ChildStartError,
    Restart,
    RestartIntensity,
    Strategy,
    SupervisorEvent,
    SupervisorFlags,
    SupervisorStartError,
)
from tars_actors.runtime.timers import ManualTimers

WAIT = 5.0


@pytest.fixture(autouse=True)
def _stop_every_actor() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


# -- test actors ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Crash:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Quit:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Block:
    entered: threading.Event
    release: threading.Event


class Journal:
    """What the workers did, in order, across their threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[tuple[str, str]] = []
        self.threads: dict[str, threading.Thread] = {}

    def add(self, what: str, name: str) -> None:
        with self._lock:
            self._entries.append((what, name))
            if what == "started":
                self.threads[name] = threading.current_thread()

    def entries(self) -> list[tuple[str, str]]:
        with self._lock:
            return list(self._entries)


class Worker(TarsActor):
    def __init__(self, name: str, journal: Journal, *, fail_on_start: bool = False) -> None:
        super().__init__()
        self._name = name
        self._journal = journal
        self._fail_on_start = fail_on_start

    def on_start(self) -> None:
        if self._fail_on_start:
            raise RuntimeError(f"{self._name} refuses to start")
        self._journal.add("started", self._name)

    def on_stop(self) -> None:
        self._journal.add("stopped", self._name)

    def on_receive(self, message: Any) -> Any:
        match message:
            case Crash():
                raise RuntimeError(f"{self._name} crashed")
            case Quit():
                self.stop()
            case Block(entered=entered, release=release):
                entered.set()
                release.wait()
            case _:
                return super().on_receive(message)
        return None


def worker(
    child_id: str,
    journal: Journal,
    *,
    restart: Restart = Restart.PERMANENT,
    shutdown_timeout: float = WAIT,
    backoff: Backoff | None = None,
    fail_on_start: Callable[[], bool] = lambda: False,
) -> ChildSpec:
    return ChildSpec(
        id=child_id,
        start=lambda: Worker.start(child_id, journal, fail_on_start=fail_on_start()),
        restart=restart,
        shutdown_timeout=shutdown_timeout,
        backoff=backoff,
    )


def children(sup: pykka.ActorRef[Any]) -> dict[str, ChildInfo]:
    infos: list[ChildInfo] = sup.proxy().which_children().get(timeout=WAIT)
    return {info.id: info for info in infos}


def ref_of(sup: pykka.ActorRef[Any], child_id: str) -> pykka.ActorRef[Any]:
    ref = children(sup)[child_id].ref
    assert ref is not None, f"{child_id} has no running instance"
    return ref


def crash(sup: pykka.ActorRef[Any], sub: Subscription, child_id: str) -> pykka.ActorRef[Any]:
    """Crash the child's current instance, after dropping the events that came before."""
    old = ref_of(sup, child_id)
    # ref_of went through the supervisor's mailbox: every earlier event is published.
    sub.drain()
    old.tell(Crash())
    return old


def wait_event(
    sub: Subscription,
    event: str,
    child_id: str | None = None,
    *,
    supervisor: str | None = None,
    where: Callable[[SupervisorEvent], bool] = lambda e: True,
) -> SupervisorEvent:
    event_: SupervisorEvent = sub.wait_for(
        lambda e: (
            e.event == event
            and (child_id is None or e.child_id == child_id)
            and (supervisor is None or e.supervisor == supervisor)
            and where(e)
        ),
        WAIT,
        of_type=SupervisorEvent,
    )
    return event_


def one_for(strategy: Strategy, max_restarts: int = 5) -> SupervisorFlags:
    return SupervisorFlags(strategy=strategy, max_restarts=max_restarts, period_seconds=5.0)


@pytest.fixture
def timers() -> ManualTimers:
    return ManualTimers()


@pytest.fixture
def bus() -> EventBus:
    return EventBus()


@pytest.fixture
def sub(bus: EventBus) -> Iterator[Subscription]:
    with bus.subscribe() as subscription:
        yield subscription


@pytest.fixture
def journal() -> Journal:
    return Journal()


# -- the pure rules ------------------------------------------------------------------------


def test_strategies_choose_which_children_restart_in_start_order() -> None:
    order = ["a", "b", "c"]
    assert Strategy.ONE_FOR_ONE.affected(order, "b") == ["b"]
    assert Strategy.ONE_FOR_ALL.affected(order, "b") == ["a", "b", "c"]
    assert Strategy.REST_FOR_ONE.affected(order, "b") == ["b", "c"]
    assert Strategy.REST_FOR_ONE.affected(order, "a") == ["a", "b", "c"]


def test_restart_types_decide_by_exit_kind() -> None:
    assert Restart.PERMANENT.after_exit(abnormal=False)
    assert Restart.PERMANENT.after_exit(abnormal=True)
    assert not Restart.TRANSIENT.after_exit(abnormal=False)
    assert Restart.TRANSIENT.after_exit(abnormal=True)
    assert not Restart.TEMPORARY.after_exit(abnormal=True)


def test_restart_intensity_refuses_more_than_max_restarts_within_the_period() -> None:
    intensity = RestartIntensity(max_restarts=2, period_seconds=5.0)
    assert intensity.record(0.0)
    assert intensity.record(1.0)
    assert not intensity.record(4.9)
    # By 5.5 the restart at 0.0 has left the window; the one at 1.0 has not.
    sliding = RestartIntensity(max_restarts=2, period_seconds=5.0)
    assert sliding.record(0.0)
    assert sliding.record(1.0)
    assert sliding.record(5.5)
    assert sliding.recent() == 2
    assert not sliding.record(5.6)


def test_zero_max_restarts_refuses_the_first_restart() -> None:
    assert not RestartIntensity(max_restarts=0, period_seconds=5.0).record(0.0)


def test_backoff_doubles_up_to_its_maximum_with_bounded_jitter() -> None:
    backoff = Backoff(initial=0.5, maximum=4.0)
    assert [backoff.base_delay(n) for n in range(1, 7)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff.base_delay(10_000) == 4.0
    rng = random.Random(1)
    for attempt in range(1, 8):
        base = backoff.base_delay(attempt)
        assert base * 0.9 <= backoff.delay(attempt, rng) <= base * 1.1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"initial": 0.0, "maximum": 1.0}, "initial"),
        ({"initial": 2.0, "maximum": 1.0}, "maximum"),
        ({"initial": 1.0, "maximum": 2.0, "multiplier": 0.5}, "multiplier"),
        ({"initial": 1.0, "maximum": 2.0, "jitter": 1.0}, "jitter"),
    ],
)
def test_backoff_rejects_settings_that_cannot_work(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Backoff(**kwargs)


def test_supervisor_rejects_duplicate_child_ids(timers: ManualTimers, journal: Journal) -> None:
    with pytest.raises(ValueError, match="duplicate child ids"):
        Supervisor.start(
            "root",
            one_for(Strategy.ONE_FOR_ONE),
            [worker("a", journal), worker("a", journal)],
            timers=timers,
        )


# -- strategies ----------------------------------------------------------------------------


def test_one_for_one_restarts_only_the_crashed_child(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root",
        one_for(Strategy.ONE_FOR_ONE),
        [worker(c, journal) for c in "abc"],
        timers=timers,
        events=bus,
    )
    before = children(sup)

    old_b = crash(sup, sub, "b")

    exited = wait_event(sub, "supervisor.child_exited", "b")
    assert exited.error_context == "child_terminated"
    assert exited.reason is not None
    assert "RuntimeError: b crashed" in exited.reason
    wait_event(sub, "supervisor.child_started", "b")
    after = children(sup)
    assert after["a"].ref == before["a"].ref
    assert after["c"].ref == before["c"].ref
    assert after["b"].ref not in (None, old_b)
    assert after["b"].alive
    assert [after[c].restarts for c in "abc"] == [0, 1, 0]


def test_one_for_all_stops_siblings_in_reverse_then_restarts_all_in_start_order(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root",
        one_for(Strategy.ONE_FOR_ALL),
        [worker(c, journal) for c in "abc"],
        timers=timers,
        events=bus,
    )
    before = children(sup)

    crash(sup, sub, "b")

    wait_event(sub, "supervisor.child_started", "c")
    after = children(sup)
    assert journal.entries()[3:] == [
        ("stopped", "c"),
        ("stopped", "a"),
        ("started", "a"),
        ("started", "b"),
        ("started", "c"),
    ]
    for c in "abc":
        assert after[c].ref != before[c].ref
        assert after[c].alive
        assert after[c].restarts == 1
    # The exits of the siblings it stopped itself are not taken for new crashes.
    restarted = [e.child_id for e in sub.drain() if e.event == "supervisor.restarting"]
    assert restarted == ["a", "b", "c"]


def test_rest_for_one_restarts_the_crashed_child_and_those_started_after_it(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root",
        one_for(Strategy.REST_FOR_ONE),
        [worker(c, journal) for c in "abc"],
        timers=timers,
        events=bus,
    )
    before = children(sup)

    crash(sup, sub, "b")

    wait_event(sub, "supervisor.child_started", "c")
    after = children(sup)
    assert journal.entries()[3:] == [("stopped", "c"), ("started", "b"), ("started", "c")]
    assert after["a"].ref == before["a"].ref
    assert after["b"].ref != before["b"].ref
    assert after["c"].ref != before["c"].ref


# -- restart types -------------------------------------------------------------------------


def test_transient_child_stays_stopped_after_a_normal_exit(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root",
        one_for(Strategy.ONE_FOR_ONE),
        [worker("t", journal, restart=Restart.TRANSIENT)],
        timers=timers,
        events=bus,
    )

    ref_of(sup, "t").tell(Quit())

    assert wait_event(sub, "supervisor.child_exited", "t").reason == "normal"
    info = children(sup)["t"]
    assert (info.ref, info.alive, info.restarting, info.restarts) == (None, False, False, 0)
    assert not [e for e in sub.drain() if e.event == "supervisor.restarting"]


def test_transient_child_is_restarted_after_a_crash(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root",
        one_for(Strategy.ONE_FOR_ONE),
        [worker("t", journal, restart=Restart.TRANSIENT)],
        timers=timers,
        events=bus,
    )
    old = crash(sup, sub, "t")

    wait_event(sub, "supervisor.restarting", "t")
    wait_event(sub, "supervisor.child_started", "t")
    assert children(sup)["t"].ref not in (None, old)
    assert children(sup)["t"].alive


def test_permanent_child_is_restarted_even_after_a_normal_exit(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root", one_for(Strategy.ONE_FOR_ONE), [worker("p", journal)], timers=timers, events=bus
    )
    old = ref_of(sup, "p")
    sub.drain()

    old.tell(Quit())

    assert wait_event(sub, "supervisor.child_exited", "p").reason == "normal"
    wait_event(sub, "supervisor.child_started", "p")
    assert children(sup)["p"].ref not in (None, old)
    assert children(sup)["p"].restarts == 1


def test_temporary_child_that_crashes_is_removed_and_not_restarted(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root",
        one_for(Strategy.ONE_FOR_ALL),
        [worker("a", journal), worker("tmp", journal, restart=Restart.TEMPORARY)],
        timers=timers,
        events=bus,
    )
    a_before = ref_of(sup, "a")

    crash(sup, sub, "tmp")

    wait_event(sub, "supervisor.child_exited", "tmp")
    assert list(children(sup)) == ["a"]
    # Not even its one_for_all siblings are restarted for it.
    assert ref_of(sup, "a") == a_before
    assert not [e for e in sub.drain() if e.event == "supervisor.restarting"]


# -- intensity and escalation --------------------------------------------------------------


def test_root_exceeding_its_intensity_stops_its_children_and_reports_giving_up(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, watch = start_root(
        "root",
        SupervisorFlags(strategy=Strategy.ONE_FOR_ONE),  # OTP default: 1 restart in 5 s
        [worker("a", journal), worker("b", journal)],
        timers=timers,
        events=bus,
    )
    b = ref_of(sup, "b")
    crash(sup, sub, "a")
    wait_event(sub, "supervisor.child_started", "a")

    crash(sup, sub, "a")

    shutdown = wait_event(sub, "supervisor.shutdown", supervisor="root")
    assert shutdown.reason == "reached_max_restart_intensity"
    exit_ = watch.wait(WAIT)
    assert exit_ is not None
    assert watch.gave_up
    assert exit_.reason.kind == "error"
    assert "ReachedMaxRestartIntensity" in str(exit_.reason)
    assert ("stopped", "b") in journal.entries()
    assert not b.is_alive()
    assert not sup.is_alive()


def test_restarts_older_than_the_period_no_longer_count(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, watch = start_root(
        "root",
        SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=1, period_seconds=5.0),
        [worker("a", journal)],
        timers=timers,
        events=bus,
    )
    for _ in range(3):
        crash(sup, sub, "a")
        wait_event(sub, "supervisor.child_started", "a")
        timers.advance(5.0)
    assert watch.exit is None

    crash(sup, sub, "a")
    wait_event(sub, "supervisor.child_started", "a")
    crash(sup, sub, "a")
    assert wait_event(sub, "supervisor.shutdown").reason == "reached_max_restart_intensity"


def test_nested_supervisor_exceeding_its_intensity_is_restarted_by_its_parent(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    nested = supervisor_spec(
        "calls",
        SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=1),
        [worker("w", journal)],
        timers=timers,
        events=bus,
    )
    root, watch = start_root(
        "root",
        one_for(Strategy.ONE_FOR_ONE),
        [worker("router", journal), nested],
        timers=timers,
        events=bus,
    )
    router = ref_of(root, "router")
    calls = ref_of(root, "calls")
    crash(calls, sub, "w")
    wait_event(sub, "supervisor.child_started", "w", supervisor="calls")

    crash(calls, sub, "w")

    shutdown = wait_event(sub, "supervisor.shutdown", supervisor="calls")
    assert shutdown.reason == "reached_max_restart_intensity"
    exited = wait_event(sub, "supervisor.child_exited", "calls", supervisor="root")
    assert exited.reason is not None
    assert "ReachedMaxRestartIntensity" in exited.reason
    wait_event(sub, "supervisor.child_started", "calls", supervisor="root")
    new_calls = ref_of(root, "calls")
    assert new_calls != calls
    assert children(new_calls)["w"].alive
    assert children(new_calls)["w"].restarts == 0
    assert ref_of(root, "router") == router
    assert watch.exit is None


# -- backoff -------------------------------------------------------------------------------


def test_backoff_delays_restarts_exponentially_with_seeded_jitter(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    backoff = Backoff(initial=1.0, maximum=8.0)
    sup, _ = start_root(
        "root",
        SupervisorFlags(strategy=Strategy.ONE_FOR_ONE, max_restarts=20, period_seconds=100.0),
        [worker("a", journal, backoff=backoff)],
        timers=timers,
        events=bus,
        rng=random.Random(42),
    )
    same_draws = random.Random(42)

    def crash_and_get_delay() -> float:
        crash(sup, sub, "a")
        scheduled = wait_event(sub, "supervisor.restart_scheduled", "a")
        assert scheduled.delay is not None
        info = children(sup)["a"]
        assert (info.ref, info.restarting) == (None, True)
        assert timers.pending() == [pytest.approx(scheduled.delay)]
        timers.advance(scheduled.delay * 0.99)
        assert children(sup)["a"].ref is None
        timers.advance(scheduled.delay * 0.02)
        wait_event(sub, "supervisor.child_started", "a")
        return scheduled.delay

    for base in [1.0, 2.0, 4.0, 8.0, 8.0]:
        expected = base * (1 + same_draws.uniform(-0.1, 0.1))
        assert crash_and_get_delay() == pytest.approx(expected)

    # Up longer than the period: the next restart starts over from the initial delay.
    timers.advance(101.0)
    assert crash_and_get_delay() == pytest.approx(1.0 * (1 + same_draws.uniform(-0.1, 0.1)))


def test_stale_restart_timer_never_starts_a_second_instance(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    spec = worker("a", journal, backoff=Backoff(initial=1.0, maximum=1.0))
    sup, _ = start_root("root", one_for(Strategy.ONE_FOR_ONE), [spec], timers=timers, events=bus)
    crash(sup, sub, "a")
    wait_event(sub, "supervisor.restart_scheduled", "a")
    proxy = sup.proxy()
    proxy.terminate_child("a").get(timeout=WAIT)
    fresh = proxy.start_child(spec).get(timeout=WAIT)
    sub.drain()

    timers.advance(2.0)

    # The timer told the supervisor before this call reached its mailbox.
    assert children(sup)["a"].ref == fresh
    assert not [
        e for e in sub.drain() if e.event in {"supervisor.restarting", "supervisor.child_started"}
    ]
    assert journal.entries().count(("started", "a")) == 2


def test_restart_by_a_sibling_supersedes_a_pending_backoff_restart(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root",
        one_for(Strategy.REST_FOR_ONE),
        [worker("b", journal), worker("a", journal, backoff=Backoff(initial=1.0, maximum=4.0))],
        timers=timers,
        events=bus,
    )
    crash(sup, sub, "a")
    first = wait_event(sub, "supervisor.restart_scheduled", "a")
    assert first.delay is not None
    assert first.delay <= 1.1
    # b's restart takes a along (rest_for_one) at once, without waiting for a's backoff.
    crash(sup, sub, "b")
    wait_event(sub, "supervisor.child_started", "a")
    crash(sup, sub, "a")
    second = wait_event(sub, "supervisor.restart_scheduled", "a")
    assert second.delay is not None
    assert second.delay >= 1.8

    timers.advance(1.5)

    # The first timer has fired; it belongs to a superseded restart and starts nothing.
    assert children(sup)["a"].restarting
    assert not [e for e in sub.drain() if e.event == "supervisor.child_started"]
    timers.advance(1.0)
    wait_event(sub, "supervisor.child_started", "a")
    assert children(sup)["a"].alive
    assert journal.entries().count(("started", "a")) == 3


# -- start failures ------------------------------------------------------------------------


def test_start_failure_during_a_restart_counts_as_a_crash_and_is_retried(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    attempts = itertools.count()
    sup, _ = start_root(
        "root",
        one_for(Strategy.ONE_FOR_ONE, max_restarts=3),
        [worker("a", journal, fail_on_start=lambda: next(attempts) == 1)],
        timers=timers,
        events=bus,
    )

    crash(sup, sub, "a")

    failed = wait_event(sub, "supervisor.child_start_failed", "a")
    assert failed.error_context == "start_error"
    assert failed.reason is not None
    assert "a refuses to start" in failed.reason
    wait_event(sub, "supervisor.child_started", "a")
    info = children(sup)["a"]
    assert info.alive
    assert info.restarts == 2


def test_start_failures_during_restarts_exhaust_the_intensity(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    attempts = itertools.count()
    sup, watch = start_root(
        "root",
        one_for(Strategy.ONE_FOR_ONE, max_restarts=1),
        [worker("a", journal, fail_on_start=lambda: next(attempts) >= 1)],
        timers=timers,
        events=bus,
    )

    crash(sup, sub, "a")

    assert wait_event(sub, "supervisor.shutdown").reason == "reached_max_restart_intensity"
    assert watch.wait(WAIT) is not None
    assert watch.gave_up


def test_child_failing_to_start_fails_the_supervisor_start_after_stopping_earlier_children(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    with pytest.raises(SupervisorStartError, match="'b'"):
        start_root(
            "root",
            one_for(Strategy.ONE_FOR_ONE),
            [
                worker("a", journal),
                worker("b", journal, fail_on_start=lambda: True),
                worker("c", journal),
            ],
            timers=timers,
            events=bus,
        )

    assert wait_event(sub, "supervisor.child_start_failed", "b").error_context == "start_error"
    assert wait_event(sub, "supervisor.shutdown").reason == "failed_to_start_child"
    assert journal.entries() == [("started", "a"), ("stopped", "a")]


def test_nested_supervisor_failing_to_start_fails_its_parent_start(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    nested = supervisor_spec(
        "calls",
        one_for(Strategy.ONE_FOR_ONE),
        [worker("w", journal, fail_on_start=lambda: True)],
        timers=timers,
        events=bus,
    )
    with pytest.raises(SupervisorStartError, match="'calls'"):
        start_root(
            "root",
            one_for(Strategy.ONE_FOR_ONE),
            [worker("router", journal), nested],
            timers=timers,
            events=bus,
        )
    assert journal.entries() == [("started", "router"), ("stopped", "router")]


# -- dynamic children ----------------------------------------------------------------------


def test_dynamic_children_are_started_terminated_and_listed_by_id(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "calls", one_for(Strategy.ONE_FOR_ONE), [worker("a", journal)], timers=timers, events=bus
    )
    proxy = sup.proxy()

    call = proxy.start_child(worker("CA1", journal, restart=Restart.TEMPORARY)).get(timeout=WAIT)

    assert call.is_alive()
    listed = children(sup)
    assert list(listed) == ["a", "CA1"]
    assert listed["CA1"] == ChildInfo(
        id="CA1", ref=call, restart=Restart.TEMPORARY, restarts=0, alive=True
    )
    with pytest.raises(ValueError, match="already has a child 'a'"):
        proxy.start_child(worker("a", journal)).get(timeout=WAIT)
    with pytest.raises(ChildStartError, match="'broken' failed to start"):
        proxy.start_child(worker("broken", journal, fail_on_start=lambda: True)).get(timeout=WAIT)
    assert list(children(sup)) == ["a", "CA1"]

    proxy.terminate_child("CA1").get(timeout=WAIT)

    stopped = wait_event(sub, "supervisor.child_stopped", "CA1")
    assert (stopped.error_context, stopped.reason) == ("shutdown", "shutdown")
    assert not call.is_alive()
    assert ("stopped", "CA1") in journal.entries()
    assert list(children(sup)) == ["a"]
    with pytest.raises(LookupError, match="no child 'CA1'"):
        proxy.terminate_child("CA1").get(timeout=WAIT)


def test_a_terminated_permanent_child_is_not_restarted(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root", one_for(Strategy.ONE_FOR_ONE), [worker("a", journal)], timers=timers, events=bus
    )

    sup.proxy().terminate_child("a").get(timeout=WAIT)

    assert children(sup) == {}
    assert not [e for e in sub.drain() if e.event == "supervisor.restarting"]


# -- shutdown ------------------------------------------------------------------------------


def test_shutdown_stops_children_in_reverse_start_order(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, watch = start_root(
        "root",
        one_for(Strategy.ONE_FOR_ONE),
        [worker(c, journal) for c in "abc"],
        timers=timers,
        events=bus,
    )
    sup.proxy().start_child(worker("d", journal)).get(timeout=WAIT)

    assert sup.stop(block=True, timeout=WAIT)

    stops = [name for what, name in journal.entries() if what == "stopped"]
    assert stops == ["d", "c", "b", "a"]
    exit_ = watch.wait(WAIT)
    assert exit_ is not None
    assert not watch.gave_up


def test_shutdown_abandons_a_stuck_child_after_its_timeout_and_goes_on(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root",
        one_for(Strategy.ONE_FOR_ONE),
        [
            worker("a", journal),
            worker("stuck", journal, shutdown_timeout=0.3),
            worker("c", journal),
        ],
        timers=timers,
        events=bus,
    )
    entered, release = threading.Event(), threading.Event()
    stuck = ref_of(sup, "stuck")
    stuck.tell(Block(entered=entered, release=release))
    assert entered.wait(WAIT)
    try:
        with capture_logs() as logs:
            began = time.monotonic()
            sup.stop(block=False)
            wait_event(sub, "supervisor.stopped")
            took = time.monotonic() - began

            abandoned = wait_event(sub, "supervisor.child_abandoned", "stuck")
            assert (abandoned.error_context, abandoned.reason) == (
                "shutdown_error",
                "shutdown_timeout",
            )
            assert 0.3 <= took < 2.0
            stops = [name for what, name in journal.entries() if what == "stopped"]
            assert stops == ["c", "a"]
            assert stuck.is_alive()
    finally:
        release.set()
    # The abandoned child ends once released; telling its dead supervisor breaks nothing.
    journal.threads["stuck"].join(WAIT)
    assert not journal.threads["stuck"].is_alive()
    assert not [e for e in logs if e["event"] == "actor.exit_unreported"]
    logged = [e for e in logs if e["event"] == "supervisor.child_abandoned"]
    assert logged[0]["shutdown_timeout"] == 0.3


# -- reporting -----------------------------------------------------------------------------


def test_decisions_are_logged_with_otp_supervisor_report_fields(
    timers: ManualTimers, bus: EventBus, sub: Subscription, journal: Journal
) -> None:
    sup, _ = start_root(
        "root", one_for(Strategy.ONE_FOR_ONE), [worker("a", journal)], timers=timers, events=bus
    )
    with capture_logs() as logs:
        crash(sup, sub, "a")
        wait_event(sub, "supervisor.child_started", "a")

    by_event = {e["event"]: e for e in logs if e["event"].startswith("supervisor.")}
    exited = by_event["supervisor.child_exited"]
    assert exited["supervisor"] == "root"
    assert exited["child_id"] == "a"
    assert exited["errorContext"] == "child_terminated"
    assert exited["reason"] == "running: RuntimeError: a crashed"
    assert exited["restart_type"] == "permanent"
    assert exited["restart_count"] == 0
    assert exited["log_level"] == "error"
    assert by_event["supervisor.restarting"]["restart_count"] == 1
