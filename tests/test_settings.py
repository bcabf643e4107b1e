"""Settings: the shipped file, every kind of settings error, overrides, paths and secrets."""

from __future__ import annotations

import dataclasses
import operator
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import peewee
import pytest

from actors.call_supervisor import admission_limits
from tars_actors.runtime.settings import (
    PLACEHOLDER_PUBLIC_URL,
    Secrets,
    Settings,
    SettingsError,
    load_settings,
    parse_settings,
    resolve_settings_path,
)
from tars_actors.store import redact_url

SHIPPED = Path(__file__).resolve().parent.parent / "settings.toml"
FAKE_ENV = {
    "TWILIO_ACCOUNT_SID": "ACtest-account-sid",
    "TWILIO_AUTH_TOKEN": "test-auth-token",
    "GEMINI_API_KEY": "test-gemini-api-key",
}


def problems_of(
    data: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    with pytest.raises(SettingsError) as caught:
        parse_settings(data or {}, environ=environ or {})
    return caught.value.problems


def only_problem(
    data: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
) -> str:
    problems = problems_of(data, environ)
    assert len(problems) == 1, problems
    return problems[0]


# --- the shipped settings.toml -------------------------------------------------------


def test_shipped_settings_file_loads_cleanly_with_an_empty_environment() -> None:
    settings = load_settings(SHIPPED, environ={})

    assert settings.source == str(SHIPPED)


def test_shipped_settings_file_matches_the_code_defaults() -> None:
    assert load_settings(SHIPPED, environ={}) == Settings()


def test_shipped_settings_file_has_every_key_and_no_other() -> None:
    shipped = tomllib.loads(SHIPPED.read_text(encoding="utf-8"))

    in_file = {section: set(table) for section, table in shipped.items()}
    in_code = {section: set(table) for section, table in Settings().to_data().items()}
    assert in_file == in_code


def test_every_key_in_the_shipped_settings_file_has_a_comment_above_it() -> None:
    seen, uncommented = [], []
    previous = section = ""
    for line in SHIPPED.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if header := re.fullmatch(r"\[(\w+)\]", stripped):
            section = header[1]
        elif key := re.match(r"(\w+)\s*=", stripped):
            seen.append((section, key[1]))
            if not previous.startswith("#"):
                uncommented.append(f"[{section}] {key[1]}")
        previous = stripped

    in_code = [(name, key) for name, table in Settings().to_data().items() for key in table]
    assert sorted(seen) == sorted(in_code)
    assert uncommented == []


def test_keys_missing_from_the_data_take_the_code_defaults() -> None:
    settings = parse_settings({"sessions": {"max_concurrent": 2}}, environ={})

    assert settings.sessions.max_concurrent == 2
    assert dataclasses.replace(settings, sessions=Settings().sessions) == Settings()


# --- unknown sections and keys ----------------------------------------------------------


def test_unknown_key_suggests_the_close_one() -> None:
    problem = only_problem({"sessions": {"max_concurent": 4}})

    assert problem.startswith("[sessions] max_concurent: unknown key")
    assert "did you mean max_concurrent?" in problem


def test_unknown_key_without_a_close_one_lists_the_section_keys() -> None:
    problem = only_problem({"reminders": {"zzz": 1}})

    assert problem == "[reminders] zzz: unknown key; [reminders] has delivery"


def test_unknown_section_suggests_the_close_one() -> None:
    problem = only_problem({"sesions": {"max_concurrent": 4}})

    assert problem == "[sesions]: unknown section; did you mean [sessions]?"


def test_key_outside_any_section_suggests_its_section() -> None:
    problem = only_problem({"port": 8080})

    assert problem == "port: settings belong in a [section]; did you mean [server] port?"


def test_section_that_is_not_a_table_is_rejected() -> None:
    problem = only_problem({"sessions": 4})

    assert problem == "[sessions]: expected a table of keys, got an integer (4)"


@pytest.mark.parametrize(
    ("section", "key", "variable"),
    [
        ("twilio", "auth_token", "TWILIO_AUTH_TOKEN"),
        ("twilio", "account_sid", "TWILIO_ACCOUNT_SID"),
        ("gemini", "api_key", "GEMINI_API_KEY"),
    ],
)
def test_secret_written_in_the_file_points_to_its_environment_variable(
    section: str, key: str, variable: str
) -> None:
    problem = only_problem({section: {key: "test-secret-value"}})

    assert problem.startswith(f"[{section}] {key}: ")
    assert f"set the environment variable {variable}" in problem
    assert "test-secret-value" not in problem


# --- wrong types ---------------------------------------------------------------------


def test_wrong_type_says_what_was_expected_and_what_was_given() -> None:
    problem = only_problem({"server": {"port": "8080"}})

    assert problem == "[server] port: expected an integer, got a string ('8080')"


def test_boolean_is_not_accepted_as_an_integer() -> None:
    problem = only_problem({"sessions": {"max_concurrent": True}})

    assert problem.startswith("[sessions] max_concurrent: expected an integer, got a boolean")
    assert "a boolean is not a number" in problem


def test_string_is_not_accepted_as_a_boolean_in_the_file() -> None:
    problem = only_problem({"twilio": {"validate_signatures": "yes"}})

    assert problem.startswith("[twilio] validate_signatures: expected a boolean")


def test_whole_float_for_an_integer_key_suggests_the_integer() -> None:
    problem = only_problem({"sessions": {"max_concurrent": 4.0}})

    assert problem == "[sessions] max_concurrent: expected an integer, got a float (4); write 4"


def test_integer_is_accepted_for_a_float_key() -> None:
    settings = parse_settings({"supervision": {"period_seconds": 5}}, environ={})

    assert settings.supervision.period_seconds == 5.0
    assert isinstance(settings.supervision.period_seconds, float)


def test_float_key_rejects_a_value_that_is_not_finite() -> None:
    problem = only_problem({"monitor": {"watchdog_seconds": float("inf")}})

    assert problem == "[monitor] watchdog_seconds: must be a finite number, got inf"


# --- bad values ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("section", "key", "value", "expected"),
    [
        ("server", "port", -1, "[server] port: must be between 0 and 65535, got -1"),
        ("server", "port", 65536, "[server] port: must be between 0 and 65535, got 65536"),
        ("server", "max_connections", 0, "[server] max_connections: must be at least 1, got 0"),
        ("server", "max_connections", -5, "[server] max_connections: must be at least 1, got -5"),
        ("sessions", "max_concurrent", 0, "[sessions] max_concurrent: must be at least 1, got 0"),
        ("sessions", "max_call_seconds", 29, "[sessions] max_call_seconds: must be at least 30"),
        ("sessions", "shutdown_grace_seconds", -1, "[sessions] shutdown_grace_seconds: must be"),
        ("sessions", "owner_reserved", -1, "[sessions] owner_reserved: must be at least 0, got -1"),
        ("sessions", "max_per_caller", 0, "[sessions] max_per_caller: must be at least 1, got 0"),
        (
            "sessions",
            "unknown_calls_per_hour",
            0,
            "[sessions] unknown_calls_per_hour: must be at least 1, got 0",
        ),
        ("supervision", "max_restarts", -1, "[supervision] max_restarts: must be at least 0"),
        ("supervision", "period_seconds", 0, "[supervision] period_seconds: must be greater"),
        ("monitor", "stats_interval_seconds", 0, "[monitor] stats_interval_seconds: must be"),
        ("transfer", "ring_seconds", 4, "[transfer] ring_seconds: must be between 5 and 120"),
        ("transfer", "ring_seconds", 121, "[transfer] ring_seconds: must be between 5 and 120"),
        ("gemini", "max_sessions", -1, "[gemini] max_sessions: must be at least 0, got -1"),
    ],
)
def test_number_outside_its_range_is_rejected(
    section: str, key: str, value: float, expected: str
) -> None:
    assert only_problem({section: {key: value}}).startswith(expected)


