"""``twilio check`` and ``twilio configure`` against the REST stand-in."""

from __future__ import annotations

import dataclasses
import io
import socket
from collections.abc import Iterator

import pytest

from tars_actors.ops.twilio_setup import (
    NumberReport,
    check_number,
    configure_number,
    render_check,
    twilio_main,
)
from tars_actors.ops.twilio_webhooks import (
    NumberConfig,
    expected_webhooks,
    number_problems,
    planned_changes,
)
from tars_actors.runtime.settings import Secrets, Settings
from tars_actors.sim.twilio_api import Operation, TwilioRestStandIn

ACCOUNT = "ACtest0123456789abcdef0123456789"
TOKEN = "test-auth-token"
NUMBER = "+15550100000"
PUBLIC_URL = "https://tars.operator.test"
VOICE_URL = f"{PUBLIC_URL}/twilio/voice"
STATUS_URL = f"{PUBLIC_URL}/twilio/status"


@pytest.fixture
def twilio() -> Iterator[TwilioRestStandIn]:
    with TwilioRestStandIn(account_sid=ACCOUNT, auth_token=TOKEN, phone_numbers=[NUMBER]) as rest:
        yield rest


@pytest.fixture
def settings(twilio: TwilioRestStandIn) -> Settings:
    base = Settings(secrets=Secrets(twilio_account_sid=ACCOUNT, twilio_auth_token=TOKEN))
    return base.with_overrides(
        {
            "twilio.api_base_url": twilio.base_url,
            "twilio.phone_number": NUMBER,
            "server.public_url": PUBLIC_URL,
        }
    )


def set_number(twilio: TwilioRestStandIn, **fields: str) -> None:
    """Configure the stand-in's number through its own REST API, as the console would."""
    [number] = twilio.phone_numbers
    twilio.make_client().incoming_phone_numbers(number.sid).update(**fields)


def run(argv: list[str], settings: Settings) -> tuple[int, str]:
    out = io.StringIO()
    code = twilio_main(argv, settings, stdout=out)
    return code, out.getvalue()


# -- twilio check ------------------------------------------------------------------------------


def test_check_passes_a_number_pointing_at_tars_by_get(
    twilio: TwilioRestStandIn, settings: Settings
) -> None:
    set_number(
        twilio,
        voice_url=VOICE_URL,
        voice_method="GET",
        status_callback=STATUS_URL,
        status_callback_method="GET",
    )
    code, output = run(["check"], settings)
    assert code == 0, output
    assert f"voice URL:        {VOICE_URL} [GET]" in output
    assert f"status callback:  {STATUS_URL} [GET]" in output
    assert output.splitlines()[-1].startswith(f"ok: calls to {NUMBER} reach {VOICE_URL}")
    assert "wrong" not in output
    assert [r.operation for r in twilio.requests][-1] is Operation.NUMBERS_LIST


def test_check_lists_every_problem_of_a_misconfigured_number(
    twilio: TwilioRestStandIn, settings: Settings
) -> None:
    set_number(twilio, voice_url="http://tars.operator.test/twilio/voice", voice_method="POST")
    code, output = run(["check"], settings)
    assert code == 1
    assert "voice URL:        http://tars.operator.test/twilio/voice [POST]" in output
    assert "status callback:  (not set) [POST]" in output
    problems = [line.strip() for line in output.splitlines() if line.startswith("  - ")]
    assert problems == [
        "- voice URL http://tars.operator.test/twilio/voice uses http instead of https; "
        f"should be {VOICE_URL}",
        f"- status callback is missing; should be {STATUS_URL}",
        "- voice method is POST; should be GET (TARS's server cannot read request bodies)",
        "- status callback method is POST; should be GET (TARS's server cannot read request "
        "bodies)",
    ]
    assert "wrong (4 problems):" in output
    assert output.splitlines()[-1] == "fix it with: python run.py twilio configure"


