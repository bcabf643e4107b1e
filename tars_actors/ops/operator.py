"""Operator commands: ``twilio check`` and ``twilio configure`` point the Twilio number's
webhooks at TARS; ``service`` prints a systemd unit for this install.

TARS's server cannot read request bodies, so Twilio must call both webhooks with GET:
``{public_url}/twilio/voice`` for incoming calls and ``{public_url}/twilio/status`` for
call status events.
"""

from __future__ import annotations

import argparse
import os
import pwd
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TextIO
from urllib.parse import urlsplit

from twilio.base.exceptions import TwilioException

from tars_actors.runtime.settings import Settings
from tars_actors.telephony.rest import describe_error, make_client
from tars_actors.telephony.twiml import STATUS_PATH, VOICE_PATH

__all__ = [
    "ENV_FILE",
    "EXIT_OK",
    "EXIT_SETTINGS",
    "EXIT_WRONG",
    "WEBHOOK_METHOD",
    "Change",
    "ConfigureResult",
    "NumberConfig",
    "NumberReport",
    "Webhooks",
    "check_number",
    "configure_number",
    "expected_webhooks",
    "find_number",
    "number_problems",
    "planned_changes",
    "render_check",
    "render_configure",
    "service_main",
    "service_unit",
    "settings_problems",
    "twilio_main",
]

#: The only method TARS's webhooks accept: the websockets server reads no request body.
WEBHOOK_METHOD: Final = "GET"
#: Where the unit reads the secrets from (TWILIO_ACCOUNT_SID, TWILIO_AUTH_TOKEN, GEMINI_API_KEY).
ENV_FILE: Final = Path("/etc/tars/tars.env")
#: Seconds systemd waits after SIGTERM: calls get [sessions] shutdown_grace_seconds (30 by
#: default) to finish, then the actors stop.
STOP_TIMEOUT_SECONDS: Final = 90

EXIT_OK: Final = 0
#: The number is misconfigured, not in the account, or Twilio's API failed.
EXIT_WRONG: Final = 1
#: Missing credentials or settings that cannot be used (as argparse's usage errors).
EXIT_SETTINGS: Final = 2

_CONFIGURE_HINT: Final = "python run.py twilio configure"
_NOT_SET: Final = "(not set)"
_TWILIO_ERRORS: Final = (TwilioException, OSError)  # requests' errors are OSErrors


# --- what the number should look like ----------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Webhooks:
    """The URLs the Twilio number must call, both by GET."""

    voice_url: str
    status_callback: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberConfig:
    """The voice configuration of one incoming phone number, as Twilio reports it."""

    sid: str
    phone_number: str
    friendly_name: str = ""
    voice_url: str | None = None
    voice_method: str | None = None
    status_callback: str | None = None
    status_callback_method: str | None = None
    #: A TwiML app or SIP trunk takes calls instead of voice_url when set.
    voice_application_sid: str | None = None
    trunk_sid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Change:
    """One field of the number that configure sets (``new`` None clears it)."""

    field: str
    old: str | None
    new: str | None


def expected_webhooks(settings: Settings) -> Webhooks:
    """The voice URL and status callback for ``[server] public_url``."""
    base = settings.server.public_url.rstrip("/")
    return Webhooks(voice_url=base + VOICE_PATH, status_callback=base + STATUS_PATH)


def settings_problems(settings: Settings) -> list[str]:
    """What in the settings keeps the number from being checked or configured."""
    problems: list[str] = []
    public_url = settings.server.public_url
    if urlsplit(public_url).scheme.lower() != "https":
        problems.append(
            f"[server] public_url {public_url} is not https: Twilio only calls webhooks over TLS"
        )
    problems.extend(
        problem
        for problem in settings.missing_for_real_calls()
        if problem.startswith(("[server] public_url", "[twilio] phone_number"))
    )
    return problems


def number_problems(
    number: NumberConfig, wanted: Webhooks, *, check_urls: bool = True
) -> list[str]:
    """Each way ``number`` differs from ``wanted``, with what it should be.

    ``check_urls`` False skips the URL comparisons (when public_url is not usable yet).
    """
    problems: list[str] = []
    if number.voice_application_sid:
        problems.append(
            f"voice_application_sid {number.voice_application_sid} is set: Twilio sends calls "
            "to that TwiML app and ignores the voice URL; it should be empty"
        )
    if number.trunk_sid:
        problems.append(
            f"trunk_sid {number.trunk_sid} is set: Twilio sends calls to that SIP trunk and "
            "ignores the voice URL; it should be empty"
        )
    if check_urls:
        problems.extend(
            _url_problems("voice URL", number.voice_url, wanted.voice_url)
            + _url_problems("status callback", number.status_callback, wanted.status_callback)
        )
    problems.extend(
        _method_problems("voice method", number.voice_method)
        + _method_problems("status callback method", number.status_callback_method)
    )
    return problems