def test_admission_limits_default_to_one_owner_place_one_call_and_ten_an_hour() -> None:
    sessions = parse_settings({}, environ={}).sessions

    assert (sessions.owner_reserved, sessions.max_per_caller, sessions.unknown_calls_per_hour) == (
        1,
        1,
        10,
    )


@pytest.mark.parametrize(
    ("max_sessions", "expected"), [(0, (8, 1)), (3, (3, 1)), (1, (1, 0)), (20, (8, 1))]
)
def test_the_models_sessions_cap_the_places_and_the_owners_stays_within_them(
    max_sessions: int, expected: tuple[int, int]
) -> None:
    settings = parse_settings(
        {"gemini": {"max_sessions": max_sessions}, "sessions": {"max_concurrent": 8}}, environ={}
    )
    limits = admission_limits(settings)
    assert (limits.max_concurrent, limits.reserved) == expected


@pytest.mark.parametrize("key", ["owner_reserved", "max_per_caller", "unknown_calls_per_hour"])
def test_admission_limits_must_be_whole_numbers(key: str) -> None:
    assert only_problem({"sessions": {key: "two"}}).startswith(f"[sessions] {key}: expected an")


def test_backoff_max_below_backoff_initial_is_rejected() -> None:
    problem = only_problem(
        {"supervision": {"backoff_initial_seconds": 2, "backoff_max_seconds": 1}}
    )

    assert problem == (
        "[supervision] backoff_max_seconds: must be at least backoff_initial_seconds (2), got 1"
    )