def test_check_reports_a_wrong_path_and_another_host(
    twilio: TwilioRestStandIn, settings: Settings
) -> None:
    set_number(
        twilio,
        voice_url=f"{PUBLIC_URL}/voice",
        voice_method="GET",
        status_callback="https://old.host.test/twilio/status",
        status_callback_method="GET",
    )
    report = check_number(settings)
    assert report.exit_code == 1
    assert report.problems == (
        f"voice URL is {PUBLIC_URL}/voice; should be {VOICE_URL}",
        f"status callback is https://old.host.test/twilio/status; should be {STATUS_URL}",
    )


def test_check_reports_a_number_missing_from_the_account(
    twilio: TwilioRestStandIn, settings: Settings
) -> None:
    other = settings.with_overrides({"twilio.phone_number": "+15550177777"})
    code, output = run(["check"], other)
    assert code == 1
    assert "number +15550177777 is not in this Twilio account" in output
    [listed] = twilio.requests_for(Operation.NUMBERS_LIST)
    assert listed.param("PhoneNumber") == "+15550177777"


def test_check_reports_a_failed_list_request(twilio: TwilioRestStandIn, settings: Settings) -> None:
    twilio.fail_next(Operation.NUMBERS_LIST, status=503, code=20503, message="Service Unavailable")
    code, output = run(["check"], settings)
    assert code == 1
    assert (
        "error: cannot list the account's phone numbers: HTTP 503 code 20503: Service Unavailable"
        in output
    )


def test_check_with_the_placeholder_public_url_is_a_settings_problem(
    twilio: TwilioRestStandIn, settings: Settings
) -> None:
    placeholder = settings.with_overrides({"server.public_url": "https://tars.example.net"})
    code, output = run(["check"], placeholder)
    assert code == 2
    assert "[server] public_url is still the placeholder https://tars.example.net" in output
    # The number is still shown; only its URLs cannot be judged yet.
    assert "voice method is POST; should be GET" in output
    assert "voice URL is missing" not in output


def test_a_twiml_app_or_trunk_on_the_number_is_reported_and_cleared() -> None:
    wanted = expected_webhooks(Settings().with_overrides({"server.public_url": PUBLIC_URL}))
    number = NumberConfig(
        sid="PN1",
        phone_number=NUMBER,
        voice_url=VOICE_URL,
        voice_method="GET",
        status_callback=STATUS_URL,
        status_callback_method="get",
        voice_application_sid="AP123",
    )
    [problem] = number_problems(number, wanted)
    assert problem.startswith("voice_application_sid AP123 is set: Twilio sends calls to that")
    assert "ignores the voice URL" in problem
    [change] = planned_changes(number, wanted)
    assert (change.field, change.old, change.new) == ("voice_application_sid", "AP123", None)
    shown = render_check(NumberReport(phone_number=NUMBER, wanted=wanted, number=number))
    assert "TwiML app:        AP123" in shown


# -- twilio configure --------------------------------------------------------------------------


def test_configure_sends_one_update_then_nothing(
    twilio: TwilioRestStandIn, settings: Settings
) -> None:
    code, output = run(["configure"], settings)
    assert code == 0, output
    [update] = twilio.requests_for(Operation.NUMBERS_UPDATE)
    [number] = twilio.phone_numbers
    assert update.path.endswith(f"/IncomingPhoneNumbers/{number.sid}.json")
    assert dict(update.form) == {
        "VoiceUrl": VOICE_URL,
        "VoiceMethod": "GET",
        "StatusCallback": STATUS_URL,
        "StatusCallbackMethod": "GET",
    }
    assert output.splitlines() == [
        f"Twilio number {NUMBER} ({number.sid}) updated:",
        f"  voice_url: (not set) → {VOICE_URL}",
        "  voice_method: POST → GET",
        f"  status_callback: (not set) → {STATUS_URL}",
        "  status_callback_method: POST → GET",
    ]
    assert (number.voice_url, number.voice_method) == (VOICE_URL, "GET")
    assert (number.status_callback, number.status_callback_method) == (STATUS_URL, "GET")

    code, again = run(["configure"], settings)
    assert code == 0
    assert len(twilio.requests_for(Operation.NUMBERS_UPDATE)) == 1
    assert "already points at TARS; nothing changed" in again
    assert run(["check"], settings)[0] == 0


