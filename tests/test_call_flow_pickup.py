"""The call's flow around pickup: a stream that never opens, and a model that says no."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from tars_actors.actor_messages import AudioStarted, OutputTranscript, TurnComplete
from tars_actors.call.effects import (
    CancelTimer,
    CloseCaller,
    Effect,
    EndSession,
    HangUp,
    LogEvent,
    MarkUnheard,
    SayAndHangUp,
    StartModel,
    StartTimer,
    StoreTranscript,
    Timer,
)
from tars_actors.call.flow import UNREACHABLE_APOLOGY, CallFlow
from tars_actors.call.permissions import Permission
from tars_actors.tools import build_registry

E = TypeVar("E")

QUOTA = "setup rejected by the model (code 1011: RESOURCE_EXHAUSTED)"


def of(kind: type[E], effects: Sequence[Effect]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def new_flow() -> CallFlow:
    flow = CallFlow(permission=Permission.UNKNOWN, greeting="Greet.", tools=build_registry())
    flow.start()
    return flow


def test_a_model_that_refuses_the_first_connection_gets_the_caller_an_apology_at_once() -> None:
    flow = new_flow()
    effects = flow.model_disconnected(1, expected=False, unsent=(), reason=QUOTA, refused=True)

    assert of(SayAndHangUp, effects) == [SayAndHangUp(text=UNREACHABLE_APOLOGY)]
    assert [e.event for e in of(LogEvent, effects)] == ["model.refused"]
    assert of(StartTimer, effects) == [StartTimer(name=Timer.APOLOGY, delay=15.0)]
    # No retry is scheduled, none is made if its timer was running, and the unreachable
    # deadline (which would apologise a second time) is cancelled.
    assert of(StartModel, flow.timer_fired(Timer.MODEL_RESTART)) == []
    assert CancelTimer(name=Timer.MODEL_UNREACHABLE) in effects
    # The stream ends once Twilio has spoken the apology: the row says why.
    ended = flow.call_status("completed")
    assert of(EndSession, ended) == [EndSession(reason=QUOTA, detail="status completed")]
    assert of(HangUp, ended) == []


def test_a_connection_that_failed_otherwise_is_retried_as_before() -> None:
    flow = new_flow()
    effects = flow.model_disconnected(1, expected=False, unsent=(), reason="HTTP 503")
    assert of(SayAndHangUp, effects) == []
    assert Timer.MODEL_RESTART in [e.name for e in of(StartTimer, effects)]


def test_a_refusal_once_the_call_has_been_greeted_reconnects_as_any_loss_does() -> None:
    flow = new_flow()
    flow.model_connected(1)
    effects = flow.model_disconnected(1, expected=False, unsent=(), reason=QUOTA, refused=True)
    assert of(SayAndHangUp, effects) == []
    assert Timer.MODEL_RESTART in [e.name for e in of(StartTimer, effects)]


def test_a_stream_that_never_opens_ends_the_call_unheard_and_without_a_hang_up() -> None:
    flow = new_flow()
    flow.model_connected(1)
    flow.model_event(1, AudioStarted())
    flow.model_event(1, OutputTranscript(text="Hello, this is TARS."))
    stored = flow.model_event(1, TurnComplete(mark="turn-1"))
    assert of(StoreTranscript, stored) == [
        StoreTranscript(speaker="assistant", text="Hello, this is TARS.", heard=True)
    ]

    effects = flow.no_stream("stream never opened")

    assert of(HangUp, effects) == []  # the call is not TARS's to end: it may connect later
    assert of(MarkUnheard, effects) == [MarkUnheard()]  # nobody heard the greeting
    assert of(CloseCaller, effects) == [CloseCaller()]
    assert effects[-1] == EndSession(reason="stream never opened")
    assert flow.no_stream("again") == []
