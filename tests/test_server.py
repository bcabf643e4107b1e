"""The one server: signed webhooks, TwiML, health, and Media Streams through the softphone."""

from __future__ import annotations

import asyncio
import http.client
import json
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import pykka
import pytest
import structlog
from structlog.testing import capture_logs

from tars_actors.actor_messages import (
    CallerEvent,
    CallSocket,
    CallStatusChanged,
    CallStreamStarted,
    SocketClosed,
)
from tars_actors.net.loop import LoopThread
from tars_actors.runtime.settings import Secrets, Settings
from tars_actors.sim.softphone import FRAME_BYTES, ReceivedMedia, StreamRejected, SyncSoftphone
from tars_actors.telephony.hooks import Admission, Connect, Draining, OverCapacity
from tars_actors.telephony.media_socket import MediaStreamSocket, SocketCloseReason
from tars_actors.telephony.server import Server
from tars_actors.telephony.stream_codec import Dtmf, Mark, Media, MediaStreamDecoder, Start, Stop
from tests.waiting import wait_until

TOKEN = "test-auth-token"
PUBLIC = "https://tars.example.net"
STREAM_URL = "wss://tars.example.net/twilio/media"
CALLER = "+15550123456"
TWILIO_NUMBER = "+15550100000"
WAIT = 5.0


# -- the rest of TARS, faked -----------------------------------------------------------------


class FakeHooks:
    """Records what the server hands over; streams are picked up by the test thread."""

    def __init__(self, admission: Admission | None = None) -> None:
        self.admission: Admission = admission or Connect(parameters={"goal_id": "42"})
        self.admitted: list[dict[str, str]] = []
        self.statuses: list[CallStatusChanged] = []
        self.streams: queue.Queue[CallStreamStarted] = queue.Queue()
        self.ready = True
        self.sessions = 0
        #: Calls whose stream this server is to send elsewhere (a draining daemon's).
        self.elsewhere: set[str] = set()

    def admit_call(self, params: Mapping[str, str]) -> Admission:
        self.admitted.append(dict(params))
        return self.admission

    def stream_started(self, message: CallStreamStarted) -> None:
        self.streams.put(message)

    def status_changed(self, message: CallStatusChanged) -> None:
        self.statuses.append(message)

    def health(self) -> Mapping[str, Any]:
        return {"ready": self.ready, "sessions": self.sessions}

    def stream_elsewhere(self, call_sid: str) -> bool:
        return call_sid in self.elsewhere

    def next_stream(self) -> CallStreamStarted:
        return self.streams.get(timeout=WAIT)


