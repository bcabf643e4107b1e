"""``python run.py bench cluster``: two daemons on one PostgreSQL database, measured.

Each daemon is a ``python run.py`` of its own on a throwaway PostgreSQL; the Twilio and Gemini
stand-ins run in this process. Two parts, each of which can run alone:

* note latency: the owner's call on daemon B, a caller's call on daemon A; the caller's model
  calls ``take_message`` once per note, each after the previous note reached the owner's model
  and its turn ended (so each note finds an idle call at a turn boundary). The figure is the
  time from the tool call leaving A's model connection to the note reaching B's; each note is
  counted at the owner's model to show it arrived exactly once, and none by SMS.
* kill and take-over, in rounds: the owner's call on A holds a caller's note while its model
  speaks; A is killed with SIGKILL; B takes A over and texts the note to the owner. Each round
  counts the SMS sent (one), the notes duplicated and lost, and the seconds from the kill to
  the SMS; a third daemon started on the database afterwards must send nothing again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from tars_actors.ops.bench_messaging import P99_LIMIT_MS
from tars_actors.runtime.log import configure_logging, reset_logging
from tars_actors.sim._waiting import wait_until
from tars_actors.sim.gemini import LiveConnection
from tars_actors.sim.postgres import (
    PostgresServer,
    create_database,
    drop_database,
    throwaway_server,
)
from tars_actors.sim.process import DaemonProcess
from tars_actors.sim.rig import WAIT, Rig, notes_saying
from tars_actors.sim.twilio_api import Operation

__all__ = [
    "ClusterBenchmark",
    "NoteLatency",
    "TakeOverRound",
    "cluster_benchmark",
    "main",
    "render_table",
]

#: The shortest lease the settings allow (a heartbeat a second): take-over in seconds.
LEASE_SECONDS = 3
CALLER = "+15555550777"
#: How long a note may take to be texted after a kill before it counts as lost.
_TAKE_OVER_WAIT = WAIT + 3 * LEASE_SECONDS
#: The hops a note takes, each the log line (and the daemon writing it) that ends it.
_HOPS = (
    ("tool.called", "a", "tool call → A's call runs take_message"),
    ("router.recorded", "a", "→ A's Router records the row"),
    ("router.handed_to_member", "a", "→ A's Router wakes B (NOTIFY)"),
    ("router.handed_to_call", "b", "→ B's Router hands it to the owner's call"),
    ("at model", "", "→ note at the owner's model"),
)


@dataclass(frozen=True, slots=True)
class Hop:
    """One stage of a note's way, from the previous one, in milliseconds."""

    stage: str
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True, slots=True)
class NoteLatency:
    messages: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    delivered_once: int
    duplicates: int
    lost: int
    by_sms: int
    #: Where the time goes, from the daemons' log lines (clocks of one machine).
    hops: tuple[Hop, ...]

    @property
    def met(self) -> bool:
        return self.p99_ms <= P99_LIMIT_MS


@dataclass(frozen=True, slots=True)
class TakeOverRound:
    round: int
    sms: int
    duplicates: int
    lost: int
    #: From the SIGKILL to the SMS request at Twilio; None when none came.
    kill_to_sms_s: float | None
    #: How B knew A was gone: "process gone" (same machine: at B's next heartbeat) or
    #: "lease" (A's heartbeat older than the lease, as across machines).
    why: str | None

    @property
    def once(self) -> bool:
        return self.sms == 1 and self.duplicates == 0 and self.lost == 0


@dataclass(frozen=True, slots=True)
class ClusterBenchmark:
    lease_seconds: int
    notes: NoteLatency | None
    rounds: tuple[TakeOverRound, ...]

    @property
    def duplicates(self) -> int:
        return sum(r.duplicates for r in self.rounds)

    @property
    def lost(self) -> int:
        return sum(r.lost for r in self.rounds)

    def take_over_seconds(self) -> tuple[float, float] | None:
        """p50 and max from kill to SMS over the rounds that sent one."""
        seconds = [r.kill_to_sms_s for r in self.rounds if r.kill_to_sms_s is not None]
        if not seconds:
            return None
        return round(float(np.percentile(seconds, 50)), 2), round(max(seconds), 2)

    @property
    def met(self) -> bool:
        notes_ok = self.notes is None or (
            self.notes.met and self.notes.delivered_once == self.notes.messages
        )
        return notes_ok and all(r.once for r in self.rounds)

    def as_dict(self) -> dict[str, Any]:
        taken = self.take_over_seconds()
        return {
            "benchmark": "cluster",
            "lease_seconds": self.lease_seconds,
            "notes": None if self.notes is None else asdict(self.notes),
            "p99_limit_ms": P99_LIMIT_MS,
            "take_over": {
                "rounds": [asdict(r) for r in self.rounds],
                "total": {
                    "rounds": len(self.rounds),
                    "sms": sum(r.sms for r in self.rounds),
                    "duplicates": self.duplicates,
                    "lost": self.lost,
                    "kill_to_sms_p50_s": None if taken is None else taken[0],
                    "kill_to_sms_max_s": None if taken is None else taken[1],
                },
            },
            "met": self.met,
        }


