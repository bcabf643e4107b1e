"""The GeminiConnection actor: one Gemini Live connection of a call, run on the shared asyncio
loop, its server messages told to the CallSession as model events.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, NoReturn

import pykka
import structlog
import websockets
from google import genai
from google.genai import _live_converters as live_converters
from google.genai import errors, types
from google.genai.live import AsyncSession

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
from tars_actors.net.loop import LoopThread
from tars_actors.runtime.actor import TarsActor

__all__ = ["MAX_AUDIO_BATCH_BYTES", "GeminiConnection", "LiveChannel", "ModelConnectionLost"]

log = structlog.get_logger("tars.gemini")

#: Queued caller audio is sent as one chunk of at most this size (1 s of 16 kHz PCM16).
MAX_AUDIO_BATCH_BYTES = 32_000


class ModelConnectionLost(Exception):
    """The model connection ended without being asked to.

    Raised on the actor's thread so that it exits with an error and its supervisor
    restarts it with the latest resumption handle.
    """


@dataclass(frozen=True, slots=True, kw_only=True)
class _ConnectionEnded:
    """The connection coroutine → its own actor: it has ended and told the session."""

    expected: bool
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ending:
    expected: bool
    reason: str
    close_code: int | None = None
    #: The session is gone: nobody is left to tell.
    orphaned: bool = False
    #: Not a close or a network failure but a fault on our side, logged with its traceback.
    fault: bool = False


class _SessionGone(Exception):
    """The CallSession actor is dead, so this connection has no one to serve."""


class _SetupIncomplete(Exception):
    """The server's first answer to setup was not ``setupComplete``."""


class LiveChannel:
    """The send side of one Live connection (a :class:`~tars_actors.actor_messages.ModelChannel`).

    :meth:`send` and :meth:`close` are thread-safe and never block. Items wait in a deque
    shared with the loop under a lock; the loop is woken with ``call_soon_threadsafe`` only
    when it is not already due to look, so a backlog costs one wake-up, not one per item.
    An item leaves the deque only once the SDK's send call for it has returned, so what
    :meth:`shut` returns is exactly what never reached the socket.
    """

    __slots__ = (
        "_closed",
        "_connection_id",
        "_lock",
        "_loop",
        "_loop_thread",
        "_on_close",
        "_pending",
        "_ready",
        "_sender_idle",
        "_wake_due",
        "direct",
    )

    def __init__(
        self,
        connection_id: int,
        loop: asyncio.AbstractEventLoop,
        on_close: Callable[[], None],
    ) -> None:
        """Build on the loop thread: the wake-up event belongs to ``loop``."""
        self._connection_id = connection_id
        self._loop = loop
        self._on_close = on_close
        self._lock = threading.Lock()
        self._pending: deque[ModelInput] = deque()
        self._closed = False
        self._wake_due = False
        self._ready = asyncio.Event()
        self._loop_thread = threading.get_ident()
        self._sender_idle = False
        #: Set by the connection: writes caller audio to an idle socket at once, or
        #: returns False to leave it to the sender task.
        self.direct: Callable[[AudioInput], bool] | None = None

    @property
    def connection_id(self) -> int:
        return self._connection_id

    def send(self, item: ModelInput) -> bool:
        """Queue ``item`` for the model; False once the connection is closed."""
        direct = self.direct
        if (
            direct is not None
            and isinstance(item, AudioInput)
            and threading.get_ident() == self._loop_thread
        ):
            # On the loop, the sender task cannot run meanwhile: if it is idle with
            # nothing queued, writing now keeps the order and saves its wake-up.
            with self._lock:
                if self._closed:
                    return False
                idle = self._sender_idle and not self._pending
            if idle and direct(item):
                return True
        with self._lock:
            if self._closed:
                return False
            self._pending.append(item)
            if not self._wake_due:
                try:
                    if threading.get_ident() == self._loop_thread:
                        # The audio relay, on the loop: no self-pipe write (a syscall).
                        self._loop.call_soon(self._wake)
                    else:
                        self._loop.call_soon_threadsafe(self._wake)
                except RuntimeError:  # the loop is closed: so is this connection
                    self._pending.pop()
                    self._closed = True
                    return False
                self._wake_due = True
        return True

    def close(self) -> None:
        """End the connection on purpose, as stopping its actor does."""
        with self._lock:
            if self._closed:
                return
        with contextlib.suppress(RuntimeError):  # a closed loop has ended the connection
            self._loop.call_soon_threadsafe(self._on_close)

    @property
    def closed(self) -> bool:
        with self._lock:
            return self._closed

    # -- loop side ---------------------------------------------------------------------------

    def _wake(self) -> None:
        with self._lock:
            self._wake_due = False
        self._ready.set()

    async def next_batch(self) -> tuple[ModelInput, ...]:
        """The items at the head of the queue that go out in one send call, left queued.

        Consecutive caller audio is one batch (up to :data:`MAX_AUDIO_BATCH_BYTES`): it is
        one continuous stream, and every send call costs the SDK a fixed amount of work.
        """
        while True:
            with self._lock:
                if self._pending:
                    self._sender_idle = False
                    return self._head()
                self._ready.clear()
                self._sender_idle = True
            await self._ready.wait()

    def _head(self) -> tuple[ModelInput, ...]:
        first = self._pending[0]
        if not isinstance(first, AudioInput):
            return (first,)
        batch: list[ModelInput] = [first]
        size = len(first.pcm)
        for item in itertools.islice(self._pending, 1, None):
            if not isinstance(item, AudioInput) or size + len(item.pcm) > MAX_AUDIO_BATCH_BYTES:
                break
            batch.append(item)
            size += len(item.pcm)
        return tuple(batch)

    def commit(self, count: int) -> None:
        """The first ``count`` queued items were sent (or dropped as invalid)."""
        with self._lock:
            for _ in range(min(count, len(self._pending))):
                self._pending.popleft()

    def shut(self) -> tuple[ModelInput, ...]:
        """Refuse further items; return the ones never sent, oldest first."""
        with self._lock:
            self._closed = True
            unsent = tuple(self._pending)
            self._pending.clear()
        return unsent


