"""Where log lines come from: a file followed through truncation and rotation, stdin, a list."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, TextIO

from tars_actors.ops.inspect.records import parse_line

__all__ = ["FileTail", "LineSource", "LinesSource", "StreamLines"]


class LineSource(Protocol):
    """New lines of a log, poll by poll."""

    @property
    def finished(self) -> bool:
        """No more lines will ever come (end of a stream)."""
        ...

    @property
    def resets(self) -> int:
        """How many times the source started over (a file truncated or replaced)."""
        ...

    def iter_lines(self, *, final: bool = False) -> Iterator[str]:
        """The complete lines available now; with ``final`` an unterminated last one too."""
        ...


def _decode(raw: bytes) -> str:
    return raw.rstrip(b"\r").decode("utf-8", errors="replace")


class FileTail:
    """Reads a file's lines as they are appended, like ``tail -F``.

    When the path names a new file (rotation: the inode changed) the old one is read to
    its end and the new one from its start; when the file shrank (truncation) it is read
    again from the start. A partial last line waits for its newline, unless it already
    parses as a whole JSON object.
    """

    _CHUNK = 1 << 20

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file = self.path.open("rb")
        self._identity = self._id(os.fstat(self._file.fileno()))
        self._partial = b""
        self._resets = 0

    @staticmethod
    def _id(stat: os.stat_result) -> tuple[int, int]:
        return stat.st_dev, stat.st_ino

    @property
    def finished(self) -> bool:
        return False

    @property
    def resets(self) -> int:
        return self._resets

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FileTail:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iter_lines(self, *, final: bool = False) -> Iterator[str]:
        yield from self._drain(final=False)
        try:
            stat = os.stat(self.path)
        except OSError:  # rotated away and not yet recreated: keep the old file
            stat = None
        if stat is not None and self._id(stat) != self._identity:
            yield from self._drain(final=True)
            try:
                replacement = self.path.open("rb")
            except OSError:
                replacement = None
            if replacement is not None:
                self._file.close()
                self._file = replacement
                self._identity = self._id(os.fstat(replacement.fileno()))
                self._resets += 1
                yield from self._drain(final=False)
        elif stat is not None and stat.st_size < self._file.tell():
            self._file.seek(0)
            self._partial = b""
            self._resets += 1
            yield from self._drain(final=False)
        yield from self._rest(final=final)

    def _drain(self, *, final: bool) -> Iterator[str]:
        while chunk := self._file.read(self._CHUNK):
            *complete, self._partial = (self._partial + chunk).split(b"\n")
            for raw in complete:
                yield _decode(raw)
        if final:
            yield from self._rest(final=True)

    def _rest(self, *, final: bool) -> Iterator[str]:
        if not self._partial:
            return
        line = _decode(self._partial)
        if final or parse_line(line) is not None:
            self._partial = b""
            yield line


class StreamLines:
    """The lines of a text stream (stdin), read on a daemon thread so polls never block."""

    def __init__(self, stream: TextIO) -> None:
        self._queue: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        self._done = False
        self._stream = stream
        threading.Thread(target=self._pump, name="inspect-reader", daemon=True).start()

    def _pump(self) -> None:
        try:
            for line in self._stream:
                self._queue.put(line)
        except (OSError, ValueError):  # closed, or undecodable beyond repair
            pass
        finally:
            self._queue.put(None)

    @property
    def finished(self) -> bool:
        return self._done

    @property
    def resets(self) -> int:
        return 0

    def iter_lines(self, *, final: bool = False) -> Iterator[str]:
        while not self._done:
            try:
                line = self._queue.get(block=final)
            except queue.Empty:
                return
            if line is None:
                self._done = True
                return
            yield line.rstrip("\r\n")


class LinesSource:
    """Lines already in memory, given out on the first poll."""

    def __init__(self, lines: Iterable[str]) -> None:
        self._lines: list[str] | None = list(lines)

    @property
    def finished(self) -> bool:
        return self._lines is None

    @property
    def resets(self) -> int:
        return 0

    def iter_lines(self, *, final: bool = False) -> Iterator[str]:
        lines, self._lines = self._lines or [], None
        yield from lines
