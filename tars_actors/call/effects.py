"""What a call's :class:`~tars_actors.call.flow.CallFlow` asks its session to do (the
effects), and the timers it runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from tars_actors.actor_messages import ModelInput
from tars_actors.tools.registry import PreparedCall

__all__ = [
    "BecomeOwner",
    "CancelTimer",
    "CheckPin",
    "CloseCaller",
    "DecideTransfer",
    "Effect",
    "EndSession",
    "HangUp",
    "LogEvent",
    "MarkCaller",
    "MarkUnheard",
    "PressKeys",
    "RunTool",
    "SayAndHangUp",
    "SendToModel",
    "StartModel",
    "StartTimer",
    "StopModel",
    "StoreTranscript",
    "Timer",
]


class Timer(StrEnum):
    """A call's timers; one of each runs at a time, and starting one again restarts it."""

    #: The call's longest allowed duration.
    MAX_DURATION = "max-duration"
    #: How long the goodbye's mark may take after end_call before TARS hangs up anyway.
    END_GRACE = "end-call-grace"
    #: The backoff before reopening a lost model connection.
    MODEL_RESTART = "model-restart"
    #: How long the call may be without a model connection.
    MODEL_UNREACHABLE = "model-unreachable"
    #: A goAway's deadline, less a margin: rotate the connection regardless.
    ROTATE = "model-rotate"
    #: How long Twilio gets to end the stream after an apology or notice.
    APOLOGY = "apology-grace"
    #: How long a note waits while the caller keeps talking.
    NOTE_WAIT = "note-wait"
    #: A pause after the last key that ends the PIN being typed.
    PIN_PAUSE = "pin-pause"
    #: A pause after the last key that ends a burst of keys (told to the model as a note).
    KEY_BURST = "key-burst"


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkCaller:
    name: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseCaller:
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class SendToModel:
    connection_id: int
    item: ModelInput


@dataclass(frozen=True, slots=True, kw_only=True)
class StartModel:
    connection_id: int
    resumption_handle: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class StopModel:
    connection_id: int


@dataclass(frozen=True, slots=True, kw_only=True)
class RunTool:
    call: PreparedCall


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreTranscript:
    speaker: str
    text: str
    heard: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class MarkUnheard:
    """The last assistant line stored was cut off before the caller heard all of it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StartTimer:
    name: Timer
    delay: float


@dataclass(frozen=True, slots=True, kw_only=True)
class CancelTimer:
    name: Timer


@dataclass(frozen=True, slots=True, kw_only=True)
class HangUp:
    """End the phone call through Twilio REST (the stream socket alone may not)."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class SayAndHangUp:
    """Have Twilio speak ``text`` and hang up (used when the model cannot speak)."""

    text: str


@dataclass(frozen=True, slots=True, kw_only=True)
class EndSession:
    reason: str
    detail: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogEvent:
    event: str
    level: str = "info"
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckPin:
    """Check the PIN typed on the keypad against the owner's (and the number's lockout).

    The digits are never shown: not in a repr, a log line or a model turn."""

    digits: str = field(repr=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class PressKeys:
    """Play keypad tones to the other party (``tars_actors.audio.dtmf``)."""

    keys: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DecideTransfer:
    """The owner answered a screening call on the keypad (1: take the caller, 2: not)."""

    transfer_id: int
    accept: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class BecomeOwner:
    """The caller proved to be the owner: from now on this session is the owner's main
    call (its record, its name, the Router's view) and opens owner model connections."""


Effect = (
    MarkCaller
    | CloseCaller
    | SendToModel
    | StartModel
    | StopModel
    | RunTool
    | StoreTranscript
    | MarkUnheard
    | StartTimer
    | CancelTimer
    | HangUp
    | SayAndHangUp
    | EndSession
    | LogEvent
    | CheckPin
    | BecomeOwner
    | PressKeys
    | DecideTransfer
)
