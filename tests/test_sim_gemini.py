"""The Gemini Live stand-in, driven by the real google-genai client over TLS on 127.0.0.1."""

from __future__ import annotations

import asyncio
import struct
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import websockets
from google import genai
from google.genai import errors, types

from tars_actors.sim.gemini import (
    GeminiLiveStandIn,
    LiveBehaviour,
    ScriptedReply,
    tone,
)
from tars_actors.sim.tls import LocalCertificate, create_local_certificate

MODEL = "gemini-live-test"

# google-genai subclasses aiohttp.ClientSession, which aiohttp deprecates; not ours to fix.
pytestmark = pytest.mark.filterwarnings(
    "ignore:Inheritance class AiohttpClientSession:DeprecationWarning"
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificate:
    return create_local_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def model(certificate: LocalCertificate) -> Iterator[GeminiLiveStandIn]:
    with GeminiLiveStandIn(certificate) as stand_in:
        yield stand_in


def live_config(*, handle: str | None = None, resumption: bool = True) -> types.LiveConnectConfig:
    return types.LiveConnectConfig(
        response_modalities=[types.Modality.AUDIO],
        system_instruction="You are TARS, be brief.",
        tools=[
            types.Tool(
                function_declarations=[
                    types.FunctionDeclaration(name="end_call", description="Hang up."),
                    types.FunctionDeclaration(name="take_message", description="Note it."),
                ]
            )
        ],
        input_audio_transcription=types.AudioTranscriptionConfig(),
        output_audio_transcription=types.AudioTranscriptionConfig(),
        session_resumption=types.SessionResumptionConfig(handle=handle) if resumption else None,
    )


@asynccontextmanager
async def live_session(
    model: GeminiLiveStandIn, *, handle: str | None = None, resumption: bool = True
) -> AsyncIterator[Any]:
    client = genai.Client(api_key="test-key", http_options=model.http_options())
    async with (
        client.aio as aio,
        aio.live.connect(
            model=MODEL, config=live_config(handle=handle, resumption=resumption)
        ) as session,
    ):
        yield session


async def receive_turn(session: Any) -> list[types.LiveServerMessage]:
    return [message async for message in session.receive()]


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(15):
            await scenario()

    asyncio.run(bounded())


def pcm16(*samples: int) -> bytes:
    return struct.pack(f"<{len(samples)}h", *samples)


def test_setup_is_recorded_and_answered_with_setup_complete(model: GeminiLiveStandIn) -> None:
    async def scenario() -> None:
        async with live_session(model) as session:
            assert session.setup_complete is not None
            connection = await model.wait_for_connection_async(1)
            assert connection.model == f"models/{MODEL}"
            assert connection.system_instruction == "You are TARS, be brief."
            assert connection.function_names == ("end_call", "take_message")
            assert "inputAudioTranscription" in connection.setup
            assert connection.api_key == "test-key"
            assert connection.resumption_handle is None

    run(scenario)


def test_realtime_audio_is_recorded_as_decoded_bytes(model: GeminiLiveStandIn) -> None:
    # Bytes 0xFA..0xFF encode to "-" and "_" in the URL-safe alphabet the SDK uses.
    chunk = bytes(range(250, 256)) * 50

    async def scenario() -> None:
        async with live_session(model) as session:
            for _ in range(3):
                blob = types.Blob(data=chunk, mime_type="audio/pcm;rate=16000")
                await session.send_realtime_input(audio=blob)
            connection = model.wait_for_connection(1)
            await connection.wait_for_async(lambda c: c.audio_chunks == 3)
            assert connection.audio == chunk * 3
            assert connection.audio_mime_type == "audio/pcm;rate=16000"

    run(scenario)


def test_echo_returns_caller_audio_as_24khz_model_audio_in_turns(
    model: GeminiLiveStandIn,
) -> None:
    model.set_default_behaviour(LiveBehaviour(echo=True, echo_turn_frames=2))
    chunk = pcm16(*range(0, 3200, 10))  # 320 samples = 20 ms at 16 kHz

    async def scenario() -> None:
        async with live_session(model) as session:
            for _ in range(2):
                blob = types.Blob(data=chunk, mime_type="audio/pcm;rate=16000")
                await session.send_realtime_input(audio=blob)
            turn = await receive_turn(session)
            transcripts = [
                m.server_content.output_transcription.text
                for m in turn
                if m.server_content and m.server_content.output_transcription
            ]
            audio = [m.data for m in turn if m.data]
            assert transcripts == ["(echo)"]
            assert [len(part) for part in audio] == [960, 960]  # 480 samples = 20 ms at 24 kHz
            echoed = struct.unpack("<480h", audio[0])
            assert echoed[0] == 0
            assert echoed[3] == 20  # sample 3 at 24 kHz sits on sample 2 at 16 kHz
            assert echoed[-1] == pytest.approx(3190, abs=10)
            assert turn[-1].server_content is not None
            assert turn[-1].server_content.turn_complete
            update = await anext(aiter(session.receive()))
            assert update.session_resumption_update is not None
            connection = model.wait_for_connection(1)
            assert update.session_resumption_update.new_handle == connection.issued_handles[-1]

    run(scenario)


def test_greeting_turn_gets_the_scripted_reply(model: GeminiLiveStandIn) -> None:
    reply = ScriptedReply(transcript="Hi, TARS here.", audio=tone(300.0, 0.25), chunk_bytes=4000)
    model.set_default_behaviour(LiveBehaviour(turn_reply=reply, resumption_updates=False))

    async def scenario() -> None:
        async with live_session(model) as session:
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="Greet the owner.")]),
                turn_complete=True,
            )
            turn = await receive_turn(session)
            audio = b"".join(m.data for m in turn if m.data)
            assert audio == reply.audio
            assert turn[0].server_content is not None
            assert turn[0].server_content.output_transcription is not None
            assert turn[0].server_content.output_transcription.text == "Hi, TARS here."
            content = model.wait_for_connection(1).wait_for_client_content(1)
            assert content.text == "Greet the owner."
            assert content.roles == ("user",)
            assert content.turn_complete

    run(scenario)


