"""Checks of single settings values: each takes a typed value and returns it normalised, or
raises :class:`Invalid` saying what is wrong (the loader adds which key it was).
"""

from __future__ import annotations

import difflib
import os
import re
import zoneinfo
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlsplit, urlunsplit

import peewee
from playhouse import db_url

from tars_actors.store.database import StoreError, build_database, redact_url

#: Shipped so the daemon and the demo start; ``missing_for_real_calls`` flags it. Also the
#: example a phone number's error shows.
PLACEHOLDER_OWNER_PHONE = "+15555550100"


class SettingsError(Exception):
    """Settings that cannot be used; ``problems`` holds one message per problem."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(*self.problems)

    def __str__(self) -> str:
        return "\n".join(self.problems)


class Invalid(Exception):
    """Raised by a value check with what is wrong; the caller adds which key it is."""


Check = Callable[[Any], Any]


def checked(check: Check) -> dict[str, Check]:
    """Field metadata: ``check`` takes the typed value and returns it normalised."""
    return {"check": check}


# --- value checks -----------------------------------------------------------------


def did_you_mean(word: str, candidates: Iterable[str], shown: str = "{}") -> str:
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1)
    return f"; did you mean {shown.format(by_lower[found[0]])}?" if found else ""


def non_empty(value: str) -> str:
    text = value.strip()
    if not text:
        raise Invalid("must not be empty")
    return text


def int_between(low: int, high: int | None = None) -> Check:
    def check(value: int) -> int:
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise Invalid(f"must be {bounds}, got {value}")
        return value

    return check


def float_at_least(low: float, *, exclusive: bool = False) -> Check:
    def check(value: float) -> float:
        if value < low or (exclusive and value == low):
            bound = f"greater than {low:g}" if exclusive else f"at least {low:g}"
            raise Invalid(f"must be {bound}, got {value:g}")
        return value

    return check


_E164 = re.compile(r"\+[1-9]\d{1,14}")


def phone(*, allow_empty: bool) -> Check:
    def check(value: str) -> str:
        text = value.strip()
        if not text and allow_empty:
            return ""
        if _E164.fullmatch(text):
            return text
        compact = re.sub(r"[\s\-().]", "", text)
        if _E164.fullmatch(compact):
            hint = f"; write it as {compact}"
        elif compact.isdigit():
            hint = "; E.164 starts with + and the country code"
        else:
            hint = ""
        empty = " or empty while not configured" if allow_empty else ""
        raise Invalid(
            f"{value!r} is not an E.164 phone number (+, country code and number, at most "
            f"15 digits, e.g. {PLACEHOLDER_OWNER_PHONE}{empty}){hint}"
        )

    return check


_LANGUAGE_TAG = re.compile(
    r"(?P<language>[A-Za-z]{2,3})(?:-(?P<script>[A-Za-z]{4}))?(?:-(?P<region>[A-Za-z]{2}|\d{3}))?"
)


def language_tag(value: str) -> str:
    text = value.strip()
    match = _LANGUAGE_TAG.fullmatch(text)
    if match is None:
        hint = (
            f"; write {text.replace('_', '-')}"
            if _LANGUAGE_TAG.fullmatch(text.replace("_", "-"))
            else ""
        )
        raise Invalid(f"{value!r} is not a BCP-47 language tag such as en-US or hu-HU{hint}")
    # Canonical case, so "en-us" and "en-US" name the same voice language.
    tag = match["language"].lower()
    if match["script"]:
        tag += "-" + match["script"].title()
    if match["region"]:
        tag += "-" + match["region"].upper()
    return tag


def timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        known = zoneinfo.available_timezones()
        same_but_case = {name.lower(): name for name in known}.get(value.strip().lower())
        hint = f"; did you mean {same_but_case}?" if same_but_case else did_you_mean(value, known)
        raise Invalid(
            f"{value!r} is not a known IANA time zone (such as Europe/Budapest or "
            f"America/New_York){hint}"
        ) from None
    return value


def url(*, schemes: tuple[str, ...], optional: bool, purpose: str) -> Check:
    """A URL with one of ``schemes``, no query or fragment, and no trailing slash."""
    wanted = " or ".join(f"{scheme}://" for scheme in schemes)

    def check(value: str) -> str:
        text = value.strip()
        if not text and optional:
            return ""
        try:
            parts = urlsplit(text)
            parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
        except ValueError as exc:
            raise Invalid(f"{value!r} is not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in schemes:
            empty = ", or empty" if optional else ""
            raise Invalid(f"must be an {wanted} URL{empty} ({purpose}), got {value!r}")
        if not parts.hostname:
            raise Invalid(f"{value!r} has no host name")
        if parts.query or parts.fragment:
            raise Invalid(f"{value!r} must not have a query string or fragment")
        if parts.username or parts.password:
            raise Invalid(f"{value!r} must not contain a user name or password")
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))

    return check


def existing_file(value: str) -> str:
    text = value.strip()
    if not text:
        return ""
    path = Path(text).expanduser()
    if not path.exists():
        raise Invalid(f"file {text!r} does not exist{relative_note(path)}")
    if not path.is_file():
        raise Invalid(f"{text!r} is not a file")
    return os.fspath(path)


def writable_file_path(value: str) -> str:
    text = value.strip()
    if not text:
        return ""
    path = Path(text).expanduser()
    if path.is_dir():
        raise Invalid(f"{text!r} is a directory; give the path of a file")
    if not path.parent.is_dir():
        raise Invalid(f"the directory of {text!r} does not exist{relative_note(path.parent)}")
    return os.fspath(path)


def relative_note(path: Path) -> str:
    return "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"


def database_url(value: str) -> str:
    text = value.strip()
    if "://" not in text:
        hint = f"; for a SQLite file write sqlite:///{text}" if text else ""
        raise Invalid(f"{text!r} is not a database URL (such as sqlite:///tars.db){hint}")
    shown = redact_url(text)
    try:
        # The same parser playhouse.db_url uses, so the port is checked as it will be.
        parts = urlparse(text)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise Invalid(f"cannot parse {shown!r}: {exc}") from None
    if parts.scheme not in db_url.schemes:
        raise Invalid(
            f"unknown database scheme {parts.scheme!r} in {shown!r}; peewee opens "
            f"{', '.join(sorted(db_url.schemes))}{did_you_mean(parts.scheme, db_url.schemes)}"
        )
    try:
        # Exactly what the store will open, built without connecting: no server is
        # contacted here, and a URL the store refuses (an in-memory SQLite database, a
        # host in a SQLite URL) is refused here first.
        database = build_database(text)
    except StoreError as exc:
        raise Invalid(f"{shown!r}: {exc.reason}") from None
    if isinstance(database, peewee.SqliteDatabase):
        _check_sqlite_file(str(database.database))
    elif isinstance(database, peewee.PostgresqlDatabase):
        # peewee leaves these module attributes None when the driver failed to import.
        if getattr(peewee, "psycopg2", None) is None and getattr(peewee, "psycopg", None) is None:
            raise Invalid(
                f"no PostgreSQL driver is installed for {shown!r}: "
                "pip install 'tars-actors[postgres]' (psycopg2-binary)"
            )
    elif parts.scheme in {"mysql", "mysql+pool"} and getattr(peewee, "mysql", None) is None:
        raise Invalid(f"no MySQL driver is installed for {shown!r}: pip install pymysql")
    return text


def _check_sqlite_file(name: str) -> None:
    if name in {"", ":memory:"} or name.startswith("file:"):
        return
    path = Path(name)
    if path.is_dir():
        raise Invalid(f"the SQLite file {name!r} is a directory")
    if not path.parent.is_dir():
        raise Invalid(
            f"the directory of the SQLite file {name!r} does not exist{relative_note(path.parent)}"
        )
