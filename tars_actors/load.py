"""The capacity benchmark: N concurrent softphone calls against TARS in its own process.

The server runs as ``python run.py`` in a child process, exactly as in production, talking
to an echoing Gemini Live stand-in; this process plays the N callers. Every caller frame is
timed twice: from the softphone to the model stand-in (inbound), and from the model
stand-in back to the softphone (outbound, the echo). Figures: frames lost, p50/p99 latency
added per frame in each direction, the server's CPU milliseconds per call-second (from
/proc), and its memory per call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tars_actors.aio import LoopThread
from tars_actors.audio import FRAME_BYTES, CallerToModel, ModelToCaller
from tars_actors.relay import LatencyHistogram
from tars_actors.sim.gemini_live import GeminiLiveStandIn, LiveBehaviour, LiveConnection
from tars_actors.sim.process import PUBLIC_URL, DaemonProcess, write_settings
from tars_actors.sim.softphone import Softphone
from tars_actors.sim.tls import create_local_certificate
from tars_actors.sim.twilio_rest import TwilioRestStandIn
from tars_actors.sim.world import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, TWILIO_NUMBER

__all__ = ["LoadResult", "main", "run_load"]

#: 16 kHz PCM16 bytes per 20 ms caller frame.
MODEL_FRAME_BYTES = 640
#: After the measured window, how long frames sent in it get to arrive before counting.
DRAIN_SECONDS = 2.0
#: Audio sent this recently may still be on its way: not counted as lost.
IN_FLIGHT = 0.5
#: What Twilio would reach: signatures are computed over it (no request ever goes there).


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    calls: int
    seconds: float
    frames_sent: int
    frames_lost_inbound: int
    frames_lost_outbound: int
    inbound_p50_ms: float
    inbound_p99_ms: float
    outbound_p50_ms: float
    outbound_p99_ms: float
    #: The same, measured inside TARS: from reading a frame to writing it onward
    #: (``call.summary``), free of the load generator's own scheduling delays.
    server_inbound_p50_ms: float | None
    server_inbound_p99_ms: float | None
    server_outbound_p50_ms: float | None
    server_outbound_p99_ms: float | None
    frames_dropped_by_server: int
    server_cpu_ms_per_call_second: float
    server_rss_idle_mb: float
    server_rss_loaded_mb: float
    server_memory_per_call_mb: float
    protocol_violations: int
    caller_underrun_seconds: float
    #: How late the softphones sent their worst frame: a busy load generator shows here.
    caller_max_send_lag_ms: float


def _pipeline_delays() -> tuple[int, int]:
    """Bytes the two streaming resamplers hold back: an algorithmic delay, not latency
    added by waiting, so the byte positions of one frame's audio are shifted by it."""
    noise = np.random.default_rng(1)
    inbound = CallerToModel()
    produced = sum(
        len(inbound.process(noise.integers(0, 256, FRAME_BYTES, dtype=np.uint8).tobytes()))
        for _ in range(100)
    )
    outbound = ModelToCaller()
    emitted = sum(
        len(payload)
        for _ in range(100)
        for payload in outbound.process(
            noise.integers(-3000, 3000, 480, dtype=np.int16).astype("<i2").tobytes()
        )
    )
    return 100 * MODEL_FRAME_BYTES - produced, 100 * FRAME_BYTES - emitted


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


