"""``python run.py inspect``: its options, and choosing the source and what to print."""

from __future__ import annotations

import argparse
import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TextIO

from tars_actors.ops.inspect.records import parse_line
from tars_actors.ops.inspect.sources import FileTail, LineSource, LinesSource, StreamLines
from tars_actors.ops.inspect.stories import StoryError, StoryFilter
from tars_actors.ops.inspect.watching import dashboard, tell_story

__all__ = ["EXIT_USAGE", "main"]

#: Exit code for a usage error or an unreadable source, as argparse uses.
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py inspect",
        description="Show what a TARS daemon's JSON log says: actors, live calls, "
        "supervisor events and errors, or one call's story.",
    )
    parser.add_argument("source", help="the JSON log file, or - for stdin")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--follow", "-f", action="store_true", help="keep reading new lines and refresh"
    )
    mode.add_argument(
        "--once", action="store_true", help="print one snapshot and exit (the default)"
    )
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--session",
        metavar="NAME",
        help="print one call's lines as a story: its session name, id, or part of the name",
    )
    which.add_argument(
        "--call", metavar="SID", help="print one call's lines as a story: its call SID or a prefix"
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="refresh period with --follow (default 1.0)",
    )
    # Every command of run.py takes --settings, before or after its name; inspect reads only
    # the log, so it accepts the option and leaves it unused.
    parser.add_argument(
        "--settings", metavar="PATH", help="accepted as by every command; unused here"
    )
    return parser


def _lenient_stdin() -> TextIO:
    buffer = getattr(sys.stdin, "buffer", None)
    if buffer is None:
        return sys.stdin
    return io.TextIOWrapper(buffer, encoding="utf-8", errors="replace")


def main(
    argv: Sequence[str],
    *,
    stdout: TextIO | None = None,
    stdin: TextIO | None = None,
    sleep: Callable[[float], None] = time.sleep,
    polls: int | None = None,
) -> int:
    """Run ``inspect``: 0 on success, 1 when a story found no lines, 2 on a usage error.

    ``sleep`` and ``polls`` are for tests of ``--follow``; Ctrl-C exits 0.
    """
    out = stdout or sys.stdout
    parser = _parser()
    args = parser.parse_args(list(argv))
    if not (args.interval > 0 and math.isfinite(args.interval)):
        parser.error(f"--interval must be a positive number of seconds, not {args.interval}")
    try:
        return _run(args, out, stdin, sleep=sleep, polls=polls)
    except KeyboardInterrupt:
        return 0
    except BrokenPipeError:
        # The reader went away (`| head`); say nothing more on a closed pipe.
        if out is sys.stdout:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 0


def _run(
    args: argparse.Namespace,
    out: TextIO,
    stdin: TextIO | None,
    *,
    sleep: Callable[[float], None],
    polls: int | None,
) -> int:
    from_stdin = args.source == "-"
    label = "stdin" if from_stdin else str(args.source)
    stream = (stdin if stdin is not None else _lenient_stdin()) if from_stdin else None
    source: LineSource
    if stream is not None:
        source = StreamLines(stream) if args.follow else LinesSource(stream)
    else:
        try:
            source = FileTail(args.source)
        except OSError as error:
            reason = error.strerror or str(error)
            print(f"inspect: cannot read {args.source}: {reason}", file=sys.stderr)
            return EXIT_USAGE
    try:
        return _show(args, source, out, label, sleep=sleep, polls=polls)
    finally:
        if isinstance(source, FileTail):
            source.close()


def _show(
    args: argparse.Namespace,
    source: LineSource,
    out: TextIO,
    label: str,
    *,
    sleep: Callable[[float], None],
    polls: int | None,
) -> int:
    if args.session is None and args.call is None:
        dashboard(
            source,
            out,
            label=label,
            keep_following=args.follow,
            interval=args.interval,
            sleep=sleep,
            polls=polls,
        )
        return 0

    chooser = StoryFilter(session=args.session, call=args.call)
    # Learn the whole log first, so lines before the one naming the session (the
    # webhook's, the stream's) are told too, and a prefix or part of a name resolves.
    # Stdin being followed cannot be read twice: its lines are learnt as they come.
    if isinstance(source, LinesSource | FileTail):
        if isinstance(source, LinesSource):
            lines = list(source.iter_lines())
            source = LinesSource(lines)  # read again by the second pass
            _learn(chooser, lines)
        else:
            with FileTail(source.path) as first_pass:
                _learn(chooser, first_pass.iter_lines(final=True))
        try:
            chooser.resolve()
        except StoryError as error:
            print(f"inspect: {error}; give more of it", file=sys.stderr)
            return EXIT_USAGE
    printed, malformed = tell_story(
        source,
        out,
        chooser,
        keep_following=args.follow,
        interval=args.interval,
        sleep=sleep,
        polls=polls,
    )
    if malformed:
        print(f"inspect: skipped {malformed} malformed line(s)", file=sys.stderr)
    if printed == 0 and not args.follow:
        wanted = f"session {args.session!r}" if args.session is not None else f"call {args.call!r}"
        print(f"inspect: no lines for {wanted} in {label}", file=sys.stderr)
        return 1
    return 0


def _learn(chooser: StoryFilter, lines: Iterable[str]) -> None:
    for line in lines:
        record = parse_line(line)
        if record is not None:
            chooser.learn(record)