def test_configure_shows_only_what_changed(twilio: TwilioRestStandIn, settings: Settings) -> None:
    set_number(
        twilio,
        voice_url=VOICE_URL,
        voice_method="POST",
        status_callback=STATUS_URL,
        status_callback_method="GET",
    )
    before = len(twilio.requests_for(Operation.NUMBERS_UPDATE))
    result = configure_number(settings)
    assert result.exit_code == 0
    assert [(c.field, c.old, c.new) for c in result.changes] == [("voice_method", "POST", "GET")]
    updates = twilio.requests_for(Operation.NUMBERS_UPDATE)[before:]
    assert len(updates) == 1
    assert updates[0].param("VoiceMethod") == "GET"


@pytest.mark.parametrize(
    ("public_url", "reason"),
    [
        ("http://tars.operator.test", "is not https"),
        ("https://tars.example.net", "is still the placeholder"),
    ],
)
def test_configure_refuses_an_unusable_public_url(
    twilio: TwilioRestStandIn, settings: Settings, public_url: str, reason: str
) -> None:
    # The loader refuses http, so an http URL can only come from an unvalidated replace.
    unusable = dataclasses.replace(
        settings, server=dataclasses.replace(settings.server, public_url=public_url)
    )
    code, output = run(["configure"], unusable)
    assert code == 2
    assert f"refusing to configure {NUMBER}:" in output
    assert reason in output
    assert "nothing was sent to Twilio" in output
    assert twilio.requests == []


def test_configure_reports_a_failed_update(twilio: TwilioRestStandIn, settings: Settings) -> None:
    twilio.fail_next(Operation.NUMBERS_UPDATE)
    code, output = run(["configure"], settings)
    assert code == 1
    [number] = twilio.phone_numbers
    assert (
        f"error: updating {NUMBER} ({number.sid}) failed: HTTP 500 code 20500: "
        "Unable to update record: Internal Server Error" in output
    )
    assert "nothing changed" in output
    assert number.voice_url is None


def test_configure_reports_a_number_missing_from_the_account(
    twilio: TwilioRestStandIn, settings: Settings
) -> None:
    code, output = run(["configure"], settings.with_overrides({"twilio.phone_number": "+15550177"}))
    assert code == 1
    assert "number +15550177 is not in this Twilio account" in output
    assert twilio.requests_for(Operation.NUMBERS_UPDATE) == []


@pytest.mark.parametrize("action", ["check", "configure"])
def test_missing_credentials_are_one_line_and_exit_2(
    twilio: TwilioRestStandIn, settings: Settings, action: str, capsys: pytest.CaptureFixture[str]
) -> None:
    no_token = dataclasses.replace(settings, secrets=Secrets(twilio_account_sid=ACCOUNT))
    code, output = run([action], no_token)
    assert code == 2
    assert output == ""
    assert capsys.readouterr().err == (
        "tars: Twilio REST needs TWILIO_AUTH_TOKEN set in the environment\n"
    )
    assert twilio.requests == []


def test_an_unknown_action_is_a_usage_error(
    settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["frobnicate"], settings)[0] == 2
    assert "invalid choice" in capsys.readouterr().err


def test_a_given_client_is_used(twilio: TwilioRestStandIn, settings: Settings) -> None:
    out = io.StringIO()
    no_secrets = dataclasses.replace(settings, secrets=Secrets())
    assert twilio_main(["check"], no_secrets, stdout=out, client=twilio.make_client()) == 1
    assert "status callback is missing" in out.getvalue()


def test_an_unreachable_api_is_reported(settings: Settings) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    unreachable = settings.with_overrides({"twilio.api_base_url": f"http://127.0.0.1:{port}"})
    code, output = run(["configure"], unreachable)
    assert code == 1
    assert output.startswith("error: cannot list the account's phone numbers: ConnectionError:")
