"""The settings' sections as frozen dataclasses, each key with its default and its check, and
:class:`Settings`, the whole configuration that actors are given.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from tars_actors.runtime.settings import checks
from tars_actors.runtime.settings.checks import PLACEHOLDER_OWNER_PHONE, SettingsError, checked
from tars_actors.store.database import redact_url

DEFAULT_SETTINGS_FILE = "settings.toml"
SETTINGS_ENV_VAR = "TARS_SETTINGS"
OVERRIDE_PREFIX = "TARS_"
#: Shipped so the daemon and the demo start; ``missing_for_real_calls`` flags them.
PLACEHOLDER_PUBLIC_URL = "https://tars.example.net"

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
CallerIdTrust = Literal["attested", "pin", "number"]
#: The environment variable the owner's keypad PIN comes from (never the settings file).
OWNER_PIN_ENV_VAR = "TARS_OWNER_PIN"


# --- the settings ------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AssistantSettings:
    """[assistant]: who TARS says it is and which language it speaks."""

    name: str = field(default="TARS", metadata=checked(checks.non_empty))
    #: BCP-47 tag, for the greeting and the voice's language.
    language: str = field(default="en-US", metadata=checked(checks.language_tag))


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerSettings:
    """[owner]: the person TARS works for."""

    name: str = field(default="Máté Dort", metadata=checked(checks.non_empty))
    #: The owner's own number in E.164; calls from it get the owner's tools.
    phone: str = field(
        default=PLACEHOLDER_OWNER_PHONE, metadata=checked(checks.phone(allow_empty=True))
    )
    #: IANA zone the owner's times ("remind me at 9") are read in.
    timezone: str = field(default="Europe/Budapest", metadata=checked(checks.timezone))
    #: What proves a call from ``phone`` is the owner: ``attested`` (Twilio's STIR/SHAKEN
    #: full attestation, else the keypad PIN), ``pin`` (always the PIN) or ``number`` (the
    #: caller ID alone, which anyone can fake).
    caller_id_trust: CallerIdTrust = "attested"


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerSettings:
    """[server]: the one HTTP and WebSocket server Twilio talks to."""

    host: str = field(default="127.0.0.1", metadata=checked(checks.non_empty))
    port: int = field(default=8080, metadata=checked(checks.int_between(0, 65535)))
    #: The https URL Twilio reaches, without a trailing slash.
    public_url: str = field(
        default=PLACEHOLDER_PUBLIC_URL,
        metadata=checked(
            checks.url(
                schemes=("https",), optional=False, purpose="Twilio only calls webhooks over TLS"
            )
        ),
    )
    #: Connections open at once, handshakes in progress included; past it a new one is closed
    #: before its handshake. Each takes a file descriptor: see ``python run.py service``.
    max_connections: int = field(default=256, metadata=checked(checks.int_between(1)))


@dataclass(frozen=True, slots=True, kw_only=True)
class TwilioSettings:
    """[twilio]: the phone number and where its REST API lives."""

    #: The Twilio number in E.164, "" until one is bought.
    phone_number: str = field(default="", metadata=checked(checks.phone(allow_empty=True)))
    #: "" for Twilio's own API; else a proxy or a local stand-in.
    api_base_url: str = field(
        default="",
        metadata=checked(
            checks.url(
                schemes=("http", "https"), optional=True, purpose="empty means Twilio's own API"
            )
        ),
    )
    validate_signatures: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class GeminiSettings:
    """[gemini]: the Live voice model, the text model and where they are reached."""

    model: str = field(
        default="gemini-2.5-flash-native-audio-preview-09-2025", metadata=checked(checks.non_empty)
    )
    text_model: str = field(default="gemini-2.5-flash", metadata=checked(checks.non_empty))
    voice: str = field(default="Puck", metadata=checked(checks.non_empty))
    #: "" for Google's endpoint; else a proxy or a local stand-in.
    base_url: str = field(
        default="",
        metadata=checked(
            checks.url(
                schemes=("http", "https"), optional=True, purpose="empty means Google's own API"
            )
        ),
    )
    #: "" for the system CAs; else a PEM file to trust (the stand-in's test certificate).
    ca_file: str = field(default="", metadata=checked(checks.existing_file))
    #: Live sessions the project may hold at once (0: no limit). Each call holds one, from
    #: its webhook on: a call beyond it hears the busy apology at once.
    max_sessions: int = field(default=0, metadata=checked(checks.int_between(0)))


@dataclass(frozen=True, slots=True, kw_only=True)
class SessionSettings:
    """[sessions]: how many calls run at once and for how long."""

    max_concurrent: int = field(default=8, metadata=checked(checks.int_between(1)))
    max_call_seconds: int = field(default=1800, metadata=checked(checks.int_between(30)))
    #: On shutdown, how long live calls get to finish before they are ended.
    shutdown_grace_seconds: float = field(default=30.0, metadata=checked(checks.float_at_least(0)))
    #: How long a call may be without a model connection before the caller hears an
    #: apology and the call ends (reconnects with backoff are tried meanwhile).
    model_unreachable_seconds: float = field(
        default=20.0, metadata=checked(checks.float_at_least(0, exclusive=True))
    )
    #: Places only calls from ``[owner] phone`` may take (at most max_concurrent - 1 hold:
    #: one place always stays open to everyone).
    owner_reserved: int = field(default=1, metadata=checked(checks.int_between(0)))
    #: Calls one number other than the owner's may hold at once (live or about to be).
    max_per_caller: int = field(default=1, metadata=checked(checks.int_between(1)))
    #: Calls admitted per hour from one number other than the owner's.
    unknown_calls_per_hour: int = field(default=10, metadata=checked(checks.int_between(1)))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReminderSettings:
    """[reminders]: how a due reminder reaches the owner when no call is live."""

    delivery: Delivery = "call"


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferSettings:
    """[transfer]: putting a caller through to the owner."""

    #: How long the owner has to take a caller: the screening call rings this long, and a
    #: request in the owner's live call waits this long for the answer.
    ring_seconds: int = field(default=25, metadata=checked(checks.int_between(5, 120)))


@dataclass(frozen=True, slots=True, kw_only=True)
class DatabaseSettings:
    """[database]: any URL ``playhouse.db_url`` opens."""

    url: str = field(default="sqlite:///tars.db", metadata=checked(checks.database_url))


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSettings:
    """[cluster]: daemons sharing one PostgreSQL database (a daemon on PostgreSQL is a
    member, alone or not; on SQLite these are unused)."""

    #: A member that has not renewed its heartbeat for this long is lost: another member
    #: closes its calls ("daemon lost") and carries its pending work. It renews every third
    #: of it, by the database's clock.
    lease_seconds: float = field(default=15.0, metadata=checked(checks.float_at_least(3)))


@dataclass(frozen=True, slots=True, kw_only=True)
class LoggingSettings:
    """[logging]: level, rendering and an optional extra file."""

    level: LogLevel = "info"
    #: "auto" renders for humans when stdout is a terminal, JSON lines otherwise.
    format: LogFormat = "auto"
    #: "" for none; else a file that gets JSON lines too.
    file: str = field(default="", metadata=checked(checks.writable_file_path))


@dataclass(frozen=True, slots=True, kw_only=True)
class SupervisionSettings:
    """[supervision]: restart intensity, backoff and shutdown time, after OTP's defaults."""

    max_restarts: int = field(default=1, metadata=checked(checks.int_between(0)))
    period_seconds: float = field(
        default=5.0, metadata=checked(checks.float_at_least(0, exclusive=True))
    )
    backoff_initial_seconds: float = field(default=0.5, metadata=checked(checks.float_at_least(0)))
    backoff_max_seconds: float = field(default=30.0, metadata=checked(checks.float_at_least(0)))
    shutdown_timeout_seconds: float = field(
        default=5.0, metadata=checked(checks.float_at_least(0, exclusive=True))
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorSettings:
    """[monitor]: how often actor stats are logged and when a busy actor is reported."""

    stats_interval_seconds: float = field(
        default=30.0, metadata=checked(checks.float_at_least(0, exclusive=True))
    )
    #: An actor busy with one message longer than this is logged with its stack.
    watchdog_seconds: float = field(
        default=10.0, metadata=checked(checks.float_at_least(0, exclusive=True))
    )


@dataclass(frozen=True, slots=True, kw_only=True, repr=False)
class Secrets:
    """Credentials, read only from the environment; never shown by repr or str."""

    twilio_account_sid: str = ""
    twilio_auth_token: str = ""
    gemini_api_key: str = ""
    #: The owner's keypad PIN (``TARS_OWNER_PIN``), empty when not set. Optional, so not in
    #: :meth:`status`; and never a redaction pattern: four digits recur in ordinary log
    #: lines, and the digits typed on a call are never logged.
    owner_pin: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Secrets:
        # Values often come from files with a trailing newline.
        return cls(
            **{name: environ.get(var, "").strip() for name, var in SECRET_ENV_VARS},
            owner_pin=environ.get(OWNER_PIN_ENV_VAR, "").strip(),
        )

    def problems(self, owner: OwnerSettings) -> list[str]:
        """What is wrong with the owner's PIN, alone or for ``[owner] caller_id_trust``."""
        pin = self.owner_pin
        if pin and not (pin.isascii() and pin.isdigit() and 4 <= len(pin) <= 12):
            # Never the value: it is a secret, and a near miss is most of it.
            what = (
                f"{len(pin)} digits"
                if pin.isascii() and pin.isdigit()
                else f"{len(pin)} characters, not all of them digits"
            )
            return [f"{OWNER_PIN_ENV_VAR}: must be 4 to 12 digits (0-9), got {what}"]
        if not pin and owner.caller_id_trust == "pin":
            return [
                f'[owner] caller_id_trust: "pin" needs the owner\'s keypad PIN: set '
                f"{OWNER_PIN_ENV_VAR} (4 to 12 digits) in the environment"
            ]
        return []

    def status(self) -> dict[str, str]:
        """Each secret's environment variable mapped to "***set***" or "(not set)"."""
        return {
            var: SHOWN_SET if getattr(self, name) else SHOWN_UNSET for name, var in SECRET_ENV_VARS
        }

    def __repr__(self) -> str:
        shown = ", ".join(f"{var}={state}" for var, state in self.status().items())
        pin = SHOWN_SET if self.owner_pin else SHOWN_UNSET
        return f"Secrets({shown}, {OWNER_PIN_ENV_VAR}={pin})"


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
    transfer: TransferSettings = field(default_factory=TransferSettings, metadata=_SECTION)
    database: DatabaseSettings = field(default_factory=DatabaseSettings, metadata=_SECTION)
    cluster: ClusterSettings = field(default_factory=ClusterSettings, metadata=_SECTION)
    logging: LoggingSettings = field(default_factory=LoggingSettings, metadata=_SECTION)
    supervision: SupervisionSettings = field(default_factory=SupervisionSettings, metadata=_SECTION)
    monitor: MonitorSettings = field(default_factory=MonitorSettings, metadata=_SECTION)
    secrets: Secrets = field(default_factory=Secrets)
    #: Where these settings were read from, for ``run.py check``.
    source: str = field(default="<defaults>", compare=False)

    def to_data(self) -> dict[str, dict[str, Any]]:
        """The non-secret settings as ``{section: {key: value}}``, shaped like the TOML file."""
        return {name: dataclasses.asdict(getattr(self, name)) for name in section_types()}

    def redacted(self) -> dict[str, dict[str, Any]]:
        """The resolved configuration, safe to print: secrets only say whether they are set."""
        data = self.to_data()
        data["database"]["url"] = redact_url(self.database.url)
        data["secrets"] = dict(self.secrets.status())
        data["secrets"][OWNER_PIN_ENV_VAR] = SHOWN_SET if self.secrets.owner_pin else SHOWN_UNSET
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

    def owner_trust_notes(self) -> list[str]:
        """How calls from the owner's number are proven, where the choice has a cost."""
        owner = self.owner
        if owner.caller_id_trust == "number":
            return [
                f'[owner] caller_id_trust is "number": anyone who fakes the caller ID '
                f'{owner.phone} gets the owner\'s tools; use "attested" (the default)'
            ]
        if owner.caller_id_trust == "attested" and not self.secrets.owner_pin:
            return [
                f'[owner] caller_id_trust is "attested" and {OWNER_PIN_ENV_VAR} is not set: '
                f"a call from {owner.phone} without the carrier's full attestation "
                f"(StirVerstat TN-Validation-Passed-A) gets the unknown caller's level; set "
                f"{OWNER_PIN_ENV_VAR} (4 to 12 digits) so the owner can prove themself by keypad"
            ]
        return []

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
            # An unknown section or key is reported by build, with its "did you mean".
            data.setdefault(section, {})[key] = (
                os.fspath(value) if isinstance(value, os.PathLike) else value
            )
        if problems:
            raise SettingsError(problems)
        # The loader builds Settings from data, so it is imported when first needed: the
        # sections stay importable without it.
        from tars_actors.runtime.settings.loading import build

        return build(data, environ={}, secrets=self.secrets, source=self.source)


def _is_example_domain(host: str) -> bool:
    # RFC 2606 reserves these for documentation; no real deployment uses them.
    return any(
        host == domain or host.endswith("." + domain)
        for domain in ("example.com", "example.net", "example.org")
    )


def section_types() -> dict[str, type[Any]]:
    hints = typing.get_type_hints(Settings)
    return {
        f.name: hints[f.name] for f in dataclasses.fields(Settings) if f.metadata.get("section")
    }