def test_empty_name_is_rejected() -> None:
    assert only_problem({"assistant": {"name": "  "}}) == "[assistant] name: must not be empty"


@pytest.mark.parametrize(("section", "key"), [("owner", "phone"), ("twilio", "phone_number")])
def test_phone_number_that_is_not_e164_is_rejected(section: str, key: str) -> None:
    problem = only_problem({section: {key: "06 30 123 4567"}})

    assert problem.startswith(f"[{section}] {key}: '06 30 123 4567' is not an E.164 phone number")
    assert "E.164 starts with + and the country code" in problem


def test_phone_number_with_spaces_suggests_the_e164_spelling() -> None:
    problem = only_problem({"owner": {"phone": "+36 30 123 4567"}})

    assert problem.endswith("write it as +36301234567")


def test_empty_twilio_number_loads_and_is_listed_for_real_calls() -> None:
    settings = parse_settings({"twilio": {"phone_number": ""}}, environ={})

    assert any(
        line.startswith("[twilio] phone_number") for line in settings.missing_for_real_calls()
    )


@pytest.mark.parametrize(
    ("value", "wrong"),
    [
        ("http://tars.test", "must be an https:// URL"),
        ("wss://tars.test", "must be an https:// URL"),
        ("https://tars.test/?token=1", "must not have a query string"),
        ("https://", "has no host name"),
    ],
)
def test_public_url_that_is_not_a_plain_https_url_is_rejected(value: str, wrong: str) -> None:
    problem = only_problem({"server": {"public_url": value}})

    assert problem.startswith("[server] public_url: ")
    assert wrong in problem


def test_public_url_loses_its_trailing_slash() -> None:
    settings = parse_settings({"server": {"public_url": "https://tars.test/"}}, environ={})

    assert settings.server.public_url == "https://tars.test"


@pytest.mark.parametrize(("section", "key"), [("twilio", "api_base_url"), ("gemini", "base_url")])
def test_stand_in_base_url_must_be_http_or_https(section: str, key: str) -> None:
    problem = only_problem({section: {key: "ftp://127.0.0.1:9000"}})

    assert problem.startswith(f"[{section}] {key}: must be an http:// or https:// URL, or empty")


def test_stand_in_base_url_is_accepted() -> None:
    settings = parse_settings({"twilio": {"api_base_url": "http://127.0.0.1:9000/"}}, environ={})

    assert settings.twilio.api_base_url == "http://127.0.0.1:9000"


def test_delivery_outside_call_message_both_is_rejected() -> None:
    problem = only_problem({"reminders": {"delivery": "calls"}})

    assert problem == (
        "[reminders] delivery: must be one of call | message | both, got a string ('calls'); "
        "did you mean call?"
    )


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [("level", "verbose", "debug | info | warning | error"), ("format", "xml", "json | console")],
)
def test_log_level_or_format_outside_the_allowed_values_is_rejected(
    key: str, value: str, allowed: str
) -> None:
    problem = only_problem({"logging": {key: value}})

    assert problem.startswith(f"[logging] {key}: must be one of {allowed}")


def test_log_level_is_read_case_insensitively() -> None:
    settings = parse_settings({"logging": {"level": "DEBUG"}}, environ={})

    assert settings.logging.level == "debug"