def _url_problems(label: str, current: str | None, wanted: str) -> list[str]:
    if not current:
        return [f"{label} is missing; should be {wanted}"]
    if current == wanted:
        return []
    if urlsplit(current).scheme.lower() == "http":
        return [f"{label} {current} uses http instead of https; should be {wanted}"]
    return [f"{label} is {current}; should be {wanted}"]


def _method_problems(label: str, current: str | None) -> list[str]:
    if (current or "").upper() == WEBHOOK_METHOD:
        return []
    return [
        f"{label} is {current or _NOT_SET}; should be {WEBHOOK_METHOD} "
        "(TARS's server cannot read request bodies)"
    ]


def planned_changes(number: NumberConfig, wanted: Webhooks) -> list[Change]:
    """The fields configure must set so that ``number`` matches ``wanted``; [] if none."""
    targets: list[tuple[str, str | None, str | None]] = [
        ("voice_url", number.voice_url, wanted.voice_url),
        ("voice_method", number.voice_method, WEBHOOK_METHOD),
        ("status_callback", number.status_callback, wanted.status_callback),
        ("status_callback_method", number.status_callback_method, WEBHOOK_METHOD),
        ("voice_application_sid", number.voice_application_sid, None),
        ("trunk_sid", number.trunk_sid, None),
    ]
    changes = []
    for name, old, new in targets:
        same = (old or "").upper() == (new or "") if name.endswith("_method") else old == new
        if not same:
            changes.append(Change(field=name, old=old, new=new))
    return changes


# --- talking to Twilio -------------------------------------------------------------------------


def _text(value: object) -> str | None:
    """A field of a twilio instance as text; None for missing or empty."""
    if value is None or value == "":
        return None
    return str(value)


def _number_config(instance: Any) -> NumberConfig:
    return NumberConfig(
        sid=str(instance.sid),
        phone_number=str(instance.phone_number),
        friendly_name=_text(getattr(instance, "friendly_name", None)) or "",
        voice_url=_text(getattr(instance, "voice_url", None)),
        voice_method=_text(getattr(instance, "voice_method", None)),
        status_callback=_text(getattr(instance, "status_callback", None)),
        status_callback_method=_text(getattr(instance, "status_callback_method", None)),
        voice_application_sid=_text(getattr(instance, "voice_application_sid", None)),
        trunk_sid=_text(getattr(instance, "trunk_sid", None)),
    )


def find_number(client: Any, phone_number: str) -> NumberConfig | None:
    """The account's incoming number ``phone_number``, or None when the account has none.

    Raises the twilio client's errors (``TwilioException``, ``requests`` errors).
    """
    found = client.incoming_phone_numbers.list(phone_number=phone_number, limit=20)
    matches = [number for number in found if str(number.phone_number) == phone_number]
    return _number_config(matches[0]) if matches else None


def _not_in_account(phone_number: str) -> str:
    return (
        f"number {phone_number} is not in this Twilio account: check [twilio] phone_number "
        "and TWILIO_ACCOUNT_SID"
    )


# --- twilio check --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NumberReport:
    """What ``twilio check`` found: the number as configured and what is wrong with it."""

    phone_number: str
    wanted: Webhooks
    #: None when the number was not found or could not be looked up.
    number: NumberConfig | None = None
    problems: tuple[str, ...] = ()
    settings_problems: tuple[str, ...] = ()
    #: A failed REST request, described.
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == EXIT_OK

    @property
    def exit_code(self) -> int:
        if self.settings_problems:
            return EXIT_SETTINGS
        if self.error or self.problems or self.number is None:
            return EXIT_WRONG
        return EXIT_OK


def check_number(settings: Settings, client: Any = None) -> NumberReport:
    """Look the number up and compare its webhooks with what TARS needs.

    ``client`` defaults to :func:`make_client`, which raises ValueError without
    credentials. REST failures are reported in ``error``, not raised.
    """
    phone_number = settings.twilio.phone_number
    wanted = expected_webhooks(settings)
    blockers = tuple(settings_problems(settings))
    if not phone_number:
        return NumberReport(phone_number="", wanted=wanted, settings_problems=blockers)
    twilio = make_client(settings) if client is None else client
    try:
        number = find_number(twilio, phone_number)
    except _TWILIO_ERRORS as error:
        return NumberReport(
            phone_number=phone_number,
            wanted=wanted,
            settings_problems=blockers,
            error=f"cannot list the account's phone numbers: {describe_error(error)}",
        )
    if number is None:
        problems = [_not_in_account(phone_number)]
    else:
        problems = number_problems(number, wanted, check_urls=not blockers)
    return NumberReport(
        phone_number=phone_number,
        wanted=wanted,
        number=number,
        problems=tuple(problems),
        settings_problems=blockers,
    )