@dataclass(slots=True)
class _Counters:
    sends: int = 0
    items_sent: int = 0
    audio_bytes_sent: int = 0
    messages_received: int = 0


class _LiveRun:
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
            self._finish(_Ending(expected=expected, reason=reason))

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
        ending = _Ending(expected=False, reason="the connection task ended without a reason")
        try:
            ending = await self._connect_and_serve()
        except asyncio.CancelledError:
            if self._stop_request is None:
                ending = _Ending(expected=False, reason="the event loop is shutting down")
                raise
            expected, reason = self._stop_request
            ending = _Ending(expected=expected, reason=reason)
        except Exception as error:  # noqa: BLE001 (every failure is reported, none is lost)
            ending = self._ending_for(error)
        finally:
            self._finish(ending)

    async def _connect_and_serve(self) -> _Ending:
        log.info("model.connecting", resumed=self._handle is not None, model=self._profile.model)
        config = live_config(self._profile, resumption_handle=self._handle)
        async with contextlib.AsyncExitStack() as stack:
            try:
                async with asyncio.timeout(self._setup_timeout):
                    session = await stack.enter_async_context(
                        self._client.aio.live.connect(model=self._profile.model, config=config)
                    )
            except TimeoutError:
                return _Ending(
                    expected=False,
                    reason=f"setup did not complete within {self._setup_timeout:g} s",
                )
            if session.setup_complete is None:
                raise _SetupIncomplete("the model did not answer the setup with setupComplete")
            self._live = True
            channel = LiveChannel(
                self._connection_id,
                asyncio.get_running_loop(),
                functools.partial(self.request_stop, True, "closed by the session"),
            )
            self._channel = channel
            channel.direct = functools.partial(self._write_direct, session)
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

    def _write_direct(self, session: AsyncSession, item: AudioInput) -> bool:
        """Write caller audio to the socket now if it can take it without waiting."""
        ws = getattr(session, "_ws", None)
        if ws is None or not writable_now(ws):
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

    async def _serve(self, session: AsyncSession, channel: LiveChannel) -> _Ending:
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
            return _Ending(expected=expected, reason=reason)
        # Both loops run until they fail; the receiver's error carries the close code.
        failed = receiver if receiver in done else sender
        error = failed.exception()
        if error is None:
            return _Ending(expected=False, reason=f"{failed.get_name()} ended", fault=True)
        return self._ending_for(error)

    async def _receive(self, session: AsyncSession) -> None:
        counters = self._counters
        ws = getattr(session, "_ws", None)
        if ws is None:
            # An SDK without the socket attribute: its public iterator, slower but the same.
            while True:
                # Each receive() iterator ends after a turnComplete; the connection goes on.
                async for message in session.receive():
                    counters.messages_received += 1
                    self._handle_events(translate(message))
        relay = self._relay
        connection_id = self._connection_id

        def handle(raw: bytes | str) -> bool:
            read_at = time.monotonic()
            counters.messages_received += 1
            message = json_frames.loads(raw) if raw else {}
            audio = audio_only(message)
            if audio is None:
                self._handle_events(translate(_parse(session, message)))
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
            _raise_api_error(error)

    def _handle_events(self, events: Iterable[ModelServerEvent]) -> None:
        """Audio, barge-in and turn ends to the relay first (in wire order), then the session."""
        relay = self._relay
        connection_id = self._connection_id
        for event in events:
            told = event
            if relay is not None:
                match event:
                    case ModelAudio(pcm=pcm):
                        relay.model_audio(connection_id, pcm)
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

    def _ending_for(self, error: BaseException) -> _Ending:
        setup = "" if self._live else "setup failed: "
        match error:
            case _SessionGone():
                return _Ending(expected=True, reason="the call session is gone", orphaned=True)
            case errors.APIError():
                # How google-genai reports every close, a normal one (1000) included.
                detail = error.message or (error.details if isinstance(error.details, str) else "")
                closed = "closed by the model" if self._live else "setup rejected by the model"
                reason = f"{closed} (code {error.code}{': ' + detail if detail else ''})"
                return _Ending(expected=False, reason=reason, close_code=error.code)
            case websockets.ConnectionClosed():
                # A send found the socket closed before the receiver learned of it.
                code = error.rcvd.code if error.rcvd is not None else 1006
                detail = error.rcvd.reason if error.rcvd is not None else "abnormal closure"
                reason = (
                    f"{setup}closed by the model (code {code}{': ' + detail if detail else ''})"
                )
                return _Ending(expected=False, reason=reason, close_code=code)
            case websockets.InvalidStatus():
                status = error.response.status_code
                return _Ending(expected=False, reason=f"connection refused: HTTP {status}")
            case websockets.InvalidHandshake():
                return _Ending(expected=False, reason=f"{setup}WebSocket handshake: {error}")
            case _SetupIncomplete():
                return _Ending(expected=False, reason=f"{setup}{error}")
            case OSError():
                # Refused or reset connections, DNS failures, certificate errors.
                return _Ending(expected=False, reason=f"cannot reach the model: {error}")
            case _:
                return _Ending(
                    expected=False, reason=f"{setup}{type(error).__name__}: {error}", fault=True
                )

    def _finish(self, ending: _Ending) -> None:
        if self.finished.is_set():
            return
        self._report(ending)
        # After the session heard of it, so that its supervisor learns of the exit second.
        with contextlib.suppress(pykka.ActorDeadError):
            self._actor.tell(_ConnectionEnded(expected=ending.expected, reason=ending.reason))
        self.finished.set()

    def _report(self, ending: _Ending) -> None:
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
                )
            )

    def _tell_session(self, message: ModelConnected | ModelEvent) -> None:
        try:
            self._session.tell(message)
        except pykka.ActorDeadError as error:
            raise _SessionGone from error


