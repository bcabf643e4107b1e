"""One call's keypad: keys counted in the log (never the digits); the owner's PIN when the
call waits for one; otherwise the keys a caller types in one go, told to the model as one note.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from tars_actors.call.effects import (
    CancelTimer,
    DecideTransfer,
    Effect,
    LogEvent,
    StartTimer,
    Timer,
)
from tars_actors.call.owner_pin import KeypadPin
from tars_actors.runtime.ratelimit import LogRateLimiter

__all__ = ["KEYPRESS_LOG_SECONDS", "KEY_BURST_SECONDS", "MAX_BURST_KEYS", "Keypad"]

#: After a call's first keypress is logged, at most one ``call.dtmf`` line (with the count of
#: keys since the last) per this many seconds; the rest are counted in the call's last line.
KEYPRESS_LOG_SECONDS: Final = 10.0
_KEYS: Final = "keys"
#: Keys typed within this long of each other are one burst, told to the model as one note.
KEY_BURST_SECONDS: Final = 1.5
#: A burst this long is told at once (a caller who never pauses still gets heard).
MAX_BURST_KEYS: Final = 32
#: On a screening call: 1 takes the caller, 2 does not.
_ANSWERS: Final = frozenset({"1", "2"})


class Keypad:
    """Keys as counts, a burst in a line: a caller can send thousands, and the digits (a
    PIN, say) never reach the log. With ``pin``, keys are typed into it."""

    def __init__(
        self,
        *,
        pin: KeypadPin | None = None,
        clock: Callable[[], float] = time.monotonic,
        screening: int | None = None,
    ) -> None:
        """``screening``: the transfer a screening call asks about; its 1 and 2 answer."""
        self.pin = pin
        self._screening = screening
        self._logged = LogRateLimiter(interval=KEYPRESS_LOG_SECONDS, max_sources=1, clock=clock)
        self._burst: list[str] = []
        #: A burst that filled up, to be told at once (the flow asks with :meth:`burst_over`).
        self.burst_full = False

    def key(self, digit: str, *, listening: bool) -> list[Effect]:
        """A key; ``listening``: the call takes keys now (not while it says goodbye). Keys go
        to the PIN while one is awaited (never to the model), else into the burst."""
        effects: list[Effect] = []
        if listening and self.pin is not None:
            effects = self.pin.key(digit)
        elif listening:
            self._burst.append(digit)
            self.burst_full = len(self._burst) >= MAX_BURST_KEYS
            effects = [StartTimer(name=Timer.KEY_BURST, delay=KEY_BURST_SECONDS)]
        unlogged = self._logged.allow(_KEYS)
        if unlogged is not None:
            effects.append(LogEvent(event="call.dtmf", fields={"keys": unlogged + 1}))
        return effects

    def pause(self) -> list[Effect]:
        return [] if self.pin is None else self.pin.pause()

    def burst_over(self) -> tuple[list[Effect], str | None]:
        """The burst ended (a pause, or it filled up): the note telling the model, if any."""
        keys, self._burst, self.burst_full = self._burst, [], False
        if not keys:
            return [], None
        if self._screening is not None and keys[0] in _ANSWERS:
            # "Press 1 to take it": decided at once, whatever the model makes of it; the
            # model hears what came of it from the Router.
            decide = DecideTransfer(transfer_id=self._screening, accept=keys[0] == "1")
            self._screening = None
            return [CancelTimer(name=Timer.KEY_BURST), decide], None
        note = (
            f"[System note] The caller pressed these keys on their phone's keypad: {' '.join(keys)}"
        )
        return [CancelTimer(name=Timer.KEY_BURST)], note

    def close(self) -> list[Effect]:
        """The call ended: the keys not logged yet."""
        unlogged = self._logged.forget(_KEYS)
        return [LogEvent(event="call.dtmf", fields={"keys": unlogged})] if unlogged else []