class Journal:
    """What a fake session was told, in order, waitable from the test thread."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._messages: list[Any] = []

    def add(self, message: Any) -> None:
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()

    @property
    def messages(self) -> list[Any]:
        with self._changed:
            return list(self._messages)

    def events(self, kind: type[Any]) -> list[Any]:
        return [
            m.event
            for m in self.messages
            if isinstance(m, CallerEvent) and isinstance(m.event, kind)
        ]

    def closes(self) -> list[SocketClosed]:
        return [m for m in self.messages if isinstance(m, SocketClosed)]

    def wait_for(self, predicate: Callable[[Journal], bool], what: str) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: predicate(self), WAIT):
                raise TimeoutError(f"the session never saw {what}")


@dataclass(frozen=True, slots=True)
class _Sync:
    """Answered after every message told before it (a mailbox is first in, first out)."""


class FakeSession(pykka.ThreadingActor):
    """A call session that records what it is told and may echo caller audio back."""

    def __init__(self, socket: CallSocket, journal: Journal, *, echo: bool = False) -> None:
        super().__init__()
        self._socket = socket
        self._journal = journal
        self._echo = echo

    def on_receive(self, message: Any) -> Any:
        match message:
            case _Sync():
                return None
            case CallerEvent(event=Media(payload=payload)) if self._echo:
                self._socket.send_audio([payload])
        self._journal.add(message)
        return None


def attach_session(started: CallStreamStarted, *, echo: bool = False) -> Journal:
    journal = Journal()
    ref = FakeSession.start(started.socket, journal, echo=echo)
    started.socket.attach(ref)
    return journal


def sync_sessions() -> None:
    """Wait until every fake session has handled everything told to it so far."""
    for ref in pykka.ActorRegistry.get_by_class(FakeSession):
        ref.ask(_Sync(), timeout=WAIT)


def numbered_frame(chunk: int) -> bytes:
    """A frame that says which chunk it is, so an echo can be checked frame by frame."""
    return struct.pack(">I", chunk).ljust(FRAME_BYTES, b"\x7f")


def chunk_of(frame: bytes) -> int:
    return int(struct.unpack(">I", frame[:4])[0])


def heard_frames(phone: SyncSoftphone) -> list[ReceivedMedia]:
    """What the phone received, 20 ms frame by frame: payloads the pacer releases
    together arrive as one media message."""
    return [
        ReceivedMedia(
            at=media.at,
            payload=media.payload[offset : offset + FRAME_BYTES],
            play_at=media.play_at + offset / 8000,
        )
        for media in phone.received
        for offset in range(0, len(media.payload), FRAME_BYTES)
    ]


# -- fixtures ----------------------------------------------------------------------------------


def make_settings(**overrides: Any) -> Settings:
    base = Settings(secrets=Secrets(twilio_account_sid="ACtest", twilio_auth_token=TOKEN))
    return base.with_overrides(
        {"server.host": "127.0.0.1", "server.port": 0, "server.public_url": PUBLIC, **overrides}
    )


@pytest.fixture(autouse=True)
def _stop_every_actor() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all(timeout=WAIT)


@pytest.fixture
def hooks() -> FakeHooks:
    return FakeHooks()


@pytest.fixture
def start_server() -> Iterator[Callable[..., Server]]:
    servers: list[Server] = []

    def start(hooks: FakeHooks, **overrides: Any) -> Server:
        options = {k: overrides.pop(k) for k in ("pacing_lead", "start_timeout") if k in overrides}
        server = Server(make_settings(**overrides), hooks, **options)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def server(hooks: FakeHooks, start_server: Callable[..., Server]) -> Server:
    return start_server(hooks)


@pytest.fixture
def phone_loop() -> Iterator[LoopThread]:
    loop = LoopThread("softphones")
    yield loop
    loop.stop()


@pytest.fixture
def new_phone(phone_loop: LoopThread) -> Iterator[Callable[..., SyncSoftphone]]:
    phones: list[SyncSoftphone] = []

    def new(server: Server, **options: Any) -> SyncSoftphone:
        phone = SyncSoftphone(
            server_url=f"http://127.0.0.1:{server.port}",
            public_url=PUBLIC,
            auth_token=TOKEN,
            loop=phone_loop,
            from_number=options.pop("from_number", CALLER),
            to_number=options.pop("to_number", TWILIO_NUMBER),
            **options,
        )
        phones.append(phone)
        return phone

    yield new
    for phone in phones:
        phone.shutdown()


def get(server: Server, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT)
    try:
        connection.request(method, path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


# -- webhooks and TwiML --------------------------------------------------------------------------


def test_an_admitted_call_is_connected_to_the_wss_stream_with_its_parameters(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone = new_phone(server)
    twiml = phone.dial()

    assert twiml.stream is not None
    assert twiml.stream.url == STREAM_URL
    # Only what admission gave (a stream token, in TARS): the stream does not repeat who
    # is calling, which the webhook's record holds.
    assert twiml.stream.custom_parameters == {"goal_id": "42"}
    assert not twiml.hangup
    assert hooks.admitted[0]["From"] == CALLER
    assert hooks.admitted[0]["CallSid"] == phone.call_sid


def test_the_voice_webhook_answers_text_xml(
    server: Server, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone = new_phone(server)
    reply = phone.get_signed(f"{PUBLIC}/twilio/voice", phone.phone.webhook_params("ringing"))
    assert reply.status == 200
    assert reply.content_type == "text/xml"
    assert reply.body.startswith('<?xml version="1.0" encoding="UTF-8"?><Response><Connect>')


@pytest.mark.parametrize(
    "admission",
    [
        OverCapacity(apology="Sorry, all lines are busy."),
        Draining(notice="TARS is restarting, call again in a minute."),
    ],
)
def test_a_refused_call_hears_why_and_is_hung_up(
    hooks: FakeHooks,
    start_server: Callable[..., Server],
    new_phone: Callable[..., SyncSoftphone],
    admission: Admission,
) -> None:
    hooks.admission = admission
    phone = new_phone(start_server(hooks))
    twiml = phone.dial()
    assert twiml.verbs == ("Say", "Hangup")
    assert twiml.says == (getattr(admission, "apology", None) or getattr(admission, "notice", ""),)
    assert twiml.stream is None


def test_a_status_callback_reaches_the_hooks_and_gets_no_content(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone = new_phone(server)
    reply = phone.send_status("completed", duration=7, extra_params={"AnsweredBy": "human"})
    assert reply.status == 204
    [status] = hooks.statuses
    assert (status.call_sid, status.status, status.duration_seconds, status.answered_by) == (
        phone.call_sid,
        "completed",
        7,
        "human",
    )
    assert status.params["From"] == CALLER


def test_the_answering_machine_callback_without_a_call_status_is_taken(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone = new_phone(server)
    params = {
        "CallSid": phone.call_sid,
        "AccountSid": phone.phone.account_sid,
        "AnsweredBy": "machine_end_beep",
        "MachineDetectionDuration": "2400",
    }
    reply = phone.get_signed(f"{PUBLIC}/twilio/status", params)
    assert reply.status == 204
    [status] = hooks.statuses
    assert (status.call_sid, status.status, status.answered_by) == (
        phone.call_sid,
        "in-progress",
        "machine_end_beep",
    )


# -- signatures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("signature", ["missing", "wrong"])
def test_a_voice_webhook_without_a_valid_signature_is_forbidden(
    server: Server,
    hooks: FakeHooks,
    new_phone: Callable[..., SyncSoftphone],
    signature: str,
) -> None:
    phone = new_phone(server)
    params = phone.phone.webhook_params("ringing")
    forged = phone.phone.sign(f"{PUBLIC}/twilio/voice?From=%2B15550000000")
    options = {"sign": False} if signature == "missing" else {"signature": forged}
    with capture_logs() as logs:
        reply = phone.get_signed(f"{PUBLIC}/twilio/voice", params, **options)
    assert reply.status == 403
    assert hooks.admitted == []
    [warning] = [line for line in logs if line["event"] == "server.bad_signature"]
    assert warning["log_level"] == "warning"
    assert warning["path"] == "/twilio/voice"
    assert warning["remote"].startswith("127.0.0.1:")
    assert forged not in json.dumps(warning)
    assert TOKEN not in json.dumps(warning)


def test_a_status_callback_without_a_valid_signature_is_forbidden(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone = new_phone(server)
    assert phone.send_status("completed", signature="bm90IGEgc2lnbmF0dXJl").status == 403
    assert phone.send_status("completed", sign=False).status == 403
    assert hooks.statuses == []


def test_a_stream_upgrade_without_a_valid_signature_is_forbidden(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone = new_phone(server)
    twiml = phone.dial()
    # Signed over the address the request really reached: the Host header is never trusted.
    local_url = f"wss://127.0.0.1:{server.port}/twilio/media"
    for options in ({"sign": False}, {"signature": phone.phone.sign(local_url)}):
        with pytest.raises(StreamRejected) as refused:
            phone.connect(twiml, **options)
        assert refused.value.status_code == 403
    assert hooks.streams.empty()


def test_signatures_are_not_checked_when_disabled_and_that_is_logged_at_start(
    hooks: FakeHooks, start_server: Callable[..., Server], new_phone: Callable[..., SyncSoftphone]
) -> None:
    with capture_logs() as logs:
        server = start_server(hooks, **{"twilio.validate_signatures": False})
    assert [
        line["log_level"] for line in logs if line["event"] == "server.signatures_not_validated"
    ] == ["warning"]
    phone = new_phone(server)
    twiml = phone.dial(sign=False)
    phone.connect(twiml, sign=False)
    assert hooks.next_stream().start.call_sid == phone.call_sid


def test_validating_signatures_without_an_auth_token_is_refused() -> None:
    settings = Settings().with_overrides({"server.port": 0})
    with pytest.raises(ValueError, match="TWILIO_AUTH_TOKEN"):
        Server(settings, FakeHooks())


# -- plain HTTP ----------------------------------------------------------------------------------


def test_healthz_reports_the_hooks_figures_and_503_when_not_ready(
    server: Server, hooks: FakeHooks
) -> None:
    hooks.sessions = 3
    status, headers, body = get(server, "/healthz")
    assert (status, headers["Content-Type"]) == (200, "application/json")
    assert json.loads(body) == {"ready": True, "sessions": 3}
    hooks.ready = False
    status, _, body = get(server, "/healthz")
    assert status == 503
    assert json.loads(body)["ready"] is False


def test_unknown_paths_are_not_found_and_other_methods_not_allowed(server: Server) -> None:
    assert get(server, "/")[0] == 404
    assert get(server, "/twilio/voices")[0] == 404
    status, headers, _ = get(server, "/twilio/voice", method="POST")
    assert (status, headers["Allow"]) == (405, "GET")
    assert get(server, "/healthz", method="DELETE")[0] == 405


def test_a_port_already_taken_is_a_clear_error_naming_the_setting(
    server: Server, hooks: FakeHooks
) -> None:
    taken = Server(make_settings(**{"server.port": server.port}), hooks)
    with pytest.raises(OSError, match=r"\[server\] host/port: cannot listen on 127\.0\.0\.1:"):
        taken.start()


# -- the stream ----------------------------------------------------------------------------------


def test_caller_events_reach_the_session_in_order_including_those_before_attach(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone = new_phone(server, frame_source=numbered_frame)
    phone.call()
    started = hooks.next_stream()
    assert started.start.custom_parameters == {"goal_id": "42"}
    assert started.socket.stream_sid == phone.stream_sid
    phone.send_dtmf("7")
    socket = started.socket
    assert isinstance(socket, MediaStreamSocket)
    # Let the server take in frames while nobody is attached yet.
    wait_until(lambda: socket.frames_in >= 10, "10 frames before attach")

    journal = attach_session(started)
    journal.wait_for(lambda j: len(j.events(Media)) >= 20, "20 media frames")
    phone.hang_up()
    journal.wait_for(lambda j: bool(j.closes()), "the socket close")

    events = [m.event for m in journal.messages if isinstance(m, CallerEvent)]
    sequence = [e.sequence_number for e in events if isinstance(e, Media | Dtmf | Mark | Stop)]
    assert len(sequence) == len(events)
    assert sequence == sorted(sequence)
    assert len(set(sequence)) == len(sequence)
    chunks = [event.chunk for event in events if isinstance(event, Media)]
    assert chunks == list(range(1, len(chunks) + 1))
    assert [chunk_of(event.payload) for event in events if isinstance(event, Media)] == chunks
    assert [event.digit for event in events if isinstance(event, Dtmf)] == ["7"]
    assert isinstance(events[-1], Stop)
    received = [m.received_at for m in journal.messages if isinstance(m, CallerEvent)]
    assert received == sorted(received)


class FakeRelay:
    """Takes caller audio as the call's AudioRelay would, on the loop."""

    def __init__(self, journal: Journal) -> None:
        self._journal = journal

    def caller_audio(self, payload: bytes, received_at: float = 0.0) -> None:
        self._journal.add((payload, received_at))

    def keypad_pressed(self, pressed_at: float) -> None:
        self._journal.add("keypad pressed")


