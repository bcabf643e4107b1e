"""The softphone against a tiny fake TARS server that checks signatures and echoes media."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

import pytest
import websockets
from twilio.request_validator import RequestValidator
from twilio.twiml.voice_response import VoiceResponse
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from tars_actors.net.loop import LoopThread
from tars_actors.sim.softphone import (
    FRAME_BYTES,
    Softphone,
    StreamRejected,
    SyncSoftphone,
    TwimlError,
    parse_twiml,
)

TOKEN = "test-auth-token"
PUBLIC = "https://tars.example.net"
STREAM_URL = "wss://tars.example.net/twilio/media"


def stream_twiml(**parameters: str) -> str:
    response = VoiceResponse()
    stream = response.connect().stream(url=STREAM_URL)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    return str(response)


@dataclass
class FakeTars:
    """Just enough of our server: signed webhooks, a signed stream upgrade, media echo."""

    echo: bool = False
    validator: RequestValidator = field(default_factory=lambda: RequestValidator(TOKEN))
    webhooks: list[tuple[str, dict[str, str], bool]] = field(default_factory=list)
    upgrade_signatures: list[bool] = field(default_factory=list)
    frames: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    connection: ServerConnection | None = None
    stream_sid: str = ""
    arrived: asyncio.Event = field(default_factory=asyncio.Event)
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        signature = request.headers.get("X-Twilio-Signature", "")
        path, _, query = request.path.partition("?")
        if path == "/twilio/media":
            valid = self.validator.validate(STREAM_URL, {}, signature)
            self.upgrade_signatures.append(valid)
            return None if valid else connection.respond(HTTPStatus.FORBIDDEN, "bad signature\n")
        valid = self.validator.validate(PUBLIC + request.path, {}, signature)
        self.webhooks.append((path, dict(parse_qsl(query)), valid))
        if not valid:
            return connection.respond(HTTPStatus.FORBIDDEN, "bad signature\n")
        if path == "/twilio/voice":
            response = connection.respond(HTTPStatus.OK, stream_twiml(caller="+15550123456"))
            response.headers["Content-Type"] = "text/xml"
            return response
        return connection.respond(HTTPStatus.OK, "")

    async def handle(self, connection: ServerConnection) -> None:
        """Records frames; in echo mode returns each media payload on the same stream."""
        self.connection = connection
        loop = asyncio.get_running_loop()
        stream_sid = ""
        async for message in connection:
            frame = json.loads(message)
            self.frames.append((loop.time(), frame))
            self.arrived.set()
            if frame["event"] == "start":
                stream_sid = self.stream_sid = frame["streamSid"]
            elif frame["event"] == "media" and self.echo:
                payload = frame["media"]["payload"]
                echo = {"event": "media", "streamSid": stream_sid, "media": {"payload": payload}}
                with contextlib.suppress(websockets.ConnectionClosed):
                    await connection.send(json.dumps(echo))

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        assert self.connection is not None
        await self.connection.send(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def send_media(self, mulaw: bytes) -> None:
        payload = base64.b64encode(mulaw).decode()
        await self.send(
            {"event": "media", "streamSid": self.stream_sid, "media": {"payload": payload}}
        )

    async def send_mark(self, name: str) -> None:
        await self.send({"event": "mark", "streamSid": self.stream_sid, "mark": {"name": name}})

    async def send_clear(self) -> None:
        await self.send({"event": "clear", "streamSid": self.stream_sid})

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [frame for _, frame in self.frames if frame["event"] == kind]

    async def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not predicate():
                self.arrived.clear()
                await self.arrived.wait()


@asynccontextmanager
async def fake_tars(echo: bool = False) -> AsyncIterator[FakeTars]:
    fake = FakeTars(echo=echo)
    server: Server
    async with serve(
        fake.handle, "127.0.0.1", 0, process_request=fake.process_request, compression=None
    ) as server:
        fake.port = server.sockets[0].getsockname()[1]
        yield fake


def phone_for(fake: FakeTars, **options: Any) -> Softphone:
    return Softphone(server_url=fake.url, public_url=PUBLIC, auth_token=TOKEN, **options)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(15):
            await scenario()

    asyncio.run(bounded())


def test_twiml_parsing_reads_say_hangup_and_stream_parameters() -> None:
    apology = parse_twiml("<Response><Say>Sorry, all lines are busy.</Say><Hangup/></Response>")
    assert (apology.says, apology.hangup, apology.stream) == (
        ("Sorry, all lines are busy.",),
        True,
        None,
    )
    connect = parse_twiml(stream_twiml(caller="+15550123456", direction="inbound"))
    assert connect.stream is not None
    assert connect.stream.url == STREAM_URL
    assert connect.stream.custom_parameters == {"caller": "+15550123456", "direction": "inbound"}
    with pytest.raises(TwimlError):
        parse_twiml("<Response><Say>unterminated</Response>")


def test_dial_sends_a_signed_voice_webhook_and_connects_the_stream() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake, from_number="+15550123456", to_number="+15550100000")
            twiml = await phone.call()
            assert twiml.stream is not None
            await fake.wait_for(lambda: len(fake.events("media")) >= 1)
            path, params, valid = fake.webhooks[0]
            assert (path, valid) == ("/twilio/voice", True)
            assert params["From"] == "+15550123456"
            assert params["CallStatus"] == "ringing"
            assert params["Direction"] == "inbound"
            assert fake.upgrade_signatures == [True]
            connected, start = fake.frames[0][1], fake.frames[1][1]
            assert connected == {"event": "connected", "protocol": "Call", "version": "1.0.0"}
            assert start["sequenceNumber"] == "1"
            assert start["start"]["callSid"] == phone.call_sid
            assert start["start"]["streamSid"] == start["streamSid"] == phone.stream_sid
            assert start["start"]["customParameters"] == {"caller": "+15550123456"}
            assert start["start"]["tracks"] == ["inbound"]
            assert start["start"]["mediaFormat"] == {
                "encoding": "audio/x-mulaw",
                "sampleRate": 8000,
                "channels": 1,
            }
            await phone.hang_up()

    run(scenario)


def test_the_stream_opens_the_stream_delay_after_the_webhook_was_answered() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake, stream_delay=0.3)
            await phone.call()
            await fake.wait_for(lambda: bool(fake.events("start")))
            assert phone.answered_at is not None
            assert phone.connected_at is not None
            assert phone.connected_at - phone.answered_at >= 0.3
            first_frame_at = fake.frames[0][0]  # the server's loop clock: time.monotonic()
            assert first_frame_at - phone.answered_at >= 0.3
            await phone.hang_up()

    run(scenario)


def test_bad_signatures_are_refused_by_a_validating_server() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            with pytest.raises(TwimlError, match="403"):
                await phone.dial(signature="bm90IGEgc2lnbmF0dXJl")
            with pytest.raises(StreamRejected) as refused:
                await phone.connect(stream_twiml(), sign=False)
            assert refused.value.status_code == 403
            assert fake.upgrade_signatures == [False]
            assert [valid for _, _, valid in fake.webhooks] == [False]

    run(scenario)


def test_media_is_paced_at_fifty_frames_a_second_with_twilio_numbering() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            await phone.connect(stream_twiml())
            await fake.wait_for(lambda: len(fake.events("media")) >= 61, timeout=5)
            await phone.hang_up()
        arrivals = [at for at, frame in fake.frames if frame["event"] == "media"]
        media = fake.events("media")
        # Over ~1.2 s: 60 frame periods, without drift and without bursts.
        elapsed = arrivals[60] - arrivals[0]
        assert 1.17 <= elapsed <= 1.25
        per_second = 60 / elapsed
        assert 48 <= per_second <= 51.5
        assert max(b - a for a, b in itertools.pairwise(arrivals[10:61])) < 0.06
        assert [m["media"]["chunk"] for m in media[:5]] == ["1", "2", "3", "4", "5"]
        assert [m["media"]["timestamp"] for m in media[:3]] == ["0", "20", "40"]
        assert [m["sequenceNumber"] for m in media[:3]] == ["2", "3", "4"]
        assert all(len(base64.b64decode(m["media"]["payload"])) == FRAME_BYTES for m in media)
        assert set(media[0]) == {"event", "sequenceNumber", "streamSid", "media"}
        assert media[0]["media"]["track"] == "inbound"
        assert phone.late_frames <= 1

    run(scenario)


def test_spoken_audio_is_sent_before_silence() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            phone.say(bytes(range(200)))
            await phone.connect(stream_twiml())
            await fake.wait_for(lambda: len(fake.events("media")) >= 3)
            await phone.hang_up()
        payloads = [base64.b64decode(m["media"]["payload"]) for m in fake.events("media")]
        assert payloads[0] == bytes(range(160))
        assert payloads[1] == bytes(range(160, 200)) + b"\xff" * 120
        assert payloads[2] == b"\xff" * 160

    run(scenario)


def test_marks_come_back_only_after_the_audio_before_them_has_played() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            await phone.connect(stream_twiml())
            await fake.wait_for(lambda: bool(fake.stream_sid))
            for _ in range(25):  # 0.5 s of audio, sent at once like a model's burst
                await fake.send_media(b"\x10" * FRAME_BYTES)
            await fake.send_mark("turn-1")
            await fake.send_mark("turn-1b")
            mark = await phone.wait_for_mark("turn-1", timeout=3)
            assert 0.45 <= mark.returned_at - mark.received_at <= 0.6
            assert not mark.flushed
            await fake.wait_for(lambda: len(fake.events("mark")) == 2)
            echoes = fake.events("mark")
            assert [e["mark"]["name"] for e in echoes] == ["turn-1", "turn-1b"]
            assert set(echoes[0]) == {"event", "sequenceNumber", "streamSid", "mark"}
            assert echoes[0]["streamSid"] == phone.stream_sid
            sequence = [int(f["sequenceNumber"]) for f in fake.events("media") + echoes]
            assert len(sequence) == len(set(sequence))
            assert phone.played_audio() == b"\x10" * (25 * FRAME_BYTES)
            await phone.hang_up()
        assert phone.violations == []

    run(scenario)


def test_clear_drops_buffered_audio_and_returns_pending_marks_at_once() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            await phone.connect(stream_twiml())
            await fake.wait_for(lambda: bool(fake.stream_sid))
            for _ in range(100):  # 2 s
                await fake.send_media(b"\x20" * FRAME_BYTES)
            await fake.send_mark("long-turn")
            await phone.wait_for_audio(100 * FRAME_BYTES)
            await asyncio.sleep(0.2)  # let part of it play, as a caller would hear it
            await fake.send_clear()
            clear = await phone.wait_for_clear()
            mark = await phone.wait_for_mark("long-turn")
            assert mark.flushed
            assert mark.returned_at == clear.at
            assert clear.flushed_marks == ("long-turn",)
            played = len(phone.played_audio())
            assert 0.15 * 8000 <= played <= 1.0 * 8000  # generous: CI machines stall
            assert played + clear.dropped_bytes == 100 * FRAME_BYTES
            assert phone.buffered_seconds == 0
            await fake.send_media(b"\x30" * FRAME_BYTES)
            await phone.wait_for_audio(101 * FRAME_BYTES)
            assert phone.buffered_seconds > 0.01
            await phone.hang_up()

    run(scenario)


def test_protocol_violations_from_the_server_are_recorded() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            await phone.connect(stream_twiml())
            await fake.wait_for(lambda: bool(fake.stream_sid))
            sid = fake.stream_sid
            await fake.send(b"\x00binary")
            await fake.send("{not json")
            await fake.send({"event": "media", "streamSid": "MZwrong", "media": {"payload": ""}})
            await fake.send(
                {"event": "media", "streamSid": sid, "media": {"payload": "", "track": "x"}}
            )
            await fake.send({"event": "media", "streamSid": sid, "media": {"payload": "!!"}})
            await fake.send({"event": "mark", "streamSid": sid, "mark": {"name": "a"}, "x": 1})
            await fake.send({"event": "clear", "streamSid": sid, "clear": {}})
            await fake.send({"event": "stop", "streamSid": sid})
            await phone.wait_for(lambda p: len(p.violations) == 8)
            assert phone.marks == []
            assert phone.clears == []
            assert phone.bytes_received == 0
            await phone.hang_up()

    run(scenario)


def test_hang_up_sends_stop_then_closes() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            await phone.connect(stream_twiml())
            await phone.send_dtmf("7")
            await phone.hang_up()
            assert await phone.wait_closed() == 1000
            assert phone.closed_by == "softphone"
            await fake.wait_for(lambda: bool(fake.events("stop")))
            (dtmf,) = fake.events("dtmf")
            assert dtmf["dtmf"] == {"track": "inbound_track", "digit": "7"}
            (stop,) = fake.events("stop")
            assert stop["stop"] == {"accountSid": phone.account_sid, "callSid": phone.call_sid}
            assert fake.frames[-1][1]["event"] == "stop"
            assert not phone.sending

    run(scenario)


def test_server_closing_the_socket_ends_the_call() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            await phone.connect(stream_twiml())
            await fake.wait_for(lambda: bool(fake.stream_sid))
            assert fake.connection is not None
            await fake.connection.close(1000, "goodbye")
            assert await phone.wait_closed() == 1000
            assert phone.closed_by == "server"
            assert phone.close_reason == "goodbye"

    run(scenario)


def test_status_callback_is_signed_and_carries_the_duration() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            reply = await phone.send_status("completed", duration=42)
            assert reply.status == 200
            path, params, valid = fake.webhooks[-1]
            assert (path, valid) == ("/twilio/status", True)
            assert params["CallStatus"] == "completed"
            assert params["CallDuration"] == "42"
            assert params["CallSid"] == phone.call_sid

    run(scenario)


def test_outbound_calls_start_from_the_twiml_given_to_calls_create() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake, direction="outbound-api", call_sid="CA" + "1" * 32)
            await phone.connect(stream_twiml(goal_id="17", direction="outbound"))
            await fake.wait_for(lambda: bool(fake.stream_sid))
            (start,) = fake.events("start")
            assert start["start"]["callSid"] == "CA" + "1" * 32
            assert start["start"]["customParameters"] == {"goal_id": "17", "direction": "outbound"}
            assert fake.webhooks == []
            await phone.hang_up()

    run(scenario)


def test_echoed_frames_can_be_matched_to_their_send_times() -> None:
    def counter_frame(chunk: int) -> bytes:
        return struct.pack(">I", chunk) * (FRAME_BYTES // 4)

    async def scenario() -> None:
        async with fake_tars(echo=True) as fake:
            phone = phone_for(fake, frame_source=counter_frame)
            await phone.connect(stream_twiml())
            await phone.wait_for_audio(25 * FRAME_BYTES)
            await phone.hang_up()
        send_times = phone.send_times
        latencies = []
        for media in phone.received:
            (chunk,) = struct.unpack(">I", media.payload[:4])
            latencies.append(media.at - send_times[chunk - 1])
        assert len(latencies) >= 25
        assert all(0 <= latency < 0.02 for latency in latencies)
        assert phone.echo_frames_missing() <= 2  # the last ones may be in flight at hang-up
        assert phone.underruns == 0

    run(scenario)


def test_a_sync_softphone_drives_a_call_from_blocking_code() -> None:
    server_loop = LoopThread("fake-tars")
    serving = fake_tars(echo=True)
    fake = server_loop.submit(serving.__aenter__()).result(5)
    try:
        with SyncSoftphone(server_url=fake.url, public_url=PUBLIC, auth_token=TOKEN) as phone:
            phone.say(b"\x42" * 800)
            twiml = phone.call()
            assert twiml.stream is not None
            audio = phone.wait_for_audio(5 * FRAME_BYTES)
            assert audio.startswith(b"\x42" * 800)
            server_loop.submit(fake.send_mark("heard")).result(5)
            assert phone.wait_for_mark("heard").name == "heard"
            server_loop.submit(fake.send_clear()).result(5)
            assert phone.wait_for_clear().at > 0
            phone.hang_up()
            assert phone.wait_closed() == 1000
            assert phone.violations == []
        server_loop.submit(serving.__aexit__(None, None, None)).result(5)
    finally:
        server_loop.stop()


def test_waiting_too_long_names_what_was_awaited() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            await phone.connect(stream_twiml())
            with pytest.raises(TimeoutError, match="mark 'never'"):
                await phone.wait_for_mark("never", timeout=0.1)
            await phone.hang_up()

    run(scenario)


def test_a_stream_url_that_is_not_wss_is_refused() -> None:
    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake)
            twiml = '<Response><Connect><Stream url="ws://tars.example.net/twilio/media"/></Connect></Response>'
            with pytest.raises(TwimlError, match="wss"):
                await phone.connect(twiml)

    run(scenario)


def test_fifty_softphones_share_one_loop_cheaply() -> None:
    async def scenario() -> None:
        async with fake_tars(echo=True) as fake:
            phones = [phone_for(fake, record_audio=False) for _ in range(50)]
            await asyncio.gather(*(phone.connect(stream_twiml()) for phone in phones))
            cpu_before = time.thread_time()
            frames_before = sum(phone.frames_sent for phone in phones)
            await asyncio.gather(*(phone.wait_for_audio(50 * FRAME_BYTES) for phone in phones))
            cpu = time.thread_time() - cpu_before
            frames = sum(phone.frames_sent for phone in phones) - frames_before
            await asyncio.gather(*(phone.hang_up() for phone in phones))
        # Measured: ~130 µs of CPU per frame for the phones and this echoing fake server
        # together (send, echo, receive, playout); CPU time, unlike lateness, does not depend
        # on what else the machine is doing.
        assert frames >= 45 * 50
        assert cpu / frames < 400e-6
        assert all(phone.violations == [] for phone in phones)
        assert all(phone.bytes_received >= 50 * FRAME_BYTES for phone in phones)

    run(scenario)


def test_a_failing_frame_source_surfaces_at_hang_up() -> None:
    def broken(chunk: int) -> bytes:
        if chunk == 3:
            raise ValueError("no frame 3")
        return bytes(FRAME_BYTES)

    async def scenario() -> None:
        async with fake_tars() as fake:
            phone = phone_for(fake, frame_source=broken)
            await phone.connect(stream_twiml())
            await phone.wait_for(lambda p: p.frames_sent == 2 and not p.sending)
            assert not phone.closed
            with pytest.raises(ValueError, match="no frame 3"):
                await phone.hang_up()

    run(scenario)
