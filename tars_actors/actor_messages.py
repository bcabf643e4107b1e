"""The messages TARS actors exchange about calls, and the thread-safe handles they carry.

Every message is a frozen dataclass dispatched with ``match``. The only non-value objects
that cross threads are handles built for it: ``pykka.ActorRef``, :class:`CallSocket` (the
server's side of one Media Stream) and :class:`ModelChannel` (one Gemini Live connection's
send side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from tars_actors.telephony.stream_codec import InboundEvent, Start

__all__ = [
    "AudioInput",
    "AudioStarted",
    "CallFailed",
    "CallNotAnswered",
    "CallPlaced",
    "CallRedirected",
    "CallSocket",
    "CallStatusChanged",
    "CallStreamStarted",
    "CallerEvent",
    "EndWithNotice",
    "FunctionCall",
    "GoAway",
    "HandOver",
    "HangUp",
    "InputTranscript",
    "Instruct",
    "Interrupted",
    "ModelAudio",
    "ModelChannel",
    "ModelConnected",
    "ModelDisconnected",
    "ModelEvent",
    "ModelInput",
    "ModelServerEvent",
    "OutputTranscript",
    "PlaceCall",
    "PlaybackCut",
    "RealtimeText",
    "Redirect",
    "RedirectFailed",
    "ResumptionHandle",
    "SayAndHangUp",
    "SendSms",
    "SettingsChanged",
    "SmsFailed",
    "SmsSent",
    "SocketClosed",
    "TextTurn",
    "ToolCallCancelled",
    "ToolCallRequest",
    "ToolResponse",
    "ToolResponses",
    "TurnComplete",
]


# --- The caller's side: Twilio Media Streams -------------------------------------------


class CallSocket(Protocol):
    """The server's handle on one live Media Stream; every method is thread-safe.

    Outbound audio is paced by the socket's writer in step with the caller's playout, so
    that :meth:`clear` silences the assistant at once.
    """

    @property
    def stream_sid(self) -> str: ...

    @property
    def remote(self) -> str:
        """The peer's ``host:port``, for log lines about this stream."""
        ...

    @property
    def host(self) -> str:
        """The peer's address without its port: the source that per-source limits count."""
        ...

    @property
    def frames_rejected(self) -> int:
        """Malformed frames rejected on this stream so far (each logged once)."""
        ...

    def attach(self, session: Any, relay: Any = None) -> None:
        """Route this stream's events to ``session`` (an ActorRef) as :class:`CallerEvent`
        and, once, :class:`SocketClosed`; events received before are delivered first.
        With an audio ``relay``, caller audio goes to it on the loop instead."""
        ...

    def send_audio(
        self, frames: Sequence[bytes], since: float = 0.0, *, tones: bool = False
    ) -> None:
        """Queue μ-law payloads for the caller; ``since`` is when that audio reached TARS
        (time.monotonic(); 0.0 when unknown), to time what TARS added; ``tones``: keypad
        tones TARS plays, not the model's audio (so never the call's first audio)."""
        ...

    def send_mark(self, name: str) -> None:
        """Queue a mark after the audio queued so far; Twilio echoes it once played."""
        ...

    def clear(self) -> None:
        """Drop every queued frame and send Twilio ``clear`` (barge-in)."""
        ...

    def close(self) -> None:
        """Close the stream socket (with no TwiML after <Connect>, Twilio hangs up)."""
        ...


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStreamStarted:
    """Server → CallSupervisor: a Media Stream sent ``start``; a session should own it."""

    start: Start
    socket: CallSocket


