"""One call's story: which lines belong to a call (``--call``/``--session``), told in order."""

from __future__ import annotations

from collections.abc import Iterable

from tars_actors.ops.inspect.descriptions import author, describe
from tars_actors.ops.inspect.records import (
    Record,
    field_ident,
    field_text,
    parse_line,
    record_level,
    record_time,
)

__all__ = ["StoryError", "StoryFilter", "story", "story_line"]


class StoryError(Exception):
    """A ``--session`` or ``--call`` that matches several calls."""


class StoryFilter:
    """Picks one call's lines: by call SID, or by session name (or numeric session id).

    A line belongs to a call when its ``call_sid``, its actor id, the ``child_id`` of a
    supervisor line or its ``stream_sid`` is the call's; a line with no call SID belongs
    through its ``session`` name (the Router's lines). :meth:`learn` records which SIDs,
    names and streams go together; :meth:`resolve` then turns a SID prefix or a part of a
    name into the call(s) it names, once the lines seen so far are learnt. Unresolved (when
    following stdin), a SID prefix takes every call it fits and a session needs its exact
    name or id.
    """

    def __init__(self, *, session: str | None = None, call: str | None = None) -> None:
        if (session is None) == (call is None):
            raise ValueError("give exactly one of session and call")
        self.session = session
        self.call = call
        self._names: dict[str, set[str]] = {}
        self._ids: dict[str, set[str]] = {}
        self._calls: set[str] = set()
        self._streams: dict[str, str] = {}
        self.calls: set[str] = {call} if call is not None else set()
        self.names: set[str] = {session} if session is not None else set()
        self.streams: set[str] = set()
        self._resolved = False

    def learn(self, record: Record) -> None:
        """Remember the call, session and stream named together on ``record``."""
        call_sid = field_text(record, "call_sid")
        if call_sid is None:
            return
        self._calls.add(call_sid)
        if not self._resolved and self.call is not None and call_sid.startswith(self.call):
            # Unresolved (following stdin): a prefix takes every call it fits.
            self.calls.add(call_sid)
        name = field_text(record, "session")
        if name is not None:
            self._names.setdefault(name, set()).add(call_sid)
            if name in self.names:
                self.calls.add(call_sid)
            elif call_sid in self.calls and self.call is not None:
                self.names.add(name)
        session_id = field_ident(record, "session_id")
        if session_id is not None:
            self._ids.setdefault(session_id, set()).add(call_sid)
            if session_id == self.session:
                self.calls.add(call_sid)
        stream_sid = field_text(record, "stream_sid")
        if stream_sid is not None:
            self._streams[stream_sid] = call_sid
            if call_sid in self.calls:
                self.streams.add(stream_sid)

    def resolve(self) -> None:
        """Settle which calls are meant, from everything learnt so far.

        A call SID matches exactly, else as a unique prefix; a session matches its exact
        name or numeric id, else a unique case-insensitive part of one name.
        """
        if self.call is not None:
            calls = {self.call} if self.call in self._calls else set()
            if not calls:
                calls = {sid for sid in self._calls if sid.startswith(self.call)}
                if len(calls) > 1:
                    raise StoryError(f"call {self.call!r} matches {_listing(calls)}")
            calls = calls or {self.call}
            names = {n for n, sids in self._names.items() if sids & calls}
        else:
            assert self.session is not None
            names = {self.session} if self.session in self._names else set()
            calls = set().union(*(self._names.get(n, set()) for n in names))
            calls |= self._ids.get(self.session, set())
            if not calls:
                wanted = self.session.casefold()
                names = {n for n in self._names if wanted in n.casefold()}
                if len(names) > 1:
                    raise StoryError(f"session {self.session!r} matches {_listing(names)}")
                calls = set().union(*(self._names[n] for n in names))
            names |= {n for n, sids in self._names.items() if sids & calls}
            names = names or {self.session}
        self.calls, self.names = calls, names
        self._resolved = True
        self.streams = {stream for stream, sid in self._streams.items() if sid in calls}

    def matches(self, record: Record) -> bool:
        """Whether ``record`` belongs to the chosen call(s)."""
        call_sid = field_text(record, "call_sid")
        if call_sid is not None:
            return call_sid in self.calls
        if field_ident(record, "actor_id") in self.calls:
            return True
        event = record.get("event")
        if isinstance(event, str) and event.startswith("supervisor."):
            return field_ident(record, "child_id") in self.calls
        stream_sid = field_text(record, "stream_sid")
        if stream_sid is not None:
            return stream_sid in self.streams
        return field_text(record, "session") in self.names


def _listing(items: Iterable[str]) -> str:
    return ", ".join(repr(item) for item in sorted(items))


def story_line(record: Record) -> str:
    """One record as a story line: time, level (if not info), event, who, what it said."""
    stamp = record_time(record)
    when = stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] if stamp else "(no time)".ljust(23)
    level = record_level(record)
    tag = "" if level in ("info", "debug") else level.upper()
    return (
        f"{when} {tag:<8} {record['event']!s:<24} {author(record):<25} {describe(record)}".rstrip()
    )


def story(
    lines: Iterable[str], *, session: str | None = None, call: str | None = None
) -> list[str]:
    """The story lines of one call, in log order (raises :class:`StoryError` if ambiguous)."""
    records = [r for r in map(parse_line, lines) if r is not None]
    chooser = StoryFilter(session=session, call=call)
    for record in records:
        chooser.learn(record)
    chooser.resolve()
    return [story_line(r) for r in records if chooser.matches(r)]
