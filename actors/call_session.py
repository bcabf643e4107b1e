"""The CallSession actor: owns one phone call and carries out what its CallFlow decides.

It feeds caller events (from the server's socket), model events (from its
GeminiConnection), tool results and timer expiries into :class:`CallFlow`, and performs the
effects: audio to the caller, inputs to the model, transcripts to the store, hang-ups
through Telephony. It supervises its GeminiConnection: a connection that ends
unexpectedly is restarted with the latest session-resumption handle, and the call stays up.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
import structlog

from tars_actors.actor_messages import (
    AudioInput,
    CallerEvent,
    CallSocket,
    CallStatusChanged,
    EndWithNotice,
    HandOver,
    Instruct,
    ModelChannel,
    ModelConnected,
    ModelDisconnected,
    ModelEvent,
    SocketClosed,
    TextTurn,
)
from tars_actors.actor_messages import HangUp as HangUpRequest
from tars_actors.actor_messages import SayAndHangUp as SayAndHangUpRequest
from tars_actors.audio import dtmf
from tars_actors.audio.pipeline import FRAME_BYTES, FRAME_SECONDS
from tars_actors.call import effects
from tars_actors.call.effects import Effect, Timer
from tars_actors.call.flow import CallFlow
from tars_actors.call.owner_pin import PinUnchecked, PinVerdict
from tars_actors.call.owner_upgrade import ModelStarter, OwnerUpgrade
from tars_actors.call.relay import AudioRelay, audio_summary
from tars_actors.call.session_info import SessionInfo
from tars_actors.call.standby import StandbySocket
from tars_actors.cluster.messages import StreamElsewhere
from tars_actors.messaging.routing import (
    DeliverNote,
    LiveSession,
    SessionJoined,
    SessionLeft,
    Switchboard,
)
from tars_actors.net.loop import LoopThread
from tars_actors.runtime.actor import ActorExit, ExitLink, TarsActor, linked, teller
from tars_actors.runtime.timers import TimerHandle, Timers
from tars_actors.store import (
    AgentSession,
    Conversation,
    SessionStatus,
    Store,
    utcnow,
)
from tars_actors.tools.registry import PreparedCall, ToolOutcome
from tars_actors.transfer import messages as transfer

__all__ = ["CallSession", "ModelStarter", "OwnerUpgrade", "StreamOpened"]

log = structlog.get_logger("tars.call")


@dataclass(frozen=True, slots=True, kw_only=True)
class StreamOpened:
    """CallSupervisor → CallSession started before its stream: the stream's ``start``
    came with a valid token; the caller is on this socket from now on."""

    socket: CallSocket


@dataclass(frozen=True, slots=True, kw_only=True)
class _StreamWaitOver:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class _TimerFired:
    name: Timer
    generation: int


@dataclass(frozen=True, slots=True, kw_only=True)
class _ToolFinished:
    call_id: str
    name: str
    outcome: ToolOutcome


@dataclass(slots=True)
class _Connection:
    ref: pykka.ActorRef[Any]
    link: ExitLink
    channel: ModelChannel | None = None
    disconnected: bool = False


class CallSession(TarsActor):
    """One call: lifecycle, audio both ways, tools, transcript. A temporary child of the
    CallSupervisor, with the call SID as its stable id."""

    actor_kind = "CallSession"

    def __init__(
        self,
        *,
        info: SessionInfo,
        flow: CallFlow,
        socket: CallSocket,
        store: Store,
        timers: Timers,
        start_model: ModelStarter,
        telephony: Callable[[], pykka.ActorRef[Any] | None],
        tool_pool: concurrent.futures.Executor,
        audio_loop: LoopThread,
        switchboard: Switchboard | None = None,
        owner_upgrade: OwnerUpgrade | None = None,
    ) -> None:
        """``owner_upgrade``: the call is from the owner's number and waits for the PIN.
        ``socket`` is a :class:`StandbySocket` for a call started before its stream."""
        super().__init__()
        self.info = info
        self._standby = socket if isinstance(socket, StandbySocket) else None
        self._stream_wait: TimerHandle | None = None
        self._joined = False
        self._owner_upgrade = owner_upgrade
        self._switchboard = switchboard
        self._audio_loop = audio_loop
        self._relay: AudioRelay | None = None
        self._flow = flow
        self._socket = socket
        self._store = store
        self._timers = timers
        self._start_model = start_model
        self._telephony = telephony
        self._tool_pool = tool_pool
        self._connections: dict[int, _Connection] = {}
        self._timer_handles: dict[Timer, tuple[int, TimerHandle]] = {}
        self._timer_generation = 0
        self._transcript_seq = 0
        self._last_assistant_line: int | None = None
        self._started_at = time.monotonic()
        self._ended = False

    # --- the ToolContext protocol ---------------------------------------------------------

    def log_context(self) -> dict[str, Any]:
        return {
            **super().log_context(),
            "session": self.info.session_name,
            "session_id": self.info.session_id,
            "call_sid": self.info.call_sid,
            "permission": str(self.info.permission),
        }

    # --- lifecycle (actor thread) ---------------------------------------------------------

    def on_start(self) -> None:
        self._store.connect()
        self._relay = AudioRelay(
            socket=self._socket,
            session=self.actor_ref,
            gap_frames=round(self._flow.limits.gap_buffer_seconds / FRAME_SECONDS),
        )
        self._socket.attach(self.actor_ref, self._relay)
        if self._standby is None:
            self._streaming()
        else:
            # Started at the webhook: the model connects and greets while Twilio opens the
            # stream; the greeting waits in the standby for it.
            log.info("call.opening", caller=self.info.caller_number, direction=self.info.direction)
            wait, ref = self._flow.limits.stream_wait_seconds, self.actor_ref
            self._stream_wait = self._timers.call_later(wait, teller(ref, _StreamWaitOver()))
        self._apply(self._flow.start())

    def _streaming(self) -> None:
        """The call's stream is open: the row is active, and the Router sees the call."""
        with self._store.transaction():
            AgentSession.update(status=SessionStatus.ACTIVE, stream_sid=self.info.stream_sid).where(
                AgentSession.id == self.info.session_id
            ).execute()
        log.info(
            "call.started",
            caller=self.info.caller_number,
            direction=self.info.direction,
            stream_sid=self.info.stream_sid,
        )
        self._join()

    def _stream_opened(self, socket: CallSocket) -> None:
        standby = self._standby
        if standby is None or self._flow.ended:
            # Ended before its stream came (it waited too long, or the model refused): the
            # stream has no call to carry; closing it ends the call at Twilio's side.
            socket.close()
            return
        self._standby = None
        if self._stream_wait is not None:
            self._stream_wait.cancel()
        held = standby.held_frames
        self._socket = socket
        # Handed over on the loop, where the relay writes: nothing overtakes the greeting.
        self._on_audio_loop("use_socket", socket, standby)
        self.info = dataclasses.replace(self.info, stream_sid=socket.stream_sid)
        log.info("call.stream_opened", held_frames=held, dropped_frames=standby.frames_dropped)
        self._streaming()

    def _no_stream(self, reason: str) -> None:
        log.warning("call.stream_never_opened", reason=reason)
        self._apply(self._flow.no_stream(reason))

    def _join(self) -> None:
        switchboard = self._switchboard
        if switchboard is None:
            return
        self._joined = True
        info = self.info
        joined = switchboard.presence.local_get(info.session_id)
        started_at = time.monotonic() if joined is None else joined.started_at
        switchboard.presence.join(LiveSession(info=info, ref=self.actor_ref, started_at=started_at))
        if not switchboard.tell(SessionJoined(session_id=info.session_id)):
            log.warning("router.not_running", message="SessionJoined")

    def _leave(self) -> None:
        switchboard = self._switchboard
        if switchboard is None or not self._joined:
            return  # a call whose stream never opened: the Router never saw it
        switchboard.presence.leave(self.info.session_id)
        undelivered = self._flow.undelivered_notes()
        left = SessionLeft(session_id=self.info.session_id, undelivered=undelivered)
        if not switchboard.tell(left) and undelivered:
            # The Router finds them PENDING when it starts again.
            log.warning("router.not_running", message="SessionLeft", undelivered=len(undelivered))

    def on_stop(self) -> None:
        self._close_down("shutdown")

    def on_failure(self, *exc_info: Any) -> None:
        self._close_down("session failure")

    def _close_down(self, reason: str) -> None:
        if self._standby is not None:
            # Its stream has not opened: the call is not TARS's to hang up (after a
            # restart, its token still connects it).
            self._apply(self._flow.no_stream(f"{reason} before the stream opened"))
        if not self._ended:
            # Stopped from outside (daemon shutdown, supervisor): end the call properly.
            self._apply(self._flow.shutdown(reason))
        if not self._ended:
            # The flow had ended already (a failure while carrying out its end): the record
            # and the Router must still hear of it.
            self._socket.close()
            self._end(reason, "ended while failing")
        for connection in list(self._connections.values()):
            connection.link.stopping = True
            connection.ref.stop(block=False)
        self._connections.clear()
        for _generation, handle in self._timer_handles.values():
            handle.cancel()
        self._timer_handles.clear()
        if self._stream_wait is not None:
            self._stream_wait.cancel()
        self._store.close()

    # --- messages -------------------------------------------------------------------------

    def on_receive(self, message: Any) -> Any:
        match message:
            case CallerEvent(event=event):
                self._apply(self._flow.caller_event(event))
            case ModelEvent(connection_id=connection_id, event=event):
                self._apply(self._flow.model_event(connection_id, event))
            case ModelConnected():
                self._model_connected(message)
            case ModelDisconnected():
                self._model_disconnected(message)
            case ActorExit(child_id=child_id, reason=reason):
                connection_id = int(child_id.rsplit("-", 1)[-1])
                connection = self._connections.pop(connection_id, None)
                if connection is not None and not connection.disconnected:
                    # It crashed without saying goodbye: treat it as a lost connection.
                    self._on_audio_loop("drop_channel", connection_id, ())
                    self._apply(
                        self._flow.model_disconnected(
                            connection_id,
                            expected=not reason.abnormal,
                            unsent=(),
                            reason=str(reason),
                        )
                    )
            case _ToolFinished(call_id=call_id, name=name, outcome=outcome):
                self._apply(self._flow.tool_finished(call_id, name, outcome))
            case _TimerFired(name=name, generation=generation):
                current = self._timer_handles.get(name)
                if current is not None and current[0] == generation:
                    del self._timer_handles[name]
                    self._apply(self._flow.timer_fired(name))
            case SocketClosed(reason=reason):
                self._apply(self._flow.socket_closed(reason))
            case StreamOpened(socket=socket):
                self._stream_opened(socket)
            case _StreamWaitOver():
                if self._standby is not None:  # else the stream came as the timer fired
                    self._no_stream("stream never opened")
            case CallStatusChanged(status=status) if self._standby is not None:
                self._no_stream(f"ended before its stream opened (status {status})")
            case StreamElsewhere() if self._standby is not None:
                self._no_stream("its stream opened on another daemon")
            case CallStatusChanged(status=status):
                self._apply(self._flow.call_status(status))
            case EndWithNotice(call_sid=None, reason=reason) if self._standby is not None:
                # The daemon is stopping: a stream still to open may reach the next one.
                self._no_stream(f"{reason} before the stream opened")
            case EndWithNotice(text=text, reason=reason, grace_seconds=grace):
                self._apply(self._flow.end_with_notice(text, reason=reason, grace=grace))
            case Instruct(text=text):
                log.info("call.instructed", text=text)
                self._apply(self._flow.instruct(text))
            case HandOver(reason=reason, note=note):
                self._apply(self._flow.hand_over(reason, note))
            case DeliverNote():
                self._note(message)
            case _:
                return super().on_receive(message)
        return None

    def _note(self, note: DeliverNote) -> None:
        message_id = note.message_id
        if self._flow.ended:
            # Handed over as this call ended: back to the Router, to go another way.
            log.info("call.note_returned", message_id=message_id)
            if self._switchboard is not None:
                left = SessionLeft(session_id=self.info.session_id, undelivered=(message_id,))
                self._switchboard.tell(left)
        else:
            # The flow's NoteQueue refuses a message this call has taken before.
            self._apply(self._flow.deliver_note(message_id, note.text))

    def _model_connected(self, message: ModelConnected) -> None:
        connection_id, channel = message.connection_id, message.channel
        connection = self._connections.get(connection_id)
        if connection is not None:
            connection.channel = channel
        log.info("model.connected", connection_id=connection_id, resumed=message.resumed)
        effects = self._flow.model_connected(connection_id)
        if self._flow.current_connection == connection_id:
            # Before the greeting goes out: the relay must take the reply's audio.
            self._on_audio_loop("use_channel", connection_id, channel)
        self._apply(effects)

    def _model_disconnected(self, message: ModelDisconnected) -> None:
        connection = self._connections.get(message.connection_id)
        if connection is not None:
            connection.disconnected = True
            connection.channel = None
        log.log(
            20 if message.expected else 30,
            "model.disconnected",
            connection_id=message.connection_id,
            reason=message.reason,
            expected=message.expected,
            unsent=len(message.unsent),
        )
        # Audio the connection never sent goes back to the relay, the rest to the flow.
        audio = tuple(item for item in message.unsent if isinstance(item, AudioInput))
        others = tuple(item for item in message.unsent if not isinstance(item, AudioInput))
        self._on_audio_loop("drop_channel", message.connection_id, audio)
        self._apply(
            self._flow.model_disconnected(
                message.connection_id,
                expected=message.expected,
                unsent=others,
                reason=message.reason,
                refused=message.refused,
            )
        )

    # --- effects --------------------------------------------------------------------------

    def _apply(self, planned: list[Effect]) -> None:
        for effect in planned:
            self._perform(effect)

    def _perform(self, effect: Effect) -> None:
        match effect:
            case effects.SendToModel(connection_id=connection_id, item=item):
                connection = self._connections.get(connection_id)
                channel = connection.channel if connection is not None else None
                if channel is None or not channel.send(item):
                    self._apply(self._flow.send_failed(item))
                elif isinstance(item, TextTurn) and item.note_ids and self._switchboard:
                    self._switchboard.delivered(self.info, item.note_ids)
            case effects.MarkCaller(name=name):
                self._socket.send_mark(name)
            case effects.StoreTranscript(speaker=speaker, text=text, heard=heard):
                self._store_line(speaker, text, heard=heard)
            case effects.MarkUnheard():
                if self._last_assistant_line is not None:
                    with self._store.transaction():
                        Conversation.update(heard=False).where(
                            Conversation.id == self._last_assistant_line
                        ).execute()
            case effects.RunTool(call=call):
                self._run_tool(call)
            case effects.StartModel(connection_id=connection_id, resumption_handle=handle):
                self._open_model(connection_id, handle)
            case effects.StopModel(connection_id=connection_id):
                connection = self._connections.get(connection_id)
                if connection is not None:
                    connection.link.stopping = True
                    connection.ref.stop(block=False)
            case effects.StartTimer(name=name, delay=delay):
                self._start_timer(name, delay)
            case effects.CancelTimer(name=name):
                entry = self._timer_handles.pop(name, None)
                if entry is not None:
                    entry[1].cancel()
            case effects.HangUp(reason=reason):
                self._to_telephony(HangUpRequest(call_sid=self.info.call_sid, reason=reason))
            case effects.SayAndHangUp(text=text):
                self._to_telephony(SayAndHangUpRequest(call_sid=self.info.call_sid, text=text))
            case effects.CloseCaller():
                self._socket.close()
            case effects.EndSession(reason=reason, detail=detail):
                self._end(reason, detail)
            case effects.LogEvent(event=event, level=level, fields=fields):
                getattr(log, level)(event, **fields)
            case effects.CheckPin(digits=digits):
                self._apply(self._flow.pin_verdict(self._check_pin(digits)))
            case effects.BecomeOwner():
                self._become_owner()
            case effects.PressKeys(keys=keys):
                self._press_keys(keys)
            case effects.DecideTransfer(transfer_id=transfer_id, accept=accept):
                self._decide_transfer(transfer_id, accept=accept)

    def _press_keys(self, keys: str) -> None:
        audio = dtmf.tones(keys)
        frames = [audio[at : at + FRAME_BYTES] for at in range(0, len(audio), FRAME_BYTES)]
        self._socket.send_audio(frames, tones=True)
        log.info("call.keys_pressed", keys=sum(key != "w" for key in keys))

    def _decide_transfer(self, transfer_id: int, *, accept: bool) -> None:
        """The keypad's answer on a screening call, to the Router; its reply is an Instruct."""
        info = self.info
        decided = transfer.DecideTransfer(
            transfer_id=transfer_id,
            accept=accept,
            session_id=info.session_id,
            reply_to=self.actor_ref,
        )
        if self._switchboard is None or not self._switchboard.tell(decided):
            log.error("call.transfer_undecided", transfer_id=transfer_id)

    def _check_pin(self, digits: str) -> PinVerdict:
        upgrade = self._owner_upgrade
        if upgrade is None:  # pragma: no cover (the flow types keys only with an upgrade)
            return PinUnchecked()
        return upgrade.check(self.info, digits, self._switchboard)

    def _become_owner(self) -> None:
        """The PIN was right: this call is the owner's main call from now on."""
        upgrade = self._owner_upgrade
        if upgrade is None:  # pragma: no cover (the flow verifies only with an upgrade)
            return
        self._owner_upgrade = None
        upgrade.admission.proven(self.info.call_sid)
        self.info = dataclasses.replace(
            upgrade.info, session_id=self.info.session_id, stream_sid=self.info.stream_sid
        )
        self._start_model = upgrade.start_model
        try:
            with self._store.transaction():
                AgentSession.update(
                    name=self.info.session_name, permission=str(self.info.permission)
                ).where(AgentSession.id == self.info.session_id).execute()
        except Exception:  # the owner's call goes on; only its row is behind
            log.exception("owner.session_row_not_updated")
        # The Router sees the owner's call, and hands it what waited for the owner.
        self._join()

    def _to_telephony(self, request: HangUpRequest | SayAndHangUpRequest) -> None:
        """To the live Telephony actor (a restarted one is a new actor); a call that cannot
        be ended through Twilio is still ended here, and the failure is logged."""
        ref = self._telephony()
        if ref is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                ref.tell(request)
                return
        log.error("call.telephony_unavailable", request=type(request).__name__)

    def _on_audio_loop(self, method: str, *args: Any) -> None:
        relay = self._relay
        if relay is not None:
            # The relay is only ever touched on its loop, so it needs no locks.
            self._audio_loop.call_soon(getattr(relay, method), *args)

    def _open_model(self, connection_id: int, handle: str | None) -> None:
        assert self._relay is not None
        link = ExitLink(f"model-{connection_id}", self._model_exited)
        with linked(link):
            ref = self._start_model(self.actor_ref, connection_id, handle, self._relay)
        self._connections[connection_id] = _Connection(ref=ref, link=link)
        log.info("model.connecting", connection_id=connection_id, resuming=handle is not None)

    def _model_exited(self, exit_: ActorExit) -> None:
        teller(self.actor_ref, exit_)()  # on the connection's thread: only tell

    def _start_timer(self, name: Timer, delay: float) -> None:
        previous = self._timer_handles.pop(name, None)
        if previous is not None:
            previous[1].cancel()
        self._timer_generation += 1
        generation, ref = self._timer_generation, self.actor_ref
        fired = _TimerFired(name=name, generation=generation)
        handle = self._timers.call_later(delay, teller(ref, fired))
        self._timer_handles[name] = (generation, handle)

    def _run_tool(self, call: PreparedCall) -> None:
        log.info("tool.called", tool=call.name, call_id=call.call_id, args=dict(call.args))
        if not call.spec.slow:
            self._apply(self._flow.tool_finished(call.call_id, call.name, self._invoke(call)))
            return
        ref = self.actor_ref

        def work() -> None:
            outcome = self._invoke(call)
            try:
                ref.tell(_ToolFinished(call_id=call.call_id, name=call.name, outcome=outcome))
            except pykka.ActorDeadError:
                log.warning("tool.result_dropped", tool=call.name, call_id=call.call_id)

        self._tool_pool.submit(work)

    def _invoke(self, call: PreparedCall) -> ToolOutcome:
        try:
            return call.run(self.info)
        except Exception as error:
            log.exception("tool.failed", tool=call.name, call_id=call.call_id)
            return ToolOutcome(response={"error": f"{call.name} failed: {error}"})

    def _store_line(self, speaker: str, text: str, *, heard: bool) -> None:
        self._transcript_seq += 1
        with self._store.transaction():
            row = Conversation.create(
                session=self.info.session_id,
                speaker=speaker,
                text=text,
                heard=heard,
                seq=self._transcript_seq,
                spoken_at=utcnow(),
            )
        if speaker == "assistant":
            self._last_assistant_line = int(row.id)

    def _end(self, reason: str, detail: str | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._leave()
        duration = time.monotonic() - self._started_at
        with self._store.transaction():
            AgentSession.update(
                status=SessionStatus.ENDED,
                ended_at=utcnow(),
                end_reason=reason,
                duration_seconds=round(duration, 3),
            ).where(AgentSession.id == self.info.session_id).execute()
        log.info(
            "call.summary",
            reason=reason,
            detail=detail,
            duration_seconds=round(duration, 3),
            frames_rejected=self._socket.frames_rejected,
            **self._flow.stats.as_fields(),
            **self._audio_stats(),
        )
        if self.actor_ref.is_alive():  # not already stopping (shutdown from outside)
            self.actor_ref.stop(block=False)

    def _audio_stats(self) -> dict[str, Any]:
        relay = self._relay
        return {} if relay is None else audio_summary(relay.stats, self._socket)