@dataclass(frozen=True, slots=True, kw_only=True)
class CallerEvent:
    """Server → CallSession: one decoded Media Streams event (media, dtmf, mark, stop)."""

    event: InboundEvent
    #: time.monotonic() when the frame was read off the socket (for latency figures).
    received_at: float


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketClosed:
    """Server → CallSession: the stream socket closed (sent once)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallStatusChanged:
    """Server → CallSupervisor: a signed status callback (``GET /twilio/status``)."""

    call_sid: str
    status: str
    duration_seconds: int | None = None
    answered_by: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    #: Received by another member, which passed it on to this one (which runs or placed
    #: the call): handled here whatever this member knows of the call.
    forwarded: bool = False


# --- The model's side: Gemini Live -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioInput:
    """Caller audio for the model: PCM16 LE, 16 kHz."""

    pcm: bytes
    #: time.monotonic() when the caller's frame was read off the socket (0.0: unknown),
    #: so the time TARS adds before the model gets it can be measured.
    captured_at: float = 0.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TextTurn:
    """A client_content turn (greeting instruction, system note)."""

    text: str
    role: str = "user"
    turn_complete: bool = True
    #: The routed messages this turn carries (system notes): settled as delivered once
    #: the model connection accepted the turn.
    note_ids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class RealtimeText:
    """Text sent as realtime input (mid-call nudges on models that want them)."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResponse:
    """The result of one function call, sent back with the call's id."""

    call_id: str
    name: str
    response: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolResponses:
    responses: tuple[ToolResponse, ...]


ModelInput = AudioInput | TextTurn | RealtimeText | ToolResponses


class ModelChannel(Protocol):
    """The send side of one model connection; thread-safe, never blocks the caller."""

    @property
    def connection_id(self) -> int: ...

    def send(self, item: ModelInput) -> bool:
        """Queue ``item`` for the model; False when this connection is closed (buffer it)."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelAudio:
    """Model speech: PCM16 LE, 24 kHz."""

    pcm: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class OutputTranscript:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class InputTranscript:
    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Interrupted:
    """The caller spoke over the model; its queued audio must be dropped."""


@dataclass(frozen=True, slots=True, kw_only=True)
class TurnComplete:
    """The model finished its turn.

    ``mark`` names the Twilio mark sent after the turn's audio (by the audio relay), which
    comes back once the caller has heard it; None when the turn had no audio to hear.
    """

    mark: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AudioStarted:
    """The audio relay started playing a model turn to the caller (once per turn)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaybackCut:
    """The caller spoke while a finished turn was still playing; the relay dropped the
    rest. The model reports no ``interrupted`` then: its generation was already over."""