def _shown(value: str | None) -> str:
    return value or _NOT_SET


def _describe_number(number: NumberConfig) -> list[str]:
    name = f" {number.friendly_name!r}" if number.friendly_name != number.phone_number else ""
    lines = [
        f"Twilio number {number.phone_number} ({number.sid}){name}",
        f"  voice URL:        {_shown(number.voice_url)} [{_shown(number.voice_method)}]",
        f"  status callback:  {_shown(number.status_callback)} "
        f"[{_shown(number.status_callback_method)}]",
    ]
    if number.voice_application_sid:
        lines.append(f"  TwiML app:        {number.voice_application_sid}")
    if number.trunk_sid:
        lines.append(f"  SIP trunk:        {number.trunk_sid}")
    return lines


def render_check(report: NumberReport) -> str:
    """The report as ``twilio check`` prints it."""
    lines = [] if report.number is None else _describe_number(report.number)
    if report.settings_problems:
        lines.append("settings to fix first:")
        lines.extend(f"  - {problem}" for problem in report.settings_problems)
    if report.error:
        lines.append(f"error: {report.error}")
    if report.problems:
        count = len(report.problems)
        lines.append(f"wrong ({count} problem{'s' if count != 1 else ''}):")
        lines.extend(f"  - {problem}" for problem in report.problems)
    if report.ok:
        lines.append(
            f"ok: calls to {report.phone_number} reach {report.wanted.voice_url} "
            f"by {WEBHOOK_METHOD}, status events go to {report.wanted.status_callback} "
            f"by {WEBHOOK_METHOD}"
        )
    elif report.settings_problems:
        lines.append(f"then run: {_CONFIGURE_HINT}")
    elif report.number is not None and report.problems:
        lines.append(f"fix it with: {_CONFIGURE_HINT}")
    return "\n".join(lines) + "\n"


# --- twilio configure ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ConfigureResult:
    """What ``twilio configure`` did: the changes, or why it sent nothing or failed."""

    phone_number: str
    wanted: Webhooks
    number: NumberConfig | None = None
    #: The fields that differed; applied only when ``applied``.
    changes: tuple[Change, ...] = ()
    applied: bool = False
    #: Settings problems: nothing was sent to Twilio.
    refused: tuple[str, ...] = ()
    error: str | None = None

    @property
    def exit_code(self) -> int:
        if self.refused:
            return EXIT_SETTINGS
        if self.error:
            return EXIT_WRONG
        return EXIT_OK


def _update_arguments(changes: Sequence[Change], wanted: Webhooks) -> dict[str, str]:
    arguments = {
        "voice_url": wanted.voice_url,
        "voice_method": WEBHOOK_METHOD,
        "status_callback": wanted.status_callback,
        "status_callback_method": WEBHOOK_METHOD,
    }
    # Twilio clears a SID given as an empty string.
    arguments.update({change.field: "" for change in changes if change.field.endswith("_sid")})
    return arguments


def configure_number(settings: Settings, client: Any = None) -> ConfigureResult:
    """Point the number's voice URL and status callback at TARS, both by GET.

    Sends one update with all four webhook fields when anything differs, none otherwise.
    Refuses (sends nothing) while public_url is not https or still the placeholder.
    ``client`` defaults to :func:`make_client`, which raises ValueError without credentials.
    """
    phone_number = settings.twilio.phone_number
    wanted = expected_webhooks(settings)
    refused = tuple(settings_problems(settings))
    if refused:
        return ConfigureResult(phone_number=phone_number, wanted=wanted, refused=refused)
    twilio = make_client(settings) if client is None else client
    try:
        number = find_number(twilio, phone_number)
    except _TWILIO_ERRORS as error:
        return ConfigureResult(
            phone_number=phone_number,
            wanted=wanted,
            error=f"cannot list the account's phone numbers: {describe_error(error)}",
        )
    if number is None:
        return ConfigureResult(
            phone_number=phone_number, wanted=wanted, error=_not_in_account(phone_number)
        )
    changes = tuple(planned_changes(number, wanted))
    if not changes:
        return ConfigureResult(phone_number=phone_number, wanted=wanted, number=number)
    try:
        updated = twilio.incoming_phone_numbers(number.sid).update(
            **_update_arguments(changes, wanted)
        )
    except _TWILIO_ERRORS as error:
        return ConfigureResult(
            phone_number=phone_number,
            wanted=wanted,
            number=number,
            changes=changes,
            error=f"updating {phone_number} ({number.sid}) failed: {describe_error(error)}",
        )
    after = _number_config(updated)
    left = planned_changes(after, wanted)
    mismatch = None
    if left:
        shown = ", ".join(f"{change.field}={_shown(change.old)}" for change in left)
        mismatch = f"Twilio accepted the update but the number still has {shown}"
    return ConfigureResult(
        phone_number=phone_number,
        wanted=wanted,
        number=after,
        changes=changes,
        applied=True,
        error=mismatch,
    )


