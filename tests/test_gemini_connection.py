"""Gemini Live: config and message translation, and the GeminiConnection actor driving the real
google-genai client over TLS against the Live stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import queue
import socket
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import pykka
import pytest
import structlog
from google import genai
from google.genai import types
from structlog.testing import capture_logs

from actors.gemini_connection import GeminiConnection
from tars_actors.actor_messages import (
    AudioInput,
    FunctionCall,
    GoAway,
    InputTranscript,
    Interrupted,
    ModelAudio,
    ModelConnected,
    ModelDisconnected,
    ModelEvent,
    ModelInput,
    OutputTranscript,
    RealtimeText,
    ResumptionHandle,
    TextTurn,
    ToolCallCancelled,
    ToolCallRequest,
    ToolResponse,
    ToolResponses,
    TurnComplete,
)
from tars_actors.model.live_channel import MAX_AUDIO_BATCH_BYTES, LiveChannel
from tars_actors.model.wire import ModelProfile, live_config, make_client, parse_duration, translate
from tars_actors.net.loop import LoopThread
from tars_actors.runtime.actor import ActorExit, ExitLink, TarsActor, linked
from tars_actors.runtime.settings import GeminiSettings, Secrets, Settings, SettingsError
from tars_actors.sim.gemini import GeminiLiveStandIn, LiveBehaviour, LiveConnection, tone
from tars_actors.sim.tls import LocalCertificate, create_local_certificate

WAIT = 5.0
MODEL = "gemini-live-test"
PROFILE = ModelProfile(
    model=MODEL,
    voice="Charon",
    language="hu-HU",
    system_instruction="You are TARS.",
    function_declarations=(
        types.FunctionDeclaration(name="end_call", description="Hang up."),
        types.FunctionDeclaration(
            name="take_message",
            description="Note a message for the owner.",
            parameters=types.Schema(
                type=types.Type.OBJECT,
                properties={"text": types.Schema(type=types.Type.STRING)},
                required=["text"],
            ),
        ),
    ),
)

M = TypeVar("M")


# --- fixtures and helpers ---------------------------------------------------------------


@pytest.fixture(autouse=True)
def _stop_every_actor() -> Iterator[None]:
    yield
    pykka.ActorRegistry.stop_all()


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> LocalCertificate:
    return create_local_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture
def model(certificate: LocalCertificate) -> Iterator[GeminiLiveStandIn]:
    # Quiet by default: no reply to client_content, so only scripted messages arrive.
    with GeminiLiveStandIn(certificate, behaviour=LiveBehaviour(turn_reply=None)) as stand_in:
        yield stand_in


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    with LoopThread("test-gemini-loop") as thread:
        yield thread
        # Connections run on this loop: end them while it still runs and the stand-in is up.
        pykka.ActorRegistry.stop_all()


def settings_for(base_url: str, ca_file: str, api_key: str = "test-key") -> Settings:
    return Settings(
        gemini=GeminiSettings(model=MODEL, base_url=base_url, ca_file=ca_file),
        secrets=Secrets(gemini_api_key=api_key),
    )


class Recorder(TarsActor):
    """A stand-in CallSession: every message it gets goes into a queue."""

    def __init__(self, inbox: queue.Queue[Any]) -> None:
        super().__init__()
        self._inbox = inbox

    def on_receive(self, message: Any) -> None:
        self._inbox.put(message)


@dataclass
class Harness:
    """One GeminiConnection under test, its fake session's inbox and its exits."""

    client: genai.Client
    loop: LoopThread
    inbox: queue.Queue[Any] = field(default_factory=queue.Queue)
    exits: queue.Queue[ActorExit] = field(default_factory=queue.Queue)
    session: pykka.ActorRef[Any] | None = None
    ref: pykka.ActorRef[Any] | None = None
    connection_id: int = 1

    def start(
        self,
        *,
        connection_id: int = 1,
        profile: ModelProfile = PROFILE,
        resumption_handle: str | None = None,
        setup_timeout: float = WAIT,
    ) -> pykka.ActorRef[Any]:
        self.connection_id = connection_id
        self.session = Recorder.start(self.inbox)
        with linked(ExitLink("gemini", self.exits.put)):
            self.ref = GeminiConnection.start(
                session=self.session,
                connection_id=connection_id,
                profile=profile,
                resumption_handle=resumption_handle,
                client=self.client,
                loop=self.loop,
                setup_timeout=setup_timeout,
            )
        return self.ref

    def expect(self, kind: type[M], *, skip_events: bool = False) -> M:
        """The next message the session got, which must be a ``kind``."""
        message = self.inbox.get(timeout=WAIT)
        while skip_events and isinstance(message, ModelEvent):
            message = self.inbox.get(timeout=WAIT)
        assert isinstance(message, kind), f"expected {kind.__name__}, got {message!r}"
        return message

    def connected(self, **start: Any) -> LiveChannel:
        self.start(**start)
        connected = self.expect(ModelConnected)
        assert isinstance(connected.channel, LiveChannel)
        return connected.channel

    def events_until(self, last: type[Any]) -> list[Any]:
        """Model events up to and including the first ``last`` event."""
        events: list[Any] = []
        while not events or not isinstance(events[-1], last):
            message = self.expect(ModelEvent)
            assert message.connection_id == self.connection_id
            events.append(message.event)
        return events

    def exit(self) -> ActorExit:
        return self.exits.get(timeout=WAIT)

    def remaining_tasks(self) -> list[str]:
        """Names of tasks still on the loop once the ones there now finish (bounded)."""

        async def settle() -> list[str]:
            others = {t for t in asyncio.all_tasks() if t is not asyncio.current_task()}
            if others:
                await asyncio.wait(others, timeout=WAIT)
            return sorted(t.get_name() for t in others if not t.done())

        return self.loop.submit(settle()).result(WAIT + 1)


