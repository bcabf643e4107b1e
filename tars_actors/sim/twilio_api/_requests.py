"""Reading a REST request as Twilio does: Basic auth, the route to an operation, parameters,
and the error JSON the client turns into ``TwilioRestException``."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from typing import Any

from tars_actors.sim.twilio_api._records import Operation

__all__ = ["ROUTES", "Params", "RestError", "authenticate", "error_body", "route"]


class RestError(Exception):
    """A Twilio error answer: HTTP ``status`` and Twilio's ``code`` and ``message``."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


_ACCOUNT = r"/2010-04-01/Accounts/(?P<account>[^/]+)"
ROUTES: tuple[tuple[str, re.Pattern[str], Operation], ...] = (
    ("POST", re.compile(_ACCOUNT + r"/Calls\.json"), Operation.CALLS_CREATE),
    ("GET", re.compile(_ACCOUNT + r"/Calls\.json"), Operation.CALLS_LIST),
    ("GET", re.compile(_ACCOUNT + r"/Calls/(?P<sid>[^/]+)\.json"), Operation.CALLS_FETCH),
    ("POST", re.compile(_ACCOUNT + r"/Calls/(?P<sid>[^/]+)\.json"), Operation.CALLS_UPDATE),
    ("POST", re.compile(_ACCOUNT + r"/Messages\.json"), Operation.MESSAGES_CREATE),
    ("GET", re.compile(_ACCOUNT + r"/Messages\.json"), Operation.MESSAGES_LIST),
    ("GET", re.compile(_ACCOUNT + r"/IncomingPhoneNumbers\.json"), Operation.NUMBERS_LIST),
    (
        "POST",
        re.compile(_ACCOUNT + r"/IncomingPhoneNumbers/(?P<sid>[^/]+)\.json"),
        Operation.NUMBERS_UPDATE,
    ),
)


def error_body(status: int, code: int, message: str) -> dict[str, Any]:
    return {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }


def authenticate(authorization: str | None, *, account_sid: str, auth_token: str) -> None:
    """Accept Basic auth with the account SID and auth token; raise 401 otherwise."""
    scheme, _, encoded = (authorization or "").partition(" ")
    try:
        user, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        user, password = "", ""
    valid = (
        scheme.lower() == "basic"
        and hmac.compare_digest(user.encode(), account_sid.encode())
        and hmac.compare_digest(password.encode(), auth_token.encode())
    )
    if not valid:
        raise RestError(401, 20003, "Authenticate")


def route(method: str, path: str, *, account_sid: str) -> tuple[Operation, re.Match[str]]:
    """The operation ``method path`` asks for; 403 for another account, 404 for anything else."""
    for route_method, pattern, operation in ROUTES:
        match = pattern.fullmatch(path)
        if match is not None and route_method == method:
            if match["account"] != account_sid:
                raise RestError(403, 20003, "Authenticate")
            return operation, match
    raise RestError(404, 20404, f"The requested resource {path} was not found")


class Params:
    """Form or query parameters, with repeated keys kept."""

    __slots__ = ("_pairs",)

    def __init__(self, pairs: tuple[tuple[str, str], ...]) -> None:
        self._pairs = pairs

    def get(self, name: str, default: str | None = None) -> str | None:
        for key, value in self._pairs:
            if key == name:
                return value
        return default

    def all(self, name: str) -> tuple[str, ...]:
        return tuple(value for key, value in self._pairs if key == name)

    @property
    def pairs(self) -> tuple[tuple[str, str], ...]:
        return self._pairs