def _change_line(change: Change) -> str:
    return f"  {change.field}: {_shown(change.old)} → {_shown(change.new)}"


def render_configure(result: ConfigureResult) -> str:
    """The result as ``twilio configure`` prints it: each change as ``field: old → new``."""
    if result.refused:
        lines = [f"refusing to configure {result.phone_number or 'the Twilio number'}:"]
        lines.extend(f"  - {problem}" for problem in result.refused)
        lines.append("nothing was sent to Twilio")
        return "\n".join(lines) + "\n"
    number = result.number
    name = result.phone_number if number is None else f"{number.phone_number} ({number.sid})"
    lines = []
    if result.applied:
        lines.append(f"Twilio number {name} updated:")
        lines.extend(_change_line(change) for change in result.changes)
    elif result.changes:
        lines.append(f"Twilio number {name} needs:")
        lines.extend(_change_line(change) for change in result.changes)
    if result.error:
        lines.append(f"error: {result.error}")
        if not result.applied:
            lines.append("nothing changed")
    elif not result.changes:
        lines.append(f"Twilio number {name} already points at TARS; nothing changed")
        lines.append(f"  voice URL:        {result.wanted.voice_url} [{WEBHOOK_METHOD}]")
        lines.append(f"  status callback:  {result.wanted.status_callback} [{WEBHOOK_METHOD}]")
    return "\n".join(lines) + "\n"


# --- systemd unit --------------------------------------------------------------------------------

_PLAIN_WORD = re.compile(r"[A-Za-z0-9_@%+=:,./-]+")


def _no_control_characters(text: str) -> str:
    if any(ord(char) < 32 or ord(char) == 127 for char in text):
        raise ValueError(f"{text!r} contains a control character; systemd cannot use it")
    return text


def _exec_word(text: str) -> str:
    """One ExecStart argument: ``%`` and ``$`` escaped, quoted when it has spaces and such."""
    _no_control_characters(text)
    if _PLAIN_WORD.fullmatch(text):
        return text.replace("%", "%%")
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    return f'"{escaped}"'


def _path_value(path: Path) -> str:
    """A path as a whole-line setting (WorkingDirectory=): taken verbatim but for ``%``."""
    text = _no_control_characters(os.fspath(path))
    if text != text.strip() or text.endswith("\\"):
        raise ValueError(f"{text!r}: systemd strips or joins what ends or starts this path")
    return text.replace("%", "%%")


def _absolute(path: Path) -> Path:
    # absolute(), not resolve(): a venv's python is a symlink that must stay the venv's.
    return Path(os.path.normpath(path.expanduser().absolute()))


def _absolute_python(python: str) -> Path:
    if os.sep not in python:
        found = shutil.which(python)
        if found is None:
            raise ValueError(f"{python!r} is not on PATH; give the interpreter's absolute path")
        python = found
    return _absolute(Path(python))


