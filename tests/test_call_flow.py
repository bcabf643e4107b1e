"""CallFlow, driven directly: caller and model events in, effects out, no threads."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from tars_actors.call_flow import (
    CallFlow,
    CallLimits,
    CancelTimer,
    ClearCaller,
    CloseCaller,
    Effect,
    EndSession,
    HangUp,
    LogEvent,
    MarkCaller,
    RunTool,
    SayAndHangUp,
    SendToCaller,
    SendToModel,
    StartModel,
    StartTimer,
    StopModel,
    StoreTranscript,
)
from tars_actors.messages import (
    AudioInput,
    FunctionCall,
    GoAway,
    InputTranscript,
    Interrupted,
    ModelAudio,
    OutputTranscript,
    ResumptionHandle,
    TextTurn,
    ToolCallRequest,
    ToolResponses,
    TurnComplete,
)
from tars_actors.permissions import Permission
from tars_actors.tools import build_registry
from tars_actors.tools.registry import ToolContext, ToolOutcome
from tars_actors.twilio_stream import Mark, Media, Stop

E = TypeVar("E")

SILENCE_FRAME = b"\xff" * 160
#: 100 ms of 24 kHz PCM16 silence: 2400 samples.
MODEL_CHUNK = b"\x00\x00" * 2400


def of(kind: type[E], effects: Sequence[Effect]) -> list[E]:
    return [e for e in effects if isinstance(e, kind)]


def media(n: int = 1) -> Media:
    return Media(
        sequence_number=n, track="inbound", chunk=n, timestamp=20 * n, payload=SILENCE_FRAME
    )


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


def test_greeting_goes_to_the_model_once_connected_and_caller_audio_follows() -> None:
    flow = CallFlow(permission=Permission.OWNER, greeting="Say hi.", tools=build_registry())
    flow.start()
    before = flow.caller_event(media(1))
    assert of(SendToModel, before) == []  # no connection yet: kept

    effects = flow.model_connected(1)

    sent = [e.item for e in of(SendToModel, effects)]
    assert isinstance(sent[0], TextTurn)
    assert sent[0].text == "Say hi."
    assert isinstance(sent[1], AudioInput)
    assert len(sent[1].pcm) > 0


def test_caller_audio_reaches_the_model_as_16khz_pcm() -> None:
    flow = connected_flow()
    pcm = b"".join(
        e.item.pcm
        for n in range(1, 51)
        for e in of(SendToModel, flow.caller_event(media(n)))
        if isinstance(e.item, AudioInput)
    )
    # One second of 8 kHz μ-law becomes about one second of 16 kHz PCM16 (32000 bytes),
    # less what the streaming resampler still holds.
    assert 30_000 <= len(pcm) <= 32_000


def test_model_turn_is_sent_to_the_caller_and_followed_by_a_mark() -> None:
    flow = connected_flow()
    flow.model_event(1, InputTranscript(text="What's up?"))
    effects = flow.model_event(1, ModelAudio(pcm=MODEL_CHUNK))
    effects += flow.model_event(1, OutputTranscript(text="All good."))
    effects += flow.model_event(1, TurnComplete())

    audio = b"".join(f for e in of(SendToCaller, effects) for f in e.frames)
    assert len(audio) == 800  # 100 ms at 8 kHz, all of it, with the turn's tail
    assert of(MarkCaller, effects) == [MarkCaller(name="turn-1")]
    assert of(StoreTranscript, effects) == [
        StoreTranscript(speaker="caller", text="What's up?"),
        StoreTranscript(speaker="assistant", text="All good.", heard=True),
    ]


def test_barge_in_clears_the_caller_and_drops_the_rest_of_the_turn() -> None:
    flow = connected_flow()
    flow.model_event(1, ModelAudio(pcm=MODEL_CHUNK))
    flow.model_event(1, OutputTranscript(text="Let me tell you a long"))

    effects = flow.model_event(1, Interrupted())
    late_audio = flow.model_event(1, ModelAudio(pcm=MODEL_CHUNK))
    done = flow.model_event(1, TurnComplete())

    assert of(ClearCaller, effects) == [ClearCaller()]
    assert of(StoreTranscript, effects) == [
        StoreTranscript(speaker="assistant", text="Let me tell you a long", heard=False)
    ]
    assert of(SendToCaller, late_audio) == []
    assert of(MarkCaller, done) == []
    assert flow.stats.interruptions == 1


def test_end_call_hangs_up_only_after_the_goodbye_was_heard() -> None:
    flow = connected_flow()
    flow.model_event(1, ModelAudio(pcm=MODEL_CHUNK))
    request = flow.model_event(
        1, ToolCallRequest(calls=(FunctionCall(call_id="c1", name="end_call", args={}),))
    )
    (run,) = of(RunTool, request)
    finished = flow.tool_finished("c1", "end_call", run_tool(run))
    assert isinstance(of(SendToModel, finished)[0].item, ToolResponses)
    turn_end = flow.model_event(1, TurnComplete())
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
    (grace,) = [t for t in of(StartTimer, finished) if t.name == "end-call-grace"]

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
    unsent = (AudioInput(pcm=b"a" * 10),)

    lost = flow.model_disconnected(1, expected=False, unsent=unsent, reason="1011")
    gap = flow.caller_event(media(2))
    (restart,) = [t for t in of(StartTimer, lost) if t.name == "model-restart"]
    reopen = flow.timer_fired(restart.name)
    resumed = flow.model_connected(2)

    assert of(SendToModel, gap) == []
    assert of(StartModel, reopen) == [StartModel(connection_id=2, resumption_handle="h-2")]
    items = [e.item for e in of(SendToModel, resumed)]
    assert items[0] == unsent[0]  # what the old connection never sent comes first
    assert isinstance(items[1], AudioInput)  # then the audio from the gap
    assert not any(isinstance(i, TextTurn) for i in items)  # no second greeting
    assert flow.stats.reconnects == 1


def test_the_gap_buffer_is_bounded_and_keeps_the_newest_audio() -> None:
    flow = connected_flow(limits=CallLimits(gap_buffer_seconds=0.1))  # five frames
    flow.model_disconnected(1, expected=False, unsent=(), reason="closed")
    for n in range(20):
        flow.caller_event(media(n))
    flow.timer_fired("model-restart")

    resumed = flow.model_connected(2)

    assert len(of(SendToModel, resumed)) == 5
    assert flow.stats.gap_frames_dropped == 15


def test_go_away_rotates_at_the_next_turn_boundary_and_then_closes_the_old_connection() -> None:
    flow = connected_flow()
    flow.model_event(1, ResumptionHandle(handle="h-9", resumable=True))
    flow.model_event(1, ModelAudio(pcm=MODEL_CHUNK))  # the model is speaking

    during = flow.model_event(1, GoAway(time_left=10.0))
    boundary = flow.model_event(1, TurnComplete())
    switched = flow.model_connected(2)
    old_leftovers = flow.model_disconnected(
        1, expected=True, unsent=(AudioInput(pcm=b"late"),), reason="rotated"
    )

    assert of(StartModel, during) == []  # not over the model's speech
    assert of(StartModel, boundary) == [StartModel(connection_id=2, resumption_handle="h-9")]
    assert of(StopModel, switched) == [StopModel(connection_id=1)]
    assert [e.item for e in of(SendToModel, old_leftovers)] == [AudioInput(pcm=b"late")]
    assert of(SendToModel, old_leftovers)[0].connection_id == 2


def test_go_away_rotates_before_the_deadline_even_mid_turn() -> None:
    flow = connected_flow()
    flow.model_event(1, ModelAudio(pcm=MODEL_CHUNK))
    effects = flow.model_event(1, GoAway(time_left=5.0))
    (timer,) = [t for t in of(StartTimer, effects) if t.name == "model-rotate"]
    assert timer.delay == 3.0

    assert of(StartModel, flow.timer_fired("model-rotate")) == [
        StartModel(connection_id=2, resumption_handle=None)
    ]


def test_an_unreachable_model_ends_the_call_with_a_spoken_apology() -> None:
    flow = CallFlow(permission=Permission.OWNER, greeting="hi", tools=build_registry())
    flow.start()
    flow.model_disconnected(1, expected=False, unsent=(), reason="refused")

    apology = flow.timer_fired("model-unreachable")
    # Twilio now speaks the apology and ends the stream: the socket is left to it.
    assert len(of(SayAndHangUp, apology)) == 1
    assert of(CloseCaller, apology) == []
    assert of(EndSession, apology) == []
    assert of(StartModel, flow.timer_fired("model-restart")) == []

    ended = flow.caller_event(Stop(sequence_number=9, call_sid="CA1", account_sid="AC1"))
    assert of(EndSession, ended) == [EndSession(reason="model unreachable")]
    assert of(HangUp, ended) == []


def test_an_apology_that_never_ends_the_stream_is_followed_by_a_hang_up() -> None:
    flow = CallFlow(permission=Permission.OWNER, greeting="hi", tools=build_registry())
    flow.start()
    flow.model_disconnected(1, expected=False, unsent=(), reason="refused")
    flow.timer_fired("model-unreachable")

    effects = flow.timer_fired("apology-grace")

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
    effects = flow.timer_fired("max-duration")
    assert of(HangUp, effects) == [HangUp(reason="max duration")]
    assert CancelTimer(name="max-duration") in effects
