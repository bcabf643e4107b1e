"""Structured logs: JSON lines with bound actor context, secret redaction, stdlib loggers."""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pykka
import pytest
import structlog

from tars_actors.runtime.actor import TarsActor
from tars_actors.runtime.log import (
    REDACTED,
    SecretRedactor,
    configure_logging,
    get_logger,
    reset_logging,
    set_level,
)

WAIT = 5.0
AUTH_TOKEN = "tw-auth-0123456789abcdef"
API_KEY = "AIzaSyD-test-gemini-key-42"


@pytest.fixture(autouse=True)
def _clean_actors_and_logging() -> Iterator[None]:
    yield
    for ref in pykka.ActorRegistry.get_all():
        ref.stop(block=True, timeout=WAIT)
    reset_logging()


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    """Every line written so far, each of which must be one JSON object."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]


class TtyStream(io.StringIO):
    """A stream that says it is a terminal, as stdout is in an interactive shell."""

    def isatty(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Crash:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class Say:
    event: str


class CallSessionStandIn(TarsActor):
    """Binds a session name and call SID like a call session does, then fails on Crash."""

    actor_kind = "CallSession"

    def __init__(self, session: str, call_sid: str) -> None:
        super().__init__()
        self._session = session
        self._call_sid = call_sid

    def log_context(self) -> dict[str, Any]:
        return {**super().log_context(), "session": self._session}

    def on_start(self) -> None:
        # Fields learnt after start (from Twilio's `start` event) are bound the same way.
        self.bind_log(call_sid=self._call_sid)

    def on_receive(self, message: Any) -> Any:
        match message:
            case Crash():
                raise RuntimeError("tool handler failed")
            case Say(event=event):
                get_logger("tars.call").info(event)
                return None
        return super().on_receive(message)


def test_actor_crash_report_carries_the_actors_bound_context() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    ref = CallSessionStandIn.start("Caller 3", "CA0123456789abcdef")
    expected_id = ref.actor_urn.rsplit(":", 1)[-1][:8]

    ref.tell(Crash())
    assert ref.actor_stopped.wait(WAIT)
    get_logger("tars.test").info("after.crash")

    lines = json_lines(out)
    crash = [line for line in lines if line["event"].startswith("Unhandled exception in")]
    assert len(crash) == 1, lines
    report = crash[0]
    assert report["logger"] == "pykka"
    assert report["level"] == "error"
    assert report["actor"] == "CallSession"
    assert report["actor_id"] == expected_id
    assert report["session"] == "Caller 3"
    assert report["call_sid"] == "CA0123456789abcdef"
    (exception,) = report["exception"]
    assert exception["exc_type"] == "RuntimeError"
    assert exception["exc_value"] == "tool handler failed"
    assert "on_receive" in [frame["name"] for frame in exception["frames"]]
    # The context belongs to the actor's thread, not to the process.
    (after,) = [line for line in lines if line["event"] == "after.crash"]
    assert "session" not in after
    assert "actor" not in after


def test_lines_an_actor_writes_itself_carry_its_context() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    ref = CallSessionStandIn.start("Owner", "CA42")

    ref.ask(Say(event="call.greeted"), timeout=WAIT)

    (line,) = [line for line in json_lines(out) if line["event"] == "call.greeted"]
    assert line["logger"] == "tars.call"
    assert (line["actor"], line["session"], line["call_sid"]) == ("CallSession", "Owner", "CA42")


def test_json_line_has_utc_timestamp_level_event_and_logger_first() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)

    get_logger("tars.router").warning("message.queued", target="user", attempt=2)

    raw = out.getvalue().splitlines()
    assert len(raw) == 1
    line = json.loads(raw[0])
    assert list(line)[:4] == ["timestamp", "level", "logger", "event"]
    assert line["timestamp"].endswith("Z")
    assert "T" in line["timestamp"]
    assert (line["level"], line["logger"], line["event"]) == (
        "warning",
        "tars.router",
        "message.queued",
    )
    assert (line["target"], line["attempt"]) == ("user", 2)


def test_secrets_are_redacted_in_event_fields_and_tracebacks() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out, secrets=[AUTH_TOKEN, API_KEY, ""])
    log = get_logger("tars.twilio")

    log.info(
        f"calling with {AUTH_TOKEN}",
        headers={"Authorization": f"Basic {AUTH_TOKEN}", "nested": [("key", API_KEY)]},
        url=f"wss://example.test/live?key={API_KEY}",
        count=3,
    )
    try:
        raise PermissionError(f"rejected key {API_KEY}")
    except PermissionError:
        log.exception("gemini.connect_failed")

    text = out.getvalue()
    assert AUTH_TOKEN not in text
    assert API_KEY not in text
    first, second = json_lines(out)
    assert first["event"] == f"calling with {REDACTED}"
    assert first["headers"] == {
        "Authorization": f"Basic {REDACTED}",
        "nested": [["key", REDACTED]],
    }
    assert first["url"] == f"wss://example.test/live?key={REDACTED}"
    assert first["count"] == 3
    assert second["exception"][0]["exc_value"] == f"rejected key {REDACTED}"


def test_secrets_are_redacted_from_console_tracebacks_and_object_reprs() -> None:
    out = io.StringIO()
    configure_logging(format="console", stream=out, secrets=[AUTH_TOKEN])

    class Credentials:
        def __repr__(self) -> str:
            return f"Credentials(token={AUTH_TOKEN!r})"

    try:
        raise ValueError(f"bad token {AUTH_TOKEN}")
    except ValueError:
        logging.getLogger("twilio.http_client").exception(
            "request failed", extra={"credentials": Credentials()}
        )

    text = out.getvalue()
    assert AUTH_TOKEN not in text
    assert f"ValueError: bad token {REDACTED}" in text
    assert f"Credentials(token='{REDACTED}')" in text


def test_redactor_replaces_longer_secrets_first() -> None:
    redactor = SecretRedactor(["abc", "abcdef"])

    assert redactor.redact("x abcdef y abc") == f"x {REDACTED} y {REDACTED}"


@pytest.mark.parametrize(
    "logger_name",
    ["pykka", "websockets.server", "peewee", "google_genai.live", "httpx", "twilio.http_client"],
)
def test_library_stdlib_loggers_go_through_the_pipeline(logger_name: str) -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out, secrets=[API_KEY])
    structlog.contextvars.bind_contextvars(session="Owner")

    logging.getLogger(logger_name).warning("library says %s with %s", "hello", API_KEY)

    (line,) = json_lines(out)
    assert line["logger"] == logger_name
    assert line["level"] == "warning"
    assert line["event"] == f"library says hello with {REDACTED}"
    assert line["session"] == "Owner"
    assert line["timestamp"].endswith("Z")


def test_peewee_query_lines_do_not_flood_at_info_or_debug() -> None:
    out = io.StringIO()
    configure_logging(level="info", format="json", stream=out)
    logging.getLogger("peewee").debug("('SELECT 1', [])")
    set_level("debug")
    logging.getLogger("peewee").debug("('SELECT 2', [])")
    logging.getLogger("websockets.client").debug('> TEXT \'{"event": "media"}\'')
    get_logger("tars.call").debug("call.frame_in")

    events = [line["event"] for line in json_lines(out)]
    assert events == ["call.frame_in"]


def test_set_level_changes_what_is_written_at_runtime() -> None:
    out = io.StringIO()
    configure_logging(level="warning", format="json", stream=out)
    log = get_logger("tars.daemon")

    log.info("quiet.before")
    set_level("info")
    log.info("heard.after")
    logging.getLogger("pykka").info("pykka.heard")
    set_level("ERROR")
    log.warning("quiet.again")

    assert [line["event"] for line in json_lines(out)] == ["heard.after", "pykka.heard"]


def test_auto_format_is_console_on_a_terminal_and_json_otherwise() -> None:
    terminal = TtyStream()
    configure_logging(format="auto", stream=terminal)
    get_logger("tars.daemon").info("daemon.started", pid=42)
    piped = io.StringIO()
    configure_logging(format="auto", stream=piped)
    get_logger("tars.daemon").info("daemon.started", pid=42)

    console_line = terminal.getvalue()
    assert "\x1b[" in console_line  # coloured, since it is a terminal
    plain = re.sub(r"\x1b\[[0-9;]*m", "", console_line)
    assert "daemon.started" in plain
    assert "pid=42" in plain
    with pytest.raises(json.JSONDecodeError):
        json.loads(console_line)
    assert json_lines(piped)[0]["pid"] == 42


def test_console_format_is_readable_even_when_not_a_terminal() -> None:
    out = io.StringIO()
    configure_logging(format="console", stream=out)

    get_logger("tars.daemon").info("daemon.stopping", signal="SIGTERM")

    text = out.getvalue()
    assert "daemon.stopping" in text
    assert "signal=SIGTERM" in text
    assert "\x1b[" not in text  # no colour codes when the stream is not a terminal


def test_extra_file_always_gets_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "tars.log"
    console = TtyStream()
    configure_logging(format="console", stream=console, file=str(path), secrets=[AUTH_TOKEN])

    get_logger("tars.daemon").info("daemon.started", token=AUTH_TOKEN)
    logging.getLogger("peewee").warning("slow query")
    reset_logging()  # closes the file

    lines = [json.loads(line) for line in path.read_text("utf-8").splitlines()]
    assert [(line["logger"], line["event"]) for line in lines] == [
        ("tars.daemon", "daemon.started"),
        ("peewee", "slow query"),
    ]
    assert lines[0]["token"] == REDACTED
    assert "daemon.started" in console.getvalue()


def test_reconfiguring_replaces_its_own_handlers_and_keeps_others() -> None:
    root = logging.getLogger()
    foreign = logging.NullHandler()
    root.addHandler(foreign)
    try:
        first, second = io.StringIO(), io.StringIO()
        configure_logging(format="json", stream=first)
        configure_logging(format="json", stream=second)

        get_logger("tars.daemon").info("once")

        assert first.getvalue() == ""
        assert [line["event"] for line in json_lines(second)] == ["once"]
        assert foreign in root.handlers
    finally:
        root.removeHandler(foreign)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"level": "verbose"}, "[logging] level: 'verbose' is not one of debug, info"),
        ({"format": "xml"}, "[logging] format: 'xml' is not one of json, console, auto"),
    ],
)
def test_bad_level_or_format_is_an_error_naming_the_setting(
    kwargs: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        configure_logging(stream=io.StringIO(), **kwargs)


def test_unwritable_log_file_is_an_error_naming_the_setting(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "tars.log"

    with pytest.raises(ValueError, match=r"\[logging\] file: cannot open"):
        configure_logging(stream=io.StringIO(), file=str(missing))


def test_lines_from_many_threads_stay_whole() -> None:
    out = io.StringIO()
    configure_logging(format="json", stream=out)
    start = threading.Barrier(4)

    def write(worker: int) -> None:
        start.wait(WAIT)
        structlog.contextvars.bind_contextvars(worker=worker)
        for n in range(50):
            get_logger("tars.test").info("tick", n=n)

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)

    lines = json_lines(out)
    assert len(lines) == 200
    for worker in range(4):
        assert [line["n"] for line in lines if line["worker"] == worker] == list(range(50))
