"""Hostile traffic costs little: floods of bad requests and keypresses write a few log lines
with counts, and connections past ``[server] max_connections`` are closed at once.

Through the real server (and, for keypresses, the whole daemon), attacked as an attacker
would: from one address, as fast as the server answers.
"""

from __future__ import annotations

import http.client
import io
import resource
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import pykka
import pytest
import structlog
from structlog.testing import capture_logs
from twilio.request_validator import RequestValidator

from tars_actors.net.loop import LoopThread
from tars_actors.sim.softphone import SyncSoftphone
from tars_actors.sim.world import OWNER_PHONE, LocalWorld
from tars_actors.telephony.server import Server
from tests.logs import log_events
from tests.test_server import (
    CALLER,
    PUBLIC,
    TOKEN,
    TWILIO_NUMBER,
    WAIT,
    FakeHooks,
    attach_session,
    make_settings,
)
from tests.waiting import wait_until

FLOOD = 200


class FakeClock:
    """The server's clock for rate-limited lines: time moves only when the test says."""

    def __init__(self) -> None:
        self.now = 5000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(autouse=True)
def _stop_every_actor() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=WAIT)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def start_server(clock: FakeClock) -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(hooks: FakeHooks, handshake_timeout: float = 5.0, **overrides: Any) -> Server:
        server = Server(
            make_settings(**overrides), hooks, log_clock=clock, handshake_timeout=handshake_timeout
        )
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def phone_loop() -> Iterator[LoopThread]:
    loop = LoopThread("softphones")
    yield loop
    loop.stop()


def softphone(server: Server, loop: LoopThread) -> SyncSoftphone:
    return SyncSoftphone(
        server_url=f"http://127.0.0.1:{server.port}",
        public_url=PUBLIC,
        auth_token=TOKEN,
        loop=loop,
        from_number=CALLER,
        to_number=TWILIO_NUMBER,
    )


def get(server: Server, path: str, headers: dict[str, str]) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        connection.request("GET", path, headers=headers)
        return connection.getresponse().status
    finally:
        connection.close()


def lines(logs: list[dict[str, Any]], event: str) -> list[dict[str, Any]]:
    return [line for line in logs if line["event"] == event]


# -- bad signatures and unauthenticated upgrades ----------------------------------------------


def test_a_flood_of_badly_signed_webhooks_from_one_address_logs_one_line_then_a_count(
    start_server: Callable[..., Server], clock: FakeClock
) -> None:
    server = start_server(FakeHooks())
    forged = {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"}
    with capture_logs() as logs:
        statuses = {get(server, f"/twilio/voice?CallSid=CA{i:032d}", forged) for i in range(FLOOD)}
        assert statuses == {403}
        assert len(lines(logs, "server.bad_signature")) == 1
        clock.now += 10.0
        assert get(server, "/twilio/voice?CallSid=CAlast", {}) == 403
    refused = lines(logs, "server.bad_signature")
    assert [line["suppressed"] for line in refused] == [0, FLOOD - 1]
    assert refused[0]["signature"] == "invalid"
    assert refused[1]["signature"] == "missing"
    assert all(line["remote"].startswith("127.0.0.1:") for line in refused)


def test_a_flood_of_unauthenticated_stream_upgrades_logs_one_line_then_a_count(
    start_server: Callable[..., Server], clock: FakeClock
) -> None:
    server = start_server(FakeHooks())
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    with capture_logs() as logs:
        assert {get(server, "/twilio/media", upgrade) for _ in range(FLOOD)} == {403}
        clock.now += 10.0
        assert get(server, "/twilio/media", upgrade) == 403
    refused = lines(logs, "server.bad_signature")
    assert [(line["path"], line["suppressed"]) for line in refused] == [
        ("/twilio/media", 0),
        ("/twilio/media", FLOOD - 1),
    ]


def test_a_calls_own_stream_path_must_be_signed_for_itself_and_nothing_else_is_a_path(
    start_server: Callable[..., Server],
) -> None:
    server = start_server(FakeHooks())
    upgrade = {
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version": "13",
    }
    own = "/twilio/media/CA" + "a" * 32
    validator = RequestValidator(TOKEN)
    signed_for = validator.compute_signature(f"wss://{PUBLIC.split('://')[1]}{own}", {})
    plain = validator.compute_signature(f"wss://{PUBLIC.split('://')[1]}/twilio/media", {})
    assert get(server, own, {**upgrade, "X-Twilio-Signature": signed_for}) == 101
    # The signature of the plain path does not open a call's own one, nor the reverse.
    assert get(server, own, {**upgrade, "X-Twilio-Signature": plain}) == 403
    assert get(server, "/twilio/media", {**upgrade, "X-Twilio-Signature": signed_for}) == 403
    for path in ("/twilio/media/", "/twilio/media/a/b", "/twilio/media/../voice", "/twilio/mediaX"):
        assert get(server, path, {**upgrade, "X-Twilio-Signature": signed_for}) == 404


# -- the connection cap -------------------------------------------------------------------------


def held_open(server: Server) -> socket.socket:
    """A connection that never sends its request: a slow, half-open client."""
    held = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT)
    held.settimeout(WAIT + 5.0)
    return held