@dataclass(frozen=True, slots=True, kw_only=True)
class FunctionCall:
    call_id: str
    name: str
    args: Mapping[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallRequest:
    calls: tuple[FunctionCall, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallCancelled:
    call_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class GoAway:
    """The server will close this connection after ``time_left`` seconds."""

    time_left: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ResumptionHandle:
    handle: str
    resumable: bool


ModelServerEvent = (
    ModelAudio
    | AudioStarted
    | PlaybackCut
    | OutputTranscript
    | InputTranscript
    | Interrupted
    | TurnComplete
    | ToolCallRequest
    | ToolCallCancelled
    | GoAway
    | ResumptionHandle
)


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelConnected:
    """GeminiConnection → CallSession: setup completed; send through ``channel``."""

    connection_id: int
    channel: ModelChannel
    resumed: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelEvent:
    """GeminiConnection → CallSession: one translated server message."""

    connection_id: int
    event: ModelServerEvent


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelDisconnected:
    """GeminiConnection → CallSession: the connection ended (sent once).

    ``unsent`` holds what was queued on the channel but not written to the socket, in
    order, so the session can send it on the next connection instead of losing it.
    """

    connection_id: int
    reason: str
    expected: bool
    unsent: tuple[ModelInput, ...] = ()
    #: The model refused the connection (quota, key): see ``Ending.refused``.
    refused: bool = False


# --- Telephony: Twilio REST work, off the call actors ------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HangUp:
    """→ Telephony: end the call through Twilio REST (a call already ended is fine)."""

    call_sid: str
    #: Why, for the log line (``end_call``, ``max_duration``, ``shutdown``...).
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SayAndHangUp:
    """→ Telephony: replace the call's TwiML with ``<Say>text</Say><Hangup/>``.

    For a call TARS cannot serve any more (the model is unreachable): the caller hears why.
    """

    call_sid: str
    text: str
    #: BCP-47 tag for ``<Say language>``; None leaves Twilio's default voice.
    language: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Redirect:
    """→ Telephony: replace a live call's TwiML with ``twiml`` (it leaves its Media Stream
    for, say, a ``<Conference>``); the outcome goes to ``reply_to``."""

    call_sid: str
    twiml: str
    #: Why, for the log line (``transfer``, ``connect``...).
    reason: str
    #: A new limit on the whole call's length (Twilio's ``TimeLimit``), if any: a call TARS
    #: placed with a short one would otherwise be cut off mid-conversation.
    time_limit_seconds: int | None = None
    #: An ActorRef told :class:`CallRedirected` or :class:`RedirectFailed`, or a function
    #: returning the ref to tell; None for fire and forget.
    reply_to: Any = None
    correlation_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRedirected:
    """Telephony → requester: the call now runs the new TwiML."""

    correlation_id: str
    call_sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RedirectFailed:
    """Telephony → requester: the call was not redirected; ``ended``: because it is over."""

    correlation_id: str
    call_sid: str
    error: str
    ended: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class SendSms:
    """→ Telephony: send an SMS from ``[twilio] phone_number``; the outcome goes to ``reply_to``."""

    to: str
    body: str
    #: An ActorRef told :class:`SmsSent` or :class:`SmsFailed`, or a function returning
    #: the ref to tell when the outcome is known; None for fire and forget.
    reply_to: Any = None
    #: Echoed in the reply so the sender can tell its requests apart.
    correlation_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsSent:
    """Telephony → requester: Twilio accepted the message."""

    correlation_id: str
    message_sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SmsFailed:
    """Telephony → requester: the message was not sent; ``error`` says why, for people."""

    correlation_id: str
    error: str
    #: Twilio's error code when Twilio refused it (21211: invalid 'To' number...).
    code: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlaceCall:
    """→ Telephony: place an outbound call whose TwiML connects it to TARS's Media Stream.

    Status callbacks go to ``status_callback`` by GET. With ``detect_machine``, Twilio's
    asynchronous answering-machine detection reports ``AnsweredBy`` to the same URL.
    """

    to: str
    twiml: str
    status_callback: str
    detect_machine: bool = False
    #: Twilio ends the call after this many seconds, whatever happens.
    time_limit_seconds: int | None = None
    #: How long Twilio lets it ring before it counts as not answered (its ``Timeout``).
    ring_seconds: int | None = None
    #: An ActorRef told :class:`CallPlaced` or :class:`CallFailed`, or a function returning
    #: the ref to tell when the outcome is known; None for fire and forget.
    reply_to: Any = None
    correlation_id: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class CallPlaced:
    """Telephony → requester: Twilio accepted the call; it is ringing or about to."""

    correlation_id: str
    call_sid: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CallFailed:
    """Telephony → requester: the call could not be placed; ``error`` says why."""

    correlation_id: str
    error: str
    code: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruct:
    """→ CallSession: an instruction from TARS for the call's model, at a turn boundary
    (e.g. that the call reached voicemail)."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class HandOver:
    """Router → CallSession: the call is being redirected away from TARS (put through to
    someone). When its stream stops it ends with ``reason``, and TARS does not hang it up.
    ``reason`` None: the redirect failed, the call stays with TARS, and ``note`` tells its
    model why."""

    reason: str | None
    note: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EndWithNotice:
    """→ CallSupervisor (for every call) or a CallSession: end the call with a spoken
    notice (the daemon is shutting down)."""

    text: str
    reason: str = "shutdown"
    #: How long the stream may outlive the notice before TARS hangs up itself.
    grace_seconds: float = 5.0
    #: To the CallSupervisor: only this call (None: every call).
    call_sid: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SettingsChanged:
    """→ CallSupervisor, ReminderScheduler: settings reloaded on SIGHUP; use these from now on
    (new calls, the next reminder). Only keys that may change live differ."""

    settings: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class CallNotAnswered:
    """CallSupervisor → ReminderScheduler: a call ended (``status``) without ever
    connecting its stream; if it was a reminder call, the reminder goes by SMS instead."""

    call_sid: str
    status: str
