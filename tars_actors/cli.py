"""Command line of run.py: serve (the default), check, bench."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from tars_actors.settings import Settings, SettingsError, load_settings, resolve_settings_path

__all__ = ["main"]

#: Exit code for a usage or settings error, as argparse uses.
EXIT_USAGE = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py",
        description="TARS: a personal phone assistant (Twilio Media Streams + Gemini Live).",
    )
    parser.add_argument(
        "--settings",
        metavar="PATH",
        help="settings file (default: $TARS_SETTINGS, else ./settings.toml)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("serve", help="serve calls until SIGTERM (the default)")
    sub.add_parser(
        "check",
        help="validate settings and environment; print the resolved configuration",
    )
    sub.add_parser(
        "demo",
        help="calls through the real server and actors with local stand-ins (no accounts)",
    )
    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench.add_argument("name", choices=["mailbox", "messaging"], help="which benchmark")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    load = sub.add_parser(
        "load", help="capacity benchmark: concurrent softphone calls against a TARS process"
    )
    load.add_argument("--calls", type=int, default=50, help="concurrent calls (default 50)")
    load.add_argument("--seconds", type=float, default=20.0, help="measured seconds")
    load.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: Sequence[str], *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    args = _parser().parse_args(list(argv))
    command = args.command or "serve"
    if command == "bench":
        from tars_actors import benchmarks

        return benchmarks.main([args.name, *(["--json"] if args.json else [])])
    if command == "demo":
        from tars_actors import demo

        return demo.main([])
    if command == "load":
        from tars_actors import load

        options = ["--calls", str(args.calls), "--seconds", str(args.seconds)]
        return load.main([*options, *(["--json"] if args.json else [])])

    settings = _load(args.settings)
    if settings is None:
        return EXIT_USAGE
    if command == "check":
        return check(settings, out)
    return _serve(settings)


def _load(cli_path: str | None) -> Settings | None:
    try:
        path = resolve_settings_path(cli_path, os.environ)
        return load_settings(path, environ=os.environ)
    except SettingsError as error:
        print(f"tars: invalid settings ({len(error.problems)} problem(s)):", file=sys.stderr)
        for problem in error.problems:
            print(f"  - {problem}", file=sys.stderr)
        return None


def _serve(settings: Settings) -> int:
    from tars_actors.daemon import serve
    from tars_actors.log import configure_logging

    configure_logging(
        level=settings.logging.level,
        format=settings.logging.format,
        file=settings.logging.file or None,
        secrets=settings.secret_values(),
    )
    missing = settings.missing_for_real_calls()
    if missing:
        print("tars: cannot serve real calls yet; missing:", file=sys.stderr)
        for item in missing:
            print(f"  - {item}", file=sys.stderr)
        print("Run `python run.py check` for details.", file=sys.stderr)
        return EXIT_USAGE
    return serve(settings)


def check(settings: Settings, out: TextIO) -> int:
    """Print the resolved configuration (secrets redacted), open the database, list gaps.

    Exit 0 when TARS can serve real calls, 1 when something for real calls is missing.
    """
    from tars_actors.store import Store

    print(f"settings: {settings.source}", file=out)
    print(json.dumps(settings.redacted(), indent=2, sort_keys=False, default=str), file=out)
    problems: list[str] = []
    try:
        store = Store.open(settings.database.url)
        store.connect()
        try:
            version = store.schema_version()
        finally:
            store.close()
            store.shutdown()
        print(f"database: reachable, schema version {version}", file=out)
    except Exception as error:  # noqa: BLE001 (any driver error is reported, not raised)
        problems.append(f"[database] url: cannot open the database: {error}")
    problems.extend(settings.missing_for_real_calls())
    if problems:
        print("not ready for real calls:", file=out)
        for problem in problems:
            print(f"  - {problem}", file=out)
        return 1
    print("ready for real calls", file=out)
    return 0
