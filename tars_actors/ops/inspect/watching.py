"""Printing the screen or a story from a line source, once or poll by poll (``--follow``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TextIO

from tars_actors.ops.inspect.records import parse_line
from tars_actors.ops.inspect.screen import render
from tars_actors.ops.inspect.sources import LineSource
from tars_actors.ops.inspect.state import LogState
from tars_actors.ops.inspect.stories import StoryFilter, story_line

__all__ = ["CLEAR_SCREEN", "SEPARATOR", "dashboard", "follow", "tell_story"]

#: ANSI: cursor home, then clear the screen.
CLEAR_SCREEN = "\x1b[H\x1b[2J"
SEPARATOR = "-" * 100


def follow(
    source: LineSource,
    on_poll: Callable[[LineSource], None],
    *,
    interval: float,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
) -> None:
    """Call ``on_poll`` now and every ``interval`` seconds until the source is finished.

    ``polls`` caps the number of polls (None: until interrupted); tests pass a ``sleep``
    that appends to the file instead of waiting.
    """
    done = 0
    while True:
        on_poll(source)
        done += 1
        if source.finished or (polls is not None and done >= polls):
            return
        sleep(interval)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def dashboard(
    source: LineSource,
    out: TextIO,
    *,
    label: str | None = None,
    keep_following: bool = False,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
    clear: bool | None = None,
) -> LogState:
    """Print snapshots of the log's state: one, or one per poll while following.

    Cleared in place on a terminal (``clear`` defaults to whether ``out`` is one); else a
    new snapshot, after a separator line, only when new lines came.
    """
    state = LogState()
    clear = _is_tty(out) if clear is None else clear
    shown = {"snapshots": 0, "resets": source.resets}

    def on_poll(lines: LineSource) -> None:
        before = state.lines
        state.feed_all(lines.iter_lines(final=not keep_following))
        changed = state.lines != before or lines.resets != shown["resets"]
        shown["resets"] = lines.resets
        if clear and keep_following:
            out.write(CLEAR_SCREEN + render(state, source=label))
        elif changed or shown["snapshots"] == 0:
            if shown["snapshots"]:
                out.write(SEPARATOR + "\n")
            out.write(render(state, source=label))
        else:
            return
        shown["snapshots"] += 1
        out.flush()

    follow(source, on_poll, interval=interval, sleep=sleep, polls=polls if keep_following else 1)
    return state


def tell_story(
    source: LineSource,
    out: TextIO,
    chooser: StoryFilter,
    *,
    keep_following: bool = False,
    interval: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
) -> tuple[int, int]:
    """Print the chosen call's lines from ``source``; returns (lines printed, malformed)."""
    counts = {"printed": 0, "malformed": 0}

    def on_poll(lines: LineSource) -> None:
        for line in lines.iter_lines(final=not keep_following):
            if not line.strip():
                continue
            record = parse_line(line)
            if record is None:
                counts["malformed"] += 1
                continue
            chooser.learn(record)
            if chooser.matches(record):
                out.write(story_line(record) + "\n")
                counts["printed"] += 1
        out.flush()

    follow(
        source,
        on_poll,
        interval=interval,
        sleep=sleep,
        polls=polls if keep_following else 1,
    )
    return counts["printed"], counts["malformed"]
