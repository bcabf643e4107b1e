"""One call's keypad: keys counted in the log (never the digits), and the owner's PIN when
the call waits for one."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from tars_actors.call.effects import Effect, LogEvent
from tars_actors.call.owner_pin import KeypadPin
from tars_actors.runtime.ratelimit import LogRateLimiter

__all__ = ["KEYPRESS_LOG_SECONDS", "Keypad"]

#: After a call's first keypress is logged, at most one ``call.dtmf`` line (with the count of
#: keys since the last) per this many seconds; the rest are counted in the call's last line.
KEYPRESS_LOG_SECONDS: Final = 10.0
_KEYS: Final = "keys"


class Keypad:
    """Keys as counts, a burst in a line: a caller can send thousands, and the digits (a
    PIN, say) never reach the log. With ``pin``, keys are typed into it."""

    def __init__(
        self, *, pin: KeypadPin | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.pin = pin
        self._logged = LogRateLimiter(interval=KEYPRESS_LOG_SECONDS, max_sources=1, clock=clock)

    def key(self, digit: str, *, typing: bool) -> list[Effect]:
        """A key; ``typing``: the call takes keys for the PIN now."""
        effects = self.pin.key(digit) if typing and self.pin is not None else []
        unlogged = self._logged.allow(_KEYS)
        if unlogged is not None:
            effects.append(LogEvent(event="call.dtmf", fields={"keys": unlogged + 1}))
        return effects

    def pause(self) -> list[Effect]:
        return [] if self.pin is None else self.pin.pause()

    def close(self) -> list[Effect]:
        """The call ended: the keys not logged yet."""
        unlogged = self._logged.forget(_KEYS)
        return [LogEvent(event="call.dtmf", fields={"keys": unlogged})] if unlogged else []
