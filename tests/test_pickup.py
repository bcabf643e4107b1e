"""The pickup delay: ``first_audio_ms`` in ``call.summary``, and the benchmark that reports
it (``python run.py load --pickup``)."""

from __future__ import annotations

import dataclasses
import io
import json

import pykka
import pytest

from tars_actors.ops import cli, pickup
from tars_actors.ops.pickup import PickupResult, StandInDelays, percentile, render, run_pickup
from tars_actors.runtime.supervision import SupervisorEvent
from tars_actors.sim.gemini import LiveBehaviour
from tars_actors.sim.world import LocalWorld
from tests.logs import log_events

WAIT = 15.0
STRANGER = "+15555550777"


def one_call(world: LocalWorld, *, greeted: bool) -> str:
    """A stranger's call, hung up once the greeting played (or once the model was asked
    for it) and ended; its call SID."""
    assert world.daemon is not None
    phone = world.phone(STRANGER)
    ended = world.daemon.events.subscribe(
        lambda e: (
            isinstance(e, SupervisorEvent)
            and e.event == "supervisor.child_exited"
            and e.child_id == phone.call_sid
        )
    )
    phone.call()
    model = world.gemini.wait_for_connection(1, timeout=WAIT)
    model.wait_for_client_content(timeout=WAIT)
    if greeted:
        phone.wait_for_mark("turn-1", timeout=WAIT)
    phone.hang_up()
    ended.wait_for(lambda e: True, timeout=WAIT)
    return phone.call_sid


def test_the_summary_times_the_first_audio_from_start_past_the_models_setup(
    logs: io.StringIO,
) -> None:
    with LocalWorld(behaviour=LiveBehaviour(setup_delay=0.3)) as world:
        call_sid = one_call(world, greeted=True)
    pykka.ActorRegistry.stop_all()

    (summary,) = log_events(logs, "call.summary")
    assert summary["call_sid"] == call_sid
    # The model answered its setup 300 ms after the webhook asked for it, and only then
    # the greeting; the stream opened at once, so nearly all of that was still to wait.
    assert 200 <= summary["first_audio_ms"] < 300 + 5000


def test_a_call_the_model_never_spoke_in_has_no_first_audio(logs: io.StringIO) -> None:
    with LocalWorld(behaviour=LiveBehaviour(turn_reply=None)) as world:
        one_call(world, greeted=False)
    pykka.ActorRegistry.stop_all()

    (summary,) = log_events(logs, "call.summary")
    assert "first_audio_ms" not in summary
    assert summary["frames_out"] == 0


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        # Of 20 values, p50 is the 10th, p95 the 19th and p99 the largest.
        ([float(n) for n in range(20, 0, -1)], (10.0, 19.0, 20.0)),
        ([1100.0], (1100.0, 1100.0, 1100.0)),
        ([3.0, 1.0, 2.0], (2.0, 3.0, 3.0)),
        ([], (None, None, None)),
    ],
)
def test_percentiles_are_nearest_rank_never_interpolated(
    values: list[float], expected: tuple[float | None, ...]
) -> None:
    assert tuple(percentile(values, q) for q in (50, 95, 99)) == expected


def test_a_percentile_outside_0_to_100_is_refused() -> None:
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 0)
    with pytest.raises(ValueError, match="percentile"):
        percentile([1.0], 101)


RESULT = PickupResult(
    calls=20,
    measured=19,
    first_audio_p50_ms=1104.0,
    first_audio_p95_ms=1121.0,
    first_audio_p99_ms=1188.0,
    caller_silence_p50_ms=2110.5,
    caller_silence_p95_ms=2130.0,
    caller_silence_p99_ms=2190.0,
    setup_delay_ms=800,
    reply_delay_ms=300,
    stream_delay_ms=1000,
)


def test_the_pickup_option_runs_the_pickup_benchmark_with_its_calls(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    asked: list[tuple[int, int, StandInDelays]] = []

    def fake_run(
        calls: int = 20, *, at_once: int = 4, delays: StandInDelays = pickup.REALISTIC
    ) -> PickupResult:
        asked.append((calls, at_once, delays))
        return RESULT

    monkeypatch.setattr(pickup, "run_pickup", fake_run)
    args = cli.parse_args(["load", "--pickup", "--calls", "20"])
    assert (args.pickup, args.calls, args.at_once, args.json) == (True, 20, 4, False)
    assert not cli.parse_args(["load"]).pickup

    out = io.StringIO()
    assert cli.main(["load", "--pickup", "--calls", "20", "--at-once", "2"], stdout=out) == 0
    assert asked == [(20, 2, StandInDelays(setup=0.8, reply=0.3, stream=1.0))]
    lines = out.getvalue().splitlines()
    assert lines[0].endswith("  20 (19 with first audio)")
    assert [line.split()[-2:] for line in lines[1:4]] == [
        ["1104", "ms"],
        ["1121", "ms"],
        ["1188", "ms"],
    ]
    assert [line.split()[4] for line in lines[1:4]] == ["p50", "p95", "p99"]

    out = io.StringIO()
    assert cli.main(["load", "--pickup", "--calls", "20", "--json"], stdout=out) == 0
    figures = json.loads(out.getvalue())
    assert figures["first_audio_p95_ms"] == 1121.0
    assert (figures["calls"], figures["measured"]) == (20, 19)


def test_the_table_shows_a_dash_for_a_figure_no_call_gave() -> None:
    empty = dataclasses.replace(
        RESULT,
        calls=1,
        measured=0,
        first_audio_p50_ms=None,
        first_audio_p95_ms=None,
        first_audio_p99_ms=None,
    )
    table = render(empty)
    assert "1 (0 with first audio)" in table
    assert table.splitlines()[1].endswith("  -")


def test_three_calls_through_a_daemon_report_the_first_audio_past_the_stand_ins_delays() -> None:
    delays = StandInDelays(setup=0.2, reply=0.1, stream=0.2)

    result = run_pickup(3, at_once=3, delays=delays)

    assert (result.calls, result.measured) == (3, 3)
    assert result.first_audio_p50_ms is not None
    assert result.first_audio_p99_ms is not None
    assert 0 <= result.first_audio_p50_ms <= result.first_audio_p99_ms < 300 + 5000
    # The model connection opens at the webhook: the caller waits for its setup and first
    # audio (300 ms), the stream's own delay (200 ms) passing meanwhile.
    assert result.caller_silence_p50_ms is not None
    assert result.caller_silence_p50_ms >= 200 + 100
    assert (result.setup_delay_ms, result.reply_delay_ms, result.stream_delay_ms) == (
        200,
        100,
        200,
    )
