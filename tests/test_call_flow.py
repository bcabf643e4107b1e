"""CallFlow, driven directly: caller and model events in, effects out, no threads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from tars_actors.actor_messages import (
    AudioInput,
    AudioStarted,
    FunctionCall,
    GoAway,
    InputTranscript,
    Interrupted,
    OutputTranscript,
    ResumptionHandle,
    TextTurn,
    ToolCallRequest,
    ToolResponses,
    TurnComplete,
)
from tars_actors.call.effects import (
    CancelTimer,
    CloseCaller,
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
    StoreTranscript,
    Timer,
)
from tars_actors.call.flow import CallFlow
from tars_actors.call.keypad import KEYPRESS_LOG_SECONDS
from tars_actors.call.limits import CallLimits
from tars_actors.call.permissions import Permission
from tars_actors.telephony.stream_codec import Dtmf, Mark, Stop
from tars_actors.tools import build_registry
from tars_actors.tools.registry import ToolContext, ToolOutcome

E = TypeVar("E")


def of(kind: type[E], effects: Sequence[Effect]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def connected_flow(
    permission: Permission = Permission.OWNER, limits: CallLimits | None = None
) -> CallFlow:
    flow = CallFlow(
        permission=permission, greeting="Greet the owner.", tools=build_registry(), limits=limits
    )
    start = flow.start()
    assert of(StartModel, start) == [StartModel(connection_id=1, resumption_handle=None)]
    flow.model_connected(1)
    return flow


class Context:
    session_id = 1
    session_name = "Call with test"
    permission = Permission.OWNER
    caller_number = "+15555550100"
    call_sid = "CAtest"


def run_tool(effect: RunTool) -> ToolOutcome:
    context: ToolContext = Context()
    return effect.call.run(context)


def test_greeting_goes_to_the_model_once_connected() -> None:
    flow = CallFlow(permission=Permission.OWNER, greeting="Say hi.", tools=build_registry())
    flow.start()
    assert flow.current_connection is None

    effects = flow.model_connected(1)

    assert flow.current_connection == 1
    sent = [e.item for e in of(SendToModel, effects)]
    assert sent == [TextTurn(text="Say hi.")]


def test_a_model_turn_stores_the_caller_line_then_the_assistant_line() -> None:
    flow = connected_flow()
    flow.model_event(1, InputTranscript(text="What's up?"))
    effects = flow.model_event(1, AudioStarted())
    effects += flow.model_event(1, OutputTranscript(text="All good."))
    effects += flow.model_event(1, TurnComplete(mark="turn-1"))

    assert of(StoreTranscript, effects) == [
        StoreTranscript(speaker="caller", text="What's up?"),
        StoreTranscript(speaker="assistant", text="All good.", heard=True),
    ]
    assert flow.stats.turns == 1


def test_barge_in_marks_the_assistant_line_as_not_heard() -> None:
    flow = connected_flow()
    flow.model_event(1, AudioStarted())
    flow.model_event(1, OutputTranscript(text="Let me tell you a long"))

    effects = flow.model_event(1, Interrupted())
    done = flow.model_event(1, TurnComplete(mark=None))

    assert of(StoreTranscript, effects) == [
        StoreTranscript(speaker="assistant", text="Let me tell you a long", heard=False)
    ]
    assert of(StoreTranscript, done) == []
    assert flow.stats.interruptions == 1


def test_end_call_hangs_up_only_after_the_goodbye_was_heard() -> None:
    flow = connected_flow()
    flow.model_event(1, AudioStarted())
    request = flow.model_event(
        1, ToolCallRequest(calls=(FunctionCall(call_id="c1", name="end_call", args={}),))
    )
    (run,) = of(RunTool, request)
    finished = flow.tool_finished("c1", "end_call", run_tool(run))
    assert isinstance(of(SendToModel, finished)[0].item, ToolResponses)
    turn_end = flow.model_event(1, TurnComplete(mark="turn-1"))
    assert of(HangUp, finished + turn_end) == []

    heard = flow.caller_event(Mark(sequence_number=9, name="turn-1"))

    assert of(HangUp, heard) == [HangUp(reason="end_call")]
    assert of(EndSession, heard) == [EndSession(reason="end_call")]
    assert of(CloseCaller, heard) == [CloseCaller()]


def test_end_call_hangs_up_after_the_grace_period_when_no_mark_comes_back() -> None:
    flow = connected_flow()
    request = flow.model_event(
        1, ToolCallRequest(calls=(FunctionCall(call_id="c1", name="end_call", args={}),))
    )
    finished = flow.tool_finished("c1", "end_call", run_tool(of(RunTool, request)[0]))
    (grace,) = [t for t in of(StartTimer, finished) if t.name == Timer.END_GRACE]

    effects = flow.timer_fired(grace.name)

    assert of(HangUp, effects) == [HangUp(reason="end_call")]


def test_a_tool_outside_the_callers_level_is_refused_with_an_error_result() -> None:
    flow = connected_flow(Permission.UNKNOWN)
    effects = flow.model_event(
        1,
        ToolCallRequest(
            calls=(FunctionCall(call_id="c9", name="create_reminder", args={"title": "x"}),)
        ),
    )

    assert of(RunTool, effects) == []
    (response,) = [
        r
        for e in of(SendToModel, effects)
        if isinstance(e.item, ToolResponses)
        for r in e.item.responses
    ]
    assert response.call_id == "c9"
    assert "error" in response.response
    (warning,) = [e for e in of(LogEvent, effects) if e.event == "tool.refused"]
    assert warning.level == "warning"
    assert flow.stats.tools_refused == 1


def test_bad_arguments_get_an_error_result_naming_the_argument() -> None:
    flow = connected_flow()
    effects = flow.model_event(
        1,
        ToolCallRequest(calls=(FunctionCall(call_id="c2", name="end_call", args={"reason": 42}),)),
    )
    (sent,) = of(SendToModel, effects)
    assert isinstance(sent.item, ToolResponses)
    assert sent.item.responses[0].response == {"error": "argument 'reason' must be a string"}
    assert of(RunTool, effects) == []


def test_an_unexpected_disconnect_reconnects_with_the_latest_handle_and_loses_nothing() -> None:
    flow = connected_flow()
    flow.model_event(1, ResumptionHandle(handle="h-1", resumable=True))
    flow.model_event(1, ResumptionHandle(handle="h-2", resumable=True))
    unsent = (TextTurn(text="never sent"),)

    lost = flow.model_disconnected(1, expected=False, unsent=unsent, reason="1011")
    assert flow.current_connection is None
    late = FunctionCall(call_id="c7", name="end_call", args={})
    request = flow.model_event(1, ToolCallRequest(calls=(late,)))  # from the dead one
    (restart,) = [t for t in of(StartTimer, lost) if t.name == Timer.MODEL_RESTART]
    reopen = flow.timer_fired(restart.name)
    resumed = flow.model_connected(2)

    assert request == []
    assert of(StartModel, reopen) == [StartModel(connection_id=2, resumption_handle="h-2")]
    items = [e.item for e in of(SendToModel, resumed)]
    assert items == [TextTurn(text="never sent")]  # resent; and no second greeting
    assert flow.stats.reconnects == 1


def test_a_tool_result_produced_during_the_gap_is_sent_after_the_reconnect() -> None:
    flow = connected_flow()
    request = flow.model_event(
        1, ToolCallRequest(calls=(FunctionCall(call_id="c1", name="end_call", args={}),))
    )
    flow.model_disconnected(1, expected=False, unsent=(), reason="closed")

    during = flow.tool_finished("c1", "end_call", run_tool(of(RunTool, request)[0]))
    flow.timer_fired(Timer.MODEL_RESTART)
    resumed = flow.model_connected(2)

    assert of(SendToModel, during) == []
    (sent,) = of(SendToModel, resumed)
    assert isinstance(sent.item, ToolResponses)
    assert sent.item.responses[0].call_id == "c1"


def test_go_away_rotates_at_the_next_turn_boundary_and_then_closes_the_old_connection() -> None:
    flow = connected_flow()
    flow.model_event(1, ResumptionHandle(handle="h-9", resumable=True))
    flow.model_event(1, AudioStarted())  # the model is speaking

    during = flow.model_event(1, GoAway(time_left=10.0))
    boundary = flow.model_event(1, TurnComplete(mark="turn-1"))
    switched = flow.model_connected(2)
    old_leftovers = flow.model_disconnected(
        1, expected=True, unsent=(AudioInput(pcm=b"late"),), reason="rotated"
    )

    assert of(StartModel, during) == []  # not over the model's speech
    assert of(StartModel, boundary) == [StartModel(connection_id=2, resumption_handle="h-9")]
    assert of(StopModel, switched) == [StopModel(connection_id=1)]
    assert [e.item for e in of(SendToModel, old_leftovers)] == [AudioInput(pcm=b"late")]
    assert of(SendToModel, old_leftovers)[0].connection_id == 2


def test_a_rotation_that_never_connects_leaves_the_call_able_to_reconnect() -> None:
    flow = connected_flow()
    flow.model_event(1, ResumptionHandle(handle="h-3", resumable=True))
    [start] = of(StartModel, flow.model_event(1, GoAway(time_left=10.0)))
    failed = flow.model_disconnected(start.connection_id, expected=False, unsent=(), reason="x")
    assert of(StartModel, failed) == []
    assert flow.current_connection == 1

    # The old connection reaches its deadline: the call reconnects instead of going silent.
    lost = flow.model_disconnected(1, expected=True, unsent=(), reason="go away")
    assert Timer.MODEL_RESTART in [t.name for t in of(StartTimer, lost)]
    assert of(StartModel, flow.timer_fired(Timer.MODEL_RESTART)) == [
        StartModel(connection_id=3, resumption_handle="h-3")
    ]


def test_go_away_rotates_before_the_deadline_even_mid_turn() -> None:
    flow = connected_flow()
    flow.model_event(1, AudioStarted())
    effects = flow.model_event(1, GoAway(time_left=5.0))
    (timer,) = [t for t in of(StartTimer, effects) if t.name == Timer.ROTATE]
    assert timer.delay == 3.0

    assert of(StartModel, flow.timer_fired(Timer.ROTATE)) == [
        StartModel(connection_id=2, resumption_handle=None)
    ]


def test_an_unreachable_model_ends_the_call_with_a_spoken_apology() -> None:
    flow = CallFlow(permission=Permission.OWNER, greeting="hi", tools=build_registry())
    flow.start()
    flow.model_disconnected(1, expected=False, unsent=(), reason="refused")

    apology = flow.timer_fired(Timer.MODEL_UNREACHABLE)
    # Twilio now speaks the apology and ends the stream: the socket is left to it.
    assert len(of(SayAndHangUp, apology)) == 1
    assert of(CloseCaller, apology) == []
    assert of(EndSession, apology) == []
    assert of(StartModel, flow.timer_fired(Timer.MODEL_RESTART)) == []

    ended = flow.caller_event(Stop(sequence_number=9, call_sid="CA1", account_sid="AC1"))
    assert of(EndSession, ended) == [EndSession(reason="model unreachable")]
    assert of(HangUp, ended) == []


def test_an_apology_that_never_ends_the_stream_is_followed_by_a_hang_up() -> None:
    flow = CallFlow(permission=Permission.OWNER, greeting="hi", tools=build_registry())
    flow.start()
    flow.model_disconnected(1, expected=False, unsent=(), reason="refused")
    flow.timer_fired(Timer.MODEL_UNREACHABLE)

    effects = flow.timer_fired(Timer.APOLOGY)

    assert of(HangUp, effects) == [HangUp(reason="model unreachable")]
    assert of(EndSession, effects) == [EndSession(reason="model unreachable")]


def test_twilio_stop_ends_the_session_without_a_rest_hang_up() -> None:
    flow = connected_flow()
    effects = flow.caller_event(Stop(sequence_number=5, call_sid="CA1", account_sid="AC1"))
    assert of(HangUp, effects) == []
    assert of(EndSession, effects) == [EndSession(reason="caller hung up")]
    assert StopModel(connection_id=1) in effects
    assert flow.socket_closed("closed") == []  # ends exactly once


def test_max_duration_hangs_up() -> None:
    flow = connected_flow(limits=CallLimits(max_call_seconds=60))
    effects = flow.timer_fired(Timer.MAX_DURATION)
    assert of(HangUp, effects) == [HangUp(reason="max duration")]
    assert CancelTimer(name=Timer.MAX_DURATION) in effects


def test_ending_cancels_every_timer_of_the_call() -> None:
    effects = connected_flow().shutdown()
    assert of(CancelTimer, effects) == [CancelTimer(name=timer) for timer in Timer]
    assert len(Timer) == 9


# --- Routed messages (system notes) ---------------------------------------------------------


def greeted_flow(limits: CallLimits | None = None) -> CallFlow:
    """Connected, and the model has answered the greeting: ready for notes."""
    flow = connected_flow(limits=limits)
    flow.model_event(1, AudioStarted())
    flow.model_event(1, TurnComplete(mark="turn-1"))
    return flow


def notes_sent(effects: Sequence[Effect]) -> list[TextTurn]:
    return [e.item for e in of(SendToModel, effects) if isinstance(e.item, TextTurn)]


def test_a_note_at_a_quiet_moment_goes_to_the_model_at_once() -> None:
    flow = greeted_flow()
    effects = flow.deliver_note(7, "[System note] Message from Anna: hi")
    [turn] = notes_sent(effects)
    assert turn.note_ids == (7,)
    assert turn.turn_complete
    assert "Message from Anna: hi" in turn.text


def test_a_note_waits_for_the_model_to_finish_speaking() -> None:
    flow = greeted_flow()
    flow.model_event(1, AudioStarted())
    assert notes_sent(flow.deliver_note(7, "note")) == []
    assert notes_sent(flow.model_event(1, OutputTranscript(text="Still talking"))) == []
    [turn] = notes_sent(flow.model_event(1, TurnComplete(mark="turn-2")))
    assert turn.note_ids == (7,)


def test_a_note_waits_for_an_open_tool_call_and_skips_a_call_that_is_ending() -> None:
    flow = greeted_flow()
    effects = flow.model_event(
        1, ToolCallRequest(calls=(FunctionCall(call_id="c1", name="end_call", args={}),))
    )
    assert len(of(RunTool, effects)) == 1
    assert notes_sent(flow.deliver_note(7, "note")) == []
    finished = flow.tool_finished(
        "c1", "end_call", ToolOutcome(response={"ok": True}, end_call=True)
    )
    assert notes_sent(finished) == []
    # The goodbye turn ends the call: the note is left for the Router to send elsewhere.
    flow.model_event(1, AudioStarted())
    assert notes_sent(flow.model_event(1, TurnComplete(mark="turn-2"))) == []
    assert flow.undelivered_notes() == (7,)


def test_a_note_waits_at_most_the_note_wait_while_the_caller_keeps_talking() -> None:
    flow = greeted_flow(CallLimits(note_wait_seconds=2.0))
    flow.model_event(1, InputTranscript(text="So what I wanted to say is"))
    effects = flow.deliver_note(7, "note")
    assert notes_sent(effects) == []
    assert of(StartTimer, effects) == [StartTimer(name=Timer.NOTE_WAIT, delay=2.0)]
    flow.model_event(1, InputTranscript(text=" that I keep talking"))
    [turn] = notes_sent(flow.timer_fired(Timer.NOTE_WAIT))
    assert turn.note_ids == (7,)


def test_notes_that_arrive_together_go_in_one_turn_and_each_is_shown_once() -> None:
    flow = greeted_flow()
    flow.model_event(1, AudioStarted())
    flow.deliver_note(7, "first")
    flow.deliver_note(8, "second")
    flow.deliver_note(7, "first")  # redelivered: ignored
    [turn] = notes_sent(flow.model_event(1, TurnComplete(mark="turn-2")))
    assert turn.note_ids == (7, 8)
    assert turn.text == "first\n\nsecond"


def test_a_note_already_passed_on_and_redelivered_is_logged_and_not_sent_again() -> None:
    flow = greeted_flow()
    first = flow.deliver_note(7, "note")
    assert of(LogEvent, first)[0] == LogEvent(event="call.note_received", fields={"message_id": 7})
    assert len(notes_sent(first)) == 1
    again = flow.deliver_note(7, "note")
    assert again == [LogEvent(event="call.note_repeat_ignored", fields={"message_id": 7})]


def test_notes_not_yet_passed_on_are_reported_when_the_call_ends() -> None:
    flow = greeted_flow()
    flow.model_event(1, AudioStarted())
    flow.deliver_note(7, "held")
    flow.caller_event(Stop(sequence_number=9, call_sid="CAtest", account_sid=None))
    assert flow.undelivered_notes() == (7,)
    assert flow.deliver_note(8, "too late") == []


def test_a_note_sent_while_the_model_is_reconnecting_is_undelivered_until_resent() -> None:
    flow = greeted_flow()
    flow.model_disconnected(1, expected=False, unsent=(), reason="lost")
    assert notes_sent(flow.deliver_note(7, "note")) == []
    assert flow.undelivered_notes() == (7,)
    restart = flow.timer_fired(Timer.MODEL_RESTART)
    [start] = of(StartModel, restart)
    [turn] = notes_sent(flow.model_connected(start.connection_id))
    assert turn.note_ids == (7,)
    assert flow.undelivered_notes() == ()


def test_a_notice_while_reconnecting_stops_the_connection_on_its_way() -> None:
    flow = greeted_flow()
    flow.model_disconnected(1, expected=False, unsent=(), reason="lost")
    [start] = of(StartModel, flow.timer_fired(Timer.MODEL_RESTART))
    effects = flow.end_with_notice("Restarting.", reason="shutdown", grace=5.0)
    assert of(SayAndHangUp, effects) == [SayAndHangUp(text="Restarting.")]
    assert of(StopModel, effects) == [StopModel(connection_id=start.connection_id)]
    assert flow.model_connected(start.connection_id) == [
        StopModel(connection_id=start.connection_id)
    ]
    ended = flow.timer_fired(Timer.APOLOGY)
    assert of(EndSession, ended) == [EndSession(reason="shutdown")]


def test_keypresses_are_logged_as_counts_a_burst_a_line_and_never_as_digits() -> None:
    now = [100.0]
    flow = CallFlow(
        permission=Permission.OWNER,
        greeting="hi",
        tools=build_registry(),
        clock=lambda: now[0],
    )
    flow.start()
    flow.model_connected(1)
    lines: list[LogEvent] = []
    for index in range(500):
        lines += of(
            LogEvent,
            flow.caller_event(
                Dtmf(sequence_number=index, track="inbound_track", digit="0123456789*#"[index % 12])
            ),
        )
        now[0] += 0.01
    # The first key at once, the other 499 within the interval only counted.
    assert [line.fields for line in lines] == [{"keys": 1}]
    now[0] += KEYPRESS_LOG_SECONDS
    lines += of(
        LogEvent, flow.caller_event(Dtmf(sequence_number=600, track="inbound_track", digit="7"))
    )
    for _ in range(3):
        lines += of(
            LogEvent, flow.caller_event(Dtmf(sequence_number=601, track="inbound_track", digit="9"))
        )
    # The call's end writes the keys not yet logged.
    lines += of(
        LogEvent, flow.caller_event(Stop(sequence_number=9, call_sid="CA1", account_sid="AC1"))
    )
    keys = [line.fields for line in lines if line.event == "call.dtmf"]
    assert keys == [{"keys": 1}, {"keys": 500}, {"keys": 3}]


def test_a_call_without_unlogged_keypresses_ends_without_a_keypress_line() -> None:
    flow = connected_flow()
    flow.caller_event(Dtmf(sequence_number=1, track="inbound_track", digit="5"))
    assert [
        e
        for e in of(
            LogEvent, flow.caller_event(Stop(sequence_number=9, call_sid="CA1", account_sid="AC1"))
        )
        if e.event == "call.dtmf"
    ] == []


def test_a_call_handed_over_is_never_hung_up_by_tars_and_ends_transferred() -> None:
    """Once the call is on its way into a conference, end_call, its grace, the longest
    duration and the model being unreachable all leave it alone: only the stream's stop
    (Twilio redirecting it) ends the session, with the hand-over's reason."""
    flow = connected_flow()
    handed = flow.hand_over("transferred")
    assert of(LogEvent, handed)[0].event == "call.handing_over"
    request = flow.model_event(
        1, ToolCallRequest(calls=(FunctionCall(call_id="c1", name="end_call", args={}),))
    )
    flow.tool_finished("c1", "end_call", run_tool(of(RunTool, request)[0]))
    for timer in (Timer.END_GRACE, Timer.MAX_DURATION, Timer.APOLOGY):
        assert flow.timer_fired(timer) == []
    flow.model_disconnected(1, expected=False, unsent=(), reason="lost")
    unreachable = flow.timer_fired(Timer.MODEL_UNREACHABLE)
    assert of(SayAndHangUp, unreachable) == []
    assert not flow.ended

    stopped = flow.caller_event(Stop(sequence_number=9, call_sid="CA1", account_sid="AC1"))
    assert of(HangUp, stopped) == []
    assert of(EndSession, stopped) == [EndSession(reason="transferred")]


def test_a_hand_over_that_failed_gives_the_call_back_to_tars() -> None:
    flow = connected_flow()
    flow.model_event(1, TurnComplete())
    flow.hand_over("transferred")
    back = flow.hand_over(None, note="[System note] Putting the caller through failed.")
    assert of(LogEvent, back)[0].event == "call.hand_over_failed"
    assert [e.item.text for e in of(SendToModel, back) if isinstance(e.item, TextTurn)] == [
        "[System note] Putting the caller through failed."
    ]
    ended = flow.timer_fired(Timer.MAX_DURATION)
    assert of(HangUp, ended) == [HangUp(reason="max duration")]