def service_unit(
    settings_path: Path,
    *,
    python: str = sys.executable,
    workdir: Path,
    user: str | None,
    env_file: Path = ENV_FILE,
    stop_timeout_seconds: int = STOP_TIMEOUT_SECONDS,
) -> str:
    """A systemd unit that serves TARS from ``workdir`` with ``settings_path``.

    Secrets stay in ``env_file``; the unit holds none. ``user`` None runs it as root.
    Raises ValueError for paths systemd cannot express.
    """
    settings_file = _absolute(settings_path)
    directory = _absolute(workdir)
    interpreter = _absolute_python(python)
    run_py = directory / "run.py"
    exec_start = " ".join(
        _exec_word(os.fspath(word)) for word in (interpreter, run_py, "--settings", settings_file)
    )
    shell_settings = _shell_word(os.fspath(settings_file))
    shell_run = f"{_shell_word(os.fspath(interpreter))} {_shell_word(os.fspath(run_py))}"
    env = os.fspath(env_file)
    user_line = (
        f"User={_no_control_characters(user)}"
        if user
        else "# User=tars  (without User= TARS runs as root; prefer an unprivileged account)"
    )
    return f"""\
# TARS: the phone assistant, served by systemd.
# Generated by `python run.py service` for the install in {directory}.
#
# Install:
#   {shell_run} --settings {shell_settings} service | sudo tee /etc/systemd/system/tars.service
#   sudo install -d -m 755 {os.path.dirname(env)}
#   sudo install -m 600 /dev/null {env} && sudoedit {env}
#     with one line each (the secrets live only in that file, never in this unit):
#     TWILIO_ACCOUNT_SID=AC...
#     TWILIO_AUTH_TOKEN=...
#     GEMINI_API_KEY=...
#   sudo systemctl daemon-reload && sudo systemctl enable --now tars
#   journalctl -u tars -f
#
# `sudo systemctl reload tars` sends SIGHUP (reload settings); `stop` sends SIGTERM and
# waits up to {stop_timeout_seconds}s for live calls to finish. Relative paths in the settings
# (sqlite:///tars.db) are relative to WorkingDirectory, which must stay writable: with
# ProtectSystem=full, /usr, /boot and /etc are read-only to TARS.

[Unit]
Description=TARS phone assistant (Twilio + Gemini Live)
After=network-online.target
Wants=network-online.target

[Service]
Type=simple
{user_line}
WorkingDirectory={_path_value(directory)}
EnvironmentFile=-{_path_value(env_file)}
Environment=PYTHONUNBUFFERED=1
ExecStart={exec_start}
ExecReload=/bin/kill -HUP $MAINPID
Restart=on-failure
RestartSec=5
KillSignal=SIGTERM
TimeoutStopSec={stop_timeout_seconds}
StandardOutput=journal
StandardError=journal
SyslogIdentifier=tars
UMask=0027
NoNewPrivileges=true
PrivateTmp=true
ProtectSystem=full

[Install]
WantedBy=multi-user.target
"""


def _shell_word(text: str) -> str:
    """``text`` quoted for the shell commands in the header comment."""
    if _PLAIN_WORD.fullmatch(text):
        return text
    return "'" + text.replace("'", "'\\''") + "'"


def _current_user() -> str | None:
    """The user running this command; None for root (the unit then has no User=)."""
    uid = os.geteuid()
    if uid == 0:
        return None
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def _install_dir() -> Path:
    """The directory holding run.py: the checkout this module was imported from."""
    return Path(__file__).resolve().parents[2]


# --- command line --------------------------------------------------------------------------------


def _twilio_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python run.py twilio",
        description="Check or set the Twilio number's webhooks (voice URL and status "
        "callback, both by GET) from [server] public_url.",
    )
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    sub.add_parser(
        "check", help="show the number's webhooks and what is wrong (exit 0 ok, 1 wrong)"
    )
    sub.add_parser("configure", help="set the voice URL and status callback (GET) if they differ")
    return parser


def twilio_main(
    argv: Sequence[str],
    settings: Settings,
    *,
    stdout: TextIO | None = None,
    client: Any = None,
) -> int:
    """``python run.py twilio check|configure``: 0 ok, 1 wrong or REST failure, 2 settings."""
    out = stdout or sys.stdout
    try:
        args = _twilio_parser().parse_args(list(argv))
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else EXIT_SETTINGS
    try:
        if args.action == "check":
            report = check_number(settings, client)
            text, code = render_check(report), report.exit_code
        else:
            result = configure_number(settings, client)
            text, code = render_configure(result), result.exit_code
    except ValueError as error:
        # make_client: the credentials are missing from the environment.
        print(f"tars: {error}", file=sys.stderr)
        return EXIT_SETTINGS
    out.write(text)
    return code


def service_main(settings_path: Path, *, stdout: TextIO | None = None) -> int:
    """``python run.py service``: print the systemd unit for this install and user."""
    out = stdout or sys.stdout
    if not settings_path.is_file():
        print(
            f"tars: warning: settings file {_absolute(settings_path)} does not exist yet; "
            "the service will not start without it",
            file=sys.stderr,
        )
    try:
        unit = service_unit(settings_path, workdir=_install_dir(), user=_current_user())
    except ValueError as error:
        print(f"tars: {error}", file=sys.stderr)
        return EXIT_SETTINGS
    out.write(unit)
    return EXIT_OK