@pytest.mark.parametrize(
    ("value", "suggestion"),
    [("Europe/Budpest", "Europe/Budapest"), ("europe/budapest", "Europe/Budapest")],
)
def test_unknown_timezone_is_rejected_with_the_close_one(value: str, suggestion: str) -> None:
    problem = only_problem({"owner": {"timezone": value}})

    assert problem.startswith(f"[owner] timezone: {value!r} is not a known IANA time zone")
    assert problem.endswith(f"did you mean {suggestion}?")


def test_language_that_is_not_a_bcp47_tag_is_rejected() -> None:
    problem = only_problem({"assistant": {"language": "en_US"}})

    assert problem == (
        "[assistant] language: 'en_US' is not a BCP-47 language tag such as en-US or hu-HU; "
        "write en-US"
    )


def test_language_tag_is_written_in_its_canonical_case() -> None:
    settings = parse_settings({"assistant": {"language": "zh-hant-tw"}}, environ={})

    assert settings.assistant.language == "zh-Hant-TW"


# --- database URLs -------------------------------------------------------------------


def test_database_url_with_an_unknown_scheme_is_rejected() -> None:
    problem = only_problem({"database": {"url": "postgress://localhost/tars"}})

    assert problem.startswith("[database] url: unknown database scheme 'postgress'")
    assert "did you mean postgres" in problem


def test_database_url_that_cannot_be_parsed_is_rejected() -> None:
    problem = only_problem({"database": {"url": "postgresql://localhost:port/tars"}})

    assert problem.startswith("[database] url: cannot parse 'postgresql://localhost:port/tars'")


def test_database_path_without_a_scheme_suggests_the_sqlite_url() -> None:
    problem = only_problem({"database": {"url": "tars.db"}})

    assert problem.endswith("for a SQLite file write sqlite:///tars.db")


def test_sqlite_url_with_two_slashes_is_rejected_instead_of_opening_memory() -> None:
    problem = only_problem({"database": {"url": "sqlite://tars.db"}})

    assert problem.endswith("a SQLite file takes three slashes: sqlite:///tars.db")


def test_a_url_the_store_would_refuse_is_refused_by_the_settings_first() -> None:
    # Each thread has its own connection: an in-memory database would be one per thread.
    problem = only_problem({"database": {"url": "sqlite:///:memory:"}})

    assert problem.startswith("[database] url: 'sqlite:///:memory:': an in-memory SQLite")


def test_sqlite_file_in_a_missing_directory_is_rejected(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'tars.db'}"

    problem = only_problem({"database": {"url": url}})

    assert problem.startswith("[database] url: the directory of the SQLite file")
    assert "does not exist" in problem


def test_sqlite_file_in_an_existing_directory_is_accepted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'tars.db'}"

    assert parse_settings({"database": {"url": url}}, environ={}).database.url == url
    assert not (tmp_path / "tars.db").exists()


def test_postgresql_url_without_a_driver_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peewee, "psycopg2", None)
    monkeypatch.setattr(peewee, "psycopg", None)

    problem = only_problem({"database": {"url": "postgresql://tars@127.0.0.1:1/tars"}})

    assert problem.startswith("[database] url: no PostgreSQL driver is installed")


def test_postgresql_url_is_accepted_without_connecting() -> None:
    # Port 1 on loopback has no server: a connection attempt would fail the load.
    url = "postgresql://tars@127.0.0.1:1/tars"

    assert parse_settings({"database": {"url": url}}, environ={}).database.url == url


def test_mysql_url_without_a_driver_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(peewee, "mysql", None)

    problem = only_problem({"database": {"url": "mysql://tars@127.0.0.1:1/tars"}})

    assert problem.startswith("[database] url: no MySQL driver is installed")


def test_database_password_is_masked_in_problems() -> None:
    problem = only_problem({"database": {"url": "postgress://tars:hunter2@db/tars"}})

    assert "hunter2" not in problem
    assert "postgress://tars:***@db/tars" in problem


# --- files named by settings -----------------------------------------------------------


