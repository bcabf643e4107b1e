"""``python run.py bench messaging``: how long a message takes from one live call to another.

Twenty calls (the owner and nineteen others) run through the real server and actors with
the stand-ins. Each of the others' models calls ``take_message`` and the owner's model calls
``send_message_to_session`` for each of them; the figure is the time from the tool call
leaving the sender's model to the note reaching the target's model, while the target is
idle (each message waits until the previous note's reply has finished).
"""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import pykka

from tars_actors.runtime.log import configure_logging, reset_logging
from tars_actors.sim.gemini import LiveBehaviour, LiveConnection, ScriptedReply, tone
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.world import OWNER_PHONE, LocalWorld

__all__ = ["P99_LIMIT_MS", "MessagingBenchmark", "messaging_latency", "render_table"]

_WAIT = 30.0
#: The bar: p99 from tool call to note at the target's model.
P99_LIMIT_MS = 50.0
#: The targets' models answer each note with a short turn, and are idle again at once.
_REPLY = ScriptedReply(transcript="Noted.", audio=tone(500.0, 0.04))


@dataclass(frozen=True, slots=True)
class MessagingBenchmark:
    sessions: int
    messages: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    take_message_p99_ms: float
    send_message_to_session_p99_ms: float

    @property
    def met(self) -> bool:
        return self.p99_ms <= P99_LIMIT_MS


def messaging_latency(sessions: int = 20, rounds: int = 3) -> MessagingBenchmark:
    """Run the benchmark with ``sessions`` live calls, ``rounds`` messages each way per call."""
    if sessions < 2:
        raise ValueError("the benchmark needs at least 2 sessions")
    with tempfile.TemporaryDirectory(prefix="tars-bench-") as tmp:
        log_file = Path(tmp) / "tars.log"
        with log_file.open("w") as stream:
            configure_logging(level="warning", format="json", stream=stream)
            try:
                with LocalWorld(
                    directory=Path(tmp),
                    behaviour=LiveBehaviour(turn_reply=_REPLY),
                    settings={"sessions": {"max_concurrent": sessions}},
                ) as world:
                    take, send = _run(world, sessions, rounds)
            finally:
                pykka.ActorRegistry.stop_all()
                reset_logging()
    both = np.asarray(take + send) * 1000
    return MessagingBenchmark(
        sessions=sessions,
        messages=len(both),
        p50_ms=round(float(np.percentile(both, 50)), 2),
        p99_ms=round(float(np.percentile(both, 99)), 2),
        max_ms=round(float(both.max()), 2),
        take_message_p99_ms=round(float(np.percentile(np.asarray(take) * 1000, 99)), 2),
        send_message_to_session_p99_ms=round(float(np.percentile(np.asarray(send) * 1000, 99)), 2),
    )


def _run(world: LocalWorld, sessions: int, rounds: int) -> tuple[list[float], list[float]]:
    phones: list[SyncSoftphone] = []
    models: list[LiveConnection] = []
    for index in range(sessions):
        number = OWNER_PHONE if index == 0 else f"+1555700{index:04d}"
        phone = world.phone(number)
        phone.call()
        models.append(world.gemini.wait_for_connection(index + 1, timeout=_WAIT))
        phone.wait_for_mark("turn-1", timeout=_WAIT)
        phones.append(phone)
    owner = models[0]
    # The owner's call is told of each unknown caller; let those notes be answered first.
    _settle(owner, sessions)
    take: list[float] = []
    send: list[float] = []
    for round_number in range(rounds):
        for index in range(1, sessions):
            take.append(_one(models[index], owner, "take_message", {"message": f"r{round_number}"}))
            target = models[index]
            send.append(
                _one(
                    owner,
                    target,
                    "send_message_to_session",
                    {"session": f"Call with +1555700{index:04d}", "message": f"r{round_number}"},
                )
            )
    for phone in phones:
        phone.hang_up()
    return take, send


def _settle(model: LiveConnection, expected_contents: int) -> None:
    model.wait_for_client_content(count=expected_contents, timeout=_WAIT)
    _wait_idle(model)


def _wait_idle(model: LiveConnection) -> None:
    """Wait until TARS has heard the end of the model's reply to its latest note."""
    # The reply's turnComplete reached the session, so a note may go at once; a tool
    # response from TARS is the proof that everything before it was handled.
    call_id = model.send_tool_call("list_active_sessions", {})
    model.wait_for_tool_response(call_id, timeout=_WAIT)


def _one(sender: LiveConnection, target: LiveConnection, tool: str, args: dict[str, str]) -> float:
    before = len(target.client_contents)
    sent_at = time.monotonic()
    call_id = sender.send_tool_call(tool, args)
    note = target.wait_for_client_content(count=before + 1, timeout=_WAIT)
    sender.wait_for_tool_response(call_id, timeout=_WAIT)
    _wait_idle(target)
    return note.at - sent_at


def render_table(result: MessagingBenchmark) -> str:
    rows = [
        ("live sessions", f"{result.sessions}"),
        ("messages timed", f"{result.messages}"),
        ("tool call → note at target model p50", f"{result.p50_ms} ms"),
        ("tool call → note at target model p99", f"{result.p99_ms} ms"),
        ("  take_message p99", f"{result.take_message_p99_ms} ms"),
        ("  send_message_to_session p99", f"{result.send_message_to_session_p99_ms} ms"),
        ("slowest", f"{result.max_ms} ms"),
        (
            "limit (p99)",
            f"{P99_LIMIT_MS:g} ms, {'met' if result.met else 'NOT met'}",
        ),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def print_result(result: MessagingBenchmark, *, as_json: bool, stdout: TextIO) -> None:
    stdout.write((json.dumps(asdict(result)) if as_json else render_table(result)) + "\n")