async def _write(session: AsyncSession, batch: tuple[ModelInput, ...]) -> int:
    """Send one batch with the SDK call its kind needs; returns the audio bytes sent."""
    match batch[0]:
        case AudioInput():
            pcm = b"".join(item.pcm for item in batch if isinstance(item, AudioInput))
            ws = getattr(session, "_ws", None)
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


class GeminiConnection(TarsActor):
    """One Gemini Live connection of a call; started and supervised by the CallSession.

    ``on_start`` only schedules the connection on the shared loop. The session is told
    :class:`ModelConnected` once setup completed, every server message as
    :class:`ModelEvent` in order, and :class:`ModelDisconnected` once, with what was
    never sent. Stopping the actor closes the connection (code 1000) and it exits
    normally; any other end (refused, setup timeout, a close by the model, a failure)
    makes it exit with :class:`ModelConnectionLost`, so that its supervisor restarts it.
    """

    def __init__(
        self,
        *,
        session: pykka.ActorRef[Any],
        connection_id: int,
        profile: ModelProfile,
        resumption_handle: str | None,
        client: genai.Client,
        loop: LoopThread,
        setup_timeout: float = 10.0,
        close_timeout: float = 5.0,
        log_fields: Mapping[str, Any] | None = None,
        relay: AudioRelay | None = None,
    ) -> None:
        """``close_timeout``: how long stopping the actor waits for the close handshake
        (the socket is closed in any case). ``log_fields`` are added to every log line of
        this connection, e.g. the call SID. With an audio ``relay`` (which must live on
        ``loop``), model audio, barge-in and turn ends go to it before the session."""
        super().__init__()
        self._relay = relay
        self._session = session
        self._connection_id = connection_id
        self._profile = profile
        self._resumption_handle = resumption_handle
        self._client = client
        self._loop = loop
        self._setup_timeout = setup_timeout
        self._close_timeout = close_timeout
        self._log_fields = dict(log_fields or {})
        self._run: _LiveRun | None = None

    def log_context(self) -> dict[str, Any]:
        return {**super().log_context(), **self._log_fields, "connection_id": self._connection_id}

    def on_start(self) -> None:
        run = _LiveRun(
            actor=self.actor_ref,
            session=self._session,
            connection_id=self._connection_id,
            profile=self._profile,
            resumption_handle=self._resumption_handle,
            client=self._client,
            setup_timeout=self._setup_timeout,
            relay=self._relay,
        )
        self._run = run
        # The task inherits this thread's log context, so the loop's lines carry it too.
        context = contextvars.copy_context()
        self._loop.call_soon(context.run, run.start)

    def on_receive(self, message: Any) -> Any:
        match message:
            case _ConnectionEnded(expected=True):
                self.stop()
                return None
            case _ConnectionEnded(reason=reason):
                raise ModelConnectionLost(reason)
            case _:
                return super().on_receive(message)

    def on_stop(self) -> None:
        self._end(expected=True, reason="the connection actor was stopped")

    def on_failure(
        self,
        exception_type: type[BaseException] | None,
        exception_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._end(expected=False, reason=f"the connection actor failed: {exception_value}")

    def _end(self, *, expected: bool, reason: str) -> None:
        """Ask the loop to end the connection and wait, bounded, until it told the session."""
        run = self._run
        if run is None or run.finished.is_set() or self._loop.loop.is_closed():
            return
        try:
            self._loop.call_soon(run.request_stop, expected, reason)
        except RuntimeError:  # the loop closed meanwhile, cancelling the connection's task
            return
        if not run.finished.wait(self._close_timeout):
            log.warning("model.close_slow", waited=self._close_timeout)


def _raise_api_error(error: websockets.ConnectionClosed) -> NoReturn:
    """A close raised as google-genai raises it (APIError), with its code and reason."""
    code = error.rcvd.code if error.rcvd is not None else 1006
    reason = error.rcvd.reason if error.rcvd is not None else "Abnormal closure."
    errors.APIError.raise_error(code, reason, None)
    raise error  # raise_error always raises; this keeps the type checker informed


def _parse(session: AsyncSession, message: dict[str, Any]) -> types.LiveServerMessage:
    """A server message other than plain audio, parsed exactly as the SDK's receive() does."""
    if session._api_client.vertexai:
        converted = live_converters._LiveServerMessage_from_vertex(message)
    else:
        converted = live_converters._LiveServerMessage_from_mldev(message)
    if not converted and message:
        errors.APIError.raise_error(int(message.get("code") or 0), message, None)
    return types.LiveServerMessage._from_response(
        response=converted, kwargs=types.LiveServerMessage().model_dump()
    )
