"""The Twilio REST client as TARS uses it: built from settings, pointed at ``[twilio]
api_base_url`` when set, and the error kinds its callers act on (already ended, transient).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import requests
import urllib3
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client

from tars_actors.runtime.settings import Settings

__all__ = [
    "ALREADY_ENDED_CODE",
    "DEFAULT_TIMEOUT",
    "RetryPolicy",
    "describe_error",
    "error_code",
    "error_status",
    "is_already_ended",
    "is_transient",
    "make_client",
    "may_have_acted",
    "outbound_call_options",
]

#: Twilio's "The requested resource was not found": a hang-up of a call that already ended.
ALREADY_ENDED_CODE: Final = 20404
#: Seconds per HTTP request; twilio-python waits forever by default.
DEFAULT_TIMEOUT: Final = 10.0

# Twilio answers these before doing anything, so even creating a message may be retried.
_NOT_PROCESSED_STATUSES: Final = frozenset({429, 503})


def make_client(settings: Settings, *, timeout: float = DEFAULT_TIMEOUT) -> Client:
    """A twilio ``Client`` with the credentials from the environment (``settings.secrets``).

    With ``[twilio] api_base_url`` set, every request goes there: calls, messages and
    numbers are all v2010 resources under ``client.api``, whose ``Domain.absolute_url``
    joins ``client.api.base_url`` with ``/2010-04-01/…``. ``TWILIO_EDGE`` and
    ``TWILIO_REGION`` are then ignored, because ``ClientBase.get_hostname`` would rewrite
    the host of the proxy or stand-in (they are still honoured for Twilio's own API).
    """
    secrets = settings.secrets
    missing = [
        variable
        for variable, value in (
            ("TWILIO_ACCOUNT_SID", secrets.twilio_account_sid),
            ("TWILIO_AUTH_TOKEN", secrets.twilio_auth_token),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"Twilio REST needs {' and '.join(missing)} set in the environment")
    client = Client(
        secrets.twilio_account_sid,
        secrets.twilio_auth_token,
        http_client=TwilioHttpClient(timeout=timeout),
    )
    base_url = settings.twilio.api_base_url
    if base_url:
        client.api.base_url = base_url
        client.edge = None
        client.region = None
    return client


def error_status(error: BaseException) -> int | None:
    """The HTTP status of a Twilio error answer; None when there was no answer."""
    if isinstance(error, TwilioException):
        status = getattr(error, "status", None)
        return status if isinstance(status, int) else None
    return None


def error_code(error: BaseException) -> int | None:
    """Twilio's error code (20404, 21211…) of an error answer, if it has one."""
    if isinstance(error, TwilioException):
        code = getattr(error, "code", None)
        return code if isinstance(code, int) else None
    return None


def describe_error(error: BaseException) -> str:
    """One line for a log: twilio's own ``str`` turns into coloured paragraphs on a TTY.

    A failed page of a ``list`` raises a bare ``TwilioException("Unable to fetch page",
    response)``: its status, code and message are read from that response.
    """
    status = error_status(error)
    if status is not None:
        code = error_code(error)
        text = getattr(error, "msg", None) or getattr(error, "title", None) or ""
        return f"HTTP {status}" + (f" code {code}" if code else "") + (f": {text}" if text else "")
    response = error.args[1] if isinstance(error, TwilioException) and len(error.args) > 1 else None
    answered = getattr(response, "status_code", None)
    if isinstance(answered, int):
        try:
            body = json.loads(str(getattr(response, "text", "") or "{}"))
        except ValueError:
            body = None
        fields: dict[str, Any] = body if isinstance(body, dict) else {}
        code = fields.get("code")
        message = fields.get("message") or error.args[0]
        return (
            f"HTTP {answered}" + (f" code {code}" if isinstance(code, int) else "") + f": {message}"
        )
    return f"{type(error).__name__}: {error}"


def is_already_ended(error: BaseException) -> bool:
    """Whether a hang-up failed only because the call is gone already (404 / 20404)."""
    return error_status(error) == 404 or error_code(error) == ALREADY_ENDED_CODE


def is_transient(error: BaseException, *, idempotent: bool) -> bool:
    """Whether retrying the request may succeed.

    Server errors (5xx), rate limiting (429) and connection failures are transient. A
    request that is not ``idempotent`` (creating a message) is retried only when Twilio
    surely did not act on it: 429/503, or no connection at all. After a 500 or a read
    timeout the message may have been sent, and a duplicate SMS is worse than a reported
    failure.
    """
    status = error_status(error)
    if status is not None:
        if status in _NOT_PROCESSED_STATUSES:
            return True
        return idempotent and status >= 500
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return True
    if isinstance(error, requests.exceptions.ReadTimeout):
        return idempotent
    if isinstance(error, requests.exceptions.ConnectionError):
        return idempotent or _never_connected(error)
    return False


def may_have_acted(error: BaseException) -> bool:
    """Whether Twilio may have carried out a request that failed so. Only an answer that
    says it did not (a 4xx, 429, 503) or a connection never made is sure; anything else (a
    500, a lost or cut-off answer, an answer that cannot be read) may have been acted on."""
    status = error_status(error)
    if status is not None:
        return status >= 500 and status not in _NOT_PROCESSED_STATUSES
    if isinstance(error, requests.exceptions.ConnectTimeout):
        return False
    if isinstance(error, requests.exceptions.ConnectionError) and _never_connected(error):
        return False
    return not isinstance(error, ValueError | TypeError)


def _never_connected(error: requests.exceptions.ConnectionError) -> bool:
    # requests wraps urllib3's MaxRetryError, whose reason says whether the connection
    # was refused (nothing sent) or dropped mid-request (maybe acted on).
    cause = error.args[0] if error.args else None
    return isinstance(cause, urllib3.exceptions.MaxRetryError) and isinstance(
        cause.reason, urllib3.exceptions.NewConnectionError
    )


def outbound_call_options(
    *,
    to: str,
    from_: str,
    twiml: str,
    status_callback: str,
    detect_machine: bool = False,
    time_limit_seconds: int | None = None,
    ring_seconds: int | None = None,
) -> dict[str, Any]:
    """``calls.create`` keyword arguments for a call TARS places: inline TwiML, every
    status event by GET, and optionally asynchronous answering-machine detection and a
    ring timeout (Twilio's default is 60 s)."""
    options: dict[str, Any] = {
        "to": to,
        "from_": from_,
        "twiml": twiml,
        "status_callback": status_callback,
        "status_callback_method": "GET",
        "status_callback_event": ["initiated", "ringing", "answered", "completed"],
    }
    if detect_machine:
        options.update(
            machine_detection="DetectMessageEnd",
            async_amd="true",
            async_amd_status_callback=status_callback,
            async_amd_status_callback_method="GET",
        )
    if time_limit_seconds is not None:
        options["time_limit"] = time_limit_seconds
    if ring_seconds is not None:
        options["timeout"] = ring_seconds
    return options


@dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """Bounded retries of transient failures, with exponential backoff."""

    attempts: int = 3
    initial_delay: float = 0.5
    max_delay: float = 4.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")
        if self.initial_delay < 0 or self.max_delay < self.initial_delay:
            raise ValueError(
                f"need 0 <= initial_delay <= max_delay, got {self.initial_delay}, {self.max_delay}"
            )

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failed attempt."""
        return float(min(self.max_delay, self.initial_delay * 2 ** (failures - 1)))


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Done(Generic[T]):
    """A request that succeeded, and after how many attempts."""

    value: T
    attempts: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The last error of a request that will not be retried (any more)."""

    error: Exception
    attempts: int

    def __str__(self) -> str:
        return describe_error(self.error)