def closed_by_server(conn: socket.socket) -> float:
    """Waits until the server closes ``conn`` (EOF or reset); when it did."""
    try:
        data = conn.recv(1024)
    except ConnectionResetError:
        data = b""
    assert data == b"", f"the server answered {data[:80]!r} instead of closing"
    return time.monotonic()


def test_connections_past_max_connections_are_closed_at_once_and_a_real_call_still_connects(
    start_server: Callable[..., Server], phone_loop: LoopThread
) -> None:
    hooks = FakeHooks()
    cap, extra = 4, 6
    server = start_server(hooks, handshake_timeout=2.0, **{"server.max_connections": cap})
    held: list[socket.socket] = []
    refused: list[socket.socket] = []
    try:
        with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
            held = [held_open(server) for _ in range(cap)]
            wait_until(lambda: server.open_connections == cap, "the slow ones held", WAIT)
            refused = [held_open(server) for _ in range(extra)]
            refused_at = [closed_by_server(conn) for conn in refused]
            # The slow ones hold their places until their handshake deadline, no longer.
            held_closed_at = [closed_by_server(conn) for conn in held]
        assert max(refused_at) < min(held_closed_at)
        assert server.connections_refused == extra
        (line,) = lines(logs, "server.connection_refused")
        assert line["max_connections"] == cap
        assert line["suppressed"] == 0
        wait_until(lambda: server.open_connections == 0, "every connection closed", WAIT)

        phone = softphone(server, phone_loop)
        try:
            phone.call()
            journal = attach_session(hooks.next_stream())
            assert server.open_connections == 1
            phone.hang_up()
            journal.wait_for(lambda j: bool(j.closes()), "the call end")
        finally:
            phone.shutdown()
        wait_until(lambda: server.open_connections == 0, "every connection closed", WAIT)
    finally:
        for conn in (*held, *refused):
            conn.close()


# -- keypresses, through the whole daemon --------------------------------------------------------


def test_a_thousand_keypresses_in_one_call_log_a_few_counted_lines_and_never_a_digit(
    logs: io.StringIO,
) -> None:
    presses = 1000
    with LocalWorld() as world:
        phone = world.phone(OWNER_PHONE)
        phone.call()
        world.gemini.wait_for_connection(1, timeout=WAIT)
        for index in range(presses):
            phone.send_dtmf("0123456789*#"[index % 12])
        phone.hang_up()
        wait_until(lambda: bool(log_events(logs, "call.summary")), "the call summary", WAIT)
    keys = log_events(logs, "call.dtmf")
    assert 1 <= len(keys) <= 5
    assert sum(line["keys"] for line in keys) == presses
    for record in log_events(logs, "call.dtmf"):
        assert "digit" not in record
        assert "digits" not in record
    assert '"digit"' not in logs.getvalue()


def test_a_cap_the_open_files_limit_cannot_hold_is_warned_about_at_start(
    start_server: Callable[..., Server],
) -> None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    with capture_logs() as logs:
        start_server(FakeHooks(), **{"server.max_connections": soft})
        start_server(FakeHooks(), **{"server.max_connections": 4})
    (warning,) = lines(logs, "server.open_files_low")
    assert (warning["limit"], warning["max_connections"]) == (soft, soft)
    assert warning["needed"] > soft


def test_the_count_of_a_flood_that_stopped_is_logged_without_another_request(
    clock: FakeClock,
) -> None:
    with capture_logs() as logs:
        server = Server(make_settings(), FakeHooks(), log_clock=clock, log_interval=0.05)
        server.start()
        try:
            assert {get(server, "/twilio/status", {}) for _ in range(20)} == {403}
            clock.now += 1.0
            wait_until(
                lambda: len(lines(logs, "server.bad_signature")) == 2, "the flood's count", WAIT
            )
        finally:
            server.stop()
    first, last = lines(logs, "server.bad_signature")
    assert (first["suppressed"], first["path"]) == (0, "/twilio/status")
    assert (last["suppressed"], last["remote"], last["last"]) == (19, "127.0.0.1", True)
