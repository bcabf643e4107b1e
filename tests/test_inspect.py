"""`python run.py inspect`: the log's state model, the screen, call stories and following."""

from __future__ import annotations

import io
import json
import os
import random
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pykka
import pytest

from tars_actors.ops.demo import run_demo
from tars_actors.ops.inspect import (
    CLEAR_SCREEN,
    SEPARATOR,
    STOPPED_ACTORS_KEPT,
    FileTail,
    LinesSource,
    LogState,
    StoryError,
    StoryFilter,
    dashboard,
    main,
    parse_line,
    render,
    story,
    story_line,
    tell_story,
)
from tars_actors.runtime.log import reset_logging

T0 = datetime(2026, 3, 1, 9, 0, 0, tzinfo=UTC)
OWNER_SID = "CA" + "1" * 32
OTHER_SID = "CA" + "2" * 32

#: Lines no reader can use: each must be counted as malformed.
GARBAGE = [
    "not json at all",
    "[1, 2]",
    '{"event": 5}',
    '{"timestamp": "2026-03-01T09:00:00Z", "event": "call.started", "call_sid": ',
    "\x00\x07\ufffd\ufffd binary \ufffd",
    '"just a string"',
    "{}",
    "null",
    '{"event": ""}',
    "[[[[[[[[[[",
]
#: Lines that are objects with an event but wrong-typed or missing fields: used, not fatal.
ODD_BUT_USABLE = [
    '{"event": "actor.stats", "actor": 5, "actor_id": [], "mailbox_depth": "deep"}',
    '{"event": "call.started", "call_sid": 7, "timestamp": 12, "level": null}',
    '{"event": "call.summary", "call_sid": ["CA1"], "turns": "many", "actor": "CallSession"}',
    '{"event": "model.connected", "timestamp": "yesterday", "call_sid": null}',
]


def line(event: str, at: float = 0.0, *, level: str = "info", **fields: Any) -> str:
    """One JSON log line as TARS writes it, ``at`` seconds after T0."""
    stamp = (T0 + timedelta(seconds=at)).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {"timestamp": stamp, "level": level, "logger": "tars.test", "event": event, **fields}
    )


def call_line(event: str, at: float, sid: str = OWNER_SID, **fields: Any) -> str:
    """A line of a CallSession, with its bound context."""
    context = {
        "session": "Call with Owner (main)" if sid == OWNER_SID else "Call with +15550001",
        "actor": "CallSession",
        "actor_id": sid,
        "call_sid": sid,
        "session_id": 1 if sid == OWNER_SID else 2,
        "permission": "owner" if sid == OWNER_SID else "unknown",
    }
    return line(event, at, **fields, **context)


def state_of(*lines: str) -> LogState:
    state = LogState()
    state.feed_all(lines)
    return state


# -- a real demo run, recorded once --------------------------------------------------


@pytest.fixture(scope="module")
def demo_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("demo")
    try:
        assert run_demo(directory, io.StringIO()) == 0
    finally:
        reset_logging()
        pykka.ActorRegistry.stop_all()
    return directory / "tars.log"


def records_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in path.read_text(encoding="utf-8").splitlines()]


def calls_of(path: Path) -> dict[str, dict[str, Any]]:
    """call SID -> its call.started record, in the order the calls started."""
    return {
        r["call_sid"]: r
        for r in records_of(path)
        if r["event"] == "call.started" and r.get("actor") == "CallSession"
    }


def run(argv: list[str], stdin: io.StringIO | None = None) -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, stdout=out, stdin=stdin)
    return code, out.getvalue()


def test_a_demo_log_shows_every_actor_and_every_call(demo_log: Path) -> None:
    code, out = run([str(demo_log), "--once"])

    assert code == 0
    for kind in ("Supervisor", "CallSupervisor", "Router", "Telephony", "ActorMonitor"):
        assert f"\n  {kind} " in out
    calls = calls_of(demo_log)
    assert len(calls) >= 2  # the owner and an unknown caller, at least
    assert out.count("\n  CallSession ") == len(calls)
    assert out.count("\n  GeminiConnection ") == len(calls)
    for sid, started in calls.items():
        assert sid[:14] in out
        assert started["session"][:33] in out
        assert started["caller"] in out
    assert " 0 malformed" in out
    assert f"calls: 0 live, {len(calls)} ended" in out
    assert f"RECENTLY ENDED: {len(calls)} of {len(calls)}" in out
    assert "caller hung up" in out
    # The demo stops TARS at the end: every actor is reported stopped, none live.
    assert "ACTORS: 0 live," in out
    assert "daemon stopped (pid " in out


