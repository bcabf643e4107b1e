"""TARS's settings: an immutable, typed view of settings.toml, ``TARS_<SECTION>_<KEY>``
overrides and the secrets that only ever come from the environment.
"""

from __future__ import annotations

import dataclasses
import datetime
import difflib
import math
import os
import re
import tomllib
import typing
import zoneinfo
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse, urlsplit, urlunsplit

import peewee
from playhouse import db_url

from tars_actors.store.database import StoreError, build_database, redact_url

__all__ = [
    "DEFAULT_SETTINGS_FILE",
    "PLACEHOLDER_OWNER_PHONE",
    "PLACEHOLDER_PUBLIC_URL",
    "SECRET_ENV_VARS",
    "SETTINGS_ENV_VAR",
    "AssistantSettings",
    "DatabaseSettings",
    "Delivery",
    "GeminiSettings",
    "LogFormat",
    "LogLevel",
    "LoggingSettings",
    "MonitorSettings",
    "OwnerSettings",
    "ReminderSettings",
    "Secrets",
    "ServerSettings",
    "SessionSettings",
    "Settings",
    "SettingsError",
    "SupervisionSettings",
    "TwilioSettings",
    "load_settings",
    "parse_settings",
    "resolve_settings_path",
]

DEFAULT_SETTINGS_FILE = "settings.toml"
SETTINGS_ENV_VAR = "TARS_SETTINGS"
OVERRIDE_PREFIX = "TARS_"
#: Shipped so the daemon and the demo start; ``missing_for_real_calls`` flags them.
PLACEHOLDER_PUBLIC_URL = "https://tars.example.net"
PLACEHOLDER_OWNER_PHONE = "+15555550100"

#: The only places secrets come from, as (Secrets field, environment variable).
SECRET_ENV_VARS: tuple[tuple[str, str], ...] = (
    ("twilio_account_sid", "TWILIO_ACCOUNT_SID"),
    ("twilio_auth_token", "TWILIO_AUTH_TOKEN"),
    ("gemini_api_key", "GEMINI_API_KEY"),
)
SHOWN_SET = "***set***"
SHOWN_UNSET = "(not set)"

Delivery = Literal["call", "message", "both"]
LogLevel = Literal["debug", "info", "warning", "error"]
LogFormat = Literal["json", "console", "auto"]


class SettingsError(Exception):
    """Settings that cannot be used; ``problems`` holds one message per problem."""

    def __init__(self, problems: Iterable[str]) -> None:
        self.problems = tuple(problems)
        super().__init__(*self.problems)

    def __str__(self) -> str:
        return "\n".join(self.problems)


class _Invalid(Exception):
    """Raised by a value check with what is wrong; the caller adds which key it is."""


_Check = Callable[[Any], Any]


def _checked(check: _Check) -> dict[str, _Check]:
    """Field metadata: ``check`` takes the typed value and returns it normalised."""
    return {"check": check}


# --- value checks -----------------------------------------------------------------


def _did_you_mean(word: str, candidates: Iterable[str], shown: str = "{}") -> str:
    by_lower = {candidate.lower(): candidate for candidate in candidates}
    found = difflib.get_close_matches(word.lower(), list(by_lower), n=1)
    return f"; did you mean {shown.format(by_lower[found[0]])}?" if found else ""


def _non_empty(value: str) -> str:
    text = value.strip()
    if not text:
        raise _Invalid("must not be empty")
    return text


