"""CallFlow on a call from the owner's number that is still to type the PIN: the keys, the
PinDesk's verdicts and what becoming the owner does to the model connection, no threads."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from tars_actors.actor_messages import (
    AudioStarted,
    FunctionCall,
    GoAway,
    ModelInput,
    OutputTranscript,
    ResumptionHandle,
    TextTurn,
    ToolCallRequest,
    ToolResponses,
    TurnComplete,
)
from tars_actors.call.effects import (
    BecomeOwner,
    CancelTimer,
    CheckPin,
    Effect,
    EndSession,
    HangUp,
    LogEvent,
    RunTool,
    SayAndHangUp,
    SendToModel,
    StartModel,
    StartTimer,
    StopModel,
    Timer,
)
from tars_actors.call.flow import CallFlow
from tars_actors.call.owner_pin import (
    PIN_PAUSE_SECONDS,
    KeypadPin,
    PinLockedOut,
    PinUnchecked,
    PinVerified,
    PinWrong,
    locked_out_goodbye,
)
from tars_actors.call.permissions import Permission
from tars_actors.telephony.stream_codec import Dtmf, Stop
from tars_actors.tools.call import END_CALL
from tars_actors.tools.registry import ToolContext, ToolOutcome, ToolRegistry, ToolSpec
from tests.test_call_flow import of

PIN = "2468"
WRONG = "97531"
STRANGER_GREETING = "Greet the caller and ask for the PIN."


def _list_contacts(_context: ToolContext, _args: Mapping[str, Any]) -> ToolOutcome:
    return ToolOutcome(response={"contacts": []})


def registry() -> ToolRegistry:
    """end_call, and list_contacts: a tool only the owner may use."""
    contacts = ToolSpec(name="list_contacts", description="List contacts.", handler=_list_contacts)
    return ToolRegistry([END_CALL, contacts])


def pin_flow(*, connect: bool = True) -> CallFlow:
    """A call from the owner's number, the PIN still to type; connected unless not."""
    flow = CallFlow(
        permission=Permission.UNKNOWN,
        greeting=STRANGER_GREETING,
        tools=registry(),
        pin=KeypadPin(owner_greeting="OWNER GREETING", verified_turn="VERIFIED"),
        clock=lambda: 0.0,
    )
    assert of(StartModel, flow.start()) == [StartModel(connection_id=1, resumption_handle=None)]
    if connect:
        flow.model_connected(1)
    return flow


def greeted_pin_flow() -> CallFlow:
    """Connected, greeted, and the model has answered: mid-call at a turn boundary."""
    flow = pin_flow()
    flow.model_event(1, ResumptionHandle(handle="h-1", resumable=True))
    flow.model_event(1, AudioStarted())
    flow.model_event(1, OutputTranscript(text="Hello, please type your PIN."))
    flow.model_event(1, TurnComplete(mark="turn-1"))
    return flow


def type_keys(flow: CallFlow, keys: str) -> list[Effect]:
    effects: list[Effect] = []
    for number, key in enumerate(keys):
        effects += flow.caller_event(Dtmf(sequence_number=number, track="inbound_track", digit=key))
    return effects


def typed(flow: CallFlow, keys: str) -> str:
    """Type ``keys`` and return the digits the flow asks the PinDesk to check."""
    [check] = of(CheckPin, type_keys(flow, keys))
    return check.digits


def sent(effects: Sequence[Effect], connection_id: int | None = None) -> list[ModelInput]:
    return [
        e.item
        for e in of(SendToModel, effects)
        if connection_id is None or e.connection_id == connection_id
    ]


def texts(effects: Sequence[Effect]) -> list[str]:
    return [item.text for item in sent(effects) if isinstance(item, TextTurn)]


def ask_for_contacts(flow: CallFlow, connection_id: int, call_id: str) -> list[Effect]:
    request = ToolCallRequest(calls=(FunctionCall(call_id=call_id, name="list_contacts", args={}),))
    return flow.model_event(connection_id, request)