def cluster_benchmark(messages: int = 100, rounds: int = 10) -> ClusterBenchmark:
    """Time ``messages`` notes across two daemons, then kill and take over ``rounds`` times."""
    if messages < 0 or rounds < 0:
        raise ValueError("messages and rounds must be 0 or more")
    if not messages and not rounds:
        return ClusterBenchmark(lease_seconds=LEASE_SECONDS, notes=None, rounds=())
    with (
        tempfile.TemporaryDirectory(prefix="tars-bench-cluster-") as tmp,
        _quiet_logging(Path(tmp)),
        throwaway_server() as server,
    ):
        root = Path(tmp)
        notes = _note_latency(server, root / "notes", messages) if messages else None
        taken = tuple(
            _take_over_round(server, root / f"round-{number}", number)
            for number in range(1, rounds + 1)
        )
    return ClusterBenchmark(lease_seconds=LEASE_SECONDS, notes=notes, rounds=taken)


@contextlib.contextmanager
def _quiet_logging(directory: Path) -> Iterator[None]:
    """This process's own log lines (the stand-ins') go to a file, never into the output."""
    with (directory / "bench.log").open("w") as stream:
        configure_logging(level="warning", format="json", stream=stream)
        try:
            yield
        finally:
            reset_logging()


@contextlib.contextmanager
def _cluster_rig(server: PostgresServer, directory: Path) -> Iterator[Rig]:
    """The stand-ins and a fresh database on ``server`` for daemons to share."""
    directory.mkdir(parents=True)
    name, url = create_database(server)
    try:
        extra: dict[str, dict[str, int | str]] = {"cluster": {"lease_seconds": LEASE_SECONDS}}
        with Rig(directory, extra, database_url=url) as rig:
            yield rig
    finally:
        drop_database(server, name)


# --- part 1: a note across daemons ---------------------------------------------------------


def _note_latency(server: PostgresServer, directory: Path, messages: int) -> NoteLatency:
    with _cluster_rig(server, directory) as rig:
        a, port_a, _ = rig.member()
        b, port_b, _ = rig.member()
        try:
            calls = rig.owner_and_caller(port_b, port_a, CALLER)
            owner_model, caller_model = calls.owner_model, calls.caller_model
            _turn_ends(owner_model)
            # text: (tool call id, sent at, the wall clock less the monotonic one then)
            sent: dict[str, tuple[str, float, float]] = {}
            arrived: dict[str, float] = {}
            for number in range(1, messages + 1):
                text = _note(number)
                after = len(owner_model.client_contents)
                sent_at = time.monotonic()  # the stand-in's clock for what it receives
                call_id = caller_model.send_tool_call("take_message", {"message": text})
                sent[text] = (call_id, sent_at, time.time() - time.monotonic())
                with contextlib.suppress(TimeoutError):  # lost: counted below
                    arrived[text] = _arrival(owner_model, text, after)
                caller_model.wait_for_tool_response(call_id, timeout=WAIT)
                _turn_ends(owner_model)
            rig.heartbeats(2)  # each beat sweeps: a note sent twice would show by now
            counts = [notes_saying(owner_model, _note(n)) for n in range(1, messages + 1)]
            by_sms = len(rig.twilio.requests_for(Operation.MESSAGES_CREATE))
            ids = {text: m.id for m in rig.messages() for text in sent if text in m.body}
            _hang_up_all(rig, [calls.owner, calls.caller])
        finally:
            a.stop()
            b.stop()
    latencies_ms = np.asarray([arrived[t] - sent[t][1] for t in arrived]) * 1000
    if not len(latencies_ms):
        latencies_ms = np.asarray([float("nan")])
    return NoteLatency(
        messages=messages,
        p50_ms=_ms(latencies_ms, 50),
        p95_ms=_ms(latencies_ms, 95),
        p99_ms=_ms(latencies_ms, 99),
        max_ms=round(float(latencies_ms.max()), 2),
        delivered_once=sum(count == 1 for count in counts),
        duplicates=sum(count - 1 for count in counts if count > 1),
        lost=sum(count == 0 for count in counts),
        by_sms=by_sms,
        hops=_hops(a, b, sent, arrived, ids),
    )


