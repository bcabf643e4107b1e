"""How a model connection's end is classified: a pure function, one test per kind of end."""

from __future__ import annotations

import ssl

import pytest
import websockets
from google.genai import errors
from websockets.datastructures import Headers
from websockets.frames import Close
from websockets.http11 import Response

from tars_actors.model.failures import (
    Ending,
    SessionGone,
    SetupIncomplete,
    ending_for,
    setup_timed_out,
)


def api_error(code: int, message: str | dict[str, object]) -> errors.APIError:
    with pytest.raises(errors.APIError) as raised:
        errors.APIError.raise_error(code, message, None)
    return raised.value


def test_a_gone_session_is_expected_and_nobody_is_told() -> None:
    for live in (True, False):
        assert ending_for(SessionGone(), live=live) == Ending(
            expected=True, reason="the call session is gone", orphaned=True
        )


@pytest.mark.parametrize(
    ("code", "live", "reason"),
    [
        (1000, True, "closed by the model (code 1000: bye)"),
        (1011, True, "closed by the model (code 1011: bye)"),
        (1007, False, "setup rejected by the model (code 1007: bye)"),
    ],
)
def test_a_close_the_sdk_reports_keeps_its_code(code: int, live: bool, reason: str) -> None:
    # google-genai reports every close, a normal one included, as an APIError: unexpected.
    # 1007 at setup is how the service refuses a key: no use connecting again at once.
    assert ending_for(api_error(code, "bye"), live=live) == Ending(
        expected=False, reason=reason, close_code=code, refused=code == 1007
    )


def test_an_api_error_without_a_text_message_names_only_its_code() -> None:
    ending = ending_for(api_error(1008, {"code": 1008}), live=True)
    assert ending.close_code == 1008
    assert ending.reason.startswith("closed by the model (code 1008")
    assert not ending.expected
    assert not ending.fault


def test_a_close_a_send_found_keeps_the_peers_code() -> None:
    closed = websockets.ConnectionClosedError(Close(1011, "overloaded"), None)
    assert ending_for(closed, live=True) == Ending(
        expected=False, reason="closed by the model (code 1011: overloaded)", close_code=1011
    )


def test_a_socket_lost_without_a_close_frame_is_1006_and_says_setup_when_not_live() -> None:
    lost = websockets.ConnectionClosedError(None, None)
    assert ending_for(lost, live=False) == Ending(
        expected=False,
        reason="setup failed: closed by the model (code 1006: abnormal closure)",
        close_code=1006,
    )


def test_an_http_refusal_names_its_status() -> None:
    refused = websockets.InvalidStatus(Response(403, "Forbidden", Headers()))
    assert ending_for(refused, live=False) == Ending(
        expected=False, reason="connection refused: HTTP 403", refused=True
    )


@pytest.mark.parametrize("status", [401, 403, 429])
def test_an_upgrade_refused_for_the_key_or_the_quota_is_a_refusal(status: int) -> None:
    refused = websockets.InvalidStatus(Response(status, "No", Headers()))
    assert ending_for(refused, live=False).refused


@pytest.mark.parametrize("status", [500, 502, 503])
def test_an_upgrade_the_service_could_not_serve_is_worth_retrying(status: int) -> None:
    unavailable = websockets.InvalidStatus(Response(status, "Unavailable", Headers()))
    assert not ending_for(unavailable, live=False).refused


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (1011, "RESOURCE_EXHAUSTED: You exceeded your current quota of concurrent sessions"),
        (1011, "Resource has been exhausted (e.g. check quota)."),
        (1008, "Permission denied"),
        (1007, "API key not valid. Please pass a valid API key."),
        (1011, "Your project has no billing account"),
    ],
)
def test_a_setup_closed_for_quota_key_or_billing_is_a_refusal(code: int, message: str) -> None:
    ending = ending_for(api_error(code, message), live=False)
    assert ending.refused
    assert message in ending.reason  # the row and the log say why
    sent = websockets.ConnectionClosedError(Close(code, message), None)
    assert ending_for(sent, live=False).refused


@pytest.mark.parametrize(
    ("code", "message", "live"),
    [
        (1011, "Internal error occurred.", False),  # a fault a new connection may not meet
        (1011, "DEADLINE_EXCEEDED: the request took too long", False),
        (1008, "invalid session resumption handle", False),  # a fresh one is welcome
        (1011, "RESOURCE_EXHAUSTED", True),  # mid-call: the call reconnects as before
        (1006, "", False),
    ],
)
def test_other_ends_are_not_refusals(code: int, message: str, live: bool) -> None:
    assert not ending_for(api_error(code, message), live=live).refused


def test_another_handshake_failure_is_named() -> None:
    ending = ending_for(websockets.InvalidHandshake("no upgrade"), live=False)
    assert ending == Ending(expected=False, reason="setup failed: WebSocket handshake: no upgrade")


def test_a_setup_not_answered_with_setup_complete() -> None:
    ending = ending_for(SetupIncomplete("the model did not answer"), live=False)
    assert ending == Ending(expected=False, reason="setup failed: the model did not answer")


@pytest.mark.parametrize(
    "error",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "reset"),
        ssl.SSLCertVerificationError(1, "certificate verify failed"),
    ],
)
def test_network_failures_mean_the_model_cannot_be_reached(error: OSError) -> None:
    assert ending_for(error, live=True) == Ending(
        expected=False, reason=f"cannot reach the model: {error}"
    )


def test_a_setup_timeout_is_unexpected_and_says_how_long() -> None:
    assert setup_timed_out(10.0) == Ending(
        expected=False, reason="setup did not complete within 10 s"
    )
    assert setup_timed_out(0.25).reason == "setup did not complete within 0.25 s"


def test_anything_else_is_a_fault_on_our_side() -> None:
    assert ending_for(KeyError("x"), live=True) == Ending(
        expected=False, reason="KeyError: 'x'", fault=True
    )
    assert ending_for(ValueError("bad"), live=False) == Ending(
        expected=False, reason="setup failed: ValueError: bad", fault=True
    )


def test_a_timeout_elsewhere_than_setup_is_a_network_failure() -> None:
    # TimeoutError is an OSError: a socket that stopped answering, not a fault of ours.
    assert ending_for(TimeoutError("timed out"), live=True) == Ending(
        expected=False, reason="cannot reach the model: timed out"
    )
