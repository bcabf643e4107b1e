"""The model stand-in of the benchmarks in a process of its own: the echoing Gemini Live
stand-in by default, and what it saw of each call (audio arrivals, echo departures)."""

from __future__ import annotations

import contextlib
import gc
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tars_actors.sim.gemini import GeminiLiveStandIn, LiveBehaviour, LiveConnection
from tars_actors.sim.tls import create_local_certificate

__all__ = [
    "ModelStandInProcess",
    "ModelTimes",
    "caller_of",
    "serve_model_stand_in",
    "without_collection_pauses",
]


class ModelStandInProcess:
    """A Gemini Live stand-in in a process of its own (by default the echoing one).

    The load generator's callers and the stand-in each need most of a core at 50 calls;
    in one process they would share one GIL and time each other's frames late.
    """

    def __init__(self, directory: Path, command: Sequence[str] = ("tars_actors.ops.load",)) -> None:
        """``command``: the module that serves it, and options ahead of ``--model-stand-in``."""
        self.process = subprocess.Popen(  # noqa: S603 (our own modules, fixed arguments)
            [sys.executable, "-m", *command, "--model-stand-in", str(directory)],
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

    def totals(self) -> str:
        """Audio bytes received and echoed so far, per caller (a fingerprint of progress)."""
        return self._ask("totals")

    def arrivals(self) -> dict[str, ModelTimes]:
        report = json.loads(self._ask("report"))
        return {caller: ModelTimes(*lists) for caller, lists in report.items()}

    def stop(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def without_collection_pauses() -> Iterator[None]:
    """No cyclic garbage collection while the calls run, here on the measuring side.

    The callers keep a record of every frame they send and hear; a full collection over
    those records stops this process's loop for 50-100 ms (measured with gc.callbacks),
    and every caller's frames would go out that late: the load generator's own stall,
    counted as frames lost and latency added. Reference counting still frees almost
    everything; what a cycle holds waits until the end of the run.
    """
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def serve_model_stand_in(directory: Path, behaviour: LiveBehaviour | None = None) -> int:
    """The child side of :class:`ModelStandInProcess`: answers ``count`` and ``report``."""
    certificate = create_local_certificate(directory / "tls")
    # By default one endless echo turn: turn ends would mark and flush, shifting byte
    # positions.
    behaviour = behaviour or LiveBehaviour(
        echo=True, echo_turn_frames=10**9, turn_reply=None, record_audio=False
    )
    with (
        without_collection_pauses(),
        GeminiLiveStandIn(certificate, behaviour=behaviour) as gemini,
    ):
        print(json.dumps({"base_url": gemini.base_url, "ca_file": gemini.ca_file}), flush=True)
        for command in sys.stdin:
            match command.strip():
                case "count":
                    print(len(gemini.connections), flush=True)
                case "totals":
                    progress = {
                        caller: connection.audio_arrivals[1][-1:].tolist()
                        + connection.echo_departures[1][-1:].tolist()
                        for caller, connection in _calls(gemini.connections).items()
                    }
                    print(json.dumps(progress), flush=True)
                case "report":
                    report = {}
                    for caller, connection in _calls(gemini.connections).items():
                        times, totals = connection.audio_arrivals
                        echo_times, echo_totals = connection.echo_departures
                        report[caller] = (
                            list(times),
                            list(totals),
                            list(echo_times),
                            list(echo_totals),
                        )
                    print(json.dumps(report), flush=True)
    return 0


def _calls(connections: Sequence[LiveConnection]) -> dict[str, LiveConnection]:
    """Each caller's model connection: the one that carried the most of its audio.

    With several TARS workers a call's webhook and its stream may reach different ones,
    and each opens a model connection for the call; only the stream's carries audio.
    """
    calls: dict[str, LiveConnection] = {}
    for connection in connections:
        caller = caller_of(connection)
        kept = calls.get(caller)
        if kept is None or _audio_bytes(connection) > _audio_bytes(kept):
            calls[caller] = connection
    return calls


def _audio_bytes(connection: LiveConnection) -> int:
    totals = connection.audio_arrivals[1]
    return int(totals[-1]) if len(totals) else 0


def caller_of(connection: LiveConnection) -> str:
    # Each session's instructions name its caller: "The caller, +1555…, is not someone…".
    instruction = connection.system_instruction
    marker = "The caller, "
    at = instruction.index(marker) + len(marker)
    return instruction[at : instruction.index(",", at)]


@dataclass(frozen=True, slots=True)
class ModelTimes:
    """One call as the model stand-in saw it: audio arrivals and echo departures, each
    as (time, received audio bytes so far)."""

    arrival_times: list[float]
    arrival_totals: list[int]
    echo_times: list[float]
    echo_totals: list[int]