def test_the_greeting_is_the_strangers_and_keys_are_typed_into_the_pin() -> None:
    flow = pin_flow(connect=False)
    assert texts(flow.model_connected(1)) == [STRANGER_GREETING]
    assert typed(flow, PIN + "#") == PIN
    flow.pin_verdict(PinWrong(tries_left=2))
    # A pause ends the PIN as '#' does.
    effects = type_keys(flow, PIN)
    assert StartTimer(name=Timer.PIN_PAUSE, delay=3.0) in effects
    assert of(CheckPin, effects) == []
    assert [c.digits for c in of(CheckPin, flow.timer_fired(Timer.PIN_PAUSE))] == [PIN]


def test_owner_tools_are_refused_before_the_pin_and_run_after() -> None:
    flow = greeted_pin_flow()
    before = ask_for_contacts(flow, 1, "c1")
    assert of(RunTool, before) == []
    [responses] = sent(before, 1)
    assert isinstance(responses, ToolResponses)
    assert responses.responses[0].call_id == "c1"
    assert "not available" in responses.responses[0].response["error"]
    [refused] = [e for e in of(LogEvent, before) if e.event == "tool.refused"]
    assert refused.fields["permission"] == "unknown"

    assert typed(flow, PIN + "#") == PIN
    [start] = of(StartModel, flow.pin_verdict(PinVerified()))
    flow.model_connected(start.connection_id)

    [run] = of(RunTool, ask_for_contacts(flow, start.connection_id, "c2"))
    assert run.call.name == "list_contacts"
    assert flow.stats.tools_refused == 1


def test_the_right_pin_at_a_turn_boundary_rotates_to_an_owner_connection() -> None:
    flow = greeted_pin_flow()
    typed(flow, PIN + "#")

    verified = flow.pin_verdict(PinVerified())

    assert of(BecomeOwner, verified) == [BecomeOwner()]
    assert [e.event for e in of(LogEvent, verified)] == ["owner.verified", "model.rotating"]
    assert flow.permission is Permission.OWNER
    # The stranger's connection goes on until the owner's (resumed) one is up.
    assert of(StartModel, verified) == [StartModel(connection_id=2, resumption_handle="h-1")]
    assert of(StopModel, verified) == []
    assert sent(verified) == []

    switched = flow.model_connected(2)

    assert of(StopModel, switched) == [StopModel(connection_id=1)]
    assert sent(switched, 2) == [TextTurn(text="VERIFIED")]
    assert "OWNER GREETING" not in texts(switched)
    assert STRANGER_GREETING not in texts(switched)
    assert flow.current_connection == 2
    # The keypad is no longer the PIN's: more keys check nothing.
    assert of(CheckPin, type_keys(flow, PIN + "#")) == []


def test_the_right_pin_while_the_model_speaks_rotates_once_its_turn_is_complete() -> None:
    flow = greeted_pin_flow()
    flow.model_event(1, AudioStarted())
    typed(flow, PIN + "#")

    verified = flow.pin_verdict(PinVerified())
    assert of(BecomeOwner, verified) == [BecomeOwner()]
    assert of(StartModel, verified) == []
    assert of(StartModel, flow.model_event(1, OutputTranscript(text="Still talking"))) == []

    boundary = flow.model_event(1, TurnComplete(mark="turn-2"))

    assert of(StartModel, boundary) == [StartModel(connection_id=2, resumption_handle="h-1")]
    assert sent(flow.model_connected(2), 2) == [TextTurn(text="VERIFIED")]


def test_the_right_pin_while_a_tool_runs_rotates_once_it_finished() -> None:
    flow = greeted_pin_flow()
    request = flow.model_event(
        1, ToolCallRequest(calls=(FunctionCall(call_id="c1", name="end_call", args={}),))
    )
    assert len(of(RunTool, request)) == 1
    typed(flow, PIN + "#")
    assert of(StartModel, flow.pin_verdict(PinVerified())) == []

    finished = flow.tool_finished("c1", "end_call", ToolOutcome(response={"ok": True}))

    assert of(StartModel, finished) == [StartModel(connection_id=2, resumption_handle="h-1")]


