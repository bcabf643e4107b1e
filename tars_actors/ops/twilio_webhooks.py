"""What the Twilio number's webhooks must be for TARS, and how a number differs from that.

TARS's server cannot read request bodies, so Twilio must call both webhooks with GET:
``{public_url}/twilio/voice`` for incoming calls and ``{public_url}/twilio/status`` for
call status events. Pure decisions: nothing here talks to Twilio.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from tars_actors.runtime.settings import Settings
from tars_actors.telephony.twiml import STATUS_PATH, VOICE_PATH

__all__ = [
    "NOT_SET",
    "WEBHOOK_METHOD",
    "Change",
    "NumberConfig",
    "Webhooks",
    "expected_webhooks",
    "number_problems",
    "planned_changes",
    "settings_problems",
]

#: The only method TARS's webhooks accept: the websockets server reads no request body.
WEBHOOK_METHOD: Final = "GET"
#: How an empty field of the number is shown.
NOT_SET: Final = "(not set)"


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
        f"{label} is {current or NOT_SET}; should be {WEBHOOK_METHOD} "
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
