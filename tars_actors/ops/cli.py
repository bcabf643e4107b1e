"""Command line of run.py: serve (the default), check, demo, bench, load, call, twilio, service,
inspect; each takes ``--settings PATH`` before or after its name."""

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

__all__ = ["main", "parse_args"]

#: Exit code for a usage or settings error, as argparse uses.
EXIT_USAGE = 2


#: What ``--settings`` means, wherever it is given.
_SETTINGS_HELP = "settings file (default: $TARS_SETTINGS, else ./settings.toml)"


def _settings_option(parser: argparse.ArgumentParser, *, reads_settings: bool = True) -> None:
    """``--settings PATH`` after a command, as before it.

    Its default is SUPPRESS so that a command's parser sets ``settings`` only when the option
    follows the command; argparse then copies it over the one given before the command, so the
    later one wins, as it does for any option given twice.
    """
    parser.add_argument(
        "--settings",
        metavar="PATH",
        default=argparse.SUPPRESS,
        help=_SETTINGS_HELP if reads_settings else "accepted as by every command; unused here",
    )


#: What ``--workers`` means for serve.
_WORKERS_HELP = (
    "serve: run N daemons on [server] port (SO_REUSEPORT) sharing the PostgreSQL "
    "[database] url, to use the machine's cores (default 1)"
)


def _worker_count(text: str) -> int:
    """``--workers``: a whole number of at least 1, else argparse's usage error."""
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if count < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {count}")
    return count


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py",
        description="TARS: a personal phone assistant (Twilio Media Streams + Gemini Live).",
    )
    parser.add_argument("--settings", metavar="PATH", help=_SETTINGS_HELP)
    parser.add_argument("--workers", metavar="N", type=_worker_count, help=_WORKERS_HELP)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = sub.add_parser("serve", help="serve calls until SIGTERM (the default)")
    _settings_option(serve)
    serve.add_argument(
        "--workers",
        metavar="N",
        type=_worker_count,
        default=argparse.SUPPRESS,
        help=_WORKERS_HELP,
    )
    # Given by the parent of `--workers N` to each worker: listen with SO_REUSEPORT.
    serve.add_argument("--reuse-port", action="store_true", help=argparse.SUPPRESS)
    check = sub.add_parser(
        "check",
        help="validate settings and environment; print the resolved configuration",
    )
    _settings_option(check)
    demo = sub.add_parser(
        "demo",
        help="calls through the real server and actors with local stand-ins (no accounts)",
    )
    _settings_option(demo, reads_settings=False)
    bench = sub.add_parser("bench", help="run a benchmark and print its figures")
    bench.add_argument("name", choices=["mailbox", "messaging", "cluster"], help="which benchmark")
    bench.add_argument("--json", action="store_true", help="print JSON instead of a table")
    bench.add_argument("--sessions", type=int, default=20, help="messaging: live calls")
    bench.add_argument(
        "--rounds",
        type=int,
        help="messaging: messages per call (default 3); cluster: kill and take-over rounds "
        "(default 10, 0 skips them)",
    )
    bench.add_argument(
        "--messages",
        type=int,
        help="cluster: notes timed across two daemons (default 100, 0 skips them); "
        "mailbox: tells per run",
    )
    _settings_option(bench, reads_settings=False)
    call = sub.add_parser(
        "call", help="place a goal call: TARS phones someone for you and reports back"
    )
    call.add_argument("callee", metavar="NUMBER_OR_CONTACT", help="a +E.164 number or a contact")
    call.add_argument("--goal", required=True, help="what the call should achieve")
    _settings_option(call)
    twilio = sub.add_parser(
        "twilio",
        help="the Twilio number's webhooks: `configure` points them at TARS, `check` shows them",
    )
    twilio.add_argument(
        "action",
        metavar="ACTION",
        choices=["check", "configure"],
        help="configure: point the webhooks at TARS; check: show them and what is wrong",
    )
    _settings_option(twilio)
    service = sub.add_parser("service", help="print a systemd unit for this install")
    _settings_option(service)
    # parse_args hands inspect's arguments to it whole when inspect is the first word after
    # the global options; REMAINDER serves the rest (an abbreviated --settings before it).
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
    load.add_argument(
        "--report-every",
        type=float,
        metavar="K",
        help="soak: keep the calls up for --seconds (new callers replacing those who hang "
        "up), printing RSS, fds, threads, CPU, frames lost and mailbox peaks every K seconds",
    )
    load.add_argument(
        "--call-seconds", type=float, default=300.0, help="soak: how long each call lasts"
    )
    load.add_argument(
        "--pickup",
        action="store_true",
        help="pickup: p50/p95/p99 of first_audio_ms over --calls calls (each hangs up once "
        "greeted), the model stand-in answering its setup after 800 ms and speaking 300 ms "
        "after the greeting request, each stream opened 1 s after the webhook",
    )
    load.add_argument(
        "--at-once", type=int, default=4, help="pickup: calls ringing or talking at once"
    )
    load.add_argument(
        "--workers",
        metavar="N",
        type=_worker_count,
        default=argparse.SUPPRESS,
        help="TARS as N workers on one port with a throwaway PostgreSQL (plain load only); "
        "CPU and memory are summed over the workers",
    )
    _settings_option(load, reads_settings=False)
    return parser


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """The command line as the commands read it.

    ``command`` is None for serve. ``settings`` is the ``--settings`` given after the
    command, else the one before it, else None; ``workers`` likewise (serve and load). For
    ``inspect``, ``options`` holds its arguments, handed to it whole (its parser takes
    ``--settings`` too).
    """
    argv = list(argv)
    inspect_at = _command_index(argv, "inspect")
    if inspect_at is None:
        parser = _parser()
        args = parser.parse_args(argv)
        if args.workers is not None and args.command not in (None, "serve", "load"):
            parser.error(f"--workers goes with serve or load, not {args.command}")
        if (
            args.workers is not None
            and args.command == "load"
            and (args.pickup or args.report_every is not None)
        ):
            parser.error("load --workers measures the plain load benchmark only")
        return args
    # argparse's REMAINDER would drop a leading --option of inspect's.
    before = _parser().parse_args(argv[:inspect_at])
    return argparse.Namespace(
        command="inspect", settings=before.settings, options=argv[inspect_at + 1 :]
    )


