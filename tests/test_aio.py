"""The batching selector under the loop that carries every call's audio, and LoopThread."""

from __future__ import annotations

import asyncio
import selectors
import socket
import threading
from collections.abc import Iterator

import pytest

from tars_actors.aio import BatchingSelector, LoopThread

INTERVAL = 0.004


class FakeTime:
    """A clock that moves only when the selector sleeps; the sleeps are recorded."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []
        #: Called during a sleep, as if something arrived while the selector waited.
        self.during_sleep: list[socket.socket] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 9))
        self.now += seconds
        for sock in self.during_sleep:
            sock.send(b"x")
        self.during_sleep.clear()


class RecordingSelector(selectors.DefaultSelector):
    """The real platform selector, recording each timeout it is polled with."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.timeouts.append(None if timeout is None else round(timeout, 9))
        return super().select(timeout)


class Rig:
    """A batching selector on a fake clock, over the real platform selector, watching two
    sockets ("first" and "second") for reading; write to ``*_out`` to make one ready."""

    def __init__(self) -> None:
        self.time = FakeTime()
        self.inner = RecordingSelector()
        self.selector = BatchingSelector(
            INTERVAL, inner=self.inner, clock=self.time.clock, sleep=self.time.sleep
        )
        self.first_in, self.first_out = socket.socketpair()
        self.second_in, self.second_out = socket.socketpair()
        self.selector.register(self.first_in, selectors.EVENT_READ, "first")
        self.selector.register(self.second_in, selectors.EVENT_READ, "second")

    def ready(self, timeout: float | None) -> set[str]:
        return {key.data for key, _ in self.selector.select(timeout)}

    def close(self) -> None:
        self.selector.close()
        for sock in (self.first_in, self.first_out, self.second_in, self.second_out):
            sock.close()


@pytest.fixture
def rig() -> Iterator[Rig]:
    made = Rig()
    yield made
    made.close()


def test_readiness_that_arrives_within_the_interval_comes_back_from_one_poll(rig: Rig) -> None:
    assert rig.ready(0) == set()  # the loop's last poll, at 100.0

    rig.time.now += 0.001
    rig.first_out.send(b"x")
    rig.time.during_sleep.append(rig.second_out)  # the second call's frame lands meanwhile

    assert rig.ready(None) == {"first", "second"}
    assert rig.time.sleeps == [0.003]  # the rest of the interval since the last poll
    assert rig.inner.timeouts == [0, 0]  # and then a poll that does not block


def test_a_poll_the_loop_asks_for_without_blocking_is_never_held(rig: Rig) -> None:
    rig.first_out.send(b"x")

    # The loop has callbacks ready: it asks with timeout 0, back to back.
    assert rig.ready(0) == {"first"}
    assert rig.ready(0) == {"first"}

    assert rig.time.sleeps == []
    assert rig.inner.timeouts == [0, 0]


def test_the_wait_never_runs_past_the_loops_timeout_so_timers_fire_on_time(rig: Rig) -> None:
    rig.ready(0)

    # A timer is due in 1 ms: the selector waits that long, polls, and hands back.
    assert rig.ready(0.001) == set()

    assert rig.time.sleeps == [0.001]
    assert rig.inner.timeouts == [0, 0]


def test_with_nothing_gathered_it_blocks_for_the_rest_of_the_timeout_only(rig: Rig) -> None:
    rig.ready(0)

    assert rig.ready(0.010) == set()  # nothing arrives at all

    assert rig.time.sleeps == [0.004]
    assert rig.inner.timeouts == [0, 0, 0.006]  # 4 ms held, then 6 ms blocked: 10 ms in all


def test_a_loop_idle_for_longer_than_the_interval_is_not_held(rig: Rig) -> None:
    rig.ready(0)

    rig.time.now += 0.5  # the loop ran callbacks, or slept on a timer, for half a second
    rig.first_out.send(b"x")

    assert rig.ready(None) == {"first"}
    assert rig.time.sleeps == []
    assert rig.inner.timeouts == [0, None]


def test_registration_goes_to_the_platform_selector(rig: Rig) -> None:
    selector, inner = rig.selector, rig.inner
    selector.modify(rig.first_in, selectors.EVENT_READ | selectors.EVENT_WRITE, "changed")
    assert selector.get_key(rig.first_in).data == "changed"
    assert inner.get_key(rig.first_in).data == "changed"
    assert set(selector.get_map()) == {rig.first_in.fileno(), rig.second_in.fileno()}
    selector.unregister(rig.first_in)
    assert set(inner.get_map()) == {rig.second_in.fileno()}
    selector.close()
    assert inner.get_map() is None  # a closed selector has no map


@pytest.mark.parametrize("interval", [0.0, -0.004])
def test_an_interval_that_is_not_positive_is_refused(interval: float) -> None:
    with pytest.raises(ValueError, match="interval must be positive"):
        BatchingSelector(interval)


def test_a_batching_loop_thread_carries_streams_timers_and_hand_offs() -> None:
    thread = LoopThread("test-batching", batch_interval=INTERVAL)
    try:
        left, right = socket.socketpair()

        async def echo_round_trips() -> list[bytes]:
            reader, writer = await asyncio.open_connection(sock=left)
            peer_reader, peer_writer = await asyncio.open_connection(sock=right)
            received = []
            for n in range(50):
                writer.write(f"frame {n:02d}\n".encode())
                peer_writer.write(await peer_reader.readline())
                received.append(await reader.readline())
            await asyncio.sleep(0.01)  # a timer, as the pacer's
            writer.close()
            peer_writer.close()
            return received

        handed_over = threading.Event()
        thread.call_soon(handed_over.set)
        assert handed_over.wait(5)
        received = thread.submit(echo_round_trips()).result(10)
        assert received == [f"frame {n:02d}\n".encode() for n in range(50)]
    finally:
        thread.stop()