def test_the_right_pin_before_the_model_connected_opens_the_owners_connection_instead() -> None:
    flow = pin_flow(connect=False)
    typed(flow, PIN + "#")

    verified = flow.pin_verdict(PinVerified())

    assert of(BecomeOwner, verified) == [BecomeOwner()]
    # The connection being opened has the stranger's instructions: stopped, another opened.
    assert of(StopModel, verified) == [StopModel(connection_id=1)]
    assert of(StartModel, verified) == [StartModel(connection_id=2, resumption_handle=None)]
    assert verified.index(BecomeOwner()) < verified.index(of(StartModel, verified)[0])
    assert flow.model_connected(1) == [StopModel(connection_id=1)]
    assert flow.model_disconnected(1, expected=True, unsent=(), reason="stopped") == []

    connected = flow.model_connected(2)

    assert texts(connected) == ["OWNER GREETING"]
    assert flow.current_connection == 2


def test_a_wrong_pin_is_told_to_the_model_at_the_next_turn_boundary_without_digits() -> None:
    flow = greeted_pin_flow()
    flow.model_event(1, AudioStarted())  # the model is speaking
    assert typed(flow, WRONG + "#") == WRONG

    wrong = flow.pin_verdict(PinWrong(tries_left=2))

    assert [(e.event, e.fields) for e in of(LogEvent, wrong)] == [
        ("owner.pin_wrong", {"tries_left": 2})
    ]
    assert texts(wrong) == []
    [note] = texts(flow.model_event(1, TurnComplete(mark="turn-2")))
    assert "2 tries are left" in note
    assert re.findall(r"\d", note) == ["2"]
    assert flow.permission is Permission.UNKNOWN

    # The keys count again after a verdict.
    typed(flow, WRONG + "#")
    [last] = texts(flow.pin_verdict(PinWrong(tries_left=1)))
    assert "1 try is left" in last
    assert re.findall(r"\d", last) == ["1"]


def test_a_pin_that_could_not_be_checked_asks_the_caller_to_type_it_again() -> None:
    flow = greeted_pin_flow()
    typed(flow, PIN + "#")
    effects = flow.pin_verdict(PinUnchecked())
    [note] = texts(effects)
    assert "type it again" in note
    assert of(BecomeOwner, effects) == []
    assert typed(flow, PIN + "#") == PIN


def test_a_locked_out_number_hears_why_and_the_call_ends_when_the_stream_closes() -> None:
    flow = greeted_pin_flow()
    typed(flow, WRONG + "#")

    locked = flow.pin_verdict(PinLockedOut(minutes=15))

    assert of(SayAndHangUp, locked) == [SayAndHangUp(text=locked_out_goodbye(15))]
    assert "locked for 15 minutes" in locked_out_goodbye(15)
    assert of(EndSession, locked) == []
    assert flow.permission is Permission.UNKNOWN
    assert of(CheckPin, type_keys(flow, PIN + "#")) == []
    assert flow.pin_verdict(PinVerified()) == []  # too late for anything

    ended = flow.caller_event(Stop(sequence_number=99, call_sid="CA1", account_sid="AC1"))

    assert of(EndSession, ended) == [EndSession(reason="owner PIN refused")]
    assert of(HangUp, ended) == []


def test_a_locked_out_call_whose_stream_stays_open_is_hung_up_after_the_grace() -> None:
    flow = greeted_pin_flow()
    typed(flow, WRONG + "#")
    flow.pin_verdict(PinLockedOut())
    ended = flow.timer_fired(Timer.APOLOGY)
    assert of(HangUp, ended) == [HangUp(reason="owner PIN refused")]


def test_the_digits_typed_never_reach_a_log_event_or_an_effects_repr() -> None:
    flow = pin_flow(connect=False)
    everything = flow.model_connected(1)
    everything += type_keys(flow, WRONG + "#")
    everything += flow.pin_verdict(PinWrong(tries_left=2))
    everything += type_keys(flow, "1*" + PIN)
    everything += flow.timer_fired(Timer.PIN_PAUSE)
    everything += flow.pin_verdict(PinVerified())
    everything += type_keys(flow, PIN + "#")
    everything += flow.caller_event(Stop(sequence_number=99, call_sid="CA1", account_sid="AC1"))

    assert [c.digits for c in of(CheckPin, everything)] == [WRONG, PIN]
    for effect in everything:
        assert WRONG not in repr(effect)
        assert PIN not in repr(effect)
    for line in of(LogEvent, everything):
        shown = f"{line.event} {line.fields}"
        assert WRONG not in shown
        assert PIN not in shown
    keys = [line.fields["keys"] for line in of(LogEvent, everything) if line.event == "call.dtmf"]
    assert sum(keys) == len(WRONG) + 1 + 2 + len(PIN) + len(PIN) + 1


