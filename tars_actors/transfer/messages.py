"""The messages of transfers between the tools, the sessions, the CallSupervisor, the
timers and the Router, and the ids that tie Telephony's replies to a transfer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Final

from tars_actors.store import TransferStatus

__all__ = [
    "ASK_AGAIN_AFTER",
    "BRIDGED_CALL_LIMIT",
    "CALLER_LEG",
    "CONNECT_PREFIX",
    "DECIDE_SECONDS",
    "DIAL_SECONDS",
    "OWNER_LEG",
    "SCREENING_CALL_LIMIT",
    "SCREENING_PREFIX",
    "AskTransfer",
    "ConnectCall",
    "DecideTransfer",
    "PlacedCallEnded",
    "TransferDeadline",
    "TransferReply",
]

#: Once the owner answers the screening call: how long they have to hear who it is and say.
DECIDE_SECONDS: Final = 45.0
#: A number may ask to be put through once in this long (each ask may ring the owner).
ASK_AGAIN_AFTER: Final = timedelta(minutes=10)
#: A screening call takes a few seconds to start ringing: added to ``ring_seconds``.
DIAL_SECONDS: Final = 10.0
#: The longest a screening call may last (Twilio ends it then).
SCREENING_CALL_LIMIT: Final = 180
#: The limit a leg gets when it is put through (Twilio's own default): a screening or
#: reminder call placed with a short one would otherwise end mid-conversation.
BRIDGED_CALL_LIMIT: Final = 4 * 3600
#: ``correlation_id`` prefixes: the screening call, and each redirect.
SCREENING_PREFIX: Final = "transfer-"
CALLER_LEG: Final = "-caller"
OWNER_LEG: Final = "-owner"
CONNECT_PREFIX: Final = "connect-"


@dataclass(frozen=True, slots=True, kw_only=True)
class AskTransfer:
    """Tool → Router (``ask``): the caller of ``session_id`` asks to speak to the owner."""

    session_id: int
    #: The caller's reason, marked as their words.
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DecideTransfer:
    """Tool or screening call → Router: the owner's answer. With ``reply_to`` (the keypad
    of a screening call), the answer comes back as an :class:`Instruct` for its model."""

    transfer_id: int
    accept: bool
    session_id: int
    reply_to: Any = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectCall:
    """Tool → Router (``ask``): connect the owner's call of ``session_id`` to ``number``."""

    session_id: int
    number: str
    name: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferReply:
    ok: bool
    detail: str
    transfer_id: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PlacedCallEnded:
    """CallSupervisor → Router: a call ended (``status``) without its stream ever starting;
    if it was a screening call, the owner did not answer."""

    call_sid: str
    status: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferDeadline:
    """Timer → Router: the owner's time to answer is up (if it is still ``status``)."""

    transfer_id: int
    status: TransferStatus