class _ModelStandIn:
    """The echoing Gemini Live stand-in in a process of its own.

    The load generator's callers and the stand-in each need most of a core at 50 calls;
    in one process they would share one GIL and time each other's frames late.
    """

    def __init__(self, directory: Path) -> None:
        self.process = subprocess.Popen(  # noqa: S603 (this module, fixed arguments)
            [sys.executable, "-m", "tars_actors.load", "--model-stand-in", str(directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        hello = json.loads(self._line())
        self.base_url: str = hello["base_url"]
        self.ca_file: str = hello["ca_file"]

    def _line(self) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the model stand-in process ended")
        return line

    def _ask(self, command: str) -> str:
        assert self.process.stdin is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._line().strip()

    def wait_for_connections(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while int(self._ask("count")) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {self._ask('count')} of {count} model connections")
            time.sleep(0.1)  # a benchmark's set-up poll across processes

    def arrivals(self) -> dict[str, _ModelTimes]:
        report = json.loads(self._ask("report"))
        return {caller: _ModelTimes(*lists) for caller, lists in report.items()}

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _serve_model_stand_in(directory: Path) -> int:
    """The child side of :class:`_ModelStandIn`: answers ``count`` and ``report``."""
    certificate = create_local_certificate(directory / "tls")
    # One endless echo turn: turn ends would mark and flush, shifting byte positions.
    behaviour = LiveBehaviour(
        echo=True, echo_turn_frames=10**9, turn_reply=None, record_audio=False
    )
    with GeminiLiveStandIn(certificate, behaviour=behaviour) as gemini:
        print(json.dumps({"base_url": gemini.base_url, "ca_file": gemini.ca_file}), flush=True)
        for command in sys.stdin:
            match command.strip():
                case "count":
                    print(len(gemini.connections), flush=True)
                case "report":
                    report = {}
                    for connection in gemini.connections:
                        times, totals = connection.audio_arrivals
                        echo_times, echo_totals = connection.echo_departures
                        report[_caller_of(connection)] = (
                            list(times),
                            list(totals),
                            list(echo_times),
                            list(echo_totals),
                        )
                    print(json.dumps(report), flush=True)
    return 0


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_load(calls: int = 50, seconds: float = 20.0, warmup: float = 2.0) -> LoadResult:
    inbound_delay, outbound_delay = _pipeline_delays()
    with tempfile.TemporaryDirectory(prefix="tars-load-") as tmp:
        directory = Path(tmp)
        gemini = _ModelStandIn(directory)
        with TwilioRestStandIn(auth_token=FAKE_AUTH_TOKEN, account_sid=FAKE_ACCOUNT_SID) as twilio:
            server = DaemonProcess(
                write_settings(
                    directory,
                    twilio_base_url=twilio.base_url,
                    gemini_base_url=gemini.base_url,
                    gemini_ca_file=gemini.ca_file,
                    extra={
                        "sessions": {"max_concurrent": calls},
                        "monitor": {"stats_interval_seconds": 3600},
                    },
                ),
                directory,
            )
            try:
                port = server.wait_started(timeout=60)
                pid = server.process.pid
                rss_idle = _rss_mb(pid)
                loop = LoopThread("load-softphones")
                phones = [
                    Softphone(
                        server_url=f"http://127.0.0.1:{port}",
                        public_url=PUBLIC_URL,
                        auth_token=FAKE_AUTH_TOKEN,
                        account_sid=FAKE_ACCOUNT_SID,
                        from_number=f"+1555{index:07d}",
                        to_number=TWILIO_NUMBER,
                    )
                    for index in range(calls)
                ]

                async def dial_all() -> None:
                    await asyncio.gather(*(phone.call() for phone in phones))

                loop.submit(dial_all()).result(60)
                gemini.wait_for_connections(calls, timeout=60)
                time.sleep(warmup)  # a benchmark's warm-up period, not a wait for an event
                start, cpu_start = time.monotonic(), _cpu_seconds(pid)
                time.sleep(seconds)
                end, cpu_end = time.monotonic(), _cpu_seconds(pid)
                rss_loaded = _rss_mb(pid)
                # Frames sent near the end are still on their way: let them arrive before
                # counting any as lost (the figures cover frames sent within the window).
                time.sleep(DRAIN_SECONDS)
                connections = gemini.arrivals()
                samples = [
                    _measure(
                        phone,
                        connections[phone.from_number],
                        window=(start, end),
                        inbound_delay=inbound_delay,
                        outbound_delay=outbound_delay,
                    )
                    for phone in phones
                ]

                async def hang_up_all() -> None:
                    await asyncio.gather(*(phone.hang_up() for phone in phones))

                loop.submit(hang_up_all()).result(60)
                loop.stop()
                summaries = server.wait_for_summaries(calls, timeout=30)
            finally:
                server.stop()
                gemini.stop()
    inbound = [v for s in samples for v in s.inbound]
    outbound = [v for s in samples for v in s.outbound]
    inside_in = _merged(summaries, "latency_in_ms_histogram")
    inside_out = _merged(summaries, "latency_out_ms_histogram")
    return LoadResult(
        calls=calls,
        seconds=seconds,
        frames_sent=sum(s.frames for s in samples),
        frames_lost_inbound=sum(s.lost_inbound for s in samples),
        frames_lost_outbound=sum(s.lost_outbound for s in samples),
        inbound_p50_ms=round(_percentile(inbound, 50) * 1000, 2),
        inbound_p99_ms=round(_percentile(inbound, 99) * 1000, 2),
        outbound_p50_ms=round(_percentile(outbound, 50) * 1000, 2),
        outbound_p99_ms=round(_percentile(outbound, 99) * 1000, 2),
        server_inbound_p50_ms=inside_in.percentile(50),
        server_inbound_p99_ms=inside_in.percentile(99),
        server_outbound_p50_ms=inside_out.percentile(50),
        server_outbound_p99_ms=inside_out.percentile(99),
        frames_dropped_by_server=sum(int(s.get("gap_frames_dropped", 0)) for s in summaries),
        server_cpu_ms_per_call_second=round(
            (cpu_end - cpu_start) * 1000 / (calls * (end - start)), 2
        ),
        server_rss_idle_mb=round(rss_idle, 1),
        server_rss_loaded_mb=round(rss_loaded, 1),
        server_memory_per_call_mb=round((rss_loaded - rss_idle) / calls, 2),
        protocol_violations=sum(len(phone.violations) for phone in phones),
        caller_underrun_seconds=round(sum(phone.underrun_seconds for phone in phones), 3),
        caller_max_send_lag_ms=round(max(phone.max_send_lag for phone in phones) * 1000, 2),
    )


def _merged(summaries: Sequence[dict[str, Any]], key: str) -> LatencyHistogram:
    merged = LatencyHistogram()
    for summary in summaries:
        for bucket, count in (summary.get(key) or {}).items():
            merged.counts[int(bucket)] = merged.counts.get(int(bucket), 0) + int(count)
    return merged


def _caller_of(connection: LiveConnection) -> str:
    # Each session's instructions name its caller: "The caller, +1555…, is not someone…".
    instruction = connection.system_instruction
    marker = "The caller, "
    at = instruction.index(marker) + len(marker)
    return instruction[at : instruction.index(",", at)]


@dataclass(frozen=True, slots=True)
class _ModelTimes:
    """One call as the model stand-in saw it: audio arrivals and echo departures, each
    as (time, received audio bytes so far)."""

    arrival_times: list[float]
    arrival_totals: list[int]
    echo_times: list[float]
    echo_totals: list[int]


@dataclass(frozen=True, slots=True, kw_only=True)
class _CallSample:
    frames: int
    lost_inbound: int
    lost_outbound: int
    inbound: list[float]
    outbound: list[float]


def _measure(
    phone: Softphone,
    model: _ModelTimes,
    *,
    window: tuple[float, float],
    inbound_delay: int,
    outbound_delay: int,
) -> _CallSample:
    """Time every caller frame sent in ``window`` to the model, and every echoed payload
    played in it back to the caller; count what never arrived.

    Audio is a continuous stream and the echo keeps byte counts, so a lost frame shows as
    a deficit that never recovers: at the window's end, what the model has received falls
    short of what the caller sent by more than what is still in flight (frames sent in the
    last ``IN_FLIGHT`` seconds), and likewise what the caller heard back of the model's.
    """
    send_times = phone.send_times
    arrival_times, arrival_totals = model.arrival_times, model.arrival_totals
    inbound: list[float] = []
    frames = 0
    for k, sent_at in enumerate(send_times):
        if not window[0] <= sent_at < window[1]:
            continue
        frames += 1
        # Frame k's audio is complete at the model once this many bytes have arrived.
        at_model = bisect_left(arrival_totals, (k + 1) * MODEL_FRAME_BYTES - inbound_delay)
        if at_model < len(arrival_times):
            inbound.append(arrival_times[at_model] - sent_at)
    outbound = _outbound_added(phone, model.echo_times, model.echo_totals, window, outbound_delay)
    end = window[1]
    sent_settled = bisect_left(send_times, end - IN_FLIGHT)
    model_bytes = _total_at(arrival_times, arrival_totals, end)
    lost_in = max(0, sent_settled * MODEL_FRAME_BYTES - inbound_delay - model_bytes)
    model_settled = _total_at(arrival_times, arrival_totals, end - IN_FLIGHT)
    received = phone.received
    heard = sum(len(media.payload) for media in received if media.at < end)
    lost_out = max(0, model_settled // 4 - outbound_delay - heard)
    return _CallSample(
        frames=frames,
        lost_inbound=lost_in // MODEL_FRAME_BYTES,
        lost_outbound=lost_out // FRAME_BYTES,
        inbound=inbound,
        outbound=outbound,
    )


def _total_at(times: Sequence[float], totals: Sequence[int], when: float) -> int:
    """Bytes the model stand-in had received by ``when``."""
    index = bisect_left(times, when)
    return totals[index - 1] if index else 0


def _outbound_added(
    phone: Softphone,
    echo_times: Sequence[float],
    echo_totals: Sequence[int],
    window: tuple[float, float],
    outbound_delay: int,
) -> list[float]:
    """How much later each echoed payload starts playing at the caller than it could have.

    A payload could start playing once the model stand-in sent its echo and once
    everything before it has played in real time. What the caller hears later than that
    is what the server added: processing, queueing, pacing.
    """
    added: list[float] = []
    ideal_end = 0.0
    position = 0
    for media in phone.received:
        size = len(media.payload)
        position += size
        # The 16 kHz byte position at the model whose echo completes this payload.
        at_model = bisect_left(echo_totals, 4 * (position + outbound_delay))
        if at_model >= len(echo_times):
            break
        ready = echo_times[at_model]
        ideal_start = max(ready, ideal_end)
        ideal_end = ideal_start + size / 8000
        if window[0] <= media.at < window[1]:
            added.append(media.play_at - ideal_start)
    return added


def render_table(result: LoadResult) -> str:
    rows = [
        ("calls", f"{result.calls}"),
        ("measured seconds", f"{result.seconds:g}"),
        ("caller frames measured", f"{result.frames_sent}"),
        ("frames lost (caller → model)", f"{result.frames_lost_inbound}"),
        ("frames lost (model → caller)", f"{result.frames_lost_outbound}"),
        (
            "added latency caller → model p50 / p99",
            f"{result.inbound_p50_ms} / {result.inbound_p99_ms} ms",
        ),
        (
            "added latency model → caller p50 / p99",
            f"{result.outbound_p50_ms} / {result.outbound_p99_ms} ms",
        ),
        (
            "  inside TARS, caller → model p50 / p99",
            f"{result.server_inbound_p50_ms} / {result.server_inbound_p99_ms} ms",
        ),
        (
            "  inside TARS, model → caller p50 / p99",
            f"{result.server_outbound_p50_ms} / {result.server_outbound_p99_ms} ms",
        ),
        ("frames dropped by TARS", f"{result.frames_dropped_by_server}"),
        ("server CPU per call-second", f"{result.server_cpu_ms_per_call_second} ms"),
        (
            "server memory idle / loaded",
            f"{result.server_rss_idle_mb} / {result.server_rss_loaded_mb} MiB",
        ),
        ("server memory per call", f"{result.server_memory_per_call_mb} MiB"),
        ("protocol violations seen by callers", f"{result.protocol_violations}"),
        ("callers' playout gaps (total)", f"{result.caller_underrun_seconds} s"),
        ("load generator: latest frame sent", f"{result.caller_max_send_lag_ms} ms late"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: Sequence[str], *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    parser = argparse.ArgumentParser(prog="python run.py load", description=__doc__)
    parser.add_argument("--calls", type=int, default=50, help="concurrent calls (default 50)")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured seconds (default 20)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds before measuring")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--model-stand-in", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv))
    if args.model_stand_in:
        return _serve_model_stand_in(Path(args.model_stand_in))
    result = run_load(calls=args.calls, seconds=args.seconds, warmup=args.warmup)
    if args.json:
        print(json.dumps(asdict(result), indent=2), file=out)
    else:
        print(render_table(result), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
