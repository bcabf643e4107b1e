"""`python run.py inspect`: a view of a TARS daemon's JSON log, like `top` for its actors.

It reads the JSON lines TARS writes (a file, or ``-`` for stdin). By default it prints one
snapshot: every actor with its mailbox figures and restarts, every live call with its
model connection, recent supervisor events and recent problems. ``--follow`` keeps reading
new lines like ``tail -f`` and refreshes the view. ``--session`` or ``--call`` prints one
call's lines as a story instead.

All times are the log's own. A live call's duration runs from its first line (``call.opening``
at its webhook) to the latest timestamp in the log, so a saved log renders the same way every
time (and a live daemon's durations advance as it logs). Lines that are not JSON objects with
a string ``event`` are skipped and counted; wrong-typed fields are treated as missing.
"""

from __future__ import annotations

from tars_actors.ops.inspect.command import main
from tars_actors.ops.inspect.descriptions import describe
from tars_actors.ops.inspect.records import parse_line
from tars_actors.ops.inspect.screen import render
from tars_actors.ops.inspect.sources import FileTail, LineSource, LinesSource, StreamLines
from tars_actors.ops.inspect.state import STOPPED_ACTORS_KEPT, LogState
from tars_actors.ops.inspect.stories import StoryError, StoryFilter, story, story_line
from tars_actors.ops.inspect.views import ActorView, DaemonView, EventView, SessionView
from tars_actors.ops.inspect.watching import (
    CLEAR_SCREEN,
    SEPARATOR,
    dashboard,
    follow,
    tell_story,
)

__all__ = [
    "CLEAR_SCREEN",
    "SEPARATOR",
    "STOPPED_ACTORS_KEPT",
    "ActorView",
    "DaemonView",
    "EventView",
    "FileTail",
    "LineSource",
    "LinesSource",
    "LogState",
    "SessionView",
    "StoryError",
    "StoryFilter",
    "StreamLines",
    "dashboard",
    "describe",
    "follow",
    "main",
    "parse_line",
    "render",
    "story",
    "story_line",
    "tell_story",
]