def test_setup_is_answered_after_the_setup_delay(model: GeminiLiveStandIn) -> None:
    model.set_default_behaviour(LiveBehaviour(setup_delay=0.3))

    async def scenario() -> None:
        asked = time.monotonic()
        async with live_session(model) as session:
            assert session.setup_complete is not None
            assert time.monotonic() - asked >= 0.3

    run(scenario)


def test_a_reply_comes_the_reply_delay_after_the_client_turn(model: GeminiLiveStandIn) -> None:
    reply = ScriptedReply(transcript="Hi.", audio=tone(300.0, 0.1))
    model.set_default_behaviour(
        LiveBehaviour(turn_reply=reply, reply_delay=0.25, resumption_updates=False)
    )

    async def scenario() -> None:
        async with live_session(model) as session:
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="Greet.")]),
                turn_complete=True,
            )
            asked = time.monotonic()
            audio_at = None
            async for message in session.receive():
                if message.data and audio_at is None:
                    audio_at = time.monotonic()
            assert audio_at is not None
            content = model.wait_for_connection(1).wait_for_client_content(1)
            # From the turn reaching the stand-in to the first audio reaching the client.
            assert audio_at - content.at >= 0.25
            assert audio_at - asked < 0.25 + 5.0

    run(scenario)


def test_tool_call_waits_for_the_matching_tool_response(model: GeminiLiveStandIn) -> None:
    async def scenario() -> None:
        async with live_session(model) as session:
            connection = await model.wait_for_connection_async(1)
            call_id = connection.send_tool_call("take_message", {"text": "call back"})
            message = await anext(aiter(session.receive()))
            assert message.tool_call is not None
            (call,) = message.tool_call.function_calls or []
            assert (call.id, call.name, call.args) == (
                call_id,
                "take_message",
                {"text": "call back"},
            )
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(id=call_id, name="take_message", response={"ok": True})
                ]
            )
            response = await connection.wait_for_tool_response_async(call_id)
            assert response.name == "take_message"
            assert response.response == {"ok": True}

    run(scenario)


