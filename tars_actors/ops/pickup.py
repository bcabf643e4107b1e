"""The pickup benchmark: how long a caller waits, once the stream is open, for TARS's first
words.

``python run.py load --pickup --calls N``. TARS runs as ``python run.py`` in a child process,
as in the load benchmark, with the Gemini Live stand-in in a process of its own, set to the
delays of the real network: a connection's setup is answered after 800 ms, and the first
audio of a reply comes 300 ms after the client's turn (the greeting request). Each softphone
opens its stream 1 s after the voice webhook was answered, as Twilio does. The calls are
placed a few at a time, after one call that is not counted (the daemon's one-time work on its
first call); each caller hangs up once the greeting has played.

Figures: p50/p95/p99 of each call's ``first_audio_ms`` (``call.summary``: from the stream's
``start`` reaching TARS to the first of the greeting's audio written to Twilio), and the
same from the caller's side: from the webhook's answer to the first audio heard, which
includes the stream's own delay.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

from tars_actors.net.loop import LoopThread
from tars_actors.ops.model_stand_in import ModelStandInProcess, serve_model_stand_in
from tars_actors.sim.gemini import LiveBehaviour
from tars_actors.sim.process import PUBLIC_URL, DaemonProcess, write_settings
from tars_actors.sim.softphone import Softphone
from tars_actors.sim.twilio_api import TwilioRestStandIn
from tars_actors.sim.world import FAKE_ACCOUNT_SID, FAKE_AUTH_TOKEN, TWILIO_NUMBER

__all__ = ["REALISTIC", "PickupResult", "StandInDelays", "main", "percentile", "run_pickup"]

#: TARS marks the end of each model turn's audio; the greeting is the first turn.
_GREETING_MARK = "turn-1"
#: How long a caller waits for the greeting to play before hanging up without it.
_GREETING_WAIT = 30.0
#: Calls placed before the measured ones, not counted.
_WARMUP_CALLS = 1


@dataclass(frozen=True, slots=True, kw_only=True)
class StandInDelays:
    """Seconds the stand-ins take: the model's setup, the model's first audio after a
    client turn, and the stream opening after the voice webhook's answer."""

    setup: float = 0.8
    reply: float = 0.3
    stream: float = 1.0


#: As on the real network: a Live connection takes some hundreds of milliseconds to set
#: up, the model some more to its first audio, and Twilio opens the stream some hundreds of
#: milliseconds after the webhook's answer.
REALISTIC = StandInDelays()