@pytest.fixture
def harness(model: GeminiLiveStandIn, loop: LoopThread) -> Harness:
    return Harness(client=make_client(settings_for(model.base_url, model.ca_file)), loop=loop)


@contextlib.contextmanager
def blocked(event_loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Hold ``event_loop`` in one callback for the duration, so nothing else runs on it."""
    entered = threading.Event()
    release = threading.Event()

    def hold() -> None:
        entered.set()
        release.wait(WAIT * 2)

    event_loop.call_soon_threadsafe(hold)
    assert entered.wait(WAIT), "the loop did not pick up the blocking callback"
    try:
        yield
    finally:
        release.set()


def server_loop_of(model: GeminiLiveStandIn) -> Callable[[], asyncio.AbstractEventLoop]:
    """Capture the stand-in's event loop from its next accepted connection."""
    loops: list[asyncio.AbstractEventLoop] = []
    model.on_connect(lambda _connection: loops.append(asyncio.get_running_loop()))
    return lambda: loops[0]


def pick(mapping: Mapping[str, Any], snake: str, camel: str) -> Any:
    """The SDK writes camelCase at the top of setup and snake_case inside; accept both."""
    return mapping[snake] if snake in mapping else mapping[camel]


def numbered_audio(count: int, size: int) -> list[AudioInput]:
    """Chunks whose bytes say their position, so order and gaps are visible."""
    return [AudioInput(pcm=(index % 251).to_bytes(1, "little") * size) for index in range(count)]


def flood_size() -> int:
    """More bytes than the kernel can hold in flight on one loopback TCP connection."""
    total = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        try:
            total += int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            total += 32 << 20
    return total + (8 << 20)


# --- tars_actors.model.wire: config ----------------------------------------------------------


def test_live_config_asks_for_audio_in_the_profile_voice_with_tools_and_long_sessions() -> None:
    config = live_config(PROFILE, resumption_handle=None)

    assert config.response_modalities == [types.Modality.AUDIO]
    assert config.speech_config is not None
    assert config.speech_config.language_code == "hu-HU"
    voice = config.speech_config.voice_config
    assert voice is not None
    assert voice.prebuilt_voice_config is not None
    assert voice.prebuilt_voice_config.voice_name == "Charon"
    assert isinstance(config.system_instruction, types.Content)
    assert config.system_instruction.parts == [types.Part(text="You are TARS.")]
    assert config.tools == [types.Tool(function_declarations=list(PROFILE.function_declarations))]
    assert config.input_audio_transcription == types.AudioTranscriptionConfig()
    assert config.output_audio_transcription == types.AudioTranscriptionConfig()
    assert config.context_window_compression == types.ContextWindowCompressionConfig(
        sliding_window=types.SlidingWindow()
    )
    # Empty, not absent: the server only issues resumption handles when asked.
    assert config.session_resumption == types.SessionResumptionConfig()


def test_live_config_resumes_from_the_handle_and_leaves_out_what_the_profile_turns_off() -> None:
    profile = ModelProfile(
        model=MODEL,
        voice="Puck",
        language="en-US",
        system_instruction="",
        input_transcription=False,
        output_transcription=False,
        context_window_compression=False,
    )

    config = live_config(profile, resumption_handle="handle-7")

    assert config.session_resumption == types.SessionResumptionConfig(handle="handle-7")
    assert config.tools is None
    assert config.system_instruction is None
    assert config.input_audio_transcription is None
    assert config.output_audio_transcription is None
    assert config.context_window_compression is None


# --- tars_actors.model.wire: translation -----------------------------------------------------


def server_message(data: Mapping[str, Any]) -> types.LiveServerMessage:
    return types.LiveServerMessage.model_validate(data)


def test_translate_keeps_one_messages_content_in_a_meaningful_order() -> None:
    message = server_message(
        {
            "server_content": {
                "turn_complete": True,
                "interrupted": True,
                "output_transcription": {"text": "Noon."},
                "input_transcription": {"text": "What time is it?"},
                "model_turn": {
                    "parts": [
                        {"inline_data": {"data": b"\x01\x02", "mime_type": "audio/pcm;rate=24000"}},
                        {"text": "a thought, not speech"},
                        {"inline_data": {"data": b"\x03\x04", "mime_type": "audio/pcm;rate=24000"}},
                    ]
                },
            }
        }
    )

    assert translate(message) == [
        InputTranscript(text="What time is it?"),
        ModelAudio(pcm=b"\x01\x02\x03\x04"),
        OutputTranscript(text="Noon."),
        Interrupted(),
        TurnComplete(),
    ]


def test_translate_tool_calls_cancellations_and_resumption_handles() -> None:
    call = server_message(
        {
            "tool_call": {
                "function_calls": [
                    {"id": "c1", "name": "take_message", "args": {"text": "hi"}},
                    {"id": "c2", "name": "end_call"},
                ]
            }
        }
    )
    cancel = server_message({"tool_call_cancellation": {"ids": ["c1", "c2"]}})
    update = server_message({"session_resumption_update": {"new_handle": "h1", "resumable": True}})
    not_resumable = server_message({"session_resumption_update": {"resumable": False}})

    (request,) = translate(call)
    assert request == ToolCallRequest(
        calls=(
            FunctionCall(call_id="c1", name="take_message", args={"text": "hi"}),
            FunctionCall(call_id="c2", name="end_call", args={}),
        )
    )
    with pytest.raises(TypeError):
        request.calls[0].args["text"] = "changed"  # type: ignore[index]
    assert translate(cancel) == [ToolCallCancelled(call_ids=("c1", "c2"))]
    assert translate(update) == [ResumptionHandle(handle="h1", resumable=True)]
    assert translate(not_resumable) == []


@pytest.mark.parametrize(
    ("time_left", "seconds"),
    [("10s", 10.0), ("0.5s", 0.5), ("3.000000001s", 3.000000001), ("", 0.0), ("soon", 0.0)],
)
def test_translate_go_away_gives_the_time_left_in_seconds(time_left: str, seconds: float) -> None:
    message = server_message({"go_away": {"time_left": time_left}})

    assert translate(message) == [GoAway(time_left=seconds)]


def test_parse_duration_accepts_timedeltas_and_numbers_and_never_goes_negative() -> None:
    assert parse_duration(timedelta(seconds=9, milliseconds=500)) == 9.5
    assert parse_duration(4) == 4.0
    assert parse_duration(None) == 0.0
    assert parse_duration("-3s") == 0.0
    assert parse_duration(float("nan")) == 0.0


def test_translate_gives_nothing_for_messages_a_call_does_not_act_on() -> None:
    assert translate(server_message({"setup_complete": {}})) == []
    assert translate(server_message({"usage_metadata": {"total_token_count": 12}})) == []
    assert translate(server_message({"server_content": {"generation_complete": True}})) == []


# --- tars_actors.model.wire: client ----------------------------------------------------------


def test_make_client_names_the_missing_api_key(model: GeminiLiveStandIn) -> None:
    with pytest.raises(SettingsError, match="GEMINI_API_KEY"):
        make_client(settings_for(model.base_url, model.ca_file, api_key=""))


def test_make_client_names_a_ca_file_that_holds_no_certificate(tmp_path: Path) -> None:
    junk = tmp_path / "ca.pem"
    junk.write_text("not a certificate\n")

    with pytest.raises(SettingsError, match=r"\[gemini\] ca_file"):
        make_client(settings_for("https://127.0.0.1:1", str(junk)))


# --- the channel -------------------------------------------------------------------------


def test_channel_batches_consecutive_audio_up_to_the_cap_and_nothing_else() -> None:
    audio = numbered_audio(3, MAX_AUDIO_BATCH_BYTES // 2)
    text = TextTurn(text="hello")

    async def scenario() -> None:
        channel = LiveChannel(1, asyncio.get_running_loop(), lambda: None)
        for item in (audio[0], audio[1], audio[2], text, AudioInput(pcm=b"\x00\x00")):
            assert channel.send(item)
        first = await channel.next_batch()
        assert first == (audio[0], audio[1])
        assert await channel.next_batch() == first  # nothing leaves before commit
        channel.commit(len(first))
        assert await channel.next_batch() == (audio[2],)
        channel.commit(1)
        assert await channel.next_batch() == (text,)

    asyncio.run(scenario())


def test_channel_returns_uncommitted_items_in_order_and_refuses_new_ones_once_shut() -> None:
    items: list[ModelInput] = [
        AudioInput(pcm=b"\x01\x00"),
        RealtimeText(text="a"),
        *numbered_audio(2, 4),
    ]

    async def scenario() -> None:
        channel = LiveChannel(3, asyncio.get_running_loop(), lambda: None)
        for item in items:
            channel.send(item)
        channel.commit(len(await channel.next_batch()))

        assert channel.shut() == tuple(items[1:])
        assert not channel.send(TextTurn(text="too late"))
        assert channel.closed
        assert channel.shut() == ()

    asyncio.run(scenario())


# --- the actor: setup ------------------------------------------------------------------------


def test_setup_carries_instruction_tools_voice_transcription_and_compression(
    model: GeminiLiveStandIn, harness: Harness
) -> None:
    harness.start(connection_id=7)

    connected = harness.expect(ModelConnected)
    connection = model.wait_for_connection(1)
    setup = connection.setup
    generation = pick(setup, "generation_config", "generationConfig")
    speech = pick(generation, "speech_config", "speechConfig")
    voice_config = pick(speech, "voice_config", "voiceConfig")
    voice = pick(voice_config, "prebuilt_voice_config", "prebuiltVoiceConfig")
    compression = pick(setup, "context_window_compression", "contextWindowCompression")

    assert (connected.connection_id, connected.resumed) == (7, False)
    assert connected.channel.connection_id == 7
    assert connection.model == f"models/{MODEL}"
    assert connection.api_key == "test-key"
    assert connection.system_instruction == "You are TARS."
    assert connection.function_names == ("end_call", "take_message")
    assert pick(generation, "response_modalities", "responseModalities") == ["AUDIO"]
    assert pick(voice, "voice_name", "voiceName") == "Charon"
    assert pick(speech, "language_code", "languageCode") == "hu-HU"
    assert pick(setup, "input_audio_transcription", "inputAudioTranscription") == {}
    assert pick(setup, "output_audio_transcription", "outputAudioTranscription") == {}
    assert pick(compression, "sliding_window", "slidingWindow") == {}
    assert pick(setup, "session_resumption", "sessionResumption") == {}
    assert connection.resumption_handle is None


def test_a_resumed_connection_sends_its_handle_and_says_it_resumed(
    model: GeminiLiveStandIn, harness: Harness
) -> None:
    harness.start(resumption_handle="stand-in-handle-1-1")

    connected = harness.expect(ModelConnected)

    assert connected.resumed
    assert model.wait_for_connection(1).resumption_handle == "stand-in-handle-1-1"


# --- the actor: to the model ---------------------------------------------------------------


def test_caller_audio_reaches_the_model_as_the_same_16khz_pcm(
    model: GeminiLiveStandIn, harness: Harness
) -> None:
    channel = harness.connected()
    chunks = numbered_audio(25, 640)  # 20 ms each at 16 kHz

    assert all(channel.send(chunk) for chunk in chunks)

    connection = model.wait_for_connection(1)
    received = connection.wait_for_audio(25 * 640)
    assert received == b"".join(chunk.pcm for chunk in chunks)
    assert connection.audio_mime_type == "audio/pcm;rate=16000"


def test_audio_queued_while_the_loop_is_busy_goes_out_as_one_chunk(
    model: GeminiLiveStandIn, harness: Harness, loop: LoopThread
) -> None:
    channel = harness.connected()
    chunks = numbered_audio(MAX_AUDIO_BATCH_BYTES // 640 + 3, 640)

    with blocked(loop.loop):
        assert all(channel.send(chunk) for chunk in chunks)

    connection = model.wait_for_connection(1)
    received = connection.wait_for_audio(len(chunks) * 640)
    assert received == b"".join(chunk.pcm for chunk in chunks)
    assert connection.audio_chunks == 2  # the cap splits the backlog once


def test_audio_sent_on_the_loop_to_a_backed_up_model_waits_in_order_without_piling_up(
    model: GeminiLiveStandIn, harness: Harness, loop: LoopThread
) -> None:
    """The audio relay sends on the loop, where each chunk is written to the socket at
    once while it keeps up. Once the model stops reading and the socket backs up, chunks
    wait for the sender task, which sends them in batches as the socket drains, instead
    of each going into the transport's buffer."""
    server_loop = server_loop_of(model)
    channel = harness.connected()
    connection = model.wait_for_connection(1)
    items = numbered_audio(flood_size() // 640, 640)
    sent = threading.Event()
    accepted: list[bool] = []

    def send_all() -> None:
        accepted.extend(channel.send(item) for item in items)
        sent.set()

    with blocked(server_loop()):
        loop.loop.call_soon_threadsafe(send_all)
        assert sent.wait(WAIT)

    assert all(accepted)
    received = connection.wait_for_audio(len(items) * 640)
    assert received == b"".join(item.pcm for item in items)
    # Message by message while the socket kept up, then batches of the backlog.
    assert connection.audio_chunks < len(items) // 2


def test_text_turns_realtime_text_and_tool_responses_reach_the_model_in_order(
    model: GeminiLiveStandIn, harness: Harness
) -> None:
    channel = harness.connected()
    connection = model.wait_for_connection(1)
    call_id = connection.send_tool_call("take_message", {"text": "call back"})
    request = harness.expect(ModelEvent).event
    assert isinstance(request, ToolCallRequest)
    assert request.calls[0].call_id == call_id

    channel.send(TextTurn(text="Greet the owner."))
    channel.send(RealtimeText(text="The owner says hi."))
    channel.send(
        ToolResponses(
            responses=(ToolResponse(call_id=call_id, name="take_message", response={"ok": True}),)
        )
    )

    content = connection.wait_for_client_content(1)
    assert (content.text, content.roles, content.turn_complete) == (
        "Greet the owner.",
        ("user",),
        True,
    )
    assert connection.wait_for_realtime_text(1) == "The owner says hi."
    response = connection.wait_for_tool_response(call_id)
    assert (response.name, response.response) == ("take_message", {"ok": True})
    assert content.at <= response.at


# --- the actor: from the model -------------------------------------------------------------


def test_server_messages_reach_the_session_as_model_events_in_order(
    model: GeminiLiveStandIn, harness: Harness
) -> None:
    harness.connected()
    connection = model.wait_for_connection(1)
    speech = tone(440.0, 0.1)

    connection.send_input_transcription("What time is it?")
    connection.send_audio(speech, chunk_bytes=2400)
    connection.send_output_transcription("It is noon.")
    call_id = connection.send_tool_call("take_message", {"text": "call back"})
    connection.send_tool_call_cancellation([call_id])
    connection.send_interrupted()
    connection.send_turn_complete()  # followed by a resumption update
    connection.send_output_transcription("Next turn.")  # the receive loop goes on
    connection.send_go_away(30.0, close_after=False)

    events = harness.events_until(GoAway)

    assert events == [
        InputTranscript(text="What time is it?"),
        ModelAudio(pcm=speech[:2400]),
        ModelAudio(pcm=speech[2400:]),
        OutputTranscript(text="It is noon."),
        ToolCallRequest(
            calls=(FunctionCall(call_id=call_id, name="take_message", args={"text": "call back"}),)
        ),
        ToolCallCancelled(call_ids=(call_id,)),
        Interrupted(),
        TurnComplete(),
        ResumptionHandle(handle=connection.issued_handles[-1], resumable=True),
        OutputTranscript(text="Next turn."),
        GoAway(time_left=30.0),
    ]


# --- the actor: unexpected ends ------------------------------------------------------------


@pytest.mark.parametrize(
    ("end", "code"),
    [
        pytest.param(LiveConnection.abort, 1006, id="abort"),
        pytest.param(lambda c: c.close(1011, "internal error"), 1011, id="error-close"),
        pytest.param(lambda c: c.send_go_away(0.05), 1000, id="go-away-ran-out"),
    ],
)
def test_a_close_by_the_model_is_an_unexpected_disconnect_and_an_error_exit(
    model: GeminiLiveStandIn,
    harness: Harness,
    end: Callable[[LiveConnection], None],
    code: int,
) -> None:
    channel = harness.connected()
    connection = model.wait_for_connection(1)

    with capture_logs(processors=[structlog.contextvars.merge_contextvars]) as logs:
        end(connection)
        disconnected = harness.expect(ModelDisconnected, skip_events=True)
        exit_ = harness.exit()

    assert not disconnected.expected
    assert f"code {code}" in disconnected.reason
    assert exit_.reason.abnormal
    assert exit_.reason.error is not None
    assert exit_.reason.error.startswith("ModelConnectionLost: closed by the model")
    assert not channel.send(AudioInput(pcm=b"\x00\x00"))
    (line,) = [entry for entry in logs if entry["event"] == "model.disconnected"]
    assert (line["log_level"], line["close_code"], line["connection_id"]) == ("warning", code, 1)
    assert line["reason"] == disconnected.reason
    assert harness.remaining_tasks() == []


def test_items_not_yet_sent_when_the_model_drops_come_back_in_order(
    model: GeminiLiveStandIn, harness: Harness
) -> None:
    server_loop = server_loop_of(model)
    channel = harness.connected()
    connection = model.wait_for_connection(1)
    items = numbered_audio(flood_size() // MAX_AUDIO_BATCH_BYTES, MAX_AUDIO_BATCH_BYTES)

    # The stand-in reads nothing while held, so the backlog cannot all be written.
    with blocked(server_loop()):
        assert all(channel.send(item) for item in items)
        connection.abort()

    disconnected = harness.expect(ModelDisconnected)
    assert not disconnected.expected
    assert disconnected.unsent
    assert disconnected.unsent == tuple(items[len(items) - len(disconnected.unsent) :])
    assert harness.exit().reason.abnormal


@pytest.mark.parametrize("refusal", ["http-503", "closed-port"])
def test_a_refused_connection_is_an_unexpected_disconnect(
    model: GeminiLiveStandIn, loop: LoopThread, refusal: str
) -> None:
    if refusal == "http-503":
        model.refuse_connections()
        base_url, expected_reason = model.base_url, "connection refused: HTTP 503"
    else:
        with socket.socket() as unused:
            unused.bind(("127.0.0.1", 0))
            port = unused.getsockname()[1]
        base_url, expected_reason = f"https://127.0.0.1:{port}", "cannot reach the model"
    harness = Harness(client=make_client(settings_for(base_url, model.ca_file)), loop=loop)

    harness.start()

    disconnected = harness.expect(ModelDisconnected)
    assert not disconnected.expected
    assert disconnected.reason.startswith(expected_reason)
    assert disconnected.unsent == ()
    assert harness.exit().reason.abnormal


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that accepts TCP connections and never answers: the TLS handshake hangs."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"https://127.0.0.1:{listener.getsockname()[1]}"


def test_a_setup_that_does_not_complete_in_time_is_an_unexpected_disconnect(
    model: GeminiLiveStandIn, loop: LoopThread, black_hole: str
) -> None:
    harness = Harness(client=make_client(settings_for(black_hole, model.ca_file)), loop=loop)

    harness.start(setup_timeout=0.2)

    disconnected = harness.expect(ModelDisconnected)
    assert (disconnected.expected, disconnected.reason) == (
        False,
        "setup did not complete within 0.2 s",
    )
    assert harness.exit().reason.abnormal
    assert harness.remaining_tasks() == []


# --- the actor: expected ends --------------------------------------------------------------


def test_stopping_the_actor_closes_with_1000_and_exits_normally(
    model: GeminiLiveStandIn, harness: Harness
) -> None:
    channel = harness.connected()
    connection = model.wait_for_connection(1)

    assert harness.ref is not None
    harness.ref.stop(timeout=WAIT)

    disconnected = harness.expect(ModelDisconnected)
    assert (disconnected.expected, disconnected.unsent) == (True, ())
    assert connection.wait_closed() == 1000
    assert not harness.exit().reason.abnormal
    assert not channel.send(AudioInput(pcm=b"\x00\x00"))
    assert harness.remaining_tasks() == []


def test_nothing_queued_is_lost_when_the_actor_is_stopped_mid_backlog(
    model: GeminiLiveStandIn, harness: Harness
) -> None:
    server_loop = server_loop_of(model)
    channel = harness.connected()
    connection = model.wait_for_connection(1)
    items = numbered_audio(flood_size() // MAX_AUDIO_BATCH_BYTES, MAX_AUDIO_BATCH_BYTES)
    assert harness.ref is not None

    with blocked(server_loop()):
        assert all(channel.send(item) for item in items)
        harness.ref.stop(block=False)
        # Told before the close handshake, which needs the held stand-in.
        disconnected = harness.expect(ModelDisconnected)

    assert disconnected.expected
    assert disconnected.unsent
    assert disconnected.unsent == tuple(items[len(items) - len(disconnected.unsent) :])
    assert connection.wait_closed() == 1000
    assert not harness.exit().reason.abnormal
    everything = b"".join(item.pcm for item in items)
    received = connection.audio
    unsent = b"".join(item.pcm for item in disconnected.unsent if isinstance(item, AudioInput))
    assert everything.startswith(received)
    # What the model got and what came back overlap at most; nothing falls between them.
    assert len(received) + len(unsent) >= len(everything)


def test_closing_the_channel_ends_the_connection_like_a_stop(
    model: GeminiLiveStandIn, harness: Harness
) -> None:
    channel = harness.connected()
    connection = model.wait_for_connection(1)

    channel.close()

    disconnected = harness.expect(ModelDisconnected)
    assert (disconnected.expected, disconnected.reason) == (True, "closed by the session")
    assert connection.wait_closed() == 1000
    assert not harness.exit().reason.abnormal


def test_stopping_while_setup_is_pending_ends_at_once(
    model: GeminiLiveStandIn, loop: LoopThread, black_hole: str
) -> None:
    harness = Harness(client=make_client(settings_for(black_hole, model.ca_file)), loop=loop)
    ref = harness.start(setup_timeout=60.0)

    ref.stop(timeout=WAIT)

    disconnected = harness.expect(ModelDisconnected)
    assert disconnected.expected
    assert not harness.exit().reason.abnormal
    assert harness.remaining_tasks() == []


def test_a_connection_whose_session_is_gone_closes_and_exits_normally(
    model: GeminiLiveStandIn, harness: Harness
) -> None:
    harness.connected()
    connection = model.wait_for_connection(1)
    assert harness.session is not None
    harness.session.stop(timeout=WAIT)

    connection.send_output_transcription("Anyone there?")

    assert connection.wait_closed() == 1000
    assert not harness.exit().reason.abnormal
