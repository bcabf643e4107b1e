"""The capacity benchmark: N concurrent softphone calls against TARS in its own process.

The server runs as ``python run.py`` in a child process, exactly as in production, talking
to an echoing Gemini Live stand-in; this process plays the N callers. Every caller frame is
timed twice: from the softphone to the model stand-in (inbound), and from the model
stand-in back to the softphone (outbound, the echo). Figures: frames lost, p50/p99 latency
added per frame in each direction, the server's CPU milliseconds per call-second (from
/proc), and its memory per call. With ``--workers N`` TARS runs as ``run.py --workers N``
on a throwaway PostgreSQL, and the server's figures are summed over its processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from bisect import bisect_left, bisect_right
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tars_actors.audio.pipeline import FRAME_BYTES, CallerToModel, ModelToCaller
from tars_actors.call.relay import LatencyHistogram
from tars_actors.net.loop import LoopThread
from tars_actors.ops.model_stand_in import (
    ModelStandInProcess,
    ModelTimes,
    serve_model_stand_in,
    without_collection_pauses,
)
from tars_actors.ops.process_stats import cpu_seconds, rss_mb
from tars_actors.sim.postgres import throwaway_database
from tars_actors.sim.process import PUBLIC_URL, DaemonProcess, free_port, write_settings
from tars_actors.sim.softphone import Softphone
from tars_actors.sim.twilio_api import TwilioRestStandIn
from tars_actors.sim.world import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, TWILIO_NUMBER

__all__ = ["LoadResult", "main", "run_load"]

#: 16 kHz PCM16 bytes per 20 ms caller frame.
MODEL_FRAME_BYTES = 640
#: After the measured window the callers stop sending; the figures are taken once nothing
#: has moved for this long, everything in flight having arrived (or been lost).
QUIET_SECONDS = 0.5
#: ...or after this long at the most: what has not arrived by then counts as lost.
SETTLE_TIMEOUT = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LoadResult:
    calls: int
    #: TARS processes serving the calls (``--workers``); the server's figures are their sums.
    workers: int
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
    #: The most audio each resampler holds back (its lookahead), not counted above.
    resampler_lookahead_in_ms: float
    resampler_lookahead_out_ms: float
    frames_dropped_by_server: int
    server_cpu_ms_per_call_second: float
    #: The same for the model stand-in and this process over the same window: with the
    #: same TARS their work is the same from run to run, so they show how fast the
    #: machine ran meanwhile.
    model_stand_in_cpu_ms_per_call_second: float
    load_generator_cpu_ms_per_call_second: float
    server_rss_idle_mb: float
    server_rss_loaded_mb: float
    server_memory_per_call_mb: float
    protocol_violations: int
    caller_underrun_seconds: float
    #: How late the softphones sent their worst frame: a busy load generator shows here.
    caller_max_send_lag_ms: float


@dataclass(frozen=True, slots=True)
class _Held:
    """The least and most bytes a streaming resampler holds back once it has started."""

    least: int
    most: int


def _pipeline_delays() -> tuple[_Held, _Held]:
    """Bytes the two streaming resamplers hold back: their lookahead, a property of the
    filter and its block size rather than latency added by waiting.

    libsoxr emits in blocks, so what it holds varies from frame to frame (8 → 16 kHz:
    88-424 bytes, 2.75-13.25 ms). Latency is timed to the moment everything the
    resampler can emit for a frame has arrived (the most held back, shown on its own
    line); losses are counted with the least, so that no lookahead hides a lost frame.
    """
    noise = np.random.default_rng(1)
    inbound, outbound = CallerToModel(), ModelToCaller()
    held_in: list[int] = []
    held_out: list[int] = []
    produced = emitted = 0
    for frame in range(1, 501):
        produced += len(
            inbound.process(noise.integers(0, 256, FRAME_BYTES, dtype=np.uint8).tobytes())
        )
        pcm = noise.integers(-3000, 3000, 480, dtype=np.int16).astype("<i2").tobytes()
        emitted += sum(len(payload) for payload in outbound.process(pcm))
        if frame > 50:  # past the start-up transient
            held_in.append(frame * MODEL_FRAME_BYTES - produced)
            held_out.append(frame * FRAME_BYTES - emitted)
    return _Held(min(held_in), max(held_in)), _Held(min(held_out), max(held_out))


def _percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def run_load(
    calls: int = 50, seconds: float = 20.0, warmup: float = 2.0, workers: int = 1
) -> LoadResult:
    """``workers`` above 1: TARS as ``run.py --workers N`` on a throwaway PostgreSQL, its
    CPU and memory summed over the parent and its workers."""
    inbound_delay, outbound_delay = _pipeline_delays()
    with contextlib.ExitStack() as stack:
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tars-load-")))
        extra: dict[str, dict[str, int | str]] = {
            # Every caller is a stranger: no place is kept for the owner.
            "sessions": {"max_concurrent": calls, "owner_reserved": 0},
            "monitor": {"stats_interval_seconds": 3600},
        }
        if workers > 1:
            extra["database"] = {"url": stack.enter_context(throwaway_database())}
            extra["server"] = {"port": free_port()}
        gemini = ModelStandInProcess(directory)
        with TwilioRestStandIn(auth_token=FAKE_AUTH_TOKEN, account_sid=FAKE_ACCOUNT_SID) as twilio:
            server = DaemonProcess(
                write_settings(
                    directory,
                    twilio_base_url=twilio.base_url,
                    gemini_base_url=gemini.base_url,
                    gemini_ca_file=gemini.ca_file,
                    extra=extra,
                ),
                directory,
                workers=workers if workers > 1 else None,
            )
            try:
                port = server.wait_started(timeout=60)
                # The workers' parent, if any, is counted too (it only waits).
                pids = sorted({server.process.pid, *server.pids})
                rss_idle = rss_mb(*pids)
                with without_collection_pauses():
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
                    # TARS, the model stand-in, and this process (the callers).
                    measured = (pids, (gemini.process.pid,), (os.getpid(),))
                    start, cpu_start = time.monotonic(), [cpu_seconds(*p) for p in measured]
                    time.sleep(seconds)
                    end, cpu_end = time.monotonic(), [cpu_seconds(*p) for p in measured]
                    rss_loaded = rss_mb(*pids)

                    async def stop_media() -> None:
                        for phone in phones:
                            phone.stop_media()

                    # Every frame sent is then either delivered or lost: the streams are
                    # compared whole once nothing moves any more.
                    loop.submit(stop_media()).result(10)
                    _settle(gemini, phones)
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
    call_seconds = calls * (end - start)
    cpu_ms = [
        round((after - before) * 1000 / call_seconds, 2)
        for before, after in zip(cpu_start, cpu_end, strict=True)
    ]
    return LoadResult(
        calls=calls,
        workers=workers,
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
        resampler_lookahead_in_ms=round(inbound_delay.most / (2 * 16), 2),
        resampler_lookahead_out_ms=round(outbound_delay.most / 8, 2),
        frames_dropped_by_server=sum(int(s.get("gap_frames_dropped", 0)) for s in summaries),
        server_cpu_ms_per_call_second=cpu_ms[0],
        model_stand_in_cpu_ms_per_call_second=cpu_ms[1],
        load_generator_cpu_ms_per_call_second=cpu_ms[2],
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


@dataclass(frozen=True, slots=True, kw_only=True)
class _CallSample:
    frames: int
    lost_inbound: int
    lost_outbound: int
    inbound: list[float]
    outbound: list[float]


def _settle(gemini: ModelStandInProcess, phones: Sequence[Softphone]) -> None:
    """Wait until no audio has moved either way for :data:`QUIET_SECONDS`."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last: tuple[str, int] | None = None
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        progress = (gemini.totals(), sum(phone.bytes_received for phone in phones))
        now = time.monotonic()
        if progress != last:
            last, quiet_since = progress, now
        elif now - quiet_since >= QUIET_SECONDS:
            return
        time.sleep(0.05)  # a benchmark's poll across processes, bounded by the deadline


