"""The GeminiConnection actor: one Gemini Live connection of a call, run on the shared asyncio
loop (:mod:`tars_actors.model.live_run`), its server messages told to the CallSession as model
events.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import pykka
import structlog
from google import genai

from tars_actors.call.relay import AudioRelay
from tars_actors.model.live_run import ConnectionEnded, LiveRun
from tars_actors.model.wire import ModelProfile
from tars_actors.net.loop import LoopThread
from tars_actors.runtime.actor import TarsActor

__all__ = ["GeminiConnection", "ModelConnectionLost"]

log = structlog.get_logger("tars.gemini")


class ModelConnectionLost(Exception):
    """The model connection ended without being asked to.

    Raised on the actor's thread so that it exits with an error and its supervisor
    restarts it with the latest resumption handle.
    """


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
        self._run: LiveRun | None = None

    def log_context(self) -> dict[str, Any]:
        return {**super().log_context(), **self._log_fields, "connection_id": self._connection_id}

    def on_start(self) -> None:
        run = LiveRun(
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
            case ConnectionEnded(expected=True):
                self.stop()
                return None
            case ConnectionEnded(reason=reason):
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