def _note(number: int) -> str:
    return f"Note {number}."


def _ms(values: Any, percentile: float) -> float:
    return round(float(np.percentile(values, percentile)), 2)


def _arrival(model: LiveConnection, text: str, after: int) -> float:
    """When ``text`` first reached ``model`` as a note after its first ``after`` notes."""
    found: list[float] = []

    def arrived(connection: LiveConnection) -> bool:
        found[:] = [c.at for c in connection.client_contents[after:] if text in c.text]
        return bool(found)

    model.wait_for(arrived, WAIT, f"the note {text!r}")
    return found[0]


def _turn_ends(model: LiveConnection) -> None:
    """The model ends its turn, and its call has heard so: the next note goes at once."""
    model.send_turn_complete()
    # A tool response proves the call handled everything the model sent before it.
    call_id = model.send_tool_call("list_active_sessions", {})
    model.wait_for_tool_response(call_id, timeout=WAIT)


def _hops(
    a: DaemonProcess,
    b: DaemonProcess,
    sent: dict[str, tuple[str, float, float]],
    arrived: dict[str, float],
    ids: dict[str, int],
) -> tuple[Hop, ...]:
    """Each note's way split at the daemons' log lines; the stand-in's monotonic times are
    put on the wall clock the log lines carry, as the two stood when the note was sent (a
    wall clock being slewed drifts from the monotonic one by milliseconds a minute)."""
    daemons = {"a": a, "b": b}
    logged: dict[tuple[str, object], float] = {}
    for event, daemon, _ in _HOPS:
        if daemon:
            for record in daemons[daemon].events(event):
                key = record.get("call_id") if event == "tool.called" else record.get("message_id")
                logged.setdefault((event, key), _wall(record))
    gaps: list[list[float]] = [[] for _ in _HOPS]
    for text, at in arrived.items():
        call_id, sent_at, offset = sent[text]
        times = [sent_at + offset]
        for event, daemon, _ in _HOPS:
            key = call_id if event == "tool.called" else ids.get(text)
            times.append(logged.get((event, key), math.nan) if daemon else at + offset)
        if not any(math.isnan(t) for t in times):  # every line found
            for index in range(len(_HOPS)):
                gaps[index].append((times[index + 1] - times[index]) * 1000)
    return tuple(
        Hop(stage=label, p50_ms=_ms(gap, 50), p99_ms=_ms(gap, 99))
        for (_, _, label), gap in zip(_HOPS, gaps, strict=True)
        if gap
    )


def _wall(record: dict[str, Any]) -> float:
    return datetime.fromisoformat(str(record["timestamp"])).timestamp()


def _hang_up_all(rig: Rig, phones: Sequence[Any]) -> None:
    """Hang up, so that stopping a daemon does not wait out its calls' drain grace."""
    for phone in phones:
        phone.hang_up()
    wait_until(
        lambda: all(s.status == "ended" for s in rig.sessions()),
        "every call to end",
        timeout=WAIT,
    )


# --- part 2: a daemon killed while its call holds a note -----------------------------------


def _take_over_round(server: PostgresServer, directory: Path, number: int) -> TakeOverRound:
    text = f"Round {number} note."
    with _cluster_rig(server, directory) as rig:
        a, port_a, a_id = rig.member()
        b, port_b, _ = rig.member()
        kill_to_sms: float | None = None
        why: str | None = None
        try:
            calls = rig.note_held(port_a, port_b, CALLER, text, a_id)
            killed_at = time.monotonic()
            a.kill()
            with contextlib.suppress(TimeoutError):  # lost: counted below
                lost = b.wait_for_event("cluster.daemon_lost", timeout=_TAKE_OVER_WAIT)
                why = str(lost.get("why"))
                sms = rig.twilio.wait_for_request(
                    Operation.MESSAGES_CREATE, timeout=_TAKE_OVER_WAIT
                )
                kill_to_sms = round(sms.at - killed_at, 2)
            _hang_up_all(rig, [calls.caller])
        finally:
            a.kill()
            b.stop()
        # A third member on the same database takes up what is left and sweeps: nothing of
        # the note's may go out again.
        c, _, _ = rig.member()
        try:
            rig.heartbeats(1)
        finally:
            c.stop()
        sms_sent = len(rig.twilio.requests_for(Operation.MESSAGES_CREATE))
        at_models = sum(notes_saying(model, text) for model in rig.gemini.connections)
    return TakeOverRound(
        round=number,
        sms=sms_sent,
        duplicates=max(0, sms_sent - 1) + (at_models if sms_sent else max(0, at_models - 1)),
        lost=int(sms_sent == 0 and at_models == 0),
        kill_to_sms_s=kill_to_sms,
        why=why,
    )


