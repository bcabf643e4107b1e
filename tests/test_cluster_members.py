"""Membership and the wake-up channel, against the store: a member registers and renews its
heartbeat; one gone (by its lease, or its process on this machine) is taken over by exactly
one member, its calls closed; one found lost registers again; notifications reach the member
they are for, and a listener that reconnects looks again."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from actors.cluster import ClusterMember
from tars_actors.call.permissions import Permission
from tars_actors.cluster.members import LOST_REASON, RESTART_REASON, Membership
from tars_actors.cluster.wakeup import (
    Listener,
    Wake,
    WakeKind,
    announce,
    parse_wake,
    wake,
)
from tars_actors.runtime.timers import ThreadTimers
from tars_actors.store import AgentSession, Daemon, DaemonStatus, SessionStatus, Store, utcnow
from tests.waiting import wait_until

pytest_plugins = ("tests.pg",)

START = datetime(2026, 12, 7, 12, 0, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def store(make_url: Callable[[], str]) -> Iterator[Store]:
    opened = Store.open(make_url())
    opened.migrate()
    opened.connect()
    yield opened
    opened.shutdown()


def member(store: Store, clock: Clock, *, gone: set[int] | None = None) -> Membership:
    dead = gone if gone is not None else set()
    return Membership(
        store, lease_seconds=15, clock=clock, place="here", process_gone=lambda pid: pid in dead
    )


def other(
    store: Store, daemon_id: str, *, at: datetime, pid: int = 4242, place: str = "far"
) -> None:
    Daemon.create(
        id=daemon_id,
        host="elsewhere",
        pid=pid,
        place=place,
        status=DaemonStatus.SERVING,
        started_at=at,
        heartbeat_at=at,
    )


def call_of(daemon_id: str, name: str = "Call") -> int:
    row = AgentSession.create(
        name=name,
        call_sid=f"CA{name}",
        phone_number="+15555550100",
        permission=Permission.UNKNOWN,
        status=SessionStatus.ACTIVE,
        direction="inbound",
        daemon_id=daemon_id,
    )
    return int(row.id)


def test_a_member_registers_renews_and_leaves(store: Store) -> None:
    clock = Clock()
    me = member(store, clock)
    me.register()
    clock.now += timedelta(seconds=5)
    assert me.heartbeat()
    row = Daemon.get_by_id(store.daemon_id)
    assert (row.status, row.heartbeat_at) == (DaemonStatus.SERVING, clock.now)
    assert me.heartbeat(draining=True)
    assert Daemon.get_by_id(store.daemon_id).status == DaemonStatus.DRAINING
    assert store.daemon_id in store.live_daemons()
    me.leave(DaemonStatus.STOPPED)
    row = Daemon.get_by_id(store.daemon_id)
    assert (row.status, row.ended_at) == (DaemonStatus.STOPPED, clock.now)
    assert me.heartbeat_seconds == 5


def test_a_member_silent_for_its_lease_is_taken_over_and_its_calls_closed(
    postgres_url: str,
) -> None:
    store = Store.open(postgres_url)
    store.migrate()
    store.connect()
    try:
        clock = Clock()
        me = member(store, clock)
        me.register()
        other(store, "quiet", at=START)
        quiet_call = call_of("quiet", "Quiet")
        my_call = call_of(store.daemon_id, "Mine")
        assert store.live_daemons() == {store.daemon_id, "quiet"}

        clock.now = START + timedelta(seconds=15)  # exactly the lease: not yet
        assert me.take_over() == []
        clock.now = START + timedelta(seconds=15, milliseconds=1)
        [taken] = me.take_over()
        assert (taken.daemon_id, taken.sessions_closed, taken.why) == ("quiet", 1, "lease")
        row = Daemon.get_by_id("quiet")
        assert (row.status, row.taken_over_by) == (DaemonStatus.LOST, store.daemon_id)
        closed = AgentSession.get_by_id(quiet_call)
        assert (closed.status, closed.end_reason) == (SessionStatus.ENDED, LOST_REASON)
        assert AgentSession.get_by_id(my_call).status == SessionStatus.ACTIVE
        assert store.live_daemons() == {store.daemon_id}
        assert me.take_over() == []  # once
    finally:
        store.shutdown()


def test_a_member_of_this_machine_whose_process_is_gone_is_taken_over_at_once(
    postgres_url: str,
) -> None:
    store = Store.open(postgres_url)
    store.migrate()
    store.connect()
    try:
        clock = Clock()
        me = member(store, clock, gone={111})
        me.register()
        other(store, "crashed", at=START, pid=111, place="here")
        other(store, "running", at=START, pid=222, place="here")
        other(store, "remote", at=START, pid=111, place="far")  # another machine's pid 111
        call_of("crashed")
        [taken] = me.take_over()
        assert (taken.daemon_id, taken.why) == ("crashed", "process gone")
        closed = AgentSession.get(AgentSession.daemon_id == "crashed")
        assert closed.end_reason == RESTART_REASON
        assert store.live_daemons() == {store.daemon_id, "running", "remote"}
    finally:
        store.shutdown()


def test_two_members_taking_over_at_once_take_each_lost_member_once(postgres_url: str) -> None:
    first = Store.open(postgres_url)
    first.migrate()
    first.connect()
    try:
        clock = Clock()
        for number in range(20):
            other(first, f"gone{number}", at=START)
            call_of(f"gone{number}", f"Gone {number}")
        clock.now = START + timedelta(minutes=1)
        barrier = threading.Barrier(2)
        taken: list[list[str]] = [[], []]

        def take(index: int) -> None:
            first.connect()
            try:
                barrier.wait(timeout=10)
                found = member(first, clock).take_over()
                taken[index] = [m.daemon_id for m in found]
            finally:
                first.close()

        threads = [threading.Thread(target=take, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        both = taken[0] + taken[1]
        assert sorted(both) == sorted(f"gone{n}" for n in range(20))  # each exactly once
        closed = AgentSession.select().where(AgentSession.end_reason == LOST_REASON).count()
        assert closed == 20
    finally:
        first.shutdown()


def test_a_member_found_lost_says_so_and_registers_again(postgres_url: str) -> None:
    store = Store.open(postgres_url)
    store.migrate()
    store.connect()
    try:
        clock = Clock()
        me = member(store, clock)
        me.register()
        Daemon.update(status=DaemonStatus.LOST, taken_over_by="peer").execute()
        assert store.live_daemons() == {store.daemon_id}  # itself, always
        assert not me.heartbeat()
        assert Daemon.get_by_id(store.daemon_id).status == DaemonStatus.SERVING
        assert me.heartbeat()
    finally:
        store.shutdown()


def test_on_sqlite_every_other_member_is_a_predecessor(tmp_path: Path) -> None:
    store = Store.open(f"sqlite:///{tmp_path / 'tars.db'}")
    store.migrate()
    store.connect()
    try:
        clock = Clock()
        other(store, "before", at=START + timedelta(hours=1))  # fresh heartbeat, still gone
        call_of("before")
        me = member(store, clock)
        me.register()
        assert store.live_daemons() == {store.daemon_id}
        [taken] = me.take_over()
        assert (taken.daemon_id, taken.why) == ("before", "predecessor")
        assert AgentSession.get().end_reason == RESTART_REASON
        assert me.peers() == 0
    finally:
        store.shutdown()


def test_wake_payloads_are_parsed_strictly() -> None:
    assert parse_wake("message:12") == Wake(WakeKind.MESSAGE, "12")
    assert parse_wake("stream:CA1") == Wake(WakeKind.STREAM, "CA1")
    assert parse_wake("left:abc") == Wake(WakeKind.LEFT, "abc")
    for bad in ("", "message", "message:", "nonsense:1", "left:" + "x" * 101):
        assert parse_wake(bad) is None


def test_a_listener_hears_its_own_channel_and_the_clusters_and_looks_again_on_reconnect(
    postgres_url: str,
) -> None:
    store = Store.open(postgres_url)
    store.migrate()
    store.connect()
    heard: list[Wake] = []
    changed = threading.Condition()
    connections = threading.Semaphore(0)

    def on_wake(found: Wake) -> None:
        with changed:
            heard.append(found)
            changed.notify_all()

    listener = Listener(store, on_wake=on_wake, on_connected=connections.release)
    listener.start()
    try:
        assert connections.acquire(timeout=10)
        wake(store, store.daemon_id, WakeKind.MESSAGE, "7")
        wake(store, "someone-else", WakeKind.MESSAGE, "8")  # not for this member
        announce(store, WakeKind.LEFT, "peer")
        store.database.execute_sql("SELECT pg_notify(%s, %s)", (f"tars_{store.daemon_id}", "junk"))
        with changed:
            assert changed.wait_for(lambda: len(heard) >= 2, timeout=10)
        assert heard[:2] == [Wake(WakeKind.MESSAGE, "7"), Wake(WakeKind.LEFT, "peer")]

        # The database ends the listening connection: it connects again and looks again.
        store.database.execute_sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE query LIKE 'LISTEN%%' AND pid <> pg_backend_pid() "
            "AND datname = current_database()"
        )
        assert connections.acquire(timeout=10)
        wait_for_listening = listener.listening.wait(timeout=10)
        assert wait_for_listening
        wake(store, store.daemon_id, WakeKind.MESSAGE, "9")
        with changed:
            assert changed.wait_for(lambda: len(heard) >= 3, timeout=10)
        assert heard[2] == Wake(WakeKind.MESSAGE, "9")
    finally:
        listener.stop()
        store.shutdown()


def test_the_heartbeat_comes_back_when_its_database_connection_is_lost(postgres_url: str) -> None:
    store = Store.open(postgres_url)
    store.migrate()
    membership = Membership(store, lease_seconds=3)
    with store.connection():
        membership.register()
    timers = ThreadTimers()
    member = ClusterMember.start(
        store=store,
        membership=membership,
        timers=timers,
        draining=lambda: False,
        router=lambda: None,
        calls=lambda: None,
        takers=(),
        take_up_goals=lambda: None,
    )
    try:
        with store.connection():
            beat = Daemon.get_by_id(store.daemon_id).heartbeat_at
            wait_until(
                lambda: Daemon.get_by_id(store.daemon_id).heartbeat_at > beat, "a first beat"
            )
            # The database ends the member's connection (a restart, a failover, a blip).
            store.database.execute_sql(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                "AND query NOT LIKE 'LISTEN%%'"
            )
            cut = utcnow()
            wait_until(
                lambda: Daemon.get_by_id(store.daemon_id).heartbeat_at > cut,
                "the heartbeat to be renewed on a new connection",
            )
    finally:
        member.stop()
        timers.close()
        store.shutdown()


def test_on_postgresql_heartbeats_are_written_and_judged_by_the_databases_clock(
    postgres_url: str,
) -> None:
    store = Store.open(postgres_url)
    store.migrate()
    store.connect()
    try:
        me = Membership(store, lease_seconds=15, place="here")
        me.register()
        database_now = store.database.execute_sql("SELECT now()").fetchone()[0]
        other(store, "slow-clock", at=database_now - timedelta(seconds=10))
        other(store, "silent", at=database_now - timedelta(seconds=20))
        assert [m.daemon_id for m in me.take_over()] == ["silent"]
        mine = Daemon.get_by_id(store.daemon_id).heartbeat_at
        assert abs((mine - database_now).total_seconds()) < 5
    finally:
        store.shutdown()
