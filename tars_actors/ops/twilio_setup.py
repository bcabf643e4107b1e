"""``python run.py twilio check`` and ``twilio configure``: look the number up through
Twilio's REST API, report what is wrong with its webhooks, or set them.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TextIO

from twilio.base.exceptions import TwilioException

from tars_actors.ops.twilio_webhooks import (
    NOT_SET,
    WEBHOOK_METHOD,
    Change,
    NumberConfig,
    Webhooks,
    expected_webhooks,
    number_problems,
    planned_changes,
    settings_problems,
)
from tars_actors.runtime.settings import Settings
from tars_actors.telephony.rest import describe_error, make_client

__all__ = [
    "EXIT_OK",
    "EXIT_SETTINGS",
    "EXIT_WRONG",
    "ConfigureResult",
    "NumberReport",
    "check_number",
    "configure_number",
    "find_number",
    "render_check",
    "render_configure",
    "twilio_main",
]

EXIT_OK: Final = 0
#: The number is misconfigured, not in the account, or Twilio's API failed.
EXIT_WRONG: Final = 1
#: Missing credentials or settings that cannot be used (as argparse's usage errors).
EXIT_SETTINGS: Final = 2

_CONFIGURE_HINT: Final = "python run.py twilio configure"
_TWILIO_ERRORS: Final = (TwilioException, OSError)  # requests' errors are OSErrors


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
    return value or NOT_SET


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