def test_garbage_lines_are_counted_and_change_nothing_else(demo_log: Path, tmp_path: Path) -> None:
    clean = demo_log.read_text(encoding="utf-8").splitlines()
    mixed: list[str] = []
    junk = [*GARBAGE, *ODD_BUT_USABLE]
    for index, good in enumerate(clean):
        mixed.append(good)
        if index % 4 == 0 and junk:
            mixed.append(junk.pop(0))
    mixed += junk
    dirty = tmp_path / "dirty.log"
    # Raw bytes too: invalid UTF-8 must not stop the reading.
    dirty.write_bytes("\n".join(mixed).encode("utf-8") + b"\n\xff\xfe\x80 not utf-8 {\n" + b"\n\n")

    code, out = run([str(dirty)])
    _, clean_out = run([str(demo_log)])

    assert code == 0
    assert f" {len(GARBAGE) + 1} malformed" in out
    assert f"{len(clean) + len(GARBAGE) + 1 + len(ODD_BUT_USABLE)} line(s)" in out
    # Blank lines are not lines; the odd-but-usable ones without a time are counted.
    assert "4 without a timestamp" in out
    assert out.split("\nACTORS:")[1] == clean_out.split("\nACTORS:")[1]


def test_a_story_from_a_log_with_garbage_still_works(
    demo_log: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dirty = tmp_path / "dirty.log"
    text = demo_log.read_text(encoding="utf-8")
    dirty.write_text("\n".join([*GARBAGE, text, *ODD_BUT_USABLE]), encoding="utf-8")
    sid = next(iter(calls_of(demo_log)))

    code, out = run([str(dirty), "--call", sid])

    assert code == 0
    assert "call.summary" in out
    assert f"skipped {len(GARBAGE)} malformed line(s)" in capsys.readouterr().err


def story_key(record: dict[str, Any]) -> tuple[str, str]:
    return record["timestamp"].replace("T", " ")[:23], record["event"]


def printed_keys(out: str) -> Counter[tuple[str, str]]:
    """(time, event) of each story line printed."""
    keys: Counter[tuple[str, str]] = Counter()
    for printed in out.splitlines():
        stamp, rest = printed[:23], printed[23:].split()
        event = rest[0] if rest[0] not in ("WARNING", "ERROR", "CRITICAL") else rest[1]
        keys[(stamp, event)] += 1
    return keys


def mentions(path: Path, *needles: str) -> Counter[tuple[str, str]]:
    """(time, event) of each raw log line containing one of ``needles`` (JSON-escaped)."""
    escaped = [json.dumps(n)[1:-1] for n in needles]
    keys: Counter[tuple[str, str]] = Counter()
    for raw in path.read_text(encoding="utf-8").splitlines():
        if any(n in raw for n in escaped):
            keys[story_key(json.loads(raw))] += 1
    return keys


def test_call_prints_exactly_that_calls_lines_in_order(demo_log: Path) -> None:
    calls = calls_of(demo_log)
    sid, started = next((s, c) for s, c in calls.items() if c["permission"] == "owner")

    code, out = run([str(demo_log), "--call", sid])

    assert code == 0
    # Every line that names the call, its stream or its session, and nothing else.
    expected = mentions(demo_log, sid, started["stream_sid"], started["session"])
    assert printed_keys(out) == expected
    for other_sid, other in calls.items():
        if other_sid != sid:
            assert other_sid not in out
            assert other["session"] not in out
            assert other["stream_sid"] not in out
    # In the log's own order (threads may write a line a millisecond out of time order).
    escaped = [json.dumps(n)[1:-1] for n in (sid, started["stream_sid"], started["session"])]
    in_log_order = [
        story_key(json.loads(raw))[0]
        for raw in demo_log.read_text(encoding="utf-8").splitlines()
        if any(n in raw for n in escaped)
    ]
    assert [printed[:23] for printed in out.splitlines()] == in_log_order
    assert "server.call_admitted" in out.splitlines()[0]
    assert " call.summary " in out
    assert f"call from {started['caller']} (inbound) as owner" in out


def test_session_prints_exactly_that_sessions_lines(demo_log: Path) -> None:
    calls = calls_of(demo_log)
    sid, stranger = next((s, c) for s, c in calls.items() if c["permission"] == "unknown")
    name = stranger["session"]

    # The exact name, the session id, and a part of the name in another case.
    for wanted in (name, str(stranger["session_id"]), name.upper()):
        code, out = run([str(demo_log), "--session", wanted])
        assert code == 0, wanted
        expected = mentions(demo_log, sid, stranger["stream_sid"], name)
        assert printed_keys(out) == expected, wanted
        for other_sid, other in calls.items():
            if other_sid != sid:
                assert other_sid not in out
                assert other["session"] not in out


def test_a_call_sid_prefix_picks_one_call_or_is_refused(
    demo_log: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sid = next(iter(calls_of(demo_log)))

    code, by_prefix = run([str(demo_log), "--call", sid[:14]])
    assert code == 0
    assert by_prefix == run([str(demo_log), "--call", sid])[1]

    assert run([str(demo_log), "--call", "CA"]) == (2, "")
    assert "matches" in capsys.readouterr().err
    assert run([str(demo_log), "--call", "CAnothing"]) == (1, "")
    assert "no lines for call 'CAnothing'" in capsys.readouterr().err


# -- the state model, line by line ----------------------------------------------------


def test_actor_stats_fill_the_actor_table() -> None:
    state = state_of(
        line(
            "actor.stats",
            30,
            actor="Router",
            actor_id="router",
            mailbox_depth=3,
            peak_depth=7,
            handled=42,
            busy_ms=1234.5,
            busy_ratio=0.25,
            current="RouteMessage",
            current_ms=12.0,
        )
    )

    router = state.actors["router"]
    assert (router.mailbox_depth, router.peak_depth, router.handled) == (3, 7, 42)
    assert (router.busy_ms, router.busy_ratio, router.current) == (1234.5, 0.25, "RouteMessage")
    row = next(r for r in render(state).splitlines() if r.startswith("  Router "))
    assert row.split() == [
        "Router",
        "router",
        "running",
        "3",
        "7",
        "42",
        "1.2s",
        "25.0%",
        "0",
        "RouteMessage",
        "12ms",
    ]


def test_a_per_call_actor_is_told_apart_by_its_call() -> None:
    stats = {"mailbox_depth": 0, "peak_depth": 1, "handled": 5, "busy_ms": 1.0, "busy_ratio": 0.0}
    state = state_of(
        call_line("call.started", 0, caller="+1555"),
        *(
            line(
                "actor.stats",
                1,
                actor="GeminiConnection",
                actor_id="model-1",
                call_sid=sid,
                session="x",
                **stats,
            )
            for sid in (OWNER_SID, OTHER_SID)
        ),
    )

    assert {f"{OWNER_SID}/model-1", f"{OTHER_SID}/model-1"} <= set(state.actors)
    # The monitor's line about a call's actor is not an event of the call.
    assert state.sessions[OWNER_SID].last_event == "call.started"


@pytest.mark.parametrize("with_counts", [True, False])
def test_a_restart_is_counted(with_counts: bool) -> None:
    def sup(event: str, at: float, count: int, **fields: Any) -> str:
        if with_counts:
            fields["restart_count"] = count
        return line(
            event,
            at,
            supervisor="root",
            child_id="router",
            actor="Supervisor",
            actor_id="root",
            **fields,
        )

    state = state_of(
        sup("supervisor.child_started", 0, 0),
        line("router.recorded", 1, actor="Router", actor_id="router", message_id=1, target="x"),
        sup("supervisor.child_exited", 2, 0, level="error", reason="running: RuntimeError: boom"),
    )
    router = state.actors["router"]
    assert (router.state, router.restarts, router.detail) == (
        "crashed",
        0,
        "running: RuntimeError: boom",
    )
    assert state.problems[-1].event == "supervisor.child_exited"

    state.feed(sup("supervisor.restarting", 2.1, 1))
    state.feed(sup("supervisor.child_started", 2.2, 1))

    assert (router.kind, router.state, router.restarts) == ("Router", "running", 1)
    row = next(r for r in render(state).splitlines() if r.startswith("  Router "))
    assert row.split()[2:3] == ["running"]
    assert row.split()[-2:] == ["1", "-"]


def test_the_model_connection_goes_connected_reconnecting_connected() -> None:
    state = state_of(
        call_line("call.started", 0, caller="+15550100", direction="inbound"),
        call_line("model.connecting", 0.1, connection_id=1, resuming=False),
    )
    session = state.sessions[OWNER_SID]
    assert (session.model, session.caller, session.permission) == (
        "connecting",
        "+15550100",
        "owner",
    )

    state.feed(call_line("model.connected", 0.2, connection_id=1, resumed=False))
    assert session.model == "connected"

    state.feed(
        call_line(
            "model.disconnected",
            10,
            level="warning",
            connection_id=1,
            reason="socket closed",
            expected=False,
            unsent=0,
        )
    )
    assert session.model == "disconnected"
    state.feed(
        call_line(
            "model.reconnecting",
            10,
            level="warning",
            connection_id=1,
            reason="socket closed",
            attempt=1,
            delay=0.5,
            resumable=True,
        )
    )
    assert (session.model, session.reconnects) == ("reconnecting", 1)
    state.feed(call_line("model.connecting", 10.5, connection_id=2, resuming=True))
    assert session.model == "reconnecting"
    state.feed(call_line("model.connected", 10.7, connection_id=2, resumed=True))

    assert (session.model, session.reconnects, session.connection_id) == ("connected", 1, 2)
    screen = render(state)
    row = next(r for r in screen.splitlines() if r.startswith("  Call with Owner (main)"))
    assert row.split()[4:11] == [
        OWNER_SID[:14],
        "+15550100",
        "owner",
        "10.7s",
        "connected",
        "1",
        "0",
    ]
    # The unexpected disconnect and the reconnect are warnings worth showing.
    assert [p.event for p in state.problems] == ["model.disconnected", "model.reconnecting"]
    assert "ERRORS AND WARNINGS: last 2 of 2" in screen


def test_a_rotation_counts_a_reconnect_and_keeps_the_call_connected() -> None:
    state = state_of(
        call_line("call.started", 0),
        call_line("model.connected", 0.2, connection_id=1),
        call_line("model.rotating", 600, from_connection=1),
        call_line("model.connecting", 600, connection_id=2, resuming=True),
        call_line("model.connected", 601, connection_id=2, resumed=True),
        call_line("model.disconnected", 601, connection_id=1, reason="rotated", expected=True),
    )

    session = state.sessions[OWNER_SID]
    assert (session.model, session.reconnects) == ("connected", 1)
    assert "10m01s" in render(state)


def test_a_call_ends_at_its_summary_and_stays_ended() -> None:
    state = state_of(
        call_line("call.started", 0, caller="+15550100"),
        call_line("call.started", 1, sid=OTHER_SID, caller="+15550001"),
        call_line("tool.called", 2, tool="send_message", call_id="c1", args={"to": "x"}),
        line("stream.closed", 5, call_sid=OWNER_SID, reason="stop", seconds=5.0),
        call_line(
            "call.summary",
            5,
            reason="caller hung up",
            duration_seconds=4.9,
            first_audio_ms=1104,
            turns=3,
            reconnects=0,
            tool_calls=1,
            tools_refused=0,
        ),
        # The model connection's last line comes after the summary.
        line(
            "model.disconnected",
            5.1,
            actor="GeminiConnection",
            actor_id="model-1",
            call_sid=OWNER_SID,
            session="Call with Owner (main)",
            connection_id=1,
            reason="the connection actor was stopped",
            expected=True,
        ),
    )

    assert list(state.sessions) == [OTHER_SID]
    (ended,) = state.ended
    assert (ended.call_sid, ended.end_reason, ended.turns, ended.tool_calls) == (
        OWNER_SID,
        "caller hung up",
        3,
        1,
    )
    assert state.actors[f"{OWNER_SID}/model-1"].state == "stopped"
    screen = render(state)
    assert "LIVE CALLS: 1" in screen
    assert "RECENTLY ENDED: 1 of 1" in screen
    ended_row = next(r for r in screen.splitlines() if r.startswith("  Call with Owner"))
    assert ended_row.split()[-8:] == [
        "4.9s",
        "1104ms",
        "3",
        "0",
        "09:00:05",
        "caller",
        "hung",
        "up",
    ]
    header = screen.split("RECENTLY ENDED: 1 of 1\n", 1)[1].splitlines()[0]
    assert "DURATION  FIRST AUDIO  TURNS" in header
    # The figure stands under its header.
    assert ended_row.index("1104ms") + len("1104ms") == header.index("TURNS") - 2
    # The live call's duration runs to the latest timestamp in the log.
    live_row = next(r for r in screen.splitlines() if r.startswith("  Call with +15550001"))
    assert " 4.1s " in live_row


def test_a_call_that_never_heard_the_model_shows_no_first_audio() -> None:
    state = state_of(
        call_line("call.started", 0, caller="+15550100"),
        call_line("call.summary", 3, reason="caller hung up", duration_seconds=3.0, turns=0),
    )
    assert state.ended[0].first_audio_ms is None
    screen = render(state)
    ended_row = next(r for r in screen.splitlines() if r.startswith("  Call with Owner"))
    assert ended_row.split()[-8:-6] == ["3.0s", "-"]


def test_a_calls_supervisor_exit_ends_a_call_without_summary() -> None:
    state = state_of(
        call_line("call.started", 0),
        line(
            "supervisor.child_exited",
            3,
            level="error",
            supervisor="calls",
            child_id=OWNER_SID,
            reason="running: ValueError: bad",
            errorContext="child_terminated",
            actor="CallSupervisor",
            actor_id="calls",
        ),
    )

    assert not state.sessions
    assert state.ended[0].end_reason == "actor exited: running: ValueError: bad"
    assert state.actors[OWNER_SID].state == "crashed"


def test_a_stuck_actor_is_flagged_until_it_moves_on() -> None:
    stats = {"actor": "Telephony", "actor_id": "telephony", "mailbox_depth": 4, "peak_depth": 4}
    state = state_of(
        line("actor.stats", 0, handled=9, current="HangUp", current_ms=11000.0, **stats),
        line(
            "actor.stuck",
            0.5,
            level="warning",
            message="HangUp",
            busy_seconds=11.5,
            actor="Telephony",
            actor_id="telephony",
            stack="...",
        ),
    )
    screen = render(state)
    row = next(r for r in screen.splitlines() if r.startswith("  Telephony "))
    assert row.split()[2] == "STUCK"
    assert "actor.stuck" in screen
    assert "stuck on HangUp for 11.5 s" in screen

    state.feed(line("actor.stats", 30, handled=10, current=None, **stats))
    assert state.actors["telephony"].stuck_on is None


def test_errors_are_listed_and_floods_of_warnings_only_counted() -> None:
    state = state_of(
        *(line("stream.frame_rejected", i, level="warning", reason="bad") for i in range(50)),
        line(
            "router.sms_failed",
            60,
            level="error",
            actor="Router",
            actor_id="router",
            message_id=4,
            error="timeout",
            code=20003,
        ),
        line(
            "daemon.start_failed",
            61,
            level="critical",
            exception=[{"exc_type": "OSError", "exc_value": "port in use", "frames": []}],
        ),
    )

    screen = render(state)
    assert "ERRORS AND WARNINGS: last 2 of 2" in screen
    assert "SMS for message 4 failed: timeout (code 20003)" in screen
    assert "daemon.start_failed" in screen
    assert "OSError: port in use" in screen
    assert "also: 50 stream.frame_rejected" in screen
    assert "1 error(s), 50 warning(s)" not in screen  # critical counts as an error too
    assert "2 error(s), 50 warning(s)" in screen


def test_daemon_stopped_stops_every_actor_and_call() -> None:
    state = state_of(
        line("daemon.started", 0, pid=42, port=8080),
        line("telephony.started", 0, actor="Telephony", actor_id="telephony"),
        call_line("call.started", 1),
        line("daemon.stopping", 2, signal="SIGTERM"),
    )
    assert "daemon stopping (pid 42, port 8080, SIGTERM)" in render(state)

    state.feed(line("daemon.stopped", 3))

    assert not state.sessions
    assert state.ended[0].end_reason == "daemon stopped"
    assert all(not actor.live for actor in state.actors.values())


def test_stopped_actors_are_dropped_beyond_a_limit() -> None:
    lines = [line("telephony.started", 0, actor="Telephony", actor_id="telephony")]
    for n in range(STOPPED_ACTORS_KEPT + 10):
        sid = f"CA{n:032d}"
        lines += [
            call_line("call.started", n, sid=sid),
            call_line("call.summary", n + 0.5, sid=sid, reason="done"),
            line(
                "supervisor.child_exited",
                n + 0.6,
                supervisor="calls",
                child_id=sid,
                reason="normal",
                actor="CallSupervisor",
                actor_id="calls",
            ),
        ]
    state = state_of(*lines)

    stopped = [a for a in state.actors.values() if not a.live]
    assert len(stopped) == STOPPED_ACTORS_KEPT
    assert state.actors["telephony"].live
    assert state.ended_total == STOPPED_ACTORS_KEPT + 10
    # A late line of a forgotten call's actor does not bring it back.
    state.feed(call_line("call.note_delivered", 99, sid=f"CA{0:032d}", message_ids=[1]))
    assert f"CA{0:032d}" not in state.actors
    assert not state.sessions


def test_malformed_lines_are_counted_not_fatal() -> None:
    state = state_of(*GARBAGE, *ODD_BUT_USABLE, "", "   ")

    assert (state.lines, state.malformed) == (len(GARBAGE) + len(ODD_BUT_USABLE), len(GARBAGE))
    assert parse_line('{"event": "x"}') == {"event": "x"}
    assert parse_line('{"event": ["x"]}') is None
    screen = render(state)
    assert f"{len(GARBAGE)} malformed" in screen
    assert "no timestamped lines yet" in screen


def test_render_of_nothing() -> None:
    screen = render(LogState(), source="x.log")
    assert screen.startswith("TARS inspect: x.log\n")
    assert "ACTORS: 0 live, 0 stopped; no actor.stats yet" in screen
    assert "LIVE CALLS: 0\n  none" in screen


def test_story_filter_by_name_includes_the_routers_lines() -> None:
    lines = [
        line("server.call_admitted", 0, call_sid=OWNER_SID),
        line("stream.started", 0.1, call_sid=OWNER_SID, stream_sid="MZ1", tracks=["inbound"]),
        call_line("call.started", 0.2, stream_sid="MZ1", caller="+1555", direction="inbound"),
        call_line("call.started", 0.3, sid=OTHER_SID, stream_sid="MZ2"),
        line(
            "router.handed_to_call",
            1,
            actor="Router",
            actor_id="router",
            message_id=3,
            session="Call with Owner (main)",
        ),
        line(
            "router.handed_to_call",
            1,
            actor="Router",
            actor_id="router",
            message_id=4,
            session="Call with +15550001",
        ),
        line("stream.frame_rejected", 2, level="warning", stream_sid="MZ1", reason="bad"),
        "garbage",
    ]

    told = story(lines, session="owner (MAIN)")

    assert [t.split()[2] for t in told] == [
        "server.call_admitted",
        "stream.started",
        "call.started",
        "router.handed_to_call",
        "WARNING",
    ]
    assert "message 3 handed to Call with Owner (main)" in told[3]
    assert "media frame rejected: bad" in told[4]
    assert story(lines, call=OTHER_SID[:5] + "2") == story(lines, session="2")
    with pytest.raises(StoryError, match="matches"):
        story(lines, session="call with")
    with pytest.raises(ValueError, match="exactly one"):
        StoryFilter()


# -- sources: stdin, missing files, following -----------------------------------------


def test_dash_reads_stdin(demo_log: Path) -> None:
    text = demo_log.read_text(encoding="utf-8")

    code, out = run(["-"], stdin=io.StringIO(text))
    _, from_file = run([str(demo_log)])

    assert code == 0
    assert out.startswith("TARS inspect: stdin\n")
    assert out.split("\n", 1)[1] == from_file.split("\n", 1)[1]
    sid = next(iter(calls_of(demo_log)))
    assert run(["-", "--call", sid], stdin=io.StringIO(text)) == run([str(demo_log), "--call", sid])


def test_following_stdin_ends_with_the_stream(demo_log: Path) -> None:
    out = io.StringIO()
    code = main(
        ["-", "--follow"],
        stdout=out,
        stdin=io.StringIO(demo_log.read_text(encoding="utf-8")),
        sleep=lambda _: None,
    )

    assert code == 0
    ended = len(calls_of(demo_log))
    assert f"calls: 0 live, {ended} ended" in out.getvalue().split(SEPARATOR)[-1]


def test_a_missing_file_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.log"

    assert run([str(missing)]) == (2, "")
    assert f"inspect: cannot read {missing}: No such file or directory" in capsys.readouterr().err
    assert run([str(tmp_path)]) == (2, "")
    assert "cannot read" in capsys.readouterr().err


def test_bad_options_are_usage_errors(demo_log: Path) -> None:
    for argv in (
        ["--interval", "0"],
        ["--follow", "--once"],
        ["--session", "a", "--call", "b"],
    ):
        with pytest.raises(SystemExit) as exited:
            main([str(demo_log), *argv], stdout=io.StringIO())
        assert exited.value.code == 2


def append(path: Path, *lines: str) -> None:
    with path.open("a", encoding="utf-8") as log:
        log.write("".join(f"{entry}\n" for entry in lines))


def test_a_tail_reads_appended_lines_and_starts_over_after_truncation(tmp_path: Path) -> None:
    path = tmp_path / "tars.log"
    path.write_text("one\ntwo\nthr", encoding="utf-8")
    with FileTail(path) as tail:
        assert list(tail.iter_lines()) == ["one", "two"]
        append(path, "ee", "four")
        assert list(tail.iter_lines()) == ["three", "four"]
        assert list(tail.iter_lines()) == []
        # A partial line that is already a whole JSON object is not held back.
        with path.open("a", encoding="utf-8") as log:
            log.write('{"event": "x"}')
        assert list(tail.iter_lines()) == ['{"event": "x"}']

        path.write_text("new\n", encoding="utf-8")  # truncated in place
        assert (list(tail.iter_lines()), tail.resets) == (["new"], 1)

        path.rename(tmp_path / "tars.log.1")  # rotated: the old file's end, then the new
        append(tmp_path / "tars.log.1", "last of old")
        assert list(tail.iter_lines()) == ["last of old"]  # the new file is not there yet
        path.write_text("first of new\n", encoding="utf-8")
        assert (list(tail.iter_lines()), tail.resets) == (["first of new"], 2)

        with path.open("a", encoding="utf-8") as log:
            log.write("unterminated")
        assert list(tail.iter_lines()) == []
        assert list(tail.iter_lines(final=True)) == ["unterminated"]


def test_follow_shows_appended_lines_and_rereads_a_truncated_file(tmp_path: Path) -> None:
    path = tmp_path / "tars.log"
    path.write_text(call_line("call.started", 0, caller="+15550100") + "\n", encoding="utf-8")
    steps = [
        lambda: append(path, call_line("model.connected", 1, connection_id=1)),
        lambda: None,  # nothing new: no new snapshot
        lambda: path.write_text(
            call_line("call.started", 9, sid=OTHER_SID, caller="+15550001") + "\n",
            encoding="utf-8",
        ),
    ]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        steps[len(slept) - 1]()

    out = io.StringIO()
    code = main([str(path), "--follow", "--interval", "2.5"], stdout=out, sleep=sleep, polls=4)

    assert code == 0
    assert slept == [2.5, 2.5, 2.5]
    snapshots = out.getvalue().split(SEPARATOR + "\n")
    assert len(snapshots) == 3
    assert " waiting " in snapshots[0]
    assert "LIVE CALLS: 1" in snapshots[0]
    assert " connected " in snapshots[1]
    assert "2 line(s)" in snapshots[1]
    # Re-read from the start: the new content counts on top, the earlier call stays.
    assert "3 line(s)" in snapshots[2]
    assert "LIVE CALLS: 2" in snapshots[2]
    assert "+15550001" in snapshots[2]


def test_follow_on_a_terminal_redraws_in_place(tmp_path: Path) -> None:
    path = tmp_path / "tars.log"
    path.write_text(line("daemon.started", 0, pid=1, port=2) + "\n", encoding="utf-8")
    out = io.StringIO()
    with FileTail(path) as tail:
        state = dashboard(tail, out, keep_following=True, sleep=lambda _: None, polls=3, clear=True)

    assert out.getvalue().count(CLEAR_SCREEN) == 3
    assert out.getvalue().startswith(CLEAR_SCREEN + "TARS inspect")
    assert state.daemon.pid == 1


def test_following_a_story_prints_new_lines_of_the_call(tmp_path: Path) -> None:
    path = tmp_path / "tars.log"
    path.write_text(call_line("call.started", 0) + "\n", encoding="utf-8")

    def sleep(_: float) -> None:
        append(
            path,
            call_line(
                "tool.refused",
                1,
                level="warning",
                tool="hang_up",
                call_id="c9",
                kind="permission",
                error="not allowed",
            ),
            call_line("call.started", 2, sid=OTHER_SID),
        )

    out = io.StringIO()
    chooser = StoryFilter(call=OWNER_SID)
    with FileTail(path) as tail:
        printed, malformed = tell_story(
            tail, out, chooser, keep_following=True, sleep=sleep, polls=2
        )

    assert (printed, malformed) == (2, 0)
    first, second = out.getvalue().splitlines()
    assert first.startswith("2026-03-01 09:00:00.000          call.started ")
    assert second.startswith("2026-03-01 09:00:01.000 WARNING  tool.refused ")
    assert second.endswith("tool hang_up refused (permission): not allowed")


def test_lines_source_is_done_after_one_poll() -> None:
    source = LinesSource(["a", "b"])
    assert list(source.iter_lines()) == ["a", "b"]
    assert source.finished
    assert list(source.iter_lines()) == []


def test_the_story_of_a_line_without_time() -> None:
    (told,) = story(['{"event": "call.dtmf", "call_sid": "CAx", "keys": 5}'], call="CAx")
    assert told.startswith("(no time)")
    assert told.endswith("the caller pressed 5 key(s)")
    assert os.linesep not in told


def test_no_field_of_any_type_breaks_the_view_or_the_story(demo_log: Path) -> None:
    rng = random.Random(7)
    deep: Any = []
    for _ in range(900):
        deep = [deep]
    odd_values: list[Any] = [None, True, 3, -1.5, "", "x", [], [1, [2]], {"a": {"b": 1}}, deep]
    records = records_of(demo_log)
    state = LogState()
    for _ in range(20):
        for record in records:
            mutated = dict(record)
            for key in rng.sample(sorted(mutated), k=min(3, len(mutated))):
                if key != "event":
                    mutated[key] = rng.choice(odd_values)
            text = json.dumps(mutated)
            state.feed(text)
            parsed = parse_line(text)
            assert parsed is not None
            story_line(parsed)
    screen = render(state)
    assert "0 malformed" in screen


def test_following_stdin_tells_a_story_without_a_first_pass() -> None:
    text = "\n".join(
        [
            call_line("call.started", 0),
            call_line("call.started", 1, sid=OTHER_SID),
            call_line("call.summary", 2, reason="caller hung up"),
        ]
    )
    out = io.StringIO()

    code = main(["-", "--call", OWNER_SID[:6], "-f"], stdout=out, stdin=io.StringIO(text))

    assert code == 0
    assert [told.split()[2] for told in out.getvalue().splitlines()] == [
        "call.started",
        "call.summary",
    ]


def test_run_py_inspect_passes_every_option_through(demo_log: Path) -> None:
    """``python run.py [--settings X] inspect --call SID LOG`` reaches inspect whole."""
    from tars_actors.ops.cli import main as cli_main

    out = io.StringIO()
    assert (
        cli_main(["--settings", "unused.toml", "inspect", "--once", str(demo_log)], stdout=out) == 0
    )
    assert "ACTORS" in out.getvalue()


def test_transfers_are_listed_with_how_each_went() -> None:
    router = {"actor": "Router", "actor_id": "router"}
    state = state_of(
        line("transfer.requested", 0, transfer_id=1, caller="Call with Anna", **router),
        line("transfer.accepted", 3, transfer_id=1, **router),
        line("transfer.bridged", 4, transfer_id=1, room="tars-transfer-1", **router),
        line("transfer.requested", 10, transfer_id=2, caller="Call with +15550001", **router),
        line("transfer.screening_call", 10, transfer_id=2, **router),
        line("transfer.no_answer", 40, transfer_id=2, status="screening call no-answer", **router),
        line("transfer.connecting", 50, transfer_id=3, to="+15550123", **router),
        line("transfer.connected", 51, transfer_id=3, to="+15550123", **router),
    )
    screen = render(state)
    table = screen.split("TRANSFERS: last 3", 1)[1]
    rows = [row.split() for row in table.strip().splitlines()[1:4]]
    assert [row[:2] for row in rows] == [["3", "connect"], ["2", "screened"], ["1", "screened"]]
    assert "connected" in table.splitlines()[2]
    assert "screening call no-answer" in table.splitlines()[3]
    assert "in the owner's call" in table.splitlines()[4]
    assert "bridged" in table.splitlines()[4]