def main(argv: Sequence[str], *, stdout: TextIO | None = None) -> int:
    out = stdout or sys.stdout
    args = parse_args(argv)
    command = args.command or "serve"
    if command == "inspect":
        from tars_actors.ops import inspect

        return inspect.main(args.options, stdout=out)
    if command == "bench":
        options = [
            f"--{name}={value}"
            for name, value in (("rounds", args.rounds), ("messages", args.messages))
            if value is not None
        ]
        options += ["--json"] if args.json else []
        if args.name == "cluster":
            from tars_actors.ops import bench_cluster

            return bench_cluster.main(options, stdout=out)
        from tars_actors.ops import bench_mailbox as benchmarks

        options += ["--sessions", str(args.sessions)]
        return benchmarks.main([args.name, *options], stdout=out)
    if command == "demo":
        from tars_actors.ops import demo

        return demo.main([])
    if command == "load" and args.pickup:
        from tars_actors.ops import pickup

        options = ["--calls", str(args.calls), "--at-once", str(args.at_once)]
        return pickup.main([*options, *(["--json"] if args.json else [])], stdout=out)
    if command == "load":
        from tars_actors.ops import load

        options = ["--calls", str(args.calls), "--seconds", str(args.seconds)]
        if args.workers is not None:
            options += ["--workers", str(args.workers)]
        if args.report_every is not None:
            options += ["--report-every", str(args.report_every)]
            options += ["--call-seconds", str(args.call_seconds)]
        return load.main([*options, *(["--json"] if args.json else [])], stdout=out)

    if command == "service":
        from tars_actors.ops.service import service_main

        return service_main(resolve_settings_path(args.settings, os.environ), stdout=out)

    settings = _load(args.settings)
    if settings is None:
        return EXIT_USAGE
    if command == "twilio":
        from tars_actors.ops.twilio_setup import twilio_main

        return twilio_main([args.action], settings, stdout=out)
    if command == "check":
        return check(settings, out)
    if command == "call":
        return place_goal_call(settings, args.callee, args.goal, out)
    return _serve(
        settings, workers=args.workers or 1, reuse_port=getattr(args, "reuse_port", False)
    )


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


def _serve(settings: Settings, *, workers: int = 1, reuse_port: bool = False) -> int:
    from tars_actors.runtime.log import configure_logging

    if workers > 1:
        from tars_actors.ops.workers import refusal

        refused = refusal(settings, workers)
        if refused is not None:
            print(f"tars: {refused}", file=sys.stderr)
            return EXIT_USAGE
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
    if workers > 1:
        from tars_actors.ops.workers import run_workers

        return run_workers(settings, workers)
    # Imported here: the parent of several workers runs none of the daemon.
    from tars_actors.daemon.lifecycle import serve

    return serve(settings, reuse_port=reuse_port)


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
    notes = settings.owner_trust_notes()
    if notes:
        print("how the owner is recognised:", file=out)
        for note in notes:
            print(f"  - {note}", file=out)
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
    from tars_actors.goals.desk import (
        GOAL_PREFIX,
        GoalError,
        create_goal,
        goal_call_twiml,
        mark_dialing,
    )
    from tars_actors.runtime.log import configure_logging
    from tars_actors.store import Store
    from tars_actors.telephony.intents import IntentBook, IntentKind
    from tars_actors.telephony.rest import (
        describe_error,
        make_client,
        may_have_acted,
        outbound_call_options,
    )

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
        twiml, status_callback = goal_call_twiml(settings, store, goal)
        options = outbound_call_options(
            to=goal.phone,
            from_=settings.twilio.phone_number,
            twiml=twiml,
            status_callback=status_callback,
            detect_machine=True,
            time_limit_seconds=settings.sessions.max_call_seconds,
        )
        # Written before the request, like the daemon's: if this process dies waiting for
        # Twilio's answer, the daemon's next start finds the call in Twilio's records.
        book = IntentBook(store)
        claim = book.claim(
            key=f"{IntentKind.CALL}:{GOAL_PREFIX}{goal.id}",
            kind=IntentKind.CALL,
            to_number=goal.phone,
            from_number=settings.twilio.phone_number,
            request={"twiml": twiml, "status_callback": status_callback},
        )
        try:
            call = client.calls.create(**options)
        except Exception as error:  # noqa: BLE001 (any REST failure is reported, not raised)
            from tars_actors.goals.desk import finish_goal
            from tars_actors.store import GoalStatus

            if not may_have_acted(error):  # else the daemon's next start looks it up
                book.failed(claim.intent, describe_error(error))
            finish_goal(store, goal.id, GoalStatus.FAILED)
            print(f"tars: the call could not be placed: {describe_error(error)}", file=sys.stderr)
            return 1
        book.sent(claim.intent, str(call.sid))
        mark_dialing(store, goal.id, str(call.sid))
    finally:
        store.close()
        store.shutdown()
    print(f"goal {goal.id}: calling {goal.contact_name} ({goal.phone}), call {call.sid}", file=out)
    return 0
