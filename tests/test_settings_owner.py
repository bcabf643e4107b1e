"""Settings of how the owner is recognised: ``[owner] caller_id_trust``, ``TARS_OWNER_PIN``
and the notes ``run.py check`` and the daemon give about the choice."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from tars_actors.runtime.settings import (
    Settings,
    SettingsError,
    load_settings,
    parse_settings,
)

OWNER_PHONE = "+15555550100"


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


def test_attested_is_the_default_and_no_pin_is_needed() -> None:
    settings = parse_settings({}, environ={})
    assert settings.owner.caller_id_trust == "attested"
    assert settings.secrets.owner_pin == ""


@pytest.mark.parametrize("trust", ["attested", "pin", "number"])
def test_each_trust_is_accepted(trust: str) -> None:
    settings = parse_settings(
        {"owner": {"caller_id_trust": trust}}, environ={"TARS_OWNER_PIN": "2468"}
    )
    assert settings.owner.caller_id_trust == trust


def test_a_misspelt_trust_names_the_key_the_choices_and_the_close_one() -> None:
    problem = only_problem({"owner": {"caller_id_trust": "atested"}})
    assert problem.startswith("[owner] caller_id_trust: ")
    assert "attested | pin | number" in problem
    assert problem.endswith("did you mean attested?")


def test_a_trust_from_the_environment_is_checked_too() -> None:
    problem = only_problem(environ={"TARS_OWNER_CALLER_ID_TRUST": "always"})
    assert "TARS_OWNER_CALLER_ID_TRUST" in problem
    assert "attested | pin | number" in problem


@pytest.mark.parametrize(
    ("pin", "what"),
    [
        ("975", "got 3 digits"),
        ("9753197531975", "got 13 digits"),
        ("97a31", "not all of them digits"),
        ("\u0669\u0667\u0665\u0663", "not all of them digits"),  # Arabic-Indic 9753
        ("97 31", "not all of them digits"),
    ],
    ids=["3 digits", "13 digits", "a letter", "non-ASCII digits", "inner space"],
)
def test_a_bad_owner_pin_is_named_without_its_value(pin: str, what: str) -> None:
    problem = only_problem(environ={"TARS_OWNER_PIN": pin})
    assert problem.startswith("TARS_OWNER_PIN: must be 4 to 12 digits")
    assert what in problem
    assert pin not in problem
    assert pin.strip()[:3] not in problem


def test_a_bad_pin_with_pin_trust_is_one_problem_that_never_echoes_it(tmp_path: Path) -> None:
    path = tmp_path / "settings.toml"
    path.write_text('[owner]\ncaller_id_trust = "pin"\n', encoding="utf-8")
    with pytest.raises(SettingsError) as caught:
        load_settings(path, environ={"TARS_OWNER_PIN": "864x"})
    [problem] = caught.value.problems
    assert problem.startswith("TARS_OWNER_PIN: ")
    assert "864" not in str(caught.value)


@pytest.mark.parametrize("pin", ["2468", "975319753197", " 2468\n", "\t0000 "])
def test_a_pin_of_4_to_12_digits_is_accepted_without_surrounding_whitespace(pin: str) -> None:
    settings = parse_settings({}, environ={"TARS_OWNER_PIN": pin})
    assert settings.secrets.owner_pin == pin.strip()


def test_pin_trust_without_a_pin_is_an_error_naming_the_variable() -> None:
    problem = only_problem({"owner": {"caller_id_trust": "pin"}})
    assert problem.startswith('[owner] caller_id_trust: "pin" needs')
    assert "TARS_OWNER_PIN" in problem


def test_pin_trust_with_a_pin_loads() -> None:
    settings = parse_settings(
        {"owner": {"caller_id_trust": "pin"}}, environ={"TARS_OWNER_PIN": "2468"}
    )
    assert settings.secrets.owner_pin == "2468"


@pytest.mark.parametrize("key", ["pin", "owner_pin"])
def test_a_pin_in_the_settings_file_is_refused_pointing_at_the_variable(key: str) -> None:
    problem = only_problem({"owner": {key: "2468"}})
    assert problem.startswith(f"[owner] {key}: ")
    assert "set the environment variable TARS_OWNER_PIN" in problem
    assert "2468" not in problem


def test_the_pin_variable_is_not_taken_for_a_settings_override() -> None:
    assert parse_settings({}, environ={"TARS_OWNER_PIN": "2468"}).owner == Settings().owner
    problem = only_problem(environ={"TARS_OWNER__PIN": "2468"})
    assert "set TARS_OWNER_PIN instead" in problem
    assert "2468" not in problem


def test_the_pin_is_shown_only_as_set_or_not() -> None:
    settings = parse_settings({}, environ={"TARS_OWNER_PIN": "97531"})
    assert "97531" not in repr(settings)
    assert "TARS_OWNER_PIN=***set***" in repr(settings.secrets)
    assert settings.redacted()["secrets"]["TARS_OWNER_PIN"] == "***set***"
    assert "97531" not in str(settings.redacted())


# --- owner_trust_notes --------------------------------------------------------------------


def notes(trust: str, pin: str = "") -> list[str]:
    environ = {"TARS_OWNER_PIN": pin} if pin else {}
    data = {"owner": {"caller_id_trust": trust, "phone": OWNER_PHONE}}
    return parse_settings(data, environ=environ).owner_trust_notes()


def test_number_trust_warns_that_a_faked_caller_id_gets_the_owners_tools() -> None:
    for pin in ("", "2468"):
        [note] = notes("number", pin)
        assert note.startswith('[owner] caller_id_trust is "number"')
        assert OWNER_PHONE in note
        assert "attested" in note


def test_attested_without_a_pin_says_unattested_calls_are_strangers_and_how_to_fix_it() -> None:
    [note] = notes("attested")
    assert "TARS_OWNER_PIN is not set" in note
    assert "TN-Validation-Passed-A" in note
    assert "unknown caller's level" in note
    assert OWNER_PHONE in note


def test_attested_with_a_pin_and_pin_trust_have_nothing_to_note() -> None:
    assert notes("attested", "2468") == []
    assert notes("pin", "2468") == []
