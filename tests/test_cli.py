"""run.py's command line: every command takes ``--settings PATH`` before or after its name."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest

from tars_actors.ops import cli
from tars_actors.runtime.settings import parse_settings

#: Each command's words, with what a command needs besides --settings.
COMMANDS = {
    "serve": ["serve"],
    "check": ["check"],
    "demo": ["demo"],
    "bench mailbox": ["bench", "mailbox"],
    "bench messaging": ["bench", "messaging", "--sessions", "4"],
    "bench cluster": ["bench", "cluster", "--messages", "5", "--rounds", "1"],
    "load": ["load", "--calls", "3"],
    "load pickup": ["load", "--pickup", "--calls", "3", "--at-once", "2"],
    "call": ["call", "+15550100000", "--goal", "book a table"],
    "twilio check": ["twilio", "check"],
    "twilio configure": ["twilio", "configure"],
    "service": ["service"],
}


@pytest.fixture(autouse=True)
def no_tars_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith(("TARS_", "TWILIO_", "GEMINI_")):
            monkeypatch.delenv(key)


def settings_file(path: Path, *, public_url: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[database]\nurl = "sqlite:///{path.parent / "tars.db"}"\n'
        f'[server]\nport = 0\npublic_url = "{public_url}"\n',
        encoding="utf-8",
    )
    return path


@pytest.mark.parametrize("words", COMMANDS.values(), ids=COMMANDS.keys())
def test_settings_is_read_before_or_after_the_command(words: list[str]) -> None:
    before = cli.parse_args(["--settings", "before.toml", *words])
    after = cli.parse_args([*words, "--settings", "after.toml"])
    inline = cli.parse_args([*words, "--settings=after.toml"])

    assert before.settings == "before.toml"
    assert after.settings == inline.settings == "after.toml"
    # The command's own arguments read the same wherever --settings stands.
    plain = vars(cli.parse_args(words))
    for parsed in (before, after, inline):
        assert {**vars(parsed), "settings": None} == plain


@pytest.mark.parametrize("words", COMMANDS.values(), ids=COMMANDS.keys())
def test_settings_after_the_command_wins_over_one_before(words: list[str]) -> None:
    both = cli.parse_args(["--settings", "before.toml", *words, "--settings", "after.toml"])
    assert both.settings == "after.toml"


def test_without_settings_or_command_it_serves_with_the_default_settings() -> None:
    args = cli.parse_args([])
    assert (args.command, args.settings) == (None, None)
    assert cli.parse_args(["--settings", "x.toml"]).settings == "x.toml"


def test_an_unknown_option_is_still_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.parse_args(["check", "--setting-typo", "x"])
    assert exit_.value.code == 2
    assert "unrecognized arguments: --setting-typo x" in capsys.readouterr().err


def test_bench_and_load_options_go_through_beside_settings() -> None:
    bench = cli.parse_args(["bench", "messaging", "--settings", "s.toml", "--rounds", "5"])
    assert (bench.name, bench.sessions, bench.rounds, bench.json) == ("messaging", 20, 5, False)
    load = cli.parse_args(["load", "--settings", "s.toml", "--seconds", "2.5", "--json"])
    assert (load.calls, load.seconds, load.json) == (50, 2.5, True)
    call = cli.parse_args(["call", "Alice", "--settings", "s.toml", "--goal", "say hi"])
    assert (call.callee, call.goal) == ("Alice", "say hi")


@pytest.mark.parametrize("after", [True, False], ids=["after", "before"])
def test_check_reads_the_settings_given_on_either_side(tmp_path: Path, after: bool) -> None:
    path = settings_file(tmp_path / "settings.toml", public_url="https://either.side.test")
    words = ["check", "--settings", str(path)] if after else ["--settings", str(path), "check"]
    out = io.StringIO()

    code = cli.main(words, stdout=out)

    assert code == 1  # no credentials: not ready for real calls
    first, *rest = out.getvalue().splitlines()
    assert first == f"settings: {path}"
    assert "https://either.side.test" in "\n".join(rest)
    assert "database: reachable" in out.getvalue()


def test_check_takes_the_settings_after_the_command_when_both_are_given(tmp_path: Path) -> None:
    before = settings_file(tmp_path / "before" / "settings.toml", public_url="https://b.test")
    after = settings_file(tmp_path / "after" / "settings.toml", public_url="https://a.test")
    out = io.StringIO()

    cli.main(["--settings", str(before), "check", "--settings", str(after)], stdout=out)

    assert out.getvalue().splitlines()[0] == f"settings: {after}"


def test_service_puts_the_settings_given_after_the_command_in_the_unit(tmp_path: Path) -> None:
    path = settings_file(tmp_path / "conf" / "settings.toml", public_url="https://s.test")
    out = io.StringIO()

    assert cli.main(["service", "--settings", str(path)], stdout=out) == 0

    assert f"--settings {path}" in out.getvalue()


@pytest.mark.parametrize(
    "words",
    [
        ["twilio", "check", "--settings", "{path}"],
        ["twilio", "--settings", "{path}", "check"],
        ["twilio", "configure", "--settings", "{path}"],
    ],
)
def test_twilio_reads_the_settings_given_after_the_command(
    tmp_path: Path, words: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # The file's http public_url is invalid: the error names it, so that file was read.
    path = settings_file(tmp_path / "settings.toml", public_url="http://plain.twilio.test")
    out = io.StringIO()

    code = cli.main([word.format(path=path) for word in words], stdout=out)

    assert code == 2
    error = capsys.readouterr().err
    assert error.startswith("tars: invalid settings (1 problem(s)):")
    assert "got 'http://plain.twilio.test'" in error
    assert out.getvalue() == ""


@pytest.mark.parametrize(
    "words",
    [
        ["inspect", "--settings", "unused.toml", "--once", "{log}"],
        ["inspect", "--once", "{log}", "--settings", "unused.toml"],
        ["--settings", "unused.toml", "inspect", "{log}", "--settings=unused.toml"],
    ],
)
def test_inspect_accepts_settings_on_either_side(tmp_path: Path, words: list[str]) -> None:
    log = tmp_path / "tars.log"
    started = {"timestamp": "2026-03-01T09:00:00Z", "event": "daemon.started", "pid": 42}
    log.write_text(json.dumps(started) + "\n", encoding="utf-8")
    out = io.StringIO()

    assert cli.main([word.format(log=log) for word in words], stdout=out) == 0

    assert "daemon running (pid 42" in out.getvalue()


def test_twilio_check_runs_with_the_settings_given_after_it(tmp_path: Path) -> None:
    path = settings_file(tmp_path / "settings.toml", public_url="https://twilio.side.test")
    out = io.StringIO()

    code = cli.main(["twilio", "check", "--settings", str(path)], stdout=out)

    assert code == 2  # the file sets no phone number: nothing is asked of Twilio
    assert out.getvalue().splitlines()[:2] == [
        "settings to fix first:",
        "  - [twilio] phone_number is empty: set the Twilio number people call",
    ]


# --- check: how the owner is recognised ---------------------------------------------------


def owner_section(output: str) -> list[str]:
    """The lines under "how the owner is recognised:" (empty when there is no such part)."""
    lines = output.splitlines()
    if "how the owner is recognised:" not in lines:
        return []
    start = lines.index("how the owner is recognised:") + 1
    notes = []
    for line in lines[start:]:
        if not line.startswith("  - "):
            break
        notes.append(line)
    return notes


def test_check_notes_that_an_unattested_owner_without_a_pin_is_a_stranger(tmp_path: Path) -> None:
    path = settings_file(tmp_path / "settings.toml", public_url="https://owner.notes.test")
    out = io.StringIO()

    code = cli.main(["check", "--settings", str(path)], stdout=out)

    assert code == 1  # as before: no credentials, not ready for real calls
    [note] = owner_section(out.getvalue())
    assert "TARS_OWNER_PIN is not set" in note
    assert "not ready for real calls:" in out.getvalue()


def test_check_has_no_owner_note_once_the_pin_is_set(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TARS_OWNER_PIN", "97531")
    path = settings_file(tmp_path / "settings.toml", public_url="https://owner.pin.test")
    out = io.StringIO()

    code = cli.main(["check", "--settings", str(path)], stdout=out)

    assert code == 1
    assert "how the owner is recognised:" not in out.getvalue()
    assert "97531" not in out.getvalue()
    assert '"TARS_OWNER_PIN": "***set***"' in out.getvalue()


def test_a_note_alone_does_not_keep_check_from_saying_ready(tmp_path: Path) -> None:
    settings = parse_settings(
        {
            "database": {"url": f"sqlite:///{tmp_path / 'tars.db'}"},
            "server": {"public_url": "https://ready.owner.test"},
            "twilio": {"phone_number": "+15555550199"},
            "owner": {"phone": "+15555550123", "caller_id_trust": "number"},
        },
        environ={
            "TWILIO_ACCOUNT_SID": "ACtest-account-sid",
            "TWILIO_AUTH_TOKEN": "test-auth-token",
            "GEMINI_API_KEY": "test-gemini-api-key",
        },
    )
    out = io.StringIO()

    assert cli.check(settings, out) == 0

    [note] = owner_section(out.getvalue())
    assert 'caller_id_trust is "number"' in note
    assert out.getvalue().splitlines()[-1] == "ready for real calls"


def test_check_refuses_a_bad_owner_pin_without_showing_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TARS_OWNER_PIN", "975")
    path = settings_file(tmp_path / "settings.toml", public_url="https://owner.bad.test")
    out = io.StringIO()

    assert cli.main(["check", "--settings", str(path)], stdout=out) == 2

    error = capsys.readouterr().err
    assert "TARS_OWNER_PIN: must be 4 to 12 digits" in error
    assert "975" not in error
    assert out.getvalue() == ""
