"""The model's turn as the caller hears it, and when the caller talking cuts a finished one.

:class:`TurnPlayback` is the :class:`~tars_actors.call.relay.AudioRelay`'s turn state, kept
pure so the barge-in rule is tested without sockets or loops. The relay reads its slots
directly on the per-frame path; only turn edges call its methods.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["BARGE_IN_MIN_SECONDS", "TurnPlayback"]

#: Less unplayed audio than this is left to finish when the caller starts speaking.
BARGE_IN_MIN_SECONDS = 0.25


class TurnPlayback:
    """Which model turn is playing, whether it has audio yet, and whether it was cut."""

    # Slots: the relay reads ``has_audio`` and ``suppressed`` for every model audio chunk.
    __slots__ = ("has_audio", "suppressed", "turn")

    def __init__(self) -> None:
        #: Model turns that had audio so far; names the turn's mark.
        self.turn = 0
        #: The current turn has sent audio to the caller.
        self.has_audio = False
        #: The current turn was interrupted: the rest of its audio is dropped.
        self.suppressed = False

    def begin(self) -> None:
        """The first audio of a turn."""
        self.has_audio = True
        self.turn += 1

    def interrupt(self) -> None:
        """The model said ``interrupted``: drop the rest of this turn."""
        self.suppressed = True

    def cuts_finished_turn(self, unplayed_seconds: Callable[[], float] | None) -> bool:
        """The caller started talking: whether to cut audio still playing.

        Only between turns, when a finished turn's audio is still queued: the model will not
        say ``interrupted`` for a generation that is already over, and the caller must not be
        talked over for the seconds still queued. Mid-turn, the model's own ``interrupted``
        decides. ``unplayed_seconds`` is asked only between turns (None: unknown, no cut).
        """
        if self.has_audio or unplayed_seconds is None:
            return False
        return unplayed_seconds() >= BARGE_IN_MIN_SECONDS

    def complete(self) -> str | None:
        """The turn ended: the mark to send after its tail, or None if nothing is to play."""
        mark = f"turn-{self.turn}" if self.has_audio and not self.suppressed else None
        self.has_audio = False
        self.suppressed = False
        return mark