def _measure(
    phone: Softphone,
    model: ModelTimes,
    *,
    window: tuple[float, float],
    inbound_delay: _Held,
    outbound_delay: _Held,
) -> _CallSample:
    """Time every caller frame sent in ``window`` to the model, and every echoed payload
    heard in it back at the caller; count what never arrived, over the whole call.

    Audio is a continuous stream and the echo keeps byte counts. Once the callers have
    stopped and everything in flight has arrived, a lost frame shows as a deficit: the
    model received less than the caller sent, or the caller heard less than the model
    echoed (less the bytes each streaming resampler holds back).
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
        at_model = bisect_left(arrival_totals, (k + 1) * MODEL_FRAME_BYTES - inbound_delay.most)
        if at_model < len(arrival_times):
            inbound.append(arrival_times[at_model] - sent_at)
    outbound = _outbound_added(
        phone, model.echo_times, model.echo_totals, window, outbound_delay.most
    )
    received = arrival_totals[-1] if arrival_totals else 0
    lost_in = max(0, len(send_times) * MODEL_FRAME_BYTES - inbound_delay.least - received)
    echoed = model.echo_totals[-1] if model.echo_totals else 0
    lost_out = max(0, echoed // 4 - outbound_delay.least - phone.bytes_received)
    return _CallSample(
        frames=frames,
        # Whole frames: what a resampler holds varies by less than a frame.
        lost_inbound=lost_in // MODEL_FRAME_BYTES,
        lost_outbound=lost_out // FRAME_BYTES,
        inbound=inbound,
        outbound=outbound,
    )


def _outbound_added(
    phone: Softphone,
    echo_times: Sequence[float],
    echo_totals: Sequence[int],
    window: tuple[float, float],
    outbound_delay: int,
) -> list[float]:
    """How much later each echoed payload reached the caller than the caller needed it.

    A payload is needed once the model stand-in has sent the echo carrying its first
    byte and the caller has played everything before it. Arriving after that leaves the
    caller a gap of silence as long as the delay: that is what the server added
    (processing, queueing, pacing). Arriving earlier adds nothing: the pacer sends up to
    its lead ahead of playout, and Twilio buffers it.

    The caller's playout is the reference, not an ideal one from the echo times: in an
    endless echo, one late payload shifts the playout for the rest of the call, and every
    later payload would otherwise count that same delay again.
    """
    added: list[float] = []
    played_until = 0.0
    position = 0
    for media in phone.received:
        size = len(media.payload)
        # The echo that carries this payload's first byte (16 kHz bytes at the model).
        at_model = bisect_right(echo_totals, 4 * (position + outbound_delay))
        position += size
        if at_model >= len(echo_times):
            break
        needed = max(echo_times[at_model], played_until)
        played_until = media.play_at + size / 8000
        if window[0] <= media.at < window[1]:
            added.append(max(0.0, media.at - needed))
    return added


def render_table(result: LoadResult) -> str:
    rows = [
        ("calls", f"{result.calls}"),
        *([("TARS workers (figures summed)", f"{result.workers}")] if result.workers > 1 else []),
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
        (
            "resampler lookahead in / out (not counted above)",
            f"{result.resampler_lookahead_in_ms} / {result.resampler_lookahead_out_ms} ms",
        ),
        ("frames dropped by TARS", f"{result.frames_dropped_by_server}"),
        ("server CPU per call-second", f"{result.server_cpu_ms_per_call_second} ms"),
        (
            "  model stand-in / load generator, the same",
            f"{result.model_stand_in_cpu_ms_per_call_second}"
            f" / {result.load_generator_cpu_ms_per_call_second} ms",
        ),
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
    parser.add_argument(
        "--report-every",
        type=float,
        metavar="K",
        help="soak: keep the calls up for --seconds, a row of figures every K seconds",
    )
    parser.add_argument(
        "--call-seconds", type=float, default=300.0, help="soak: how long each call lasts"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="TARS as N workers on one port and a throwaway PostgreSQL (default 1: SQLite)",
    )
    parser.add_argument("--model-stand-in", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv))
    if args.model_stand_in:
        return serve_model_stand_in(Path(args.model_stand_in))
    if args.report_every is not None:
        from tars_actors.ops.soak import run_soak

        run_soak(
            calls=args.calls,
            seconds=args.seconds,
            report_every=args.report_every,
            call_seconds=args.call_seconds,
            out=out,
        )
        return 0
    result = run_load(
        calls=args.calls, seconds=args.seconds, warmup=args.warmup, workers=args.workers
    )
    if args.json:
        print(json.dumps(asdict(result), indent=2), file=out)
    else:
        print(render_table(result), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