@dataclass(frozen=True, slots=True, kw_only=True)
class PickupResult:
    calls: int
    #: Calls whose ``call.summary`` has ``first_audio_ms`` (the others never heard TARS).
    measured: int
    first_audio_p50_ms: float | None
    first_audio_p95_ms: float | None
    first_audio_p99_ms: float | None
    #: The caller's side: from the voice webhook's answer to the first audio heard.
    caller_silence_p50_ms: float | None
    caller_silence_p95_ms: float | None
    caller_silence_p99_ms: float | None
    setup_delay_ms: int
    reply_delay_ms: int
    stream_delay_ms: int


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank ``q``-th percentile: the least of ``values`` that at least ``q`` %
    of them do not exceed (of 20 values, p95 is the 19th and p99 the largest); never an
    interpolated figure no call had. None without values."""
    if not 0 < q <= 100:
        raise ValueError(f"a percentile is above 0 and at most 100, not {q}")
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) / 100)) - 1]


def run_pickup(
    calls: int = 20, *, at_once: int = 4, delays: StandInDelays = REALISTIC
) -> PickupResult:
    """Place ``calls`` calls, ``at_once`` at a time, against TARS in its own process."""
    if calls < 1 or at_once < 1:
        raise ValueError("the benchmark needs at least one call, placed one at a time or more")
    with tempfile.TemporaryDirectory(prefix="tars-pickup-") as tmp:
        directory = Path(tmp)
        options = ["--setup-delay", str(delays.setup), "--reply-delay", str(delays.reply)]
        gemini = ModelStandInProcess(directory, ("tars_actors.ops.pickup", *options))
        with TwilioRestStandIn(auth_token=FAKE_AUTH_TOKEN, account_sid=FAKE_ACCOUNT_SID) as twilio:
            server = DaemonProcess(
                write_settings(
                    directory,
                    twilio_base_url=twilio.base_url,
                    gemini_base_url=gemini.base_url,
                    gemini_ca_file=gemini.ca_file,
                    extra={
                        # Every caller is a stranger; a call ending overlaps the next one.
                        "sessions": {"max_concurrent": 2 * at_once, "owner_reserved": 0},
                        "monitor": {"stats_interval_seconds": 3600},
                    },
                ),
                directory,
            )
            loop = LoopThread("pickup-softphones")
            try:
                port = server.wait_started(timeout=60)
                phones = [
                    Softphone(
                        server_url=f"http://127.0.0.1:{port}",
                        public_url=PUBLIC_URL,
                        auth_token=FAKE_AUTH_TOKEN,
                        account_sid=FAKE_ACCOUNT_SID,
                        from_number=f"+1558{index:07d}",
                        to_number=TWILIO_NUMBER,
                        stream_delay=delays.stream,
                    )
                    for index in range(_WARMUP_CALLS + calls)
                ]
                warmup, measured = phones[:_WARMUP_CALLS], phones[_WARMUP_CALLS:]
                loop.submit(_place(warmup, at_once)).result(_GREETING_WAIT + 30)
                loop.submit(_place(measured, at_once)).result(
                    (calls / at_once + 1) * (_GREETING_WAIT + 30)
                )
                summaries = server.wait_for_summaries(len(phones), timeout=30)
            finally:
                loop.stop()
                server.stop()
                gemini.stop()
    ours = {phone.call_sid for phone in measured}
    first_audio = [
        float(summary["first_audio_ms"])
        for summary in summaries
        if summary.get("call_sid") in ours and summary.get("first_audio_ms") is not None
    ]
    silence = [
        (phone.received[0].at - phone.answered_at) * 1000
        for phone in measured
        if phone.received and phone.answered_at is not None
    ]
    return PickupResult(
        calls=calls,
        measured=len(first_audio),
        first_audio_p50_ms=percentile(first_audio, 50),
        first_audio_p95_ms=percentile(first_audio, 95),
        first_audio_p99_ms=percentile(first_audio, 99),
        caller_silence_p50_ms=_rounded(percentile(silence, 50)),
        caller_silence_p95_ms=_rounded(percentile(silence, 95)),
        caller_silence_p99_ms=_rounded(percentile(silence, 99)),
        setup_delay_ms=round(delays.setup * 1000),
        reply_delay_ms=round(delays.reply * 1000),
        stream_delay_ms=round(delays.stream * 1000),
    )


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


async def _place(phones: Sequence[Softphone], at_once: int) -> None:
    """Each call in turn, ``at_once`` of them ringing or talking at any time."""
    gate = asyncio.Semaphore(at_once)

    async def one(phone: Softphone) -> None:
        async with gate:
            await phone.call()
            # Without a greeting, the call's summary has no first_audio_ms: counted so.
            with contextlib.suppress(TimeoutError):
                await phone.wait_for_mark(_GREETING_MARK, timeout=_GREETING_WAIT)
            await phone.hang_up()

    await asyncio.gather(*(one(phone) for phone in phones))


def _figure(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def render(result: PickupResult) -> str:
    rows = [
        ("calls", f"{result.calls} ({result.measured} with first audio)"),
        ("first audio after start p50", _figure(result.first_audio_p50_ms)),
        ("first audio after start p95", _figure(result.first_audio_p95_ms)),
        ("first audio after start p99", _figure(result.first_audio_p99_ms)),
        (
            "caller's silence after the webhook p50 / p95 / p99",
            f"{_figure(result.caller_silence_p50_ms)} / {_figure(result.caller_silence_p95_ms)}"
            f" / {_figure(result.caller_silence_p99_ms)}",
        ),
        (
            "stand-in delays",
            f"model setup {result.setup_delay_ms} ms, first audio {result.reply_delay_ms} ms"
            f" after the greeting request, stream {result.stream_delay_ms} ms after the webhook",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: Sequence[str], *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    parser = argparse.ArgumentParser(prog="python run.py load --pickup", description=__doc__)
    parser.add_argument("--calls", type=int, default=20, help="calls measured (default 20)")
    parser.add_argument(
        "--at-once", type=int, default=4, help="calls ringing or talking at once (default 4)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    # The model stand-in's process (see tars_actors.ops.model_stand_in.ModelStandInProcess).
    parser.add_argument("--model-stand-in", metavar="DIR", help=argparse.SUPPRESS)
    parser.add_argument("--setup-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    parser.add_argument("--reply-delay", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(list(argv))
    if args.model_stand_in:
        behaviour = LiveBehaviour(
            setup_delay=args.setup_delay, reply_delay=args.reply_delay, record_audio=False
        )
        return serve_model_stand_in(Path(args.model_stand_in), behaviour)
    if args.calls < 1 or args.at_once < 1:
        parser.error("--calls and --at-once must be at least 1")
    result = run_pickup(args.calls, at_once=args.at_once)
    if args.json:
        print(json.dumps(asdict(result), indent=2), file=out)
    else:
        print(render(result), file=out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