def test_a_rotation_to_the_owner_that_fails_to_connect_is_tried_again() -> None:
    flow = greeted_pin_flow()
    typed(flow, PIN + "#")
    [start] = of(StartModel, flow.pin_verdict(PinVerified()))

    failed = flow.model_disconnected(start.connection_id, expected=False, unsent=(), reason="x")

    assert of(StartModel, failed) == []  # not at once: the next turn boundary
    flow.model_event(1, AudioStarted())
    [again] = of(StartModel, flow.model_event(1, TurnComplete(mark="turn-2")))
    assert again == StartModel(connection_id=3, resumption_handle="h-1")
    assert sent(flow.model_connected(3), 3) == [TextTurn(text="VERIFIED")]


def test_after_a_failed_rotation_a_lost_connection_is_still_reconnected() -> None:
    flow = greeted_pin_flow()
    typed(flow, PIN + "#")
    [start] = of(StartModel, flow.pin_verdict(PinVerified()))
    flow.model_event(1, AudioStarted())  # no turn boundary before the old one goes too
    flow.model_disconnected(start.connection_id, expected=False, unsent=(), reason="refused")

    lost = flow.model_disconnected(1, expected=False, unsent=(), reason="1011")

    assert [t.name for t in of(StartTimer, lost)] == [Timer.MODEL_RESTART, Timer.MODEL_UNREACHABLE]
    [reopen] = of(StartModel, flow.timer_fired(Timer.MODEL_RESTART))
    assert sent(flow.model_connected(reopen.connection_id)) == [TextTurn(text="VERIFIED")]


def test_the_right_pin_during_a_rotation_replaces_the_strangers_new_connection() -> None:
    flow = greeted_pin_flow()
    [rotation] = of(StartModel, flow.model_event(1, GoAway(time_left=30.0)))
    assert rotation.connection_id == 2
    typed(flow, PIN + "#")

    verified = flow.pin_verdict(PinVerified())

    assert of(StopModel, verified) == [StopModel(connection_id=2)]
    assert of(StartModel, verified) == [StartModel(connection_id=3, resumption_handle="h-1")]
    assert flow.model_connected(2) == [StopModel(connection_id=2)]
    switched = flow.model_connected(3)
    assert of(StopModel, switched) == [StopModel(connection_id=1)]
    assert sent(switched, 3) == [TextTurn(text="VERIFIED")]


def test_the_right_pin_while_reconnecting_goes_to_the_next_connection() -> None:
    flow = greeted_pin_flow()
    flow.model_disconnected(1, expected=False, unsent=(), reason="1011")
    typed(flow, PIN + "#")

    verified = flow.pin_verdict(PinVerified())

    assert of(BecomeOwner, verified) == [BecomeOwner()]
    assert of(StartModel, verified) == []  # the restart timer opens it, after BecomeOwner
    [reopen] = of(StartModel, flow.timer_fired(Timer.MODEL_RESTART))
    assert reopen == StartModel(connection_id=2, resumption_handle="h-1")
    assert texts(flow.model_connected(2)) == ["VERIFIED"]


def test_keys_typed_as_the_call_says_goodbye_are_not_checked() -> None:
    """A PIN half typed when the call is ended with a notice is not sent to the PinDesk
    afterwards: the pause timer goes with the goodbye, and keys after it are dropped."""
    flow = greeted_pin_flow()
    pause = StartTimer(name=Timer.PIN_PAUSE, delay=PIN_PAUSE_SECONDS)
    assert of(StartTimer, type_keys(flow, PIN[:2])) == [pause, pause]
    goodbye = flow.end_with_notice("This line is needed.", reason="place taken", grace=5.0)
    assert CancelTimer(name=Timer.PIN_PAUSE) in goodbye
    assert of(CheckPin, type_keys(flow, PIN[2:] + "#")) == []
    assert flow.pin_verdict(PinVerified()) == []
    assert flow.permission is Permission.UNKNOWN