def test_scripted_server_messages_reach_the_client_in_order(model: GeminiLiveStandIn) -> None:
    async def scenario() -> None:
        async with live_session(model) as session:
            connection = await model.wait_for_connection_async(1)
            connection.send_input_transcription("hello there")
            connection.send_audio(tone(500.0, 0.1))
            connection.send_interrupted()
            connection.send_tool_call_cancellation(["call-9"])
            connection.send_turn_complete()
            turn = await receive_turn(session)
            contents = [m.server_content for m in turn if m.server_content]
            assert contents[0].input_transcription is not None
            assert contents[0].input_transcription.text == "hello there"
            assert b"".join(m.data for m in turn if m.data) == tone(500.0, 0.1)
            assert any(content.interrupted for content in contents)
            cancellations = [m.tool_call_cancellation for m in turn if m.tool_call_cancellation]
            assert cancellations[0].ids == ["call-9"]
            assert contents[-1].turn_complete

    run(scenario)


def test_go_away_announces_time_left_then_closes(model: GeminiLiveStandIn) -> None:
    async def scenario() -> None:
        async with live_session(model) as session:
            connection = await model.wait_for_connection_async(1)
            connection.send_go_away(0.2)
            message = await anext(aiter(session.receive()))
            assert message.go_away is not None
            assert message.go_away.time_left == "0.2s"
            with pytest.raises(errors.APIError) as closed:
                await receive_turn(session)
            assert closed.value.code == 1000
            assert await asyncio.to_thread(connection.wait_closed) == 1000

    run(scenario)


def test_next_connection_resumes_with_an_issued_handle(model: GeminiLiveStandIn) -> None:
    model.set_default_behaviour(LiveBehaviour(reject_unknown_handles=True, turn_reply=None))

    async def scenario() -> None:
        async with live_session(model) as session:
            first = await model.wait_for_connection_async(1)
            first.send_turn_complete()
            await receive_turn(session)
            update = await anext(aiter(session.receive()))
            assert update.session_resumption_update is not None
            handle = update.session_resumption_update.new_handle
        async with live_session(model, handle=handle):
            second = await model.wait_for_connection_async(2)
            assert second.resumption_handle == handle
            assert first.resumption_handle is None
        with pytest.raises(errors.APIError) as rejected:
            async with live_session(model, handle="never-issued"):
                pass
        assert rejected.value.code == 1008

    run(scenario)


def test_no_resumption_updates_unless_the_setup_asks_for_them(model: GeminiLiveStandIn) -> None:
    async def scenario() -> None:
        async with live_session(model, resumption=False) as session:
            connection = await model.wait_for_connection_async(1)
            connection.send_turn_complete()
            connection.send_output_transcription("after")
            await receive_turn(session)
            following = await anext(aiter(session.receive()))
            assert following.session_resumption_update is None
            assert connection.issued_handles == []

    run(scenario)


def test_close_with_an_error_code_surfaces_as_api_error(model: GeminiLiveStandIn) -> None:
    async def scenario() -> None:
        async with live_session(model) as session:
            connection = await model.wait_for_connection_async(1)
            connection.close(1011, "internal error")
            with pytest.raises(errors.APIError) as closed:
                await receive_turn(session)
            assert closed.value.code == 1011
        await connection.wait_for_async(lambda c: c.closed)
        assert connection.close_code == 1011

    run(scenario)


def test_abort_drops_the_connection_without_a_close_frame(model: GeminiLiveStandIn) -> None:
    async def scenario() -> None:
        async with live_session(model) as session:
            connection = await model.wait_for_connection_async(1)
            connection.abort()
            with pytest.raises(errors.APIError) as closed:
                await receive_turn(session)
            assert closed.value.code == 1006
        await connection.wait_for_async(lambda c: c.closed)

    run(scenario)


def test_refused_connections_fail_until_the_model_is_reachable_again(
    model: GeminiLiveStandIn,
) -> None:
    model.refuse_connections()

    async def scenario() -> None:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with live_session(model):
                pass
        assert refused.value.response.status_code == 503
        assert model.refused_attempts == 1
        assert model.connections == []
        model.refuse_connections(False)
        async with live_session(model):
            assert len(model.connections) == 1

    run(scenario)