def _int_between(low: int, high: int | None = None) -> _Check:
    def check(value: int) -> int:
        if value < low or (high is not None and value > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise _Invalid(f"must be {bounds}, got {value}")
        return value

    return check


def _float_at_least(low: float, *, exclusive: bool = False) -> _Check:
    def check(value: float) -> float:
        if value < low or (exclusive and value == low):
            bound = f"greater than {low:g}" if exclusive else f"at least {low:g}"
            raise _Invalid(f"must be {bound}, got {value:g}")
        return value

    return check


_E164 = re.compile(r"\+[1-9]\d{1,14}")


def _phone(*, allow_empty: bool) -> _Check:
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
        raise _Invalid(
            f"{value!r} is not an E.164 phone number (+, country code and number, at most "
            f"15 digits, e.g. {PLACEHOLDER_OWNER_PHONE}{empty}){hint}"
        )

    return check


_LANGUAGE_TAG = re.compile(
    r"(?P<language>[A-Za-z]{2,3})(?:-(?P<script>[A-Za-z]{4}))?(?:-(?P<region>[A-Za-z]{2}|\d{3}))?"
)


def _language_tag(value: str) -> str:
    text = value.strip()
    match = _LANGUAGE_TAG.fullmatch(text)
    if match is None:
        hint = (
            f"; write {text.replace('_', '-')}"
            if _LANGUAGE_TAG.fullmatch(text.replace("_", "-"))
            else ""
        )
        raise _Invalid(f"{value!r} is not a BCP-47 language tag such as en-US or hu-HU{hint}")
    # Canonical case, so "en-us" and "en-US" name the same voice language.
    tag = match["language"].lower()
    if match["script"]:
        tag += "-" + match["script"].title()
    if match["region"]:
        tag += "-" + match["region"].upper()
    return tag


def _timezone(value: str) -> str:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        known = zoneinfo.available_timezones()
        same_but_case = {name.lower(): name for name in known}.get(value.strip().lower())
        hint = f"; did you mean {same_but_case}?" if same_but_case else _did_you_mean(value, known)
        raise _Invalid(
            f"{value!r} is not a known IANA time zone (such as Europe/Budapest or "
            f"America/New_York){hint}"
        ) from None
    return value


def _url(*, schemes: tuple[str, ...], optional: bool, purpose: str) -> _Check:
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
            raise _Invalid(f"{value!r} is not a valid URL: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in schemes:
            empty = ", or empty" if optional else ""
            raise _Invalid(f"must be an {wanted} URL{empty} ({purpose}), got {value!r}")
        if not parts.hostname:
            raise _Invalid(f"{value!r} has no host name")
        if parts.query or parts.fragment:
            raise _Invalid(f"{value!r} must not have a query string or fragment")
        if parts.username or parts.password:
            raise _Invalid(f"{value!r} must not contain a user name or password")
        return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))

    return check


def _existing_file(value: str) -> str:
    text = value.strip()
    if not text:
        return ""
    path = Path(text).expanduser()
    if not path.exists():
        raise _Invalid(f"file {text!r} does not exist{_relative_note(path)}")
    if not path.is_file():
        raise _Invalid(f"{text!r} is not a file")
    return os.fspath(path)


def _writable_file_path(value: str) -> str:
    text = value.strip()
    if not text:
        return ""
    path = Path(text).expanduser()
    if path.is_dir():
        raise _Invalid(f"{text!r} is a directory; give the path of a file")
    if not path.parent.is_dir():
        raise _Invalid(f"the directory of {text!r} does not exist{_relative_note(path.parent)}")
    return os.fspath(path)


def _relative_note(path: Path) -> str:
    return "" if path.is_absolute() else f" (relative to the working directory {Path.cwd()})"


def _database_url(value: str) -> str:
    text = value.strip()
    if "://" not in text:
        hint = f"; for a SQLite file write sqlite:///{text}" if text else ""
        raise _Invalid(f"{text!r} is not a database URL (such as sqlite:///tars.db){hint}")
    shown = redact_url(text)
    try:
        # The same parser playhouse.db_url uses, so the port is checked as it will be.
        parts = urlparse(text)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError as exc:
        raise _Invalid(f"cannot parse {shown!r}: {exc}") from None
    if parts.scheme not in db_url.schemes:
        raise _Invalid(
            f"unknown database scheme {parts.scheme!r} in {shown!r}; peewee opens "
            f"{', '.join(sorted(db_url.schemes))}{_did_you_mean(parts.scheme, db_url.schemes)}"
        )
    try:
        # Exactly what the store will open, built without connecting: no server is
        # contacted here, and a URL the store refuses (an in-memory SQLite database, a
        # host in a SQLite URL) is refused here first.
        database = build_database(text)
    except StoreError as exc:
        raise _Invalid(f"{shown!r}: {exc.reason}") from None
    if isinstance(database, peewee.SqliteDatabase):
        _check_sqlite_file(str(database.database))
    elif isinstance(database, peewee.PostgresqlDatabase):
        # peewee leaves these module attributes None when the driver failed to import.
        if getattr(peewee, "psycopg2", None) is None and getattr(peewee, "psycopg", None) is None:
            raise _Invalid(
                f"no PostgreSQL driver is installed for {shown!r}: "
                "pip install 'tars-actors[postgres]' (psycopg2-binary)"
            )
    elif parts.scheme in {"mysql", "mysql+pool"} and getattr(peewee, "mysql", None) is None:
        raise _Invalid(f"no MySQL driver is installed for {shown!r}: pip install pymysql")
    return text


