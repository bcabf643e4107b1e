"""What the transfer switch and the bridge reach: the live calls, Telephony, the Router,
the ``transfers`` rows, and notes into a call."""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
import structlog

from tars_actors.actor_messages import HangUp, Instruct
from tars_actors.messaging.routing import LiveSession, Presence
from tars_actors.runtime.settings import Settings
from tars_actors.store import Store
from tars_actors.transfer.desk import TransferDesk, TransferRecord

__all__ = ["Lines"]

log = structlog.get_logger("tars.transfer")


@dataclass(frozen=True, slots=True, kw_only=True)
class Lines:
    settings: Settings
    store: Store
    desk: TransferDesk
    presence: Presence
    telephony: Callable[[], pykka.ActorRef[Any] | None]
    #: The live Router: Telephony's replies go to whichever one is running.
    router: Callable[[], pykka.ActorRef[Any] | None]
    #: ``note(session_id, text)``: a note recorded for a live session and delivered at its
    #: next turn boundary (False: the session is gone).
    note: Callable[[int, str], bool]
    #: ``notify_owner(text)``: a notice for the owner (their live call, or an SMS).
    notify_owner: Callable[[str], None]

    @property
    def owner(self) -> str:
        return self.settings.owner.name

    def session(self, session_id: int | None) -> LiveSession | None:
        return None if session_id is None else self.presence.get(session_id)

    def caller(self, record: TransferRecord) -> LiveSession | None:
        return self.session(record.caller_session_id)

    def tell_caller(self, record: TransferRecord, text: str) -> None:
        if record.caller_session_id is not None:
            self.note(record.caller_session_id, text)

    def instruct(self, session_id: int | None, text: str) -> None:
        """Tell a live call's model at once (at its next turn boundary), unrecorded."""
        self.tell_session(self.session(session_id), Instruct(text=text))

    def tell_session(self, session: LiveSession | None, message: object) -> None:
        if session is not None:
            with contextlib.suppress(pykka.ActorDeadError):
                session.ref.tell(message)

    def tell_telephony(self, message: object) -> bool:
        telephony = self.telephony()
        if telephony is None:
            log.error("transfer.telephony_not_running", request=type(message).__name__)
            return False
        with contextlib.suppress(pykka.ActorDeadError):
            telephony.tell(message)
            return True
        return False

    def hang_up(self, call_sid: str, reason: str) -> None:
        self.tell_telephony(HangUp(call_sid=call_sid, reason=reason))