def test_realtime_text_and_unknown_messages_are_recorded(model: GeminiLiveStandIn) -> None:
    async def scenario() -> None:
        async with live_session(model) as session:
            await session.send_realtime_input(text="The owner says hi.")
            await session.send_realtime_input(audio_stream_end=True)
            connection = await model.wait_for_connection_async(1)
            await connection.wait_for_async(lambda c: len(c.other_messages) == 1)
            assert connection.realtime_texts == ["The owner says hi."]

    run(scenario)


def test_generate_content_answers_scripted_text_then_errors_then_default(
    model: GeminiLiveStandIn,
) -> None:
    model.queue_text_reply("The contact agreed to Friday.")
    model.queue_text_error(429)

    async def scenario() -> None:
        client = genai.Client(api_key="test-key", http_options=model.http_options())
        async with client.aio as aio:
            first = await aio.models.generate_content(model="gemini-text", contents="Summarize")
            assert first.text == "The contact agreed to Friday."
            with pytest.raises(errors.ClientError) as failed:
                await aio.models.generate_content(model="gemini-text", contents="Again")
            assert failed.value.code == 429
            third = await aio.models.generate_content(model="gemini-text", contents="Once more")
            assert third.text == "Summary from the stand-in model."

    run(scenario)
    requests = model.text_requests
    assert [(r.model, r.text) for r in requests] == [
        ("gemini-text", "Summarize"),
        ("gemini-text", "Again"),
        ("gemini-text", "Once more"),
    ]


def test_wrong_api_key_is_rejected_when_a_key_is_configured(
    certificate: LocalCertificate,
) -> None:
    async def scenario(stand_in: GeminiLiveStandIn) -> None:
        with pytest.raises(errors.APIError) as rejected:
            async with live_session(stand_in):
                pass
        assert rejected.value.code == 1007
        client = genai.Client(api_key="test-key", http_options=stand_in.http_options())
        async with client.aio as aio:
            with pytest.raises(errors.ClientError) as failed:
                await aio.models.generate_content(model="gemini-text", contents="x")
        assert failed.value.code == 400

    with GeminiLiveStandIn(certificate, api_key="another-test-key") as stand_in:
        run(lambda: scenario(stand_in))


def test_a_queued_behaviour_applies_to_the_next_connection_only(
    model: GeminiLiveStandIn,
) -> None:
    model.push_behaviour(LiveBehaviour(echo=True))
    seen: list[int] = []
    model.on_connect(lambda connection: seen.append(connection.index))

    async def scenario() -> None:
        async with live_session(model), live_session(model):
            first, second = model.connections
            assert first.behaviour.echo
            assert not second.behaviour.echo
            assert seen == [1, 2]

    run(scenario)


def test_fifty_echoing_connections_return_every_frame(model: GeminiLiveStandIn) -> None:
    model.set_default_behaviour(LiveBehaviour(echo=True, echo_turn_frames=10))
    frames = 50
    chunk = bytes(640)

    async def one_call() -> int:
        async with live_session(model) as session:
            for _ in range(frames):
                await session.send_realtime_input(
                    audio=types.Blob(data=chunk, mime_type="audio/pcm;rate=16000")
                )
            received = 0
            while received < frames * 960:
                async for message in session.receive():
                    received += len(message.data or b"")
            return received

    async def scenario() -> None:
        totals = await asyncio.gather(*(one_call() for _ in range(50)))
        assert totals == [frames * 960] * 50

    run(scenario)
    assert all(c.audio_chunks == frames for c in model.connections)


def test_openssl_fallback_makes_a_certificate_the_client_trusts(tmp_path: Path) -> None:
    fallback = create_local_certificate(tmp_path, backend="openssl")
    assert oct(fallback.key_file.stat().st_mode & 0o777) == "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.pem", "cert.pem", "key.pem"]
    with GeminiLiveStandIn(fallback) as stand_in:

        async def scenario() -> None:
            async with live_session(stand_in):
                assert len(stand_in.connections) == 1

        run(scenario)


def test_stopping_the_stand_in_ends_open_sessions_promptly(certificate: LocalCertificate) -> None:
    stand_in = GeminiLiveStandIn(certificate).start()

    async def scenario() -> None:
        async with live_session(stand_in) as session:
            await asyncio.to_thread(stand_in.stop)
            with pytest.raises(errors.APIError) as ended:
                await receive_turn(session)
            assert ended.value.code == 1006

    run(scenario)
