"""The soak: N calls kept up against TARS in its own process for a long while, a row of
figures every K seconds, so that a slow leak or a drift shows.

``python run.py load --calls N --seconds S --report-every K``. TARS runs as ``python run.py``
in a child process with the echoing Gemini Live stand-in, as in the load benchmark. Each call
lasts ``--call-seconds`` (the first ones staggered so that calls end one by one), then the
caller stops talking, waits until the echo has played out, hangs up, and a new caller takes
its place: sessions, model connections and sockets come and go the whole time, as in a day
of real calls. Each row: the server's resident memory over the interval (sampled every half
second: its mean, and its lowest and highest; a single sample would land anywhere on the
sawtooth of memory freed by ended calls and given back every 5 minutes, while a leak raises
the mean and the low alike), open file descriptors and threads (from /proc), its CPU per
call-second over the interval, the frames lost by the calls that
ended in it (caller frames TARS never took in or dropped, and frames TARS sent that the
caller never got, from each call's ``call.summary``), and the deepest mailbox any actor
reported in it (``actor.stats``).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from tars_actors.net.loop import LoopThread
from tars_actors.ops.load import QUIET_SECONDS
from tars_actors.ops.model_stand_in import ModelStandInProcess
from tars_actors.ops.process_stats import cpu_seconds, rss_mb
from tars_actors.sim.process import PUBLIC_URL, DaemonProcess, write_settings
from tars_actors.sim.softphone import FRAME_BYTES, Softphone
from tars_actors.sim.twilio_api import TwilioRestStandIn
from tars_actors.sim.world import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, TWILIO_NUMBER

__all__ = ["SoakRow", "run_soak"]

#: After a caller stops talking, the echo has played out once nothing arrived for
#: QUIET_SECONDS (the load benchmark's), or this long at the most.
_QUIET_AT_MOST = 10.0
#: Between one caller dialling in and the next at the start.
_RAMP_SECONDS = 0.1
#: Frames of audio the two streaming resamplers of an echo hold back at most.
_HELD_FRAMES = 5


@dataclass(frozen=True, slots=True, kw_only=True)
class SoakRow:
    #: The end of the row's interval, and its start, in minutes from the soak's start.
    minute: float
    from_minute: float
    live_calls: int
    calls_ended: int
    #: Resident memory over the interval: mean, lowest and highest of its samples.
    rss_mb: float
    rss_low_mb: float
    rss_high_mb: float
    open_fds: int
    threads: int
    cpu_ms_per_call_second: float
    frames_lost: int
    mailbox_peak: int
    mailbox_peak_actor: str

    HEADER = (
        " minute  live  ended   RSS MiB   low-high MiB  fds  threads  CPU ms/call-s  frames lost"
        "  mailbox peak"
    )

    def render(self) -> str:
        peak = (
            f"{self.mailbox_peak} ({self.mailbox_peak_actor})" if self.mailbox_peak_actor else "-"
        )
        spread = f"{self.rss_low_mb:.1f}-{self.rss_high_mb:.1f}"
        return (
            f"{self.minute:7.1f}  {self.live_calls:4d}  {self.calls_ended:5d}  {self.rss_mb:8.1f}"
            f"  {spread:>13}  {self.open_fds:3d}  {self.threads:7d}"
            f"  {self.cpu_ms_per_call_second:13.2f}  {self.frames_lost:11d}  {peak}"
        )


@dataclass(slots=True)
class _Ended:
    """A call that ended: what its caller sent and heard."""

    call_sid: str
    frames_sent: int
    frames_received: int


@dataclass(slots=True)
class _Calls:
    live: int = 0
    ended: list[_Ended] = field(default_factory=list)


def _count(path: str) -> int:
    try:
        return len(os.listdir(path))
    except OSError:
        return 0


def _threads(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("Threads:"):
                return int(line.split()[1])
    return 0


def _lost(ended: _Ended, summary: dict[str, Any]) -> int:
    frames_in = int(summary.get("frames_in", 0))
    frames_out = int(summary.get("frames_out", 0))
    inbound = max(0, ended.frames_sent - frames_in) + int(summary.get("gap_frames_dropped", 0))
    return inbound + max(0, frames_out - ended.frames_received)


async def _one_call(phone: Softphone, seconds: float, calls: _Calls) -> None:
    await phone.call()
    calls.live += 1
    try:
        await asyncio.sleep(seconds)
        phone.stop_media()
        # The echo of everything said has come back (less what the resamplers hold), and
        # then nothing more for a moment: a busy machine may pause the echo, not end it.
        quiet_since, heard, started = time.monotonic(), phone.bytes_received, time.monotonic()
        while time.monotonic() - started < _QUIET_AT_MOST:
            await asyncio.sleep(0.05)  # the echo playing out: a benchmark's poll, bounded
            if phone.bytes_received != heard:
                quiet_since, heard = time.monotonic(), phone.bytes_received
            echoed = phone.bytes_received // FRAME_BYTES >= phone.frames_sent - _HELD_FRAMES
            if echoed and time.monotonic() - quiet_since >= QUIET_SECONDS:
                break
        await phone.hang_up()
    finally:
        calls.live -= 1
    # TARS may send several 20 ms frames in one media message: count the audio, not messages.
    heard_frames = -(-phone.bytes_received // FRAME_BYTES)
    calls.ended.append(_Ended(phone.call_sid, phone.frames_sent, heard_frames))


def run_soak(
    *, calls: int, seconds: float, report_every: float, call_seconds: float, out: TextIO
) -> list[SoakRow]:
    """Keep ``calls`` calls up for ``seconds``; print and return a row every ``report_every``."""
    rows: list[SoakRow] = []
    with tempfile.TemporaryDirectory(prefix="tars-soak-") as tmp:
        directory = Path(tmp)
        gemini = ModelStandInProcess(directory)
        with TwilioRestStandIn(auth_token=FAKE_AUTH_TOKEN, account_sid=FAKE_ACCOUNT_SID) as twilio:
            extra: dict[str, dict[str, int | str]] = {
                "sessions": {
                    # A caller hanging up and the next one dialling overlap for a moment.
                    "max_concurrent": calls + max(2, calls // 10),
                    "owner_reserved": 0,
                    "max_call_seconds": int(call_seconds) + 120,
                },
                # The daemon's own cadence (stats, and the memory given back every 5
                # minutes on a stats tick), whatever the report's.
                "monitor": {"stats_interval_seconds": min(30, max(1, int(report_every)))},
            }
            server = DaemonProcess(
                write_settings(
                    directory,
                    twilio_base_url=twilio.base_url,
                    gemini_base_url=gemini.base_url,
                    gemini_ca_file=gemini.ca_file,
                    extra=extra,
                ),
                directory,
                keep_records=True,
            )
            loop = LoopThread("soak-softphones")
            try:
                port = server.wait_started(timeout=60)
                rows = _drive(
                    server=server,
                    loop=loop,
                    port=port,
                    calls=calls,
                    seconds=seconds,
                    report_every=report_every,
                    call_seconds=call_seconds,
                    out=out,
                )
            finally:
                loop.stop()
                server.stop()
                gemini.stop()
    return rows


def _drive(
    *,
    server: DaemonProcess,
    loop: LoopThread,
    port: int,
    calls: int,
    seconds: float,
    report_every: float,
    call_seconds: float,
    out: TextIO,
) -> list[SoakRow]:
    pid = server.process.pid
    numbers = itertools.count()
    state = _Calls()
    started = time.monotonic()
    deadline = started + seconds

    def new_phone() -> Softphone:
        return Softphone(
            server_url=f"http://127.0.0.1:{port}",
            public_url=PUBLIC_URL,
            auth_token=FAKE_AUTH_TOKEN,
            account_sid=FAKE_ACCOUNT_SID,
            from_number=f"+1556{next(numbers):07d}",
            to_number=TWILIO_NUMBER,
            record_audio=False,
        )

    async def slot(index: int) -> None:
        # Callers dial in over a few seconds, not in one instant; the first calls end one
        # by one; after that each lasts call_seconds.
        await asyncio.sleep(index * _RAMP_SECONDS)
        length = call_seconds * (index + 1) / calls
        while (left := deadline - time.monotonic()) > 1.0:
            await _one_call(new_phone(), min(length, left), state)
            length = call_seconds

    async def all_slots() -> None:
        await asyncio.gather(*(slot(index) for index in range(calls)))

    running = loop.submit(all_slots())
    rows: list[SoakRow] = []
    print(SoakRow.HEADER, file=out, flush=True)
    counted: set[str] = set()
    stats_seen = 0
    last_at, last_cpu = started, cpu_seconds(pid)
    rss: list[float] = []
    while True:
        finished = running.done()
        now = time.monotonic()
        rss.append(rss_mb(pid))
        if not finished and now < last_at + report_every:
            time.sleep(min(0.5, last_at + report_every - now))  # a soak's report clock
            continue
        if finished:
            running.result()  # a caller's failure is the soak's
            server.wait_for_summaries(len(state.ended), timeout=30)
        cpu = cpu_seconds(pid)
        summaries = {s.get("call_sid"): s for s in server.summaries}
        lost = 0
        for ended in state.ended:
            summary = summaries.get(ended.call_sid)
            if ended.call_sid not in counted and summary is not None:
                counted.add(ended.call_sid)
                lost += _lost(ended, summary)
        stats = server.events("actor.stats")
        fresh, stats_seen = stats[stats_seen:], len(stats)
        deepest = max(fresh, key=lambda line: int(line.get("peak_depth", 0)), default=None)
        row = SoakRow(
            minute=round((now - started) / 60, 1),
            from_minute=round((last_at - started) / 60, 1),
            live_calls=state.live,
            calls_ended=len(counted),
            rss_mb=round(sum(rss) / len(rss), 1),
            rss_low_mb=round(min(rss), 1),
            rss_high_mb=round(max(rss), 1),
            open_fds=_count(f"/proc/{pid}/fd"),
            threads=_threads(pid),
            cpu_ms_per_call_second=round((cpu - last_cpu) * 1000 / (calls * (now - last_at)), 2),
            frames_lost=lost,
            mailbox_peak=0 if deepest is None else int(deepest.get("peak_depth", 0)),
            mailbox_peak_actor="" if deepest is None else str(deepest.get("actor", "")),
        )
        rows.append(row)
        print(row.render(), file=out, flush=True)
        last_at, last_cpu, rss = now, cpu, []
        if finished:
            break
    _print_verdict(rows, out)
    return rows


def _print_verdict(rows: list[SoakRow], out: TextIO) -> None:
    """The soak's figures in one line each: growth after the first 5 minutes, totals."""
    if not rows:
        return
    # The calls' steady state: the intervals from minute 5 on, without the last row (the
    # calls hung up in it).
    steady = [row for row in rows[:-1] if row.from_minute >= 5.0] or rows
    first, last = steady[0], steady[-1]
    growth = (last.rss_mb - first.rss_mb) / first.rss_mb * 100 if first.rss_mb else 0.0
    low = (last.rss_low_mb - first.rss_low_mb) / first.rss_low_mb * 100 if first.rss_low_mb else 0.0
    fds = sorted(row.open_fds for row in steady)
    threads = sorted(row.threads for row in steady)
    print(
        f"steady state (minute {first.from_minute} to {last.minute}): RSS mean {first.rss_mb} -> "
        f"{last.rss_mb} MiB ({growth:+.1f} %), low {first.rss_low_mb} -> {last.rss_low_mb} "
        f"MiB ({low:+.1f} %), open fds {fds[0]}-{fds[-1]}, threads "
        f"{threads[0]}-{threads[-1]}; whole run: {rows[-1].calls_ended} calls ended, "
        f"{sum(row.frames_lost for row in rows)} frames lost, deepest mailbox "
        f"{max(row.mailbox_peak for row in rows)}",
        file=out,
        flush=True,
    )


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run it as: python run.py load --report-every K")
