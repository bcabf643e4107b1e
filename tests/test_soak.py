"""The soak: what counts as a lost frame, the steady state's verdict, and a short real run
through ``python run.py load --report-every``."""

from __future__ import annotations

import io

from tars_actors.ops import cli
from tars_actors.ops.soak import SoakRow, _Ended, _lost, _print_verdict


def row(
    minute: float,
    rss: float,
    *,
    low: float | None = None,
    fds: int = 200,
    threads: int = 120,
    lost: int = 0,
) -> SoakRow:
    return SoakRow(
        minute=minute,
        from_minute=max(0.0, minute - 5.0),
        live_calls=50,
        calls_ended=int(minute * 10),
        rss_mb=rss,
        rss_low_mb=rss - 20.0 if low is None else low,
        rss_high_mb=rss + 20.0,
        open_fds=fds,
        threads=threads,
        cpu_ms_per_call_second=12.0,
        frames_lost=lost,
        mailbox_peak=3,
        mailbox_peak_actor="CallSupervisor",
    )


def test_a_call_that_heard_all_it_was_sent_lost_nothing() -> None:
    ended = _Ended(call_sid="CA1", frames_sent=500, frames_received=498)
    summary = {"frames_in": 500, "frames_out": 498, "gap_frames_dropped": 0}
    assert _lost(ended, summary) == 0


def test_frames_tars_never_took_in_dropped_or_that_never_reached_the_caller_are_lost() -> None:
    ended = _Ended(call_sid="CA1", frames_sent=500, frames_received=490)
    summary = {"frames_in": 497, "frames_out": 498, "gap_frames_dropped": 2}
    assert _lost(ended, summary) == 3 + 2 + 8


def test_the_verdict_measures_growth_from_minute_five_without_the_drained_last_row() -> None:
    # The row of minutes 0-5 holds the calls' ramp: the steady state starts after it.
    rows = [row(5.0, 120.0, low=60.0), row(10.0, 180.0, low=160.0), row(30.0, 183.6)]
    rows += [row(60.0, 185.4, low=168.0, lost=0)]
    rows.append(row(60.2, 120.0, fds=20, threads=17))  # the calls hung up
    out = io.StringIO()
    _print_verdict(rows, out)
    verdict = out.getvalue()
    assert "steady state (minute 5.0 to 60.0)" in verdict
    assert "RSS mean 180.0 -> 185.4 MiB (+3.0 %), low 160.0 -> 168.0 MiB (+5.0 %)" in verdict
    assert "open fds 200-200, threads 120-120" in verdict
    assert "0 frames lost" in verdict


def test_a_short_soak_through_the_command_prints_its_rows_and_verdict() -> None:
    out = io.StringIO()
    code = cli.main(
        [
            "load",
            "--calls",
            "3",
            "--seconds",
            "8",
            "--report-every",
            "4",
            "--call-seconds",
            "3",
        ],
        stdout=out,
    )
    assert code == 0
    lines = out.getvalue().splitlines()
    assert lines[0].split()[:4] == ["minute", "live", "ended", "RSS"]
    rows = [line for line in lines[1:] if line[:7].strip().replace(".", "").isdigit()]
    assert len(rows) >= 2
    assert rows[-1].split()[1] == "0"  # every call hung up at the end
    assert int(rows[-1].split()[2]) >= 6  # calls ended and replaced meanwhile
    assert sum(int(line.split()[8]) for line in rows) == 0  # frames lost
    low, high = (float(mib) for mib in rows[0].split()[4].split("-"))
    assert 0 < low <= float(rows[0].split()[3]) <= high  # the interval's mean within it
    assert lines[-1].startswith("steady state")


def test_a_row_shows_the_intervals_mean_and_its_lowest_and_highest_memory() -> None:
    rendered = row(10.0, 190.04, low=170.6).render().split()
    assert rendered[3:5] == ["190.0", "170.6-210.0"]