# --- output ---------------------------------------------------------------------------------


def render_table(result: ClusterBenchmark) -> str:
    lines = [
        "cluster benchmark: daemons A and B, each `python run.py`, on one throwaway "
        f"PostgreSQL ([cluster] lease_seconds = {result.lease_seconds})",
    ]
    if result.notes is not None:
        lines += ["", *_notes_table(result.notes)]
    if result.rounds:
        lines += ["", *_rounds_table(result)]
    return "\n".join(lines)


def _notes_table(notes: NoteLatency) -> list[str]:
    rows = [
        ("notes timed", f"{notes.messages}"),
        ("p50 / p95 / p99", f"{notes.p50_ms} / {notes.p95_ms} / {notes.p99_ms} ms"),
        ("slowest", f"{notes.max_ms} ms"),
        ("delivered exactly once", f"{notes.delivered_once} of {notes.messages}"),
        ("duplicates / lost", f"{notes.duplicates} / {notes.lost}"),
        ("sent by SMS", f"{notes.by_sms}"),
        ("limit (p99)", f"{P99_LIMIT_MS:g} ms, {'met' if notes.met else 'NOT met'}"),
    ]
    width = max(len(name) for name, _ in rows)
    lines = [
        "cross-daemon note latency: the caller's take_message on A → the note at the "
        "owner's model on B (idle, at a turn boundary)",
        *(f"  {name:<{width}}  {value}" for name, value in rows),
    ]
    if notes.hops:
        lines.append("  where the time goes (from the daemons' log lines), p50 / p99:")
        width = max(len(hop.stage) for hop in notes.hops)
        lines += [
            f"    {hop.stage:<{width}}  {hop.p50_ms:>8.2f} / {hop.p99_ms:.2f} ms"
            for hop in notes.hops
        ]
    return lines


def _rounds_table(result: ClusterBenchmark) -> list[str]:
    lines = [
        "kill and take-over: the owner's call on A holds a caller's note, A gets SIGKILL, "
        "B takes over and texts it; then a third daemon starts on the same database",
        f"  {'round':>5}  {'sms':>3}  {'duplicates':>10}  {'lost':>4}  {'kill → SMS':>10}  "
        "A lost by",
    ]
    for r in result.rounds:
        seconds = "-" if r.kill_to_sms_s is None else f"{r.kill_to_sms_s:.2f} s"
        lines.append(
            f"  {r.round:>5}  {r.sms:>3}  {r.duplicates:>10}  {r.lost:>4}  {seconds:>10}  "
            f"{r.why or '-'}"
        )
    taken = result.take_over_seconds()
    seconds = "no SMS" if taken is None else f"p50 {taken[0]:.2f} s, max {taken[1]:.2f} s"
    lines.append(
        f"  total: {len(result.rounds)} rounds, duplicates {result.duplicates}, "
        f"lost {result.lost}, kill → SMS {seconds}"
    )
    return lines


def main(argv: Sequence[str], *, stdout: TextIO | None = None) -> int:
    """Run the benchmark; exit 0 if every note went once and the p99 limit holds, else 1."""
    parser = argparse.ArgumentParser(
        prog="python run.py bench cluster", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--messages", type=int, default=100, help="notes timed (0: skip)")
    parser.add_argument("--rounds", type=int, default=10, help="kill rounds (0: skip)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(list(argv))
    if args.messages < 0 or args.rounds < 0:
        parser.error("--messages and --rounds must be 0 or more")
    out = stdout or sys.stdout
    result = cluster_benchmark(messages=args.messages, rounds=args.rounds)
    print(json.dumps(result.as_dict(), indent=2) if args.json else render_table(result), file=out)
    return 0 if result.met else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