def test_ca_file_that_does_not_exist_is_rejected(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"

    problem = only_problem({"gemini": {"ca_file": str(missing)}})

    assert problem == f"[gemini] ca_file: file {str(missing)!r} does not exist"


def test_ca_file_that_exists_is_accepted(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("test certificate\n", encoding="utf-8")

    settings = parse_settings({"gemini": {"ca_file": str(pem)}}, environ={})

    assert settings.gemini.ca_file == str(pem)


def test_log_file_in_a_missing_directory_is_rejected(tmp_path: Path) -> None:
    problem = only_problem({"logging": {"file": str(tmp_path / "missing" / "tars.log")}})

    assert problem.startswith("[logging] file: the directory of")
    assert "does not exist" in problem


# --- the settings file -------------------------------------------------------------------


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("[server]\nport = \n", encoding="utf-8")

    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={})

    (problem,) = caught.value.problems
    assert problem.startswith(f"settings file {path}: TOML syntax error")
    assert "line 2" in problem


@pytest.mark.parametrize(
    ("cli", "environ", "how"),
    [
        ("missing.toml", {}, "given with --settings"),
        (None, {"TARS_SETTINGS": "missing.toml"}, "from the TARS_SETTINGS environment variable"),
        (None, {}, "the default, as neither --settings nor TARS_SETTINGS was given"),
    ],
)
def test_missing_settings_file_says_which_path_and_how_it_was_chosen(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cli: str | None,
    environ: dict[str, str],
    how: str,
) -> None:
    monkeypatch.chdir(tmp_path)

    with pytest.raises(SettingsError) as caught:
        load_settings(cli, environ=environ)

    (problem,) = caught.value.problems
    assert problem.startswith("settings file ")
    assert f"does not exist ({how})" in problem
    assert str(tmp_path) in problem


def test_every_problem_is_reported_at_once_one_per_line() -> None:
    with pytest.raises(SettingsError) as caught:
        parse_settings(
            {
                "server": {"port": 99999, "public_url": "http://tars.test"},
                "reminders": {"delivery": "sms"},
            },
            environ={"TARS_SESSIONS_MAX_CONCURRENT": "many"},
        )

    problems = caught.value.problems
    assert len(problems) == 4
    assert str(caught.value).splitlines() == list(problems)


# --- where the settings file comes from ---------------------------------------------------


def test_settings_path_from_the_command_line_beats_the_environment() -> None:
    chosen = resolve_settings_path("cli.toml", {"TARS_SETTINGS": "env.toml"})

    assert chosen == Path("cli.toml")


def test_settings_path_from_the_environment_beats_the_default() -> None:
    assert resolve_settings_path(None, {"TARS_SETTINGS": "env.toml"}) == Path("env.toml")


def test_settings_path_defaults_to_settings_toml_in_the_working_directory() -> None:
    assert resolve_settings_path(None, {}) == Path("settings.toml")
    assert resolve_settings_path(None, {"TARS_SETTINGS": ""}) == Path("settings.toml")


def test_load_settings_reads_the_file_each_source_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, port in (("settings.toml", 9001), ("env.toml", 9002), ("cli.toml", 9003)):
        (tmp_path / name).write_text(f"[server]\nport = {port}\n", encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    environ = {"TARS_SETTINGS": str(tmp_path / "env.toml")}

    assert load_settings(environ={}).server.port == 9001
    assert load_settings(environ=environ).server.port == 9002
    assert load_settings(tmp_path / "cli.toml", environ=environ).server.port == 9003


# --- environment overrides -------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "text", "attribute", "expected"),
    [
        ("TARS_SESSIONS_MAX_CONCURRENT", "4", "sessions.max_concurrent", 4),
        ("TARS_SUPERVISION_PERIOD_SECONDS", "2.5", "supervision.period_seconds", 2.5),
        ("TARS_MONITOR_WATCHDOG_SECONDS", "3", "monitor.watchdog_seconds", 3.0),
        ("TARS_TWILIO_VALIDATE_SIGNATURES", "false", "twilio.validate_signatures", False),
        ("TARS_OWNER_NAME", "Ada Lovelace", "owner.name", "Ada Lovelace"),
        ("TARS_REMINDERS_DELIVERY", "both", "reminders.delivery", "both"),
        ("TARS_LOGGING_FORMAT", "JSON", "logging.format", "json"),
        ("TARS_TWILIO_PHONE_NUMBER", "+15017122661", "twilio.phone_number", "+15017122661"),
    ],
)
def test_environment_variable_overrides_its_key_with_the_key_type(
    variable: str, text: str, attribute: str, expected: object
) -> None:
    settings = parse_settings({}, environ={variable: text})

    value = operator.attrgetter(attribute)(settings)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("1", True),
        ("yes", True),
        ("ON", True),
        ("false", False),
        ("0", False),
        ("no", False),
        ("Off", False),
    ],
)
def test_boolean_override_accepts_the_usual_spellings(text: str, expected: bool) -> None:
    settings = parse_settings(
        {"twilio": {"validate_signatures": not expected}},
        environ={"TARS_TWILIO_VALIDATE_SIGNATURES": text},
    )

    assert settings.twilio.validate_signatures is expected


