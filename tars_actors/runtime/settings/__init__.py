"""TARS's settings: an immutable, typed view of settings.toml, ``TARS_<SECTION>_<KEY>``
overrides and the secrets that only ever come from the environment.
"""

from __future__ import annotations

from tars_actors.runtime.settings.checks import PLACEHOLDER_OWNER_PHONE, SettingsError
from tars_actors.runtime.settings.loading import (
    load_settings,
    parse_settings,
    resolve_settings_path,
)
from tars_actors.runtime.settings.sections import (
    DEFAULT_SETTINGS_FILE,
    OWNER_PIN_ENV_VAR,
    PLACEHOLDER_PUBLIC_URL,
    SECRET_ENV_VARS,
    SETTINGS_ENV_VAR,
    AssistantSettings,
    CallerIdTrust,
    ClusterSettings,
    DatabaseSettings,
    Delivery,
    GeminiSettings,
    LogFormat,
    LoggingSettings,
    LogLevel,
    MonitorSettings,
    OwnerSettings,
    ReminderSettings,
    Secrets,
    ServerSettings,
    SessionSettings,
    Settings,
    SupervisionSettings,
    TransferSettings,
    TwilioSettings,
)

__all__ = [
    "DEFAULT_SETTINGS_FILE",
    "OWNER_PIN_ENV_VAR",
    "PLACEHOLDER_OWNER_PHONE",
    "PLACEHOLDER_PUBLIC_URL",
    "SECRET_ENV_VARS",
    "SETTINGS_ENV_VAR",
    "AssistantSettings",
    "CallerIdTrust",
    "ClusterSettings",
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
    "TransferSettings",
    "TwilioSettings",
    "load_settings",
    "parse_settings",
    "resolve_settings_path",
]