def test_caller_audio_reaches_the_relay_in_order_without_an_event_once_attached(
    server: Server,
    hooks: FakeHooks,
    new_phone: Callable[..., SyncSoftphone],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    decoded: list[str] = []
    decode = MediaStreamDecoder.decode

    def counted(self: MediaStreamDecoder, frame: str | bytes) -> Any:
        result = decode(self, frame)
        decoded.append(type(result).__name__)
        return result

    monkeypatch.setattr(MediaStreamDecoder, "decode", counted)
    phone = new_phone(server, frame_source=numbered_frame)
    phone.call()
    started = hooks.next_stream()
    socket = started.socket
    assert isinstance(socket, MediaStreamSocket)
    wait_until(lambda: socket.frames_in >= 10, "10 frames before attach")
    journal = Journal()
    session = FakeSession.start(socket, journal)
    socket.attach(session, cast(Any, FakeRelay(journal)))
    # 40 frames after those that came before the relay (each of those was decoded).
    journal.wait_for(
        lambda j: sum(isinstance(m, tuple) for m in j.messages) >= decoded.count("Media") + 40,
        "40 frames of audio through the relay",
    )
    phone.send_dtmf("3")
    journal.wait_for(lambda j: bool(j.events(Dtmf)), "the digit")
    phone.hang_up()
    journal.wait_for(lambda j: bool(j.closes()), "the socket close")

    audio = [m for m in journal.messages if isinstance(m, tuple)]
    # Every frame once, in order: those queued before the relay came first.
    assert [chunk_of(payload) for payload, _ in audio] == list(range(1, len(audio) + 1))
    assert [at for _, at in audio] == sorted(at for _, at in audio)
    assert journal.events(Media) == []
    # Only what came before the relay (and the other events) went through decode().
    frames_before = decoded.count("Media")
    assert 10 <= frames_before < len(audio) - 20
    assert decoded.count("Dtmf") == decoded.count("Stop") == 1


def test_the_socket_closed_is_told_once_and_sending_after_it_does_nothing(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone = new_phone(server)
    phone.call()
    started = hooks.next_stream()
    journal = attach_session(started)
    phone.hang_up()
    journal.wait_for(lambda j: bool(j.closes()), "the socket close")

    socket = started.socket
    socket.send_audio([b"\xff" * FRAME_BYTES])
    socket.send_mark("late")
    socket.clear()
    socket.close()
    server.stop()
    sync_sessions()
    assert journal.closes() == [SocketClosed(reason=SocketCloseReason.STOP)]
    assert journal.messages[-1] == SocketClosed(reason=SocketCloseReason.STOP)


def test_a_session_that_closes_the_socket_hangs_up_the_call(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone = new_phone(server)
    phone.call()
    started = hooks.next_stream()
    journal = attach_session(started)
    started.socket.close()
    phone.wait_closed()
    journal.wait_for(lambda j: bool(j.closes()), "the socket close")
    assert phone.closed_by == "server"
    assert journal.closes() == [SocketClosed(reason=SocketCloseReason.CLOSED)]


def test_stopping_the_server_closes_every_stream_with_shutdown(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phones = [new_phone(server) for _ in range(2)]
    journals = []
    for phone in phones:
        phone.call()
        journals.append(attach_session(hooks.next_stream()))
    server.stop()
    sync_sessions()
    for phone, journal in zip(phones, journals, strict=True):
        phone.wait_closed()
        assert journal.closes() == [SocketClosed(reason=SocketCloseReason.SHUTDOWN)]
    assert server.open_streams == 0


def test_a_stream_that_never_starts_is_closed(
    hooks: FakeHooks, start_server: Callable[..., Server], new_phone: Callable[..., SyncSoftphone]
) -> None:
    server = start_server(hooks, start_timeout=0.2)
    phone = new_phone(server)

    async def connect_without_start() -> int | None:
        from websockets.asyncio.client import connect

        signature = phone.phone.sign(STREAM_URL)
        async with connect(
            f"ws://127.0.0.1:{server.port}/twilio/media",
            additional_headers={"X-Twilio-Signature": signature},
        ) as ws:
            await ws.send('{"event":"connected","protocol":"Call","version":"1.0.0"}')
            await ws.wait_closed()
            return ws.close_code

    assert phone.run(connect_without_start(), timeout=WAIT) == 1008
    assert hooks.streams.empty()


def test_malformed_frames_are_rejected_logged_with_the_call_and_counted(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone = new_phone(server)
    phone.call()
    started = hooks.next_stream()
    journal = attach_session(started)
    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        phone.send_raw("{not json")
        phone.send_raw('{"event":"media","streamSid":"MZother","media":{"payload":""}}')
        phone.send_raw(b"\x00\x01")
        phone.send_dtmf("5")  # a good frame after the bad ones still arrives
        journal.wait_for(lambda j: len(j.events(Dtmf)) == 1, "the dtmf after the bad frames")
    rejected = [line for line in logs if line["event"] == "stream.frame_rejected"]
    assert [line["reason"] for line in rejected] == ["bad_json", "wrong_stream_sid", "binary_frame"]
    for line in rejected:
        assert line["call_sid"] == phone.call_sid
        assert line["stream_sid"] == phone.stream_sid
        assert line["detail"]
    assert started.socket.frames_rejected == 3
    assert server.frames_rejected == 3
    assert not phone.closed


def test_a_flood_of_malformed_frames_on_one_call_leaves_another_calls_audio_intact(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    flooder = new_phone(server, frame_source=numbered_frame)
    flooder.call()
    flooded = hooks.next_stream()
    flooder_journal = attach_session(flooded, echo=True)
    victim = new_phone(server, frame_source=numbered_frame)
    victim.call()
    victim_journal = attach_session(hooks.next_stream(), echo=True)

    garbage: list[str | bytes] = [
        "{" * 5000,
        f'{{"event":"media","streamSid":"{flooder.stream_sid}","media":{{"payload":"@@@"}}}}',
        '{"event":"unknown"}',
        f'{{"event":"mark","streamSid":"{flooder.stream_sid}"}}',
        b"\x00" * 200,
    ]
    flood = 2000
    for i in range(flood):
        # Now and then a frame past the codec's size limit (64 KiB) but within the socket's.
        flooder.send_raw("x" * 70_000 if i % 200 == 0 else garbage[i % len(garbage)])
    # A good frame after the flood: once it is through, so is every bad one.
    flooder.send_dtmf("1")
    flooder_journal.wait_for(lambda j: len(j.events(Dtmf)) == 1, "the dtmf after the flood")
    victim_sent = victim.frames_sent
    # The victim's echo has caught up with everything it sent during the flood.
    victim.wait_for_audio(victim_sent * FRAME_BYTES)
    flooder.wait_for_audio((flooder.frames_sent) * FRAME_BYTES)

    echoed = [chunk_of(media.payload) for media in victim.received]
    assert echoed == list(range(1, len(echoed) + 1))
    assert victim.violations == []
    assert flooded.socket.frames_rejected == flood
    assert flooder_journal.closes() == []
    assert victim_journal.closes() == []
    assert not flooder.closed
    # The flooder's own audio still flows, in order.
    flooder_echo = [chunk_of(media.payload) for media in flooder.received]
    assert flooder_echo == list(range(1, len(flooder_echo) + 1))


# -- outbound pacing -----------------------------------------------------------------------------


def started_call(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> tuple[SyncSoftphone, CallSocket, Journal]:
    phone = new_phone(server)
    phone.call()
    started = hooks.next_stream()
    return phone, started.socket, attach_session(started)


def test_the_pacers_clock_is_the_event_loops() -> None:
    # The pacer reads time.monotonic() and sets its timers with loop.call_at.
    loop = asyncio.new_event_loop()
    try:
        before = time.monotonic()
        at = loop.time()
        after = time.monotonic()
    finally:
        loop.close()
    assert before <= at <= after


def test_two_seconds_of_audio_are_sent_in_step_with_playout_not_at_once(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone, socket, _ = started_call(server, hooks, new_phone)
    socket.send_audio([numbered_frame(n) for n in range(1, 101)])  # 2 s in one go
    phone.wait_for_audio(100 * FRAME_BYTES)

    received = heard_frames(phone)
    assert [chunk_of(media.payload) for media in received] == list(range(1, 101))
    # Held-back audio goes out a refill (40 ms) at a time, each refill one message.
    assert len(phone.received) <= 100 // 2 + 5
    first = received[0].at
    by_half_second = sum(1 for media in received if media.at - first <= 0.5)
    # 0.5 s of playout plus the 0.1 s lead is 30 frames; a burst would be all 100.
    assert 25 <= by_half_second <= 36
    assert 1.8 <= received[-1].at - first <= 2.1
    # Never more than the lead (plus a frame of timer slack) waits unplayed at the phone.
    assert max(media.play_at - media.at for media in received) <= 0.1 + 0.03
    assert phone.phone.underruns == 0
    assert phone.violations == []


def test_audio_arriving_while_the_pacer_holds_back_goes_out_a_refill_at_a_time(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    """A model speaks faster than real time, then keeps streaming: with half a second
    queued, each new chunk joins the queue instead of becoming a message of its own."""
    phone, socket, _ = started_call(server, hooks, new_phone)
    socket.send_audio([numbered_frame(n) for n in range(1, 26)])
    loop = server.loop_thread.loop

    def stream_the_rest() -> None:  # then one frame every 20 ms, as a live model streams
        for n in range(26, 76):
            loop.call_later((n - 26) * 0.02, socket.send_audio, [numbered_frame(n)])

    loop.call_soon_threadsafe(stream_the_rest)
    phone.wait_for_audio(75 * FRAME_BYTES)

    frames = heard_frames(phone)
    assert [chunk_of(media.payload) for media in frames] == list(range(1, 76))
    # The lead at once, then one message per 40 ms refill: 2 frames each, not 1.
    assert len(phone.received) <= 75 // 2 + 5
    assert phone.phone.underruns == 0
    assert phone.violations == []


def test_audio_released_while_the_writer_is_busy_also_goes_out_as_one_message(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    """A clear waits in the writer's queue when a new turn's audio arrives in the same
    loop pass: the pacer's first release (its 0.1 s lead) queues behind it, and still
    goes out as one media message, not one per payload."""
    phone, socket, _ = started_call(server, hooks, new_phone)

    def clear_then_speak() -> None:  # on the loop: both run now, before the writer
        socket.clear()
        socket.send_audio([numbered_frame(n) for n in range(1, 11)])

    server.loop_thread.loop.call_soon_threadsafe(clear_then_speak)
    phone.wait_for_clear()
    phone.wait_for_audio(10 * FRAME_BYTES)

    assert [chunk_of(media.payload) for media in heard_frames(phone)] == list(range(1, 11))
    assert len(phone.received[0].payload) == 5 * FRAME_BYTES  # the lead, in one message
    assert phone.violations == []


def test_clear_stops_the_audio_at_once(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone, socket, _ = started_call(server, hooks, new_phone)
    socket.send_audio([numbered_frame(n) for n in range(1, 101)])
    phone.wait_for_audio(20 * FRAME_BYTES)
    cleared_at = time.monotonic()
    socket.clear()
    socket.send_mark("after-clear")
    clear = phone.wait_for_clear()
    mark = phone.wait_for_mark("after-clear")

    assert clear.at - cleared_at < 0.05
    assert clear.dropped_bytes <= 0.1 * 8000 + 2 * FRAME_BYTES  # at most the lead was buffered
    late = [media for media in phone.received if media.at > clear.at]
    assert late == []
    assert mark.received_at >= clear.at
    assert len(phone.received) < 40
    assert phone.violations == []


def test_marks_come_back_after_their_audio_has_played(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone, socket, journal = started_call(server, hooks, new_phone)
    socket.send_audio([numbered_frame(n) for n in range(1, 26)])
    socket.send_mark("turn-1")
    socket.send_audio([numbered_frame(n) for n in range(26, 51)])
    socket.send_mark("turn-2")
    second = phone.wait_for_mark("turn-2")
    first = phone.wait_for_mark("turn-1")

    received = heard_frames(phone)
    assert first.received_at >= received[24].at  # sent after its 25 frames...
    assert first.received_at <= received[25].at  # ...and before the next turn's
    assert first.returned_at >= received[24].play_at + 0.02 - 0.005
    assert second.returned_at >= received[49].play_at + 0.02 - 0.005
    assert not first.flushed
    assert not second.flushed
    journal.wait_for(lambda j: len(j.events(Mark)) == 2, "both marks back")
    assert [mark.name for mark in journal.events(Mark)] == ["turn-1", "turn-2"]


def test_a_mark_whose_audio_was_cleared_still_comes_back_as_flushed(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone, socket, journal = started_call(server, hooks, new_phone)
    socket.send_audio([numbered_frame(n) for n in range(1, 101)])
    socket.send_mark("goodbye")
    phone.wait_for_audio(10 * FRAME_BYTES)
    socket.clear()
    mark = phone.wait_for_mark("goodbye")
    clear = phone.wait_for_clear()
    assert mark.received_at >= clear.at
    journal.wait_for(lambda j: [m.name for m in j.events(Mark)] == ["goodbye"], "the mark")


def test_the_first_audio_is_timed_from_start_to_the_first_model_audio_written(
    server: Server, hooks: FakeHooks, new_phone: Callable[..., SyncSoftphone]
) -> None:
    phone, socket, _ = started_call(server, hooks, new_phone)
    assert isinstance(socket, MediaStreamSocket)
    assert socket.first_audio_ms is None
    # Keypad tones TARS plays (press_keys) are not the model's first audio.
    socket.send_audio([numbered_frame(n) for n in range(1, 6)], tones=True)
    phone.wait_for_audio(5 * FRAME_BYTES)
    assert socket.first_audio_at is None

    sent_at = time.monotonic()
    socket.send_audio([numbered_frame(n) for n in range(6, 9)], sent_at)
    phone.wait_for_audio(8 * FRAME_BYTES)
    wait_until(lambda: socket.first_audio_at is not None, "the first audio timed")
    assert socket.first_audio_at is not None
    assert socket.started_at < sent_at <= socket.first_audio_at
    assert socket.first_audio_ms == round((socket.first_audio_at - socket.started_at) * 1000)
    # Later audio leaves it as it was.
    first = socket.first_audio_at
    socket.send_audio([numbered_frame(9)], time.monotonic())
    phone.wait_for_audio(9 * FRAME_BYTES)
    assert socket.first_audio_at == first


class RecordingConnection:
    """Stands in for the WebSocket connection: records what the writer sends."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, frame: str) -> None:
        self.sent.append(json.loads(frame))

    async def close(self) -> None:
        pass


def test_a_mark_already_handed_to_the_writer_when_cleared_still_goes_out() -> None:
    async def scenario() -> list[dict[str, Any]]:
        start = MediaStreamDecoder()
        started = start.decode(
            json.dumps(
                {
                    "event": "start",
                    "sequenceNumber": "1",
                    "streamSid": "MZ1",
                    "start": {
                        "accountSid": "AC1",
                        "streamSid": "MZ1",
                        "callSid": "CA1",
                        "tracks": ["inbound"],
                        "customParameters": {},
                        "mediaFormat": {
                            "encoding": "audio/x-mulaw",
                            "sampleRate": 8000,
                            "channels": 1,
                        },
                    },
                }
            )
        )
        assert isinstance(started, Start)
        connection = RecordingConnection()
        socket = MediaStreamSocket(
            start=started,
            connection=cast(Any, connection),
            loop=asyncio.get_running_loop(),
            lead=0.1,
        )
        # Two frames and the mark are due at once, so they wait for the writer together
        # when the clear comes in the same turn of the loop.
        socket.send_audio([numbered_frame(1), numbered_frame(2)])
        socket.send_mark("turn-1")
        socket.clear()
        async with asyncio.timeout(WAIT):
            while len(connection.sent) < 2:
                await asyncio.sleep(0)
        socket.finish(SocketCloseReason.CLOSED)
        return connection.sent

    sent = asyncio.run(scenario())
    assert sent == [
        {"event": "clear", "streamSid": "MZ1"},
        {"event": "mark", "streamSid": "MZ1", "mark": {"name": "turn-1"}},
    ]
