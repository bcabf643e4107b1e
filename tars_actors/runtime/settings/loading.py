"""Loading the settings: the file chosen by ``--settings`` or ``TARS_SETTINGS``, its TOML, the
``TARS_<SECTION>_<KEY>`` overrides and the secrets, validated into :class:`Settings`.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import os
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from tars_actors.runtime.settings.checks import Invalid, SettingsError, did_you_mean, relative_note
from tars_actors.runtime.settings.sections import (
    DEFAULT_SETTINGS_FILE,
    OVERRIDE_PREFIX,
    OWNER_PIN_ENV_VAR,
    SECRET_ENV_VARS,
    SETTINGS_ENV_VAR,
    Secrets,
    Settings,
    SupervisionSettings,
    section_types,
)

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
    where = f"{chosen}{relative_note(chosen)}"
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
    return build(data, environ=environ, secrets=Secrets.from_environ(environ), source=source)


def build(
    data: Mapping[str, Any], *, environ: Mapping[str, str], secrets: Secrets, source: str
) -> Settings:
    sections = section_types()
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
    if not any(problem.startswith("[owner]") for problem in problems):
        problems.extend(secrets.problems(built["owner"]))
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
                    f"[{section}]: unknown section{did_you_mean(section, sections, '[{}]')}"
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
        if not name.startswith(OVERRIDE_PREFIX) or name in {SETTINGS_ENV_VAR, OWNER_PIN_ENV_VAR}:
            continue
        target = targets.get(name)
        if target is None:
            problems.append(f"{name}: {_unknown_variable_hint(name, targets, sections)}")
            continue
        section, key, hint = target
        label = f"{name} ([{section}] {key})"
        try:
            given[(section, key)] = (_from_text(environ[name], hint), label)
        except Invalid as exc:
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
    suggestion = did_you_mean(name, targets)
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
        except Invalid as exc:
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
    return did_you_mean(key, keys) or f"; [{section}] has {', '.join(keys)}"


_SECRET_WORDS = frozenset(
    {"token", "secret", "password", "passwd", "apikey", "sid", "credentials", "pin"}
)


def _secret_env_var(section: str, key: str) -> str | None:
    """The variable to use instead, when ``key`` looks like a credential; else None."""
    words = set(key.lower().split("_"))
    if not (words & _SECRET_WORDS or {"api", "key"} <= words or words == {"key"}):
        return None
    if section == "twilio":
        return "TWILIO_ACCOUNT_SID" if words & {"sid", "account"} else "TWILIO_AUTH_TOKEN"
    if section == "gemini":
        return "GEMINI_API_KEY"
    if section == "owner":
        return OWNER_PIN_ENV_VAR
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
    """Check a TOML value against a field's type; an integer is fine where a float is."""
    if typing.get_origin(hint) is Literal:
        allowed = typing.get_args(hint)
        if isinstance(value, str) and value.strip().lower() in allowed:
            return value.strip().lower()
        suggestion = did_you_mean(value, allowed) if isinstance(value, str) else ""
        raise Invalid(f"must be {_expected(hint)}, got {_describe(value)}{suggestion}")
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise Invalid(f"must be a finite number, got {value}")
        return float(value)
    # bool is a subclass of int in Python, but true is not a number in TOML.
    if type(value) is hint:
        return value
    note = "; a boolean is not a number" if isinstance(value, bool) and hint in {int, float} else ""
    if hint is int and isinstance(value, float) and value.is_integer():
        note = f"; write {int(value)}"
    raise Invalid(f"expected {_expected(hint)}, got {_describe(value)}{note}")


def _from_text(text: str, hint: Any) -> Any:
    """Parse an environment variable's text to a field's type."""
    if hint is bool:
        word = text.strip().lower()
        if word in _TRUE | _FALSE:
            return word in _TRUE
        raise Invalid(f"expected a boolean (true/false, 1/0, yes/no, on/off), got {text!r}")
    if hint is int:
        try:
            return int(text.strip())
        except ValueError:
            raise Invalid(f"expected an integer, got {text!r}") from None
    if hint is float:
        try:
            return float(text.strip())
        except ValueError:
            raise Invalid(f"expected a number, got {text!r}") from None
    return text
