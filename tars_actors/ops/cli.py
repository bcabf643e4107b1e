"""Command line of run.py: serve (the default), check, demo, bench, load, call."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TextIO

from tars_actors.runtime.settings import (
    Settings,
    SettingsError,
    load_settings,
    resolve_settings_path,
)

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
    bench.add_argument("--sessions", type=int, default=20, help="messaging: live calls")
    bench.add_argument("--rounds", type=int, default=3, help="messaging: messages per call")
    call = sub.add_parser(
        "call", help="place a goal call: TARS phones someone for you and reports back"
    )
    call.add_argument("callee", metavar="NUMBER_OR_CONTACT", help="a +E.164 number or a contact")
    call.add_argument("--goal", required=True, help="what the call should achieve")
    twilio = sub.add_parser(
        "twilio",
        help="the Twilio number's webhooks: `configure` points them at TARS, `check` shows them",
    )
    twilio.add_argument("action", nargs=argparse.REMAINDER, help="configure | check")
    sub.add_parser("service", help="print a systemd unit for this install")
    inspect = sub.add_parser(
        "inspect",
        help="a live view of the actors and calls from a JSON log (`inspect -h` for options)",
        add_help=False,
    )
    inspect.add_argument("options", nargs=argparse.REMAINDER)
    load = sub.add_parser(
        "load", help="capacity benchmark: concurrent softphone calls against a TARS process"
    )
    load.add_argument("--calls", type=int, default=50, help="concurrent calls (default 50)")
    load.add_argument("--seconds", type=float, default=20.0, help="measured seconds")
    load.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: Sequence[str], *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    argv = list(argv)
    inspect_at = _command_index(argv, "inspect")
    if inspect_at is not None:
        # Its options go to it whole (argparse's REMAINDER drops a leading --option).
        from tars_actors.ops import inspect

        return inspect.main(argv[inspect_at + 1 :], stdout=out)
    args = _parser().parse_args(argv)
    command = args.command or "serve"
    if command == "bench":
        from tars_actors.ops import bench_mailbox as benchmarks

        options = ["--sessions", str(args.sessions), "--rounds", str(args.rounds)]
        return benchmarks.main([args.name, *options, *(["--json"] if args.json else [])])
    if command == "demo":
        from tars_actors.ops import demo

        return demo.main([])
    if command == "load":
        from tars_actors.ops import load

        options = ["--calls", str(args.calls), "--seconds", str(args.seconds)]
        return load.main([*options, *(["--json"] if args.json else [])])

    if command == "service":
        from tars_actors.ops.service import service_main

        return service_main(resolve_settings_path(args.settings, os.environ), stdout=out)

    settings = _load(args.settings)
    if settings is None:
        return EXIT_USAGE
    if command == "twilio":
        from tars_actors.ops.twilio_setup import twilio_main

        return twilio_main(args.action, settings, stdout=out)
    if command == "check":
        return check(settings, out)
    if command == "call":
        return place_goal_call(settings, args.callee, args.goal, out)
    return _serve(settings)


def _command_index(argv: list[str], command: str) -> int | None:
    """Where ``command`` stands in ``argv``, if it is the command (after global options)."""
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == command:
            return index
        if word == "--settings":
            index += 2
        elif word.startswith("--settings="):
            index += 1
        else:
            return None
    return None


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
    from tars_actors.daemon.lifecycle import serve
    from tars_actors.runtime.log import configure_logging

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


def place_goal_call(settings: Settings, callee: str, objective: str, out: TextIO) -> int:
    """Record a goal and place its call through Twilio; the running daemon takes the call
    when it is answered and reports to the owner. Prints the goal id; 1 on failure."""
    from tars_actors.goals.desk import GoalError, create_goal, goal_call_twiml, mark_dialing
    from tars_actors.runtime.log import configure_logging
    from tars_actors.store import Store
    from tars_actors.telephony.rest import describe_error, make_client, outbound_call_options

    # The log lines go to stderr (and the log file): stdout is the result, for scripts.
    configure_logging(
        level=settings.logging.level,
        format=settings.logging.format,
        file=settings.logging.file or None,
        secrets=settings.secret_values(),
        stream=sys.stderr,
    )

    try:
        client = make_client(settings)
    except ValueError as error:
        print(f"tars: {error}", file=sys.stderr)
        return EXIT_USAGE
    store = Store.open(settings.database.url)
    store.connect()
    try:
        store.migrate()
        try:
            goal = create_goal(store, callee=callee, objective=objective, parent_session_id=None)
        except GoalError as error:
            print(f"tars: {error}", file=sys.stderr)
            return 1
        twiml, status_callback = goal_call_twiml(settings, goal.id)
        try:
            call = client.calls.create(
                **outbound_call_options(
                    to=goal.phone,
                    from_=settings.twilio.phone_number,
                    twiml=twiml,
                    status_callback=status_callback,
                    detect_machine=True,
                    time_limit_seconds=settings.sessions.max_call_seconds,
                )
            )
        except Exception as error:  # noqa: BLE001 (any REST failure is reported, not raised)
            from tars_actors.goals.desk import finish_goal
            from tars_actors.store import GoalStatus

            finish_goal(store, goal.id, GoalStatus.FAILED)
            print(f"tars: the call could not be placed: {describe_error(error)}", file=sys.stderr)
            return 1
        mark_dialing(store, goal.id, str(call.sid))
    finally:
        store.close()
        store.shutdown()
    print(f"goal {goal.id}: calling {goal.contact_name} ({goal.phone}), call {call.sid}", file=out)
    return 0
