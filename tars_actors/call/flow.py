"""What one call does, as a pure state machine: caller and model events in, effects out.

:class:`CallFlow` owns no threads, sockets or clients. The ``CallSession`` actor feeds it
Twilio events, model events, tool results and timer expiries, and carries out the effects
it returns in order. Tests drive it directly. The audio itself, frame by frame, is the
:class:`~tars_actors.call.relay.AudioRelay`'s: the flow hears of it once per turn.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tars_actors.actor_messages import (
    AudioStarted,
    GoAway,
    InputTranscript,
    Interrupted,
    ModelInput,
    ModelServerEvent,
    OutputTranscript,
    PlaybackCut,
    ResumptionHandle,
    TextTurn,
    ToolCallCancelled,
    ToolCallRequest,
    ToolResponse,
    ToolResponses,
    TurnComplete,
)
from tars_actors.call import limits, owner_pin, tool_calls
from tars_actors.call.effects import (
    BecomeOwner,
    CancelTimer,
    CloseCaller,
    Effect,
    EndSession,
    HangUp,
    LogEvent,
    MarkCaller,
    MarkUnheard,
    PressKeys,
    SayAndHangUp,
    SendToModel,
    StartModel,
    StartTimer,
    StopModel,
    Timer,
)
from tars_actors.call.keypad import Keypad
from tars_actors.call.limits import CallLimits, CallStats
from tars_actors.call.notes import NoteQueue
from tars_actors.call.permissions import Permission
from tars_actors.call.turn_text import TurnText
from tars_actors.telephony.stream_codec import Dtmf, InboundEvent, Mark, Stop
from tars_actors.tools.registry import ToolOutcome, ToolRegistry

__all__ = ["CallFlow"]


UNREACHABLE_APOLOGY = (
    "Sorry, I am having trouble connecting right now. Please call again in a few minutes."
)


class CallFlow:
    """The behaviour of one call. Every public method returns the effects to carry out."""

    def __init__(
        self,
        *,
        permission: Permission,
        greeting: str,
        tools: ToolRegistry,
        limits: CallLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        pin: owner_pin.KeypadPin | None = None,
        screening: int | None = None,
    ) -> None:
        """``pin``: the owner's number, still to type the PIN that makes it the owner's call.
        ``screening``: the transfer a screening call asks the owner about (keys 1 and 2)."""
        self.permission = permission
        self.greeting = greeting
        self.tools = tools
        self.limits = limits or CallLimits()
        self.stats = CallStats()
        # Model connection state.
        self._next_connection_id = 1
        self._current: int | None = None  # the connection inputs go to, once connected
        self._connecting: int | None = None  # a connection being opened (start or rotate)
        self._handle: str | None = None
        self._greeted = False
        self._keypad = Keypad(pin=pin, clock=clock, screening=screening)
        # Told to the first model connection after the PIN proved the owner mid-call.
        self._verified_turn: TextTurn | None = None
        self._restart_attempt = 0
        self._rotate_pending = False
        # Inputs other than audio (greeting, tool results) kept while there is no
        # connection; the relay keeps the audio.
        self._gap: deque[ModelInput] = deque()
        # Turn state.
        self._turn = 0
        self._turn_has_output = False
        self._turn_interrupted = False
        self._text = TurnText()
        self._tools_in_flight: dict[str, str] = {}
        # Notes waiting for a turn boundary, and the routed messages already taken.
        self._notes = NoteQueue()
        self._greeting_answered = False
        # Ending.
        # Set while Twilio speaks an apology or notice before hanging up: why the call
        # ends once it has been heard.
        self._saying_goodbye: str | None = None
        # Set while the call is redirected away (put through): why it ends when it stops.
        self._handing_over: str | None = None
        self._ending_mark: str | None = None
        self._end_requested = False
        self._ended = False

    # --- lifecycle ------------------------------------------------------------------

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def current_connection(self) -> int | None:
        """The model connection inputs go to now, if any."""
        return self._current

    def start(self) -> list[Effect]:
        return [
            StartTimer(name=Timer.MAX_DURATION, delay=self.limits.max_call_seconds),
            StartTimer(name=Timer.MODEL_UNREACHABLE, delay=self.limits.model_unreachable_seconds),
            self._open_connection(),
        ]

    def _open_connection(self) -> StartModel:
        connection_id = self._next_connection_id
        self._next_connection_id += 1
        self._connecting = connection_id
        return StartModel(connection_id=connection_id, resumption_handle=self._handle)

    # --- the model connection -----------------------------------------------------------

    def model_connected(self, connection_id: int) -> list[Effect]:
        if self._ended or self._saying_goodbye is not None or connection_id != self._connecting:
            return [StopModel(connection_id=connection_id)]
        effects: list[Effect] = [CancelTimer(name=Timer.MODEL_UNREACHABLE)]
        previous = self._current
        self._current = connection_id
        self._connecting = None
        self._restart_attempt = 0
        if previous is not None:
            # A rotation: the old connection's unsent inputs come back in its
            # ModelDisconnected and are resent here.
            self._rotate_pending = False
            effects += [CancelTimer(name=Timer.ROTATE), StopModel(connection_id=previous)]
        if not self._greeted:
            self._greeted = True
            effects += self._to_current(TextTurn(text=self.greeting))
        elif self._verified_turn is not None:
            effects += self._to_current(self._verified_turn)
            self._verified_turn = None
        effects += self._to_current(*self._drain_gap())
        return effects

    def model_disconnected(
        self,
        connection_id: int,
        *,
        expected: bool,
        unsent: Sequence[ModelInput],
        reason: str,
        refused: bool = False,
    ) -> list[Effect]:
        """``refused``: the model said no to the connection (quota, key): retrying soon
        would not help, so before the call's first connection the caller hears so at once."""
        if connection_id == self._current:
            self._current = None
        # What the ended connection did not send goes first, before newer inputs.
        self._gap.extendleft(reversed(list(unsent)))
        if self._ended or self._saying_goodbye is not None:
            return []
        if refused and not self._greeted and connection_id == self._connecting:
            self._connecting = None
            grace = self.limits.apology_grace_seconds
            log = LogEvent(event="model.refused", level="error", fields={"reason": reason})
            return [log, *self._say_and_end(UNREACHABLE_APOLOGY, reason=reason, grace=grace)]
        if connection_id == self._connecting:  # a failed rotation: again at the next turn end
            self._connecting, self._rotate_pending = None, self._current is not None
        if self._current is not None:
            return self._to_current(*self._drain_gap())
        if self._connecting is not None:
            return []  # a replacement is already on its way
        self.stats.reconnects += 1
        self._restart_attempt += 1
        return limits.reconnect(
            self.limits,
            attempt=self._restart_attempt,
            connection_id=connection_id,
            expected=expected,
            reason=reason,
            resumable=self._handle is not None,
        )

    def model_event(self, connection_id: int, event: ModelServerEvent) -> list[Effect]:
        if self._ended or connection_id != self._current:
            # Late events of a rotated-out connection: its turn was already handed over.
            if isinstance(event, ResumptionHandle) and event.resumable:
                self._handle = event.handle
            return []
        match event:
            case AudioStarted():
                return self._begin_output()
            case OutputTranscript(text=text):
                effects = self._begin_output()
                self._text.assistant.append(text)
                return effects
            case InputTranscript(text=text):
                self._text.caller.append(text)
                return []
            case Interrupted():
                return self._interrupted()
            case PlaybackCut():
                self.stats.interruptions += 1
                return [MarkUnheard()]
            case TurnComplete(mark=mark):
                return self._turn_complete(mark)
            case ToolCallRequest(calls=calls):
                return self._tool_calls(calls)
            case ToolCallCancelled(call_ids=ids):
                for call_id in ids:
                    self._tools_in_flight.pop(call_id, None)
                return [LogEvent(event="tool.cancelled", fields={"call_ids": list(ids)})]
            case GoAway(time_left=time_left):
                self._rotate_pending = True
                effects = [
                    LogEvent(event="model.go_away", fields={"time_left": time_left}),
                    StartTimer(
                        name=Timer.ROTATE,
                        delay=max(0.0, time_left - self.limits.go_away_margin_seconds),
                    ),
                ]
                if self._at_turn_boundary():
                    effects += self._rotate()
                return effects
            case ResumptionHandle(handle=handle, resumable=resumable):
                if resumable:
                    self._handle = handle
                return []
        return []  # pragma: no cover

    def send_failed(self, item: ModelInput) -> list[Effect]:
        """The channel was closed before the session learned it; keep the item."""
        self._buffer(item)
        return []

    # --- the caller ---------------------------------------------------------------------

    def caller_event(self, event: InboundEvent) -> list[Effect]:
        if self._ended:
            return []
        match event:
            case Mark(name=name):
                if name == self._ending_mark:
                    return self._finish("end_call", hang_up=True)
                return []
            case Dtmf(digit=digit):
                effects = self._keypad.key(digit, listening=self._saying_goodbye is None)
                return effects + self._keys_typed() if self._keypad.burst_full else effects
            case Stop():
                return self._finish(self._hang_up_reason(), hang_up=False)
        return []

    def socket_closed(self, reason: str) -> list[Effect]:
        if self._ended:
            return []
        return self._finish(self._hang_up_reason(), hang_up=False, detail=reason)

    def no_stream(self, reason: str) -> list[Effect]:
        """The call started before its stream (at the webhook), and the stream never came:
        end it without a hang-up; what the model said meanwhile was never heard."""
        if self._ended:
            return []
        effects = self._finish(self._saying_goodbye or reason, hang_up=False)
        return [*effects[:-1], MarkUnheard(), effects[-1]]

    def call_status(self, status: str) -> list[Effect]:
        """A final status callback (completed, busy, failed...) for this call."""
        if self._ended:
            return []
        return self._finish(self._hang_up_reason(), hang_up=False, detail=f"status {status}")

    def _hang_up_reason(self) -> str:
        return self._saying_goodbye or self._handing_over or "caller hung up"

    def hand_over(self, reason: str | None, note: str | None = None) -> list[Effect]:
        """Redirected away from TARS: its stream's stop ends it with ``reason``, and TARS
        never hangs it up. None: the redirect failed; ``note`` tells the model why."""
        if self._ended:
            return []
        self._handing_over = reason
        event = LogEvent(event="call.handing_over" if reason else "call.hand_over_failed")
        return [event, *(self.instruct(note) if note else [])]

    def shutdown(self, reason: str = "shutdown") -> list[Effect]:
        if self._ended:
            return []
        return self._finish(reason, hang_up=self._handing_over is None)

    def end_with_notice(self, text: str, *, reason: str, grace: float) -> list[Effect]:
        """End the call politely: Twilio speaks ``text`` and hangs up (TARS is restarting).

        Twilio plays it once the call's TwiML is replaced, which ends the stream from its
        side; if the stream outlives ``grace`` seconds, the call is ended anyway.
        """
        if self._ended or self._saying_goodbye is not None:
            return []
        return [
            *self._say_and_end(text, reason=reason, grace=grace),
            LogEvent(event="call.ending_with_notice", fields={"reason": reason}),
        ]

    def _say_and_end(self, text: str, *, reason: str, grace: float) -> list[Effect]:
        """Have Twilio speak ``text`` and hang up; end the call with ``reason`` once the
        stream closes, or after ``grace`` seconds if it does not. No model connection is
        opened meanwhile (one on its way is stopped) and nothing else is scheduled."""
        if self._handing_over is not None:
            return []  # the call is on its way elsewhere: not TARS's to end
        self._saying_goodbye = reason
        effects: list[Effect] = [
            SayAndHangUp(text=text),
            StartTimer(name=Timer.APOLOGY, delay=grace),
        ]
        waits = (Timer.MODEL_RESTART, Timer.MODEL_UNREACHABLE, Timer.ROTATE, Timer.NOTE_WAIT)
        effects += [CancelTimer(name=timer) for timer in (*waits, Timer.PIN_PAUSE)]
        if self._connecting is not None:
            effects.append(StopModel(connection_id=self._connecting))
            self._connecting = None
        return effects

    # --- the owner's PIN ------------------------------------------------------------------

    def pin_verdict(self, verdict: owner_pin.PinVerdict) -> list[Effect]:
        """The PinDesk's answer to the PIN this call typed."""
        pin = self._keypad.pin
        if self._ended or pin is None or self._saying_goodbye is not None:
            return []
        pin.verdict()
        match verdict:
            case owner_pin.PinVerified():
                return self._become_owner(pin)
            case owner_pin.PinWrong() | owner_pin.PinUnchecked():
                event = LogEvent(event=verdict.event, fields=verdict.fields())
                return [event, *self.instruct(verdict.note())]
            case owner_pin.PinLockedOut(minutes=minutes):
                self._keypad.pin = None
                return self._say_and_end(
                    owner_pin.locked_out_goodbye(minutes),
                    reason="owner PIN refused",
                    grace=self.limits.apology_grace_seconds,
                )
        return []  # pragma: no cover

    def _keys_typed(self) -> list[Effect]:
        """A burst of keys is over: one note for the model, at the next turn boundary."""
        effects, note = self._keypad.burst_over()
        return effects if note is None else effects + self.instruct(note)

    def _become_owner(self, pin: owner_pin.KeypadPin) -> list[Effect]:
        """The owner's tools now, their (resumed) model connection at the next turn end."""
        self._keypad.pin = None
        self.permission = Permission.OWNER
        effects: list[Effect] = [BecomeOwner(), LogEvent(event="owner.verified")]
        if self._connecting is not None:
            # Opened with the stranger's instructions: open the owner's instead.
            effects.append(StopModel(connection_id=self._connecting))
            self._connecting = None
            if self._current is None:
                effects.append(self._open_connection())
        if not self._greeted:
            self.greeting = pin.owner_greeting
            return effects
        self._verified_turn = TextTurn(text=pin.verified_turn)
        if self._current is not None and self._connecting is None:
            self._rotate_pending = True
            if self._at_turn_boundary():
                effects += self._rotate()
        return effects

    # --- tools --------------------------------------------------------------------------

    def _tool_calls(self, calls: Sequence[Any]) -> list[Effect]:
        effects, refused, started = tool_calls.prepare(
            self.tools, calls, level=self.permission, stats=self.stats
        )
        self._tools_in_flight.update(started)
        if refused:
            effects += self._to_current(ToolResponses(responses=refused))
        return effects

    def tool_finished(self, call_id: str, name: str, outcome: ToolOutcome) -> list[Effect]:
        if self._ended or self._tools_in_flight.pop(call_id, None) is None:
            return []
        response = ToolResponse(call_id=call_id, name=name, response=dict(outcome.response))
        effects: list[Effect] = [PressKeys(keys=outcome.keys)] if outcome.keys else []
        effects += self._to_current(ToolResponses(responses=(response,)))
        if outcome.end_call and not self._end_requested:
            self._end_requested = True
            effects.append(
                StartTimer(name=Timer.END_GRACE, delay=self.limits.end_call_grace_seconds)
            )
            effects.append(LogEvent(event="call.end_requested", fields={"tool": name}))
        if self._rotate_pending and self._at_turn_boundary():
            effects += self._rotate()
        return effects

    # --- routed messages ------------------------------------------------------------------

    def deliver_note(self, message_id: int, text: str) -> list[Effect]:
        """A routed message for this call's model: sent at the next turn boundary.

        Never over the model's own speech and never while a tool call is open; while the
        caller keeps talking it waits at most ``note_wait_seconds``. One this call has
        taken before (the Router redelivered it) is ignored.
        """
        if self._ended:
            return []
        fields = {"message_id": message_id}
        if not self._notes.take(message_id, text):
            return [LogEvent(event="call.note_repeat_ignored", fields=fields)]
        return [LogEvent(event="call.note_received", fields=fields), *self._flush_notes()]

    def instruct(self, text: str) -> list[Effect]:
        """An instruction from TARS itself (e.g. "this is voicemail"), sent like a note."""
        if self._ended:
            return []
        self._notes.instruct(text)
        return self._flush_notes()

    def undelivered_notes(self) -> tuple[int, ...]:
        """Messages this call took but never passed to a model connection."""
        ids = self._notes.pending_ids()
        for item in self._gap:
            if isinstance(item, TextTurn):
                ids.extend(item.note_ids)
        return tuple(ids)

    def _flush_notes(self) -> list[Effect]:
        if not self._notes or self._saying_goodbye is not None or self._end_requested:
            return []
        if not self._greeting_answered or self._turn_has_output or self._tools_in_flight:
            return []  # the next turn boundary flushes them
        wait = self.limits.note_wait_seconds
        effects, turn = self._notes.flush(caller_talking=bool(self._text.caller), wait_seconds=wait)
        return effects if turn is None else effects + self._to_current(turn)

    # --- timers -------------------------------------------------------------------------

    def timer_fired(self, name: Timer) -> list[Effect]:
        if self._ended:
            return []
        match name:
            case Timer.MAX_DURATION:
                return self._finish("max duration", hang_up=True)
            case Timer.END_GRACE:
                return self._finish("end_call", hang_up=True)
            case Timer.MODEL_RESTART:
                if (
                    self._current is None
                    and self._connecting is None
                    and self._saying_goodbye is None
                ):
                    return [self._open_connection()]
                return []
            case Timer.MODEL_UNREACHABLE:
                if self._current is not None:
                    return []
                # Twilio speaks the apology once the call's TwiML is replaced, which ends
                # the stream from its side; closing the socket first would hang up before.
                return [
                    *self._say_and_end(
                        UNREACHABLE_APOLOGY,
                        reason="model unreachable",
                        grace=self.limits.apology_grace_seconds,
                    ),
                    LogEvent(
                        event="model.unreachable",
                        level="error",
                        fields={"seconds": self.limits.model_unreachable_seconds},
                    ),
                ]
            case Timer.APOLOGY:
                # The stream outlived the apology: end the call ourselves.
                return self._finish(self._saying_goodbye or "model unreachable", hang_up=True)
            case Timer.ROTATE:
                if self._rotate_pending:
                    return self._rotate()
                return []
            case Timer.PIN_PAUSE:
                return self._keypad.pause()
            case Timer.KEY_BURST:
                return self._keys_typed()
            case Timer.NOTE_WAIT:
                self._notes.waiting = False
                self._notes.wait_over = True
                return self._flush_notes()
        return []

    # --- internals ----------------------------------------------------------------------

    def _to_current(self, *items: ModelInput) -> list[Effect]:
        """Send to the live connection, or keep for the next one while there is none."""
        if self._current is None:
            for item in items:
                self._buffer(item)
            return []
        return [SendToModel(connection_id=self._current, item=item) for item in items]

    def _buffer(self, item: ModelInput) -> None:
        self._gap.append(item)

    def _drain_gap(self) -> list[ModelInput]:
        items = list(self._gap)
        self._gap.clear()
        return items

    def _begin_output(self) -> list[Effect]:
        if self._turn_has_output:
            return []
        self._turn_has_output = True
        self._turn += 1
        self._turn_interrupted = False
        return self._text.caller_line()

    def _interrupted(self) -> list[Effect]:
        # The relay already cleared the caller's audio, in wire order.
        self.stats.interruptions += 1
        self._turn_interrupted = True
        return self._text.assistant_line(heard=False)

    def _turn_complete(self, mark: str | None) -> list[Effect]:
        effects: list[Effect] = []
        if self._turn_has_output:
            self.stats.turns += 1
            if mark is not None and self._end_requested and self._ending_mark is None:
                self._ending_mark = mark
            effects += self._text.assistant_line(heard=not self._turn_interrupted)
        else:
            effects += self._text.caller_line()
        if self._end_requested and self._ending_mark is None:
            # A turn after end_call with no goodbye to hear (silent or cut off): hang up
            # once whatever was queued for the caller has played.
            self._ending_mark = f"end-{self._turn}"
            effects.append(MarkCaller(name=self._ending_mark))
        self._turn_has_output = False
        self._turn_interrupted = False
        self._greeting_answered = True
        if self._rotate_pending and self._at_turn_boundary():
            effects += self._rotate()
        return effects + self._flush_notes()

    def _at_turn_boundary(self) -> bool:
        return not self._turn_has_output and not self._tools_in_flight

    def _rotate(self) -> list[Effect]:
        if self._connecting is not None or self._current is None:
            return []
        self._rotate_pending = False
        self.stats.reconnects += 1
        return [
            CancelTimer(name=Timer.ROTATE),
            LogEvent(event="model.rotating", fields={"from_connection": self._current}),
            self._open_connection(),
        ]

    def _finish(self, reason: str, *, hang_up: bool, detail: str | None = None) -> list[Effect]:
        if hang_up and self._handing_over is not None:
            return []  # handed over: its stream's stop ends the session, never a hang-up
        self._ended = True
        effects: list[Effect] = []
        effects += self._keypad.close()
        effects += self._text.caller_line()
        effects += self._text.assistant_line(heard=not self._turn_interrupted)
        for timer in Timer:
            effects.append(CancelTimer(name=timer))
        if hang_up:
            effects.append(HangUp(reason=reason))
        effects.append(CloseCaller())
        for connection_id in (self._current, self._connecting):
            if connection_id is not None:
                effects.append(StopModel(connection_id=connection_id))
        self._current = None
        self._connecting = None
        effects.append(EndSession(reason=reason, detail=detail))
        return effects
