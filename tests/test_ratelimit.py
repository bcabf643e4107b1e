"""The per-source log rate limiter, on a clock the tests move."""

from __future__ import annotations

import threading

import pytest

from tars_actors.runtime.ratelimit import LogRateLimiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limiter(clock: FakeClock, **options: float) -> LogRateLimiter:
    return LogRateLimiter(
        interval=options.get("interval", 10.0),
        max_sources=int(options.get("max_sources", 4)),
        clock=clock,
    )


def test_the_first_occurrence_of_a_source_is_logged_at_once_with_nothing_suppressed() -> None:
    limit = limiter(FakeClock())
    assert limit.allow("10.0.0.1") == 0
    assert limit.allow("10.0.0.2") == 0


def test_repeats_within_the_interval_are_dropped_and_counted_on_the_next_line() -> None:
    clock = FakeClock()
    limit = limiter(clock)
    assert limit.allow("a") == 0
    for _ in range(199):
        clock.now += 0.01
        assert limit.allow("a") is None
    clock.now += 10.0
    assert limit.allow("a") == 199
    # The count starts again from the line just written.
    clock.now += 1.0
    assert limit.allow("a") is None
    clock.now += 9.0
    assert limit.allow("a") == 1


def test_the_interval_is_measured_from_the_last_line_not_the_last_occurrence() -> None:
    clock = FakeClock()
    limit = limiter(clock)
    limit.allow("a")
    clock.now += 9.999
    assert limit.allow("a") is None
    clock.now += 0.001
    assert limit.allow("a") == 1


def test_sources_are_limited_independently() -> None:
    clock = FakeClock()
    limit = limiter(clock)
    assert limit.allow("a") == 0
    assert limit.allow("a") is None
    assert limit.allow("b") == 0
    assert limit.allow(("stream.frame_rejected", "CA1")) == 0


def test_at_most_max_sources_are_tracked_and_the_least_recently_seen_is_forgotten() -> None:
    clock = FakeClock()
    limit = limiter(clock, max_sources=3)
    for source in ("a", "b", "c"):
        limit.allow(source)
    limit.allow("a")  # dropped, counted: "a" is now the most recently seen
    limit.allow("b")  # dropped, counted
    for index in range(1000):
        limit.allow(f"spoofed-{index}")
        assert limit.sources <= 3
    assert limit.sources == 3
    # "a" and "b" were forgotten with one unlogged occurrence each; a forgotten source
    # starts again with a line at once.
    assert limit.unreported == 2
    assert limit.allow("a") == 0


def test_forget_returns_what_a_source_never_logged() -> None:
    clock = FakeClock()
    limit = limiter(clock)
    limit.allow("CA1")
    limit.allow("CA1")
    limit.allow("CA1")
    assert limit.forget("CA1") == 2
    assert limit.sources == 0
    assert limit.forget("CA1") == 0
    assert limit.allow("CA1") == 0


def test_due_lists_sources_with_unlogged_occurrences_once_their_interval_passed() -> None:
    clock = FakeClock()
    limit = limiter(clock)
    limit.allow("quiet")
    limit.allow("flood")
    for _ in range(5):
        limit.allow("flood")
    assert limit.due() == []  # the interval has not passed yet
    clock.now += 10.0
    assert limit.due() == [("flood", 5)]
    assert limit.due() == []  # reported: counted as a line written now
    clock.now += 1.0
    assert limit.allow("flood") is None


def test_a_zero_interval_logs_everything() -> None:
    limit = limiter(FakeClock(), interval=0.0)
    assert [limit.allow("a") for _ in range(3)] == [0, 0, 0]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"interval": -1.0}, "interval must be at least 0"),
        ({"max_sources": 0}, "max_sources must be at least 1"),
    ],
)
def test_bad_limits_are_refused(options: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        limiter(FakeClock(), **options)


def test_threads_sharing_a_limiter_count_every_occurrence_once() -> None:
    clock = FakeClock()
    limit = limiter(clock)
    results: list[int | None] = []
    lock = threading.Lock()

    def hammer() -> None:
        mine = [limit.allow("shared") for _ in range(2000)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(0) == 1
    assert results.count(None) == 7999
    clock.now += 10.0
    assert limit.allow("shared") == 7999