def _check_sqlite_file(name: str) -> None:
    if name in {"", ":memory:"} or name.startswith("file:"):
        return
    path = Path(name)
    if path.is_dir():
        raise _Invalid(f"the SQLite file {name!r} is a directory")
    if not path.parent.is_dir():
        raise _Invalid(
            f"the directory of the SQLite file {name!r} does not exist{_relative_note(path.parent)}"
        )


# --- the settings ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantSettings:
    """[assistant]: who TARS says it is and which language it speaks."""

    name: str = field(default="TARS", metadata=_checked(_non_empty))
    #: BCP-47 tag, for the greeting and the voice's language.
    language: str = field(default="en-US", metadata=_checked(_language_tag))


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerSettings:
    """[owner]: the person TARS works for."""

    name: str = field(default="Máté Dort", metadata=_checked(_non_empty))
    #: The owner's own number in E.164; calls from it get the owner's tools.
    phone: str = field(default=PLACEHOLDER_OWNER_PHONE, metadata=_checked(_phone(allow_empty=True)))
    #: IANA zone the owner's times ("remind me at 9") are read in.
    timezone: str = field(default="Europe/Budapest", metadata=_checked(_timezone))


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """[server]: the one HTTP and WebSocket server Twilio talks to."""

    host: str = field(default="127.0.0.1", metadata=_checked(_non_empty))
    port: int = field(default=8080, metadata=_checked(_int_between(0, 65535)))
    #: The https URL Twilio reaches, without a trailing slash.
    public_url: str = field(
        default=PLACEHOLDER_PUBLIC_URL,
        metadata=_checked(
            _url(schemes=("https",), optional=False, purpose="Twilio only calls webhooks over TLS")
        ),
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioSettings:
    """[twilio]: the phone number and where its REST API lives."""

    #: The Twilio number in E.164, "" until one is bought.
    phone_number: str = field(default="", metadata=_checked(_phone(allow_empty=True)))
    #: "" for Twilio's own API; else a proxy or a local stand-in.
    api_base_url: str = field(
        default="",
        metadata=_checked(
            _url(schemes=("http", "https"), optional=True, purpose="empty means Twilio's own API")
        ),
    )
    validate_signatures: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class GeminiSettings:
    """[gemini]: the Live voice model, the text model and where they are reached."""

    model: str = field(
        default="gemini-2.5-flash-native-audio-preview-09-2025", metadata=_checked(_non_empty)
    )
    text_model: str = field(default="gemini-2.5-flash", metadata=_checked(_non_empty))
    voice: str = field(default="Puck", metadata=_checked(_non_empty))
    #: "" for Google's endpoint; else a proxy or a local stand-in.
    base_url: str = field(
        default="",
        metadata=_checked(
            _url(schemes=("http", "https"), optional=True, purpose="empty means Google's own API")
        ),
    )
    #: "" for the system CAs; else a PEM file to trust (the stand-in's test certificate).
    ca_file: str = field(default="", metadata=_checked(_existing_file))


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSettings:
    """[sessions]: how many calls run at once and for how long."""

    max_concurrent: int = field(default=8, metadata=_checked(_int_between(1)))
    max_call_seconds: int = field(default=1800, metadata=_checked(_int_between(30)))
    #: On shutdown, how long live calls get to finish before they are ended.
    shutdown_grace_seconds: float = field(default=30.0, metadata=_checked(_float_at_least(0)))
    #: How long a call may be without a model connection before the caller hears an
    #: apology and the call ends (reconnects with backoff are tried meanwhile).
    model_unreachable_seconds: float = field(
        default=20.0, metadata=_checked(_float_at_least(0, exclusive=True))
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ReminderSettings:
    """[reminders]: how a due reminder reaches the owner when no call is live."""

    delivery: Delivery = "call"


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseSettings:
    """[database]: any URL ``playhouse.db_url`` opens."""

    url: str = field(default="sqlite:///tars.db", metadata=_checked(_database_url))


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingSettings:
    """[logging]: level, rendering and an optional extra file."""

    level: LogLevel = "info"
    #: "auto" renders for humans when stdout is a terminal, JSON lines otherwise.
    format: LogFormat = "auto"
    #: "" for none; else a file that gets JSON lines too.
    file: str = field(default="", metadata=_checked(_writable_file_path))


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisionSettings:
    """[supervision]: restart intensity, backoff and shutdown time, after OTP's defaults."""

    max_restarts: int = field(default=1, metadata=_checked(_int_between(0)))
    period_seconds: float = field(
        default=5.0, metadata=_checked(_float_at_least(0, exclusive=True))
    )
    backoff_initial_seconds: float = field(default=0.5, metadata=_checked(_float_at_least(0)))
    backoff_max_seconds: float = field(default=30.0, metadata=_checked(_float_at_least(0)))
    shutdown_timeout_seconds: float = field(
        default=5.0, metadata=_checked(_float_at_least(0, exclusive=True))
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorSettings:
    """[monitor]: how often actor stats are logged and when a busy actor is reported."""

    stats_interval_seconds: float = field(
        default=30.0, metadata=_checked(_float_at_least(0, exclusive=True))
    )
    #: An actor busy with one message longer than this is logged with its stack.
    watchdog_seconds: float = field(
        default=10.0, metadata=_checked(_float_at_least(0, exclusive=True))
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Secrets:
    """Credentials, read only from the environment; never shown by repr or str."""

    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    gemini_api_key: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Secrets:
        # Values often come from files with a trailing newline.
        return cls(**{name: environ.get(var, "").strip() for name, var in SECRET_ENV_VARS})

    def status(self) -> dict[str, str]:
        """Each secret's environment variable mapped to "***set***" or "(not set)"."""
        return {
            var: SHOWN_SET if getattr(self, name) else SHOWN_UNSET for name, var in SECRET_ENV_VARS
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{var}={state}" for var, state in self.status().items())
        return f"Secrets({shown})"


_SECTION = {"section": True}


@dataclass(frozen=True, slots=True, kw_only=True)
class Settings:
    """Everything TARS is configured with; built by :func:`load_settings`, passed to actors.

    ``dataclasses.replace`` works on it and its sections but does not validate;
    :meth:`with_overrides` does.
    """

    assistant: AssistantSettings = field(default_factory=AssistantSettings, metadata=_SECTION)
    owner: OwnerSettings = field(default_factory=OwnerSettings, metadata=_SECTION)
    server: ServerSettings = field(default_factory=ServerSettings, metadata=_SECTION)
    twilio: TwilioSettings = field(default_factory=TwilioSettings, metadata=_SECTION)
    gemini: GeminiSettings = field(default_factory=GeminiSettings, metadata=_SECTION)
    sessions: SessionSettings = field(default_factory=SessionSettings, metadata=_SECTION)
    reminders: ReminderSettings = field(default_factory=ReminderSettings, metadata=_SECTION)
    database: DatabaseSettings = field(default_factory=DatabaseSettings, metadata=_SECTION)
    logging: LoggingSettings = field(default_factory=LoggingSettings, metadata=_SECTION)
    supervision: SupervisionSettings = field(default_factory=SupervisionSettings, metadata=_SECTION)
    monitor: MonitorSettings = field(default_factory=MonitorSettings, metadata=_SECTION)
    secrets: Secrets = field(default_factory=Secrets)
    #: Where these settings were read from, for ``run.py check``.
    source: str = field(default="<defaults>", compare=False)

    def to_data(self) -> dict[str, dict[str, Any]]:
        """The non-secret settings as ``{section: {key: value}}``, shaped like the TOML file."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in _section_types()}

    def redacted(self) -> dict[str, dict[str, Any]]:
        """The resolved configuration, safe to print: secrets only say whether they are set."""
        data = self.to_data()
        data["database"]["url"] = redact_url(self.database.url)
        data["secrets"] = dict(self.secrets.status())
        return data

    def missing_for_real_calls(self) -> list[str]:
        """What real Twilio calls still need; the demo and the tests need none of it."""
        missing = [
            f"{var} is not set in the environment"
            for var, state in self.secrets.status().items()
            if state == SHOWN_UNSET
        ]
        if not self.twilio.phone_number:
            missing.append("[twilio] phone_number is empty: set the Twilio number people call")
        host = urlsplit(self.server.public_url).hostname or ""
        if self.server.public_url == PLACEHOLDER_PUBLIC_URL or _is_example_domain(host):
            missing.append(
                f"[server] public_url is still the placeholder {self.server.public_url}: "
                "set the https URL Twilio reaches"
            )
        if self.owner.phone in {"", PLACEHOLDER_OWNER_PHONE}:
            shown = self.owner.phone or "empty"
            missing.append(
                f"[owner] phone is {'the placeholder ' if self.owner.phone else ''}{shown}: "
                "set the owner's own number so TARS recognises their calls"
            )
        return missing

    def secret_values(self) -> tuple[str, ...]:
        """Every secret that is set (the database password included), for log redaction."""
        values = [getattr(self.secrets, name) for name, _ in SECRET_ENV_VARS]
        try:
            password = urlsplit(self.database.url).password
        except ValueError:
            password = None
        if password:
            values += [password, unquote(password)]
        return tuple(dict.fromkeys(value for value in values if value))

    def with_overrides(
        self, overrides: Mapping[str, Any] | None = None, /, **dotted: Any
    ) -> Settings:
        """A copy with ``"section.key"`` values replaced, validated like the loader.

        ``settings.with_overrides({"sessions.max_concurrent": 2})`` or
        ``settings.with_overrides(**{"sessions.max_concurrent": 2})``. Secrets are kept.
        """
        data = self.to_data()
        problems = []
        for name, value in {**(overrides or {}), **dotted}.items():
            section, dot, key = name.partition(".")
            if not dot or not section or not key:
                problems.append(f"{name!r}: name an override 'section.key', e.g. 'server.port'")
                continue
            # An unknown section or key is reported by _build, with its "did you mean".
            data.setdefault(section, {})[key] = (
                os.fspath(value) if isinstance(value, os.PathLike) else value
            )
        if problems:
            raise SettingsError(problems)
        return _build(data, environ={}, secrets=self.secrets, source=self.source)


def _is_example_domain(host: str) -> bool:
    # RFC 2606 reserves these for documentation; no real deployment uses them.
    return any(
        host == domain or host.endswith("." + domain)
        for domain in ("example.com", "example.net", "example.org")
    )


def _section_types() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Settings)
    return {
        f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.metadata.get("section")
    }


# --- loading -----------------------------------------------------------------------


def resolve_settings_path(cli_path: str | None, environ: Mapping[str, str]) -> Path:
    """The settings file: ``--settings PATH``, else ``TARS_SETTINGS``, else ./settings.toml."""
    return _choose_settings_path(cli_path, environ)[0]


def _choose_settings_path(cli_path: str | None, environ: Mapping[str, str]) -> tuple[Path, str]:
    if cli_path:
        return Path(cli_path).expanduser(), "given with --settings"
    from_env = environ.get(SETTINGS_ENV_VAR, "").strip()
    if from_env:
        return Path(from_env).expanduser(), f"from the {SETTINGS_ENV_VAR} environment variable"
    return Path(DEFAULT_SETTINGS_FILE), (
        f"the default, as neither --settings nor {SETTINGS_ENV_VAR} was given"
    )


def load_settings(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate the settings file, overrides and secrets; ``path`` is ``--settings``.

    Raises :class:`SettingsError` listing every problem found.
    """
    env = os.environ if environ is None else environ
    chosen, how = _choose_settings_path(None if path is None else os.fspath(path), env)
    where = f"{chosen}{_relative_note(chosen)}"
    try:
        raw = chosen.read_bytes()
    except FileNotFoundError:
        raise SettingsError([f"settings file {where} does not exist ({how})"]) from None
    except OSError as exc:
        raise SettingsError(
            [f"settings file {where} cannot be read ({how}): {exc.strerror or exc}"]
        ) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise SettingsError([f"settings file {chosen} is not UTF-8 text: {exc}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError([f"settings file {chosen}: TOML syntax error: {exc}"]) from None
    return parse_settings(data, environ=env, source=str(chosen))


def parse_settings(
    data: Mapping[str, Any], *, environ: Mapping[str, str], source: str = "<memory>"
) -> Settings:
    """Validate TOML-shaped ``data`` plus the overrides and secrets in ``environ``.

    Keys missing from ``data`` take the code defaults.
    """
    return _build(data, environ=environ, secrets=Secrets.from_environ(environ), source=source)


def _build(
    data: Mapping[str, Any], *, environ: Mapping[str, str], secrets: Secrets, source: str
) -> Settings:
    sections = _section_types()
    problems: list[str] = []
    given: dict[tuple[str, str], tuple[Any, str]] = {}
    _collect_data(data, sections, given, problems)
    _collect_environ(environ, sections, given, problems)
    built: dict[str, Any] = {}
    for name, cls in sections.items():
        before = len(problems)
        built[name] = _build_section(name, cls, given, problems)
        # Relations between keys only make sense once each key is valid on its own.
        if len(problems) == before and isinstance(built[name], SupervisionSettings):
            problems.extend(_consistency_problems(built[name], given))
    if problems:
        raise SettingsError(problems)
    return Settings(**built, secrets=secrets, source=source)


def _collect_data(
    data: Mapping[str, Any],
    sections: Mapping[str, type[Any]],
    given: dict[tuple[str, str], tuple[Any, str]],
    problems: list[str],
) -> None:
    for section, table in data.items():
        cls = sections.get(section)
        if cls is None:
            if isinstance(table, Mapping):
                problems.append(
                    f"[{section}]: unknown section{_did_you_mean(section, sections, '[{}]')}"
                )
            else:
                owners = [name for name, c in sections.items() if section in _field_names(c)]
                hint = f"; did you mean [{owners[0]}] {section}?" if owners else ""
                problems.append(f"{section}: settings belong in a [section]{hint}")
            continue
        if not isinstance(table, Mapping):
            problems.append(f"[{section}]: expected a table of keys, got {_describe(table)}")
            continue
        keys = _field_names(cls)
        for key, value in table.items():
            label = f"[{section}] {key}"
            if key in keys:
                given[(section, key)] = (value, label)
            elif (secret_var := _secret_env_var(section, key)) is not None:
                problems.append(
                    f"{label}: secrets are never read from the settings file; "
                    f"set the environment variable {secret_var} instead"
                )
            else:
                problems.append(f"{label}: unknown key{_unknown_key_hint(key, keys, section)}")


def _collect_environ(
    environ: Mapping[str, str],
    sections: Mapping[str, type[Any]],
    given: dict[tuple[str, str], tuple[Any, str]],
    problems: list[str],
) -> None:
    targets: dict[str, tuple[str, str, Any]] = {}
    for section, cls in sections.items():
        hints = typing.get_type_hints(cls)
        for key in _field_names(cls):
            targets[f"{OVERRIDE_PREFIX}{section.upper()}_{key.upper()}"] = (
                section,
                key,
                hints[key],
            )
    # Sorted so the problems come out in the same order whatever the environment's order.
    for name in sorted(environ):
        if not name.startswith(OVERRIDE_PREFIX) or name == SETTINGS_ENV_VAR:
            continue
        target = targets.get(name)
        if target is None:
            problems.append(f"{name}: {_unknown_variable_hint(name, targets, sections)}")
            continue
        section, key, hint = target
        label = f"{name} ([{section}] {key})"
        try:
            given[(section, key)] = (_from_text(environ[name], hint), label)
        except _Invalid as exc:
            problems.append(f"{label}: {exc}")


def _unknown_variable_hint(
    name: str, targets: Mapping[str, object], sections: Mapping[str, object]
) -> str:
    for section in sections:
        prefix = f"{OVERRIDE_PREFIX}{section.upper()}_"
        if name.startswith(prefix):
            secret_var = _secret_env_var(section, name.removeprefix(prefix).lower())
            if secret_var is not None:
                return f"secrets have their own variables: set {secret_var} instead"
    suggestion = _did_you_mean(name, targets)
    if suggestion:
        return "names no setting" + suggestion
    return (
        f"names no setting (overrides are {OVERRIDE_PREFIX}<SECTION>_<KEY>, such as "
        f"{OVERRIDE_PREFIX}SERVER_PORT; only {SETTINGS_ENV_VAR} is special)"
    )


def _build_section(
    section: str,
    cls: type[Any],
    given: Mapping[tuple[str, str], tuple[Any, str]],
    problems: list[str],
) -> Any:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if (section, f.name) not in given:
            continue
        raw, label = given[(section, f.name)]
        try:
            value = _coerce(raw, hints[f.name])
            check = f.metadata.get("check")
            values[f.name] = value if check is None else check(value)
        except _Invalid as exc:
            problems.append(f"{label}: {exc}")
    return cls(**values)


def _consistency_problems(
    supervision: SupervisionSettings, given: Mapping[tuple[str, str], tuple[Any, str]]
) -> list[str]:
    if supervision.backoff_max_seconds < supervision.backoff_initial_seconds:
        label = given.get(
            ("supervision", "backoff_max_seconds"), (None, "[supervision] backoff_max_seconds")
        )[1]
        return [
            f"{label}: must be at least backoff_initial_seconds "
            f"({supervision.backoff_initial_seconds:g}), got {supervision.backoff_max_seconds:g}"
        ]
    return []


def _field_names(cls: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def _unknown_key_hint(key: str, keys: list[str], section: str) -> str:
    return _did_you_mean(key, keys) or f"; [{section}] has {', '.join(keys)}"


_SECRET_WORDS = frozenset({"token", "secret", "password", "passwd", "apikey", "sid", "credentials"})


def _secret_env_var(section: str, key: str) -> str | None:
    """The variable to use instead, when ``key`` looks like a credential; else None."""
    words = set(key.lower().split("_"))
    if not (words & _SECRET_WORDS or {"api", "key"} <= words or words == {"key"}):
        return None
    if section == "twilio":
        return "TWILIO_ACCOUNT_SID" if words & {"sid", "account"} else "TWILIO_AUTH_TOKEN"
    if section == "gemini":
        return "GEMINI_API_KEY"
    return " or ".join(var for _, var in SECRET_ENV_VARS)


# --- types -------------------------------------------------------------------------

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _describe(value: object) -> str:
    """A value as TOML calls it, so a type error reads in the file's terms."""
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a float ({value:g})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, datetime.date | datetime.time):
        return f"a date/time ({value.isoformat()})"
    return f"a {type(value).__name__}"


def _expected(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return "one of " + " | ".join(typing.get_args(hint))
    return {
        bool: "a boolean (true or false)",
        int: "an integer",
        float: "a number",
        str: "a string",
    }[hint]


def _coerce(value: Any, hint: Any) -> Any:
    """_Check a TOML value against a field's type; an integer is fine where a float is."""
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        if isinstance(value, str) and value.strip().lower() in allowed:
            return value.strip().lower()
        suggestion = _did_you_mean(value, allowed) if isinstance(value, str) else ""
        raise _Invalid(f"must be {_expected(hint)}, got {_describe(value)}{suggestion}")
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise _Invalid(f"must be a finite number, got {value}")
        return float(value)
    # bool is a subclass of int in Python, but true is not a number in TOML.
    if type(value) is hint:
        return value
    note = "; a boolean is not a number" if isinstance(value, bool) and hint in {int, float} else ""
    if hint is int and isinstance(value, float) and value.is_integer():
        note = f"; write {int(value)}"
    raise _Invalid(f"expected {_expected(hint)}, got {_describe(value)}{note}")


def _from_text(text: str, hint: Any) -> Any:
    """Parse an environment variable's text to a field's type."""
    if hint is bool:
        word = text.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise _Invalid(f"expected a boolean (true/false, 1/0, yes/no, on/off), got {text!r}")
    if hint is int:
        try:
            return int(text.strip())
        except ValueError:
            raise _Invalid(f"expected an integer, got {text!r}") from None
    if hint is float:
        try:
            return float(text.strip())
        except ValueError:
            raise _Invalid(f"expected a number, got {text!r}") from None
    return text