def test_environment_override_beats_the_settings_file(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text("[server]\nport = 9000\n", encoding="utf-8")

    settings = load_settings(path, environ={"TARS_SERVER_PORT": "9001"})

    assert settings.server.port == 9001


@pytest.mark.parametrize(
    ("variable", "text", "expected"),
    [
        (
            "TARS_SESSIONS_MAX_CONCURRENT",
            "four",
            "TARS_SESSIONS_MAX_CONCURRENT ([sessions] max_concurrent): "
            "expected an integer, got 'four'",
        ),
        (
            "TARS_TWILIO_VALIDATE_SIGNATURES",
            "maybe",
            "TARS_TWILIO_VALIDATE_SIGNATURES ([twilio] validate_signatures): "
            "expected a boolean (true/false, 1/0, yes/no, on/off), got 'maybe'",
        ),
        (
            "TARS_SERVER_PORT",
            "70000",
            "TARS_SERVER_PORT ([server] port): must be between 0 and 65535, got 70000",
        ),
    ],
)
def test_bad_environment_override_names_the_variable_and_the_key(
    variable: str, text: str, expected: str
) -> None:
    assert only_problem(environ={variable: text}) == expected


def test_unknown_tars_variable_suggests_the_close_one() -> None:
    problem = only_problem(environ={"TARS_SESSIONS_MAX_CONCURENT": "4"})

    assert problem == (
        "TARS_SESSIONS_MAX_CONCURENT: names no setting; did you mean TARS_SESSIONS_MAX_CONCURRENT?"
    )


def test_tars_settings_variable_is_not_taken_for_an_override() -> None:
    parse_settings({}, environ={"TARS_SETTINGS": "elsewhere.toml"})


def test_secret_override_variable_points_to_the_secret_variable() -> None:
    problem = only_problem(environ={"TARS_TWILIO_AUTH_TOKEN": "test-auth-token"})

    assert problem == (
        "TARS_TWILIO_AUTH_TOKEN: secrets have their own variables: set TWILIO_AUTH_TOKEN instead"
    )


def test_variables_without_the_tars_prefix_are_ignored() -> None:
    assert parse_settings({}, environ={"HOME": "/root", "PATH": "/bin"}) == Settings()


# --- secrets ---------------------------------------------------------------------------


def test_secrets_come_from_the_environment_without_surrounding_whitespace() -> None:
    settings = parse_settings({}, environ={**FAKE_ENV, "TWILIO_AUTH_TOKEN": "test-auth-token\n"})

    assert settings.secrets == Secrets(
        twilio_account_sid="ACtest-account-sid",
        twilio_auth_token="test-auth-token",
        gemini_api_key="test-gemini-api-key",
    )


def test_repr_and_str_of_secrets_hide_the_values() -> None:
    settings = parse_settings({}, environ=FAKE_ENV)

    for shown in (repr(settings.secrets), str(settings.secrets), repr(settings), str(settings)):
        for secret in FAKE_ENV.values():
            assert secret not in shown
    assert repr(settings.secrets) == (
        "Secrets(TWILIO_ACCOUNT_SID=***set***, TWILIO_AUTH_TOKEN=***set***, "
        "GEMINI_API_KEY=***set***, TARS_OWNER_PIN=(not set))"
    )


def test_redacted_shows_whether_secrets_are_set_but_never_their_values() -> None:
    settings = parse_settings(
        {"database": {"url": "postgresql://tars:test-db-password@127.0.0.1:1/tars"}},
        environ={"TWILIO_AUTH_TOKEN": "test-auth-token"},
    )

    redacted = settings.redacted()

    assert redacted["secrets"] == {
        "TWILIO_ACCOUNT_SID": "(not set)",
        "TWILIO_AUTH_TOKEN": "***set***",
        "GEMINI_API_KEY": "(not set)",
        "TARS_OWNER_PIN": "(not set)",
    }
    assert redacted["database"]["url"] == "postgresql://tars:***@127.0.0.1:1/tars"
    assert redacted["sessions"]["max_concurrent"] == 8
    assert "test-auth-token" not in repr(redacted)
    assert "test-db-password" not in repr(redacted)


def test_secret_values_lists_every_set_secret_and_the_database_password() -> None:
    settings = parse_settings(
        {"database": {"url": "postgresql://tars:test%40pw@127.0.0.1:1/tars"}},
        environ={"GEMINI_API_KEY": "test-gemini-api-key"},
    )

    assert settings.secret_values() == ("test-gemini-api-key", "test%40pw", "test@pw")


def test_missing_for_real_calls_lists_secrets_number_url_and_owner_phone() -> None:
    missing = Settings().missing_for_real_calls()

    assert missing[:3] == [
        "TWILIO_ACCOUNT_SID is not set in the environment",
        "TWILIO_AUTH_TOKEN is not set in the environment",
        "GEMINI_API_KEY is not set in the environment",
    ]
    assert missing[3].startswith("[twilio] phone_number is empty")
    assert missing[4].startswith(
        f"[server] public_url is still the placeholder {PLACEHOLDER_PUBLIC_URL}"
    )
    assert missing[5].startswith("[owner] phone is the placeholder +15555550100")
    assert len(missing) == 6


def test_missing_for_real_calls_is_empty_once_everything_is_configured() -> None:
    settings = parse_settings(
        {
            "owner": {"phone": "+36301234567"},
            "server": {"public_url": "https://tars.test"},
            "twilio": {"phone_number": "+15017122661"},
        },
        environ=FAKE_ENV,
    )

    assert settings.missing_for_real_calls() == []


# --- immutability and overrides in code -----------------------------------------------


def test_settings_cannot_be_changed_in_place() -> None:
    settings = Settings()

    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.sessions.max_concurrent = 2  # type: ignore[misc]


def test_dataclasses_replace_gives_a_changed_copy() -> None:
    settings = Settings()

    changed = dataclasses.replace(
        settings, sessions=dataclasses.replace(settings.sessions, max_concurrent=2)
    )

    assert changed.sessions.max_concurrent == 2
    assert settings.sessions.max_concurrent == 8


def test_with_overrides_changes_the_named_keys_and_keeps_the_rest() -> None:
    settings = parse_settings({"server": {"port": 9000}}, environ=FAKE_ENV)

    changed = settings.with_overrides(
        {"sessions.max_concurrent": 2}, **{"supervision.period_seconds": 1}
    )

    assert changed.sessions.max_concurrent == 2
    assert changed.supervision.period_seconds == 1.0
    assert changed.server.port == 9000
    assert changed.secrets == settings.secrets


def test_with_overrides_accepts_a_path_for_a_file_key(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("test certificate\n", encoding="utf-8")

    assert Settings().with_overrides({"gemini.ca_file": pem}).gemini.ca_file == str(pem)


def test_with_overrides_validates_like_the_loader() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings().with_overrides({"server.port": 0, "sessions.max_concurent": 2, "port": 1})

    assert caught.value.problems == ("'port': name an override 'section.key', e.g. 'server.port'",)
    with pytest.raises(SettingsError) as caught:
        Settings().with_overrides({"server.port": -1, "sessions.max_concurent": 2})

    assert caught.value.problems == (
        "[sessions] max_concurent: unknown key; did you mean max_concurrent?",
        "[server] port: must be between 0 and 65535, got -1",
    )


def test_mask_url_password_hides_only_the_password() -> None:
    assert redact_url("postgresql://tars:pw@db:5432/tars") == "postgresql://tars:***@db:5432/tars"
    assert redact_url("sqlite:///tars.db") == "sqlite:///tars.db"
