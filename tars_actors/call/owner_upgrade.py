"""What a call from the owner's number becomes once the PIN typed on it is right, and the
check of each PIN it types."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pykka
import structlog

from tars_actors.call.admission import CallAdmission
from tars_actors.call.owner_pin import MAX_WRONG_PINS, PinLockedOut, PinUnchecked, PinVerdict
from tars_actors.call.pin_desk import PinDesk
from tars_actors.call.relay import AudioRelay
from tars_actors.call.session_info import SessionInfo
from tars_actors.messaging.routing import Switchboard

__all__ = ["ModelStarter", "OwnerUpgrade"]

log = structlog.get_logger("tars.call")

#: Starts a GeminiConnection for this session: (session ref, connection id, resumption
#: handle, audio relay) → its ref. The relay lives on the loop the connection runs on.
ModelStarter = Callable[[pykka.ActorRef[Any], int, str | None, AudioRelay], pykka.ActorRef[Any]]


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerUpgrade:
    """What a call from the owner's number becomes once the PIN typed on it is right."""

    #: The owner's session: its name and level.
    info: SessionInfo
    #: Opens model connections with the owner's instructions and tools.
    start_model: ModelStarter
    pins: PinDesk
    #: Told that the call keeps its place from now on.
    admission: CallAdmission

    def check(
        self, caller: SessionInfo, digits: str, switchboard: Switchboard | None
    ) -> PinVerdict:
        """Check a PIN typed on the ``caller``'s call; a new lockout is told to the owner."""
        number = caller.caller_number
        try:
            verdict = self.pins.check(number, digits)
        except Exception:
            log.exception("owner.pin_check_failed")
            return PinUnchecked()
        if isinstance(verdict, PinLockedOut) and verdict.new and switchboard is not None:
            # The owner hears of each new lock: either they mistyped, or someone has their
            # number. Not of calls refused while it holds: a guesser cannot spam the owner.
            switchboard.notify_owner(
                sender_session_id=caller.session_id,
                sender_name=caller.session_name,
                body=(
                    f"A call from your number {number} typed a wrong PIN {MAX_WRONG_PINS} "
                    f"times; PIN entry from it is locked for {verdict.minutes} minutes."
                ),
            )
        return verdict
