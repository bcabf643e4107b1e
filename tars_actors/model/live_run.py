"""One Gemini Live connection's run on the shared loop: connect, serve both directions, end
once, and tell the CallSession and the connection actor how it ended."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pykka
import structlog
import websockets
from google import genai
from google.genai import types
from google.genai.live import AsyncSession
from websockets.asyncio.connection import Connection

from tars_actors.actor_messages import (
    AudioInput,
    InputTranscript,
    Interrupted,
    ModelAudio,
    ModelConnected,
    ModelDisconnected,
    ModelEvent,
    ModelInput,
    ModelServerEvent,
    RealtimeText,
    TextTurn,
    ToolResponses,
    TurnComplete,
)
from tars_actors.call.relay import AudioRelay
from tars_actors.model import _genai_bypass as genai_bypass
from tars_actors.model.failures import (
    Ending,
    SessionGone,
    SetupIncomplete,
    ending_for,
    setup_timed_out,
)
from tars_actors.model.live_channel import LiveChannel
from tars_actors.model.wire import (
    INPUT_AUDIO_MIME,
    ModelProfile,
    audio_only,
    live_config,
    realtime_audio_message,
    translate,
)
from tars_actors.net import _json_frames as json_frames
from tars_actors.net._ws_delivery import consume, send_text_now, writable_now

__all__ = ["ConnectionEnded", "LiveRun"]

log = structlog.get_logger("tars.gemini")


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionEnded:
    """The connection coroutine → its own actor: it has ended and told the session."""

    expected: bool
    reason: str


@dataclass(slots=True)
class _Counters:
    sends: int = 0
    items_sent: int = 0
    audio_bytes_sent: int = 0
    messages_received: int = 0


class LiveRun:
    """One connection's coroutine and its state.

    Everything here runs on the loop thread, except :attr:`finished`, which the actor's
    thread waits on.
    """

    def __init__(
        self,
        *,
        actor: pykka.ActorRef[Any],
        session: pykka.ActorRef[Any],
        connection_id: int,
        profile: ModelProfile,
        resumption_handle: str | None,
        client: genai.Client,
        setup_timeout: float,
        relay: AudioRelay | None,
    ) -> None:
        self.finished = threading.Event()
        self._actor = actor
        self._session = session
        self._relay = relay
        self._connection_id = connection_id
        self._profile = profile
        self._handle = resumption_handle
        self._client = client
        self._setup_timeout = setup_timeout
        self._task: asyncio.Task[None] | None = None
        self._stop_event: asyncio.Event | None = None
        self._stop_request: tuple[bool, str] | None = None
        self._live = False
        self._channel: LiveChannel | None = None
        self._reported = False
        self._counters = _Counters()
        self._started_at = 0.0
        # Decided before the first connection reaches the loop (the daemon decides when
        # it starts): a private name missing means the SDK's public calls, never an error.
        genai_bypass.SWITCH.status()

    def start(self) -> None:
        self._stop_event = asyncio.Event()
        self._started_at = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"gemini-live-{self._connection_id}"
        )
        self._task.add_done_callback(self._task_done)

    def _task_done(self, _task: asyncio.Task[None]) -> None:
        # A task cancelled before its first step never runs its body, and so never its
        # ``finally``: the end must still be reported.
        if not self.finished.is_set():
            expected, reason = self._stop_request or (False, "the connection task was cancelled")
            self._finish(Ending(expected=expected, reason=reason))

    def request_stop(self, expected: bool, reason: str) -> None:
        """End the connection on purpose; the first request decides how it is reported."""
        task = self._task
        if self._stop_request is not None or task is None or task.done():
            return
        self._stop_request = (expected, reason)
        if self._live and self._stop_event is not None:
            # Connected: leave the send and receive tasks and close with 1000.
            self._stop_event.set()
        else:
            task.cancel()

    # -- the connection ---------------------------------------------------------------------

    async def _run(self) -> None:
        ending = Ending(expected=False, reason="the connection task ended without a reason")
        try:
            ending = await self._connect_and_serve()
        except asyncio.CancelledError:
            if self._stop_request is None:
                ending = Ending(expected=False, reason="the event loop is shutting down")
                raise
            expected, reason = self._stop_request
            ending = Ending(expected=expected, reason=reason)
        except Exception as error:  # noqa: BLE001 (every failure is reported, none is lost)
            ending = ending_for(error, live=self._live)
        finally:
            self._finish(ending)

    async def _connect_and_serve(self) -> Ending:
        log.info("model.connecting", resumed=self._handle is not None, model=self._profile.model)
        config = live_config(self._profile, resumption_handle=self._handle)
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(self._setup_timeout):
                    session = await stack.enter_async_context(
                        self._client.aio.live.connect(model=self._profile.model, config=config)
                    )
            except TimeoutError:
                return setup_timed_out(self._setup_timeout)
            if session.setup_complete is None:
                raise SetupIncomplete("the model did not answer the setup with setupComplete")
            self._live = True
            channel = LiveChannel(
                self._connection_id,
                asyncio.get_running_loop(),
                functools.partial(self.request_stop, True, "closed by the session"),
            )
            self._channel = channel
            ws = genai_bypass.socket_of(session)
            if ws is not None:
                channel.direct = functools.partial(self._write_direct, ws)
            log.info(
                "model.connected",
                resumed=self._handle is not None,
                setup_ms=round((time.monotonic() - self._started_at) * 1000, 1),
            )
            self._tell_session(
                ModelConnected(
                    connection_id=self._connection_id,
                    channel=channel,
                    resumed=self._handle is not None,
                )
            )
            ending = await self._serve(session, channel)
            # The session hears of the end before the close handshake, which can take a
            # round trip or more: it resends the unsent items on its next connection
            # meanwhile, and buffers new ones (send() now returns False).
            self._report(ending)
            if ending.expected:
                await session.close()
            return ending

    def _write_direct(self, ws: Connection, item: AudioInput) -> bool:
        """Write caller audio to the socket now if it can take it without waiting."""
        if not writable_now(ws):
            return False  # the sender task, which waits for the socket, writes it
        try:
            send_text_now(ws, realtime_audio_message(item.pcm).encode())
        except Exception:  # noqa: BLE001 (the sender's next write reports the closed socket)
            return False
        counters = self._counters
        counters.sends += 1
        counters.items_sent += 1
        counters.audio_bytes_sent += len(item.pcm)
        if self._relay is not None and item.captured_at:
            self._relay.stats.latency_in.add(time.monotonic() - item.captured_at)
        return True

    async def _serve(self, session: AsyncSession, channel: LiveChannel) -> Ending:
        assert self._stop_event is not None
        receiver = asyncio.create_task(self._receive(session), name="gemini-live-receive")
        sender = asyncio.create_task(self._send(session, channel), name="gemini-live-send")
        stopper = asyncio.create_task(self._stop_event.wait(), name="gemini-live-stop")
        tasks = (receiver, sender, stopper)
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        if stopper in done and self._stop_request is not None:
            expected, reason = self._stop_request
            return Ending(expected=expected, reason=reason)
        # Both loops run until they fail; the receiver's error carries the close code.
        failed = receiver if receiver in done else sender
        error = failed.exception()
        if error is None:
            return Ending(expected=False, reason=f"{failed.get_name()} ended", fault=True)
        return ending_for(error, live=self._live)

    async def _receive(self, session: AsyncSession) -> None:
        counters = self._counters
        ws = genai_bypass.socket_of(session)
        if ws is None:
            # Off the bypass: the SDK's public iterator, slower but the same.
            while True:
                # Each receive() iterator ends after a turnComplete; the connection goes on.
                async for message in session.receive():
                    counters.messages_received += 1
                    # Stamped as it reaches us, as the bypass stamps each read, so that
                    # the outbound latency is measured on this path too.
                    self._handle_events(translate(message), time.monotonic())
        relay = self._relay
        connection_id = self._connection_id

        def handle(raw: bytes | str) -> bool:
            read_at = time.monotonic()
            counters.messages_received += 1
            message = json_frames.loads(raw) if raw else {}
            audio = audio_only(message)
            if audio is None:
                self._handle_events(translate(genai_bypass.parse(session, message)))
            elif relay is not None:
                relay.model_audio(connection_id, audio, read_at)
            else:
                self._tell_session(
                    ModelEvent(connection_id=connection_id, event=ModelAudio(pcm=audio))
                )
            return False

        try:
            # With DirectClientConnection (see make_client), audio is handled as it is
            # parsed, without a task hop per message.
            await consume(ws, handle, decode=False)
        except websockets.ConnectionClosed as error:
            genai_bypass.raise_api_error(error)

    def _handle_events(self, events: Iterable[ModelServerEvent], read_at: float = 0.0) -> None:
        """Audio, barge-in and turn ends to the relay first (in wire order), then the
        session. ``read_at``: when the message was read, if its audio's latency is timed."""
        relay = self._relay
        connection_id = self._connection_id
        for event in events:
            told = event
            if relay is not None:
                match event:
                    case ModelAudio(pcm=pcm):
                        relay.model_audio(connection_id, pcm, read_at)
                        continue
                    case Interrupted():
                        relay.interrupted(connection_id)
                    case InputTranscript():
                        relay.caller_speaking(connection_id)
                    case TurnComplete():
                        told = TurnComplete(mark=relay.turn_complete(connection_id))
            self._tell_session(ModelEvent(connection_id=connection_id, event=told))

    async def _send(self, session: AsyncSession, channel: LiveChannel) -> None:
        counters = self._counters
        while True:
            batch = await channel.next_batch()
            try:
                audio_bytes = await _write(session, batch)
            except (ValueError, TypeError):
                # The SDK checks an item before writing it: a malformed one (a tool result
                # that is not JSON, say) is dropped, or it would be resent on every
                # reconnect and take each connection down with it.
                log.exception("model.input_rejected", item=type(batch[0]).__name__)
            else:
                counters.sends += 1
                counters.items_sent += len(batch)
                counters.audio_bytes_sent += audio_bytes
                if audio_bytes and self._relay is not None:
                    sent_at = time.monotonic()
                    latency = self._relay.stats.latency_in
                    for item in batch:
                        if isinstance(item, AudioInput) and item.captured_at:
                            latency.add(sent_at - item.captured_at)
            channel.commit(len(batch))
            # Yield between sends. A TLS transport whose socket broke keeps accepting
            # writes and never pauses, so without this a backlog would be "sent" into the
            # dead socket before the loop could run connection_lost (measured: 46 MB);
            # it also keeps one call's backlog from holding up every other call.
            await asyncio.sleep(0)

    # -- endings ------------------------------------------------------------------------------

    def _finish(self, ending: Ending) -> None:
        if self.finished.is_set():
            return
        self._report(ending)
        # After the session heard of it, so that its supervisor learns of the exit second.
        with contextlib.suppress(pykka.ActorDeadError):
            self._actor.tell(ConnectionEnded(expected=ending.expected, reason=ending.reason))
        self.finished.set()

    def _report(self, ending: Ending) -> None:
        """Shut the channel, log the end and tell the session, once."""
        if self._reported:
            return
        self._reported = True
        unsent = self._channel.shut() if self._channel is not None else ()
        counters = self._counters
        fields: dict[str, Any] = {
            "reason": ending.reason,
            "expected": ending.expected,
            "close_code": ending.close_code,
            "refused": ending.refused,
            "unsent": len(unsent),
            "sends": counters.sends,
            "items_sent": counters.items_sent,
            "audio_bytes_sent": counters.audio_bytes_sent,
            "messages_received": counters.messages_received,
            "seconds": round(time.monotonic() - self._started_at, 3),
        }
        if ending.expected:
            log.info("model.disconnected", **fields)
        elif ending.fault:
            log.error("model.disconnected", **fields)
        else:
            log.warning("model.disconnected", **fields)
        if ending.orphaned:
            return
        with contextlib.suppress(pykka.ActorDeadError):
            self._session.tell(
                ModelDisconnected(
                    connection_id=self._connection_id,
                    reason=ending.reason,
                    expected=ending.expected,
                    unsent=unsent,
                    refused=ending.refused,
                )
            )

    def _tell_session(self, message: ModelConnected | ModelEvent) -> None:
        try:
            self._session.tell(message)
        except pykka.ActorDeadError as error:
            raise SessionGone from error


async def _write(session: AsyncSession, batch: tuple[ModelInput, ...]) -> int:
    """Send one batch with the SDK call its kind needs; returns the audio bytes sent."""
    match batch[0]:
        case AudioInput():
            pcm = b"".join(item.pcm for item in batch if isinstance(item, AudioInput))
            ws = genai_bypass.socket_of(session)
            if ws is not None:
                await ws.send(realtime_audio_message(pcm))
            else:
                await session.send_realtime_input(
                    audio=types.Blob(data=pcm, mime_type=INPUT_AUDIO_MIME)
                )
            return len(pcm)
        case TextTurn(text=text, role=role, turn_complete=turn_complete):
            await session.send_client_content(
                turns=types.Content(role=role, parts=[types.Part(text=text)]),
                turn_complete=turn_complete,
            )
        case RealtimeText(text=text):
            await session.send_realtime_input(text=text)
        case ToolResponses(responses=responses):
            await session.send_tool_response(
                function_responses=[
                    types.FunctionResponse(
                        id=response.call_id, name=response.name, response=dict(response.response)
                    )
                    for response in responses
                ]
            )
    return 0
