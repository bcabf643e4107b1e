"""The top-like screen: the log's state rendered as tables of actors, calls and events."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from tars_actors.ops.inspect.descriptions import clip, short_sid
from tars_actors.ops.inspect.state import LogState
from tars_actors.ops.inspect.views import EventView

__all__ = ["render"]


def _clock(stamp: datetime | None) -> str:
    return stamp.strftime("%H:%M:%S") if stamp is not None else "--:--:--"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 60:
        return f"{value:.1f}s"
    minutes, seconds = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _busy(milliseconds: float | None) -> str:
    if milliseconds is None:
        return "-"
    if milliseconds < 1000:
        return f"{milliseconds:.0f}ms"
    return _seconds(milliseconds / 1000)


def _milliseconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}ms"


def _count(value: int | None) -> str:
    return "-" if value is None else str(value)


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> list[str]:
    widths = [max([len(h), *(len(row[i]) for row in rows)]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(headers), *(line(row) for row in rows)]


def _actor_rows(state: LogState) -> list[list[str]]:
    actors = sorted(state.actors.values(), key=lambda a: (not a.live, a.order))
    rows = []
    for actor in actors:
        status = "STUCK" if actor.stuck_on is not None and actor.live else actor.state
        if actor.detail and not actor.live and actor.detail not in ("shutdown", "normal"):
            status = f"{status}: {actor.detail}"
        elif actor.detail and actor.live:
            status = f"{status} {actor.detail}"
        current = "-"
        if actor.current is not None:
            current = f"{actor.current} {_busy(actor.current_ms)}"
        elif actor.stuck_on is not None:
            current = f"{actor.stuck_on} (stuck)"
        ratio = "-" if actor.busy_ratio is None else f"{actor.busy_ratio * 100:.1f}%"
        rows.append(
            [
                clip(actor.kind or f"? (child of {actor.parent or '?'})", 22),
                clip(actor.label, 30),
                clip(status, 28),
                _count(actor.mailbox_depth),
                _count(actor.peak_depth),
                _count(actor.handled),
                _busy(actor.busy_ms),
                ratio,
                str(actor.restarts),
                clip(current, 32),
            ]
        )
    return rows


def _session_rows(state: LogState, now: datetime | None) -> list[list[str]]:
    sessions = sorted(
        state.sessions.values(), key=lambda s: s.started or datetime.max.replace(tzinfo=UTC)
    )
    return [
        [
            clip(s.name or "?", 34),
            short_sid(s.call_sid),
            s.caller or "?",
            s.permission or "?",
            _seconds(s.duration(now)),
            s.model,
            str(s.reconnects),
            str(s.tool_calls),
            clip(f"{_clock(s.last_time)} {s.last_event or ''}", 34),
        ]
        for s in sessions
    ]


def _ended_rows(state: LogState) -> list[list[str]]:
    return [
        [
            clip(s.name or "?", 34),
            short_sid(s.call_sid),
            s.caller or "?",
            s.permission or "?",
            _seconds(s.duration(None)),
            _milliseconds(s.first_audio_ms),
            _count(s.turns),
            str(s.reconnects),
            _clock(s.ended),
            clip(s.end_reason or "?", 36),
        ]
        for s in reversed(state.ended)
    ]


def _transfer_rows(state: LogState) -> list[list[str]]:
    return [
        [
            str(t.transfer_id),
            t.kind,
            clip(t.party, 34),
            t.asked_by or "?",
            t.status,
            _clock(t.started),
            _clock(t.updated),
            clip(t.detail or "", 36),
        ]
        for t in reversed(state.transfers.values())
    ]


def _event_lines(
    events: Iterable[EventView], *, show_level: bool = False, show_who: bool = True
) -> list[str]:
    lines = []
    for item in events:
        level = f"{item.level.upper():<8} " if show_level else ""
        who = f"{item.who:<18} " if show_who else ""
        lines.append(clip(f"  {_clock(item.time)} {level}{item.event:<28} {who}{item.text}", 160))
    return lines or ["  none"]


def _header(state: LogState, now: datetime | None, source: str | None) -> list[str]:
    lines = [f"TARS inspect: {source}" if source else "TARS inspect"]
    if state.first_time is not None and state.last_time is not None:
        span = (state.last_time - state.first_time).total_seconds()
        lines.append(
            f"log {state.first_time:%Y-%m-%d %H:%M:%S} to {state.last_time:%Y-%m-%d %H:%M:%S} UTC"
            f" ({_seconds(span)}); showing as of {_clock(now)}"
        )
    else:
        lines.append("log: no timestamped lines yet")
    counts = f"{state.lines} line(s), {state.malformed} malformed"
    if state.untimed:
        counts += f", {state.untimed} without a timestamp"
    lines.append(counts)
    daemon = state.daemon
    about = [f"pid {daemon.pid}" if daemon.pid is not None else ""]
    about.append(f"port {daemon.port}" if daemon.port is not None else "")
    about.append(daemon.detail or "")
    details = ", ".join(part for part in about if part)
    problems = (
        f"{state.levels['critical'] + state.levels['error']} error(s),"
        f" {state.levels['warning']} warning(s)"
    )
    lines.append(
        f"daemon {daemon.state}{f' ({details})' if details else ''}; calls: "
        f"{len(state.sessions)} live, {state.ended_total} ended; {problems}"
    )
    return lines


def render(state: LogState, *, now: datetime | None = None, source: str | None = None) -> str:
    """The screen for ``state`` as text. ``now`` defaults to the latest timestamp in the log."""
    now = now or state.last_time
    lines = _header(state, now, source)

    live = sum(1 for a in state.actors.values() if a.live)
    if state.last_stats is not None:
        stats = f"latest actor.stats at {_clock(state.last_stats)}"
    elif state.stats_interval is not None:
        stats = f"no actor.stats yet (every {state.stats_interval:g} s)"
    else:
        stats = "no actor.stats yet"
    lines += ["", f"ACTORS: {live} live, {len(state.actors) - live} stopped; {stats}"]
    actor_rows = _actor_rows(state)
    if actor_rows:
        headers = ["ACTOR", "ID", "STATE", "MAILBOX", "PEAK", "HANDLED", "BUSY", "BUSY%"]
        lines += _table([*headers, "RESTARTS", "NOW"], actor_rows, {3, 4, 5, 6, 7, 8})
    else:
        lines.append("  none")

    lines += ["", f"LIVE CALLS: {len(state.sessions)}"]
    rows = _session_rows(state, now)
    if rows:
        headers = ["SESSION", "CALL", "CALLER", "PERMISSION", "DURATION", "MODEL"]
        lines += _table([*headers, "RECONNECTS", "TOOLS", "LAST"], rows, {4, 6, 7})
    else:
        lines.append("  none")
    if state.ended:
        lines += ["", f"RECENTLY ENDED: {len(state.ended)} of {state.ended_total}"]
        headers = ["SESSION", "CALL", "CALLER", "PERMISSION", "DURATION", "FIRST AUDIO"]
        headers += ["TURNS", "RECONNECTS", "ENDED", "REASON"]
        lines += _table(headers, _ended_rows(state), {4, 5, 6, 7})

    shown = len(state.supervisor_events)
    lines += ["", f"SUPERVISOR EVENTS: last {shown} of {state.supervisor_total}"]
    lines += _event_lines(state.supervisor_events, show_who=False)
    lines += ["", f"ERRORS AND WARNINGS: last {len(state.problems)} of {state.problem_total}"]
    lines += _event_lines(state.problems, show_level=True)
    if state.quiet:
        quiet = ", ".join(f"{count} {event}" for event, count in sorted(state.quiet.items()))
        lines.append(f"  also: {quiet}")
    if state.transfers:
        lines += ["", f"TRANSFERS: last {len(state.transfers)}"]
        headers = ["ID", "KIND", "WHO", "ASKED", "STATUS", "STARTED", "UPDATED", "DETAIL"]
        lines += _table(headers, _transfer_rows(state), {0})
    if state.activity:
        lines += ["", f"MESSAGES, REMINDERS AND GOALS: last {len(state.activity)}"]
        lines += _event_lines(state.activity)
    return "\n".join(lines) + "\n"
