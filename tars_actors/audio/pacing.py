"""Outbound pacing: audio metered to Twilio in step with the caller's playout, so that a
``clear`` silences TARS at once."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from tars_actors.audio.pipeline import CALLER_RATE

__all__ = ["PlayoutMark", "PlayoutPacer"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PlayoutMark:
    """A named point in the outbound audio: send a Twilio ``mark`` when it comes due."""

    name: str


class PlayoutPacer:
    """Meters audio to Twilio in step with playback, so that ``clear`` silences at once.

    Twilio buffers whatever it receives and plays it in order, so audio sent minutes ahead
    would keep playing after a barge-in. The pacer keeps at most ``lead`` seconds of sent
    audio unplayed.

    Playout time is estimated, not observed: the caller's phone is assumed to play in real
    time starting at the moment the first frame is sent after its buffer ran empty (or was
    cleared). ``playout_end`` is then advanced by each frame's duration; if it falls behind
    ``now`` by more than ``underrun_tolerance`` the buffer has underrun and the next frame
    starts a new timeline. Network delay
    only shifts the whole timeline, so it does not change how much is in flight. The marks
    Twilio echoes back are the ground truth of what was heard; this estimate only decides
    when to send.

    Time is passed in (seconds, any monotonic origin); nothing here reads a clock.
    """

    __slots__ = (
        "_bytes_per_second",
        "_lead",
        "_playout_end",
        "_queue",
        "_queued_bytes",
        "_refill",
        "_tolerance",
    )

    # Float sums of 0.02 drift by ulps; without slack a frame due "now" would wait a tick.
    _EPSILON: Final = 1e-9

    def __init__(
        self,
        *,
        lead: float = 0.1,
        bytes_per_second: int = CALLER_RATE,
        underrun_tolerance: float = 0.1,
        refill: float = 0.0,
    ) -> None:
        if lead <= 0:
            raise ValueError(f"lead must be positive, got {lead!r}")
        if not 0 <= refill < lead:
            raise ValueError(f"refill must be at least 0 and below lead, got {refill!r}")
        self._lead = lead
        # While holding audio back, wake only once this much room has opened, then send
        # enough to fill it: a timer every ``refill`` seconds, not one per payload.
        self._refill = refill
        # Audio that arrives a little late (scheduling jitter) does not restart the
        # timeline: restarting at every few-millisecond gap ratchets the estimate upwards
        # until real-time speech is held back by a whole ``lead``. A longer silence (the
        # model between turns) does restart it.
        self._tolerance = underrun_tolerance
        self._bytes_per_second = bytes_per_second
        self._queue: deque[bytes | PlayoutMark] = deque()
        self._queued_bytes = 0
        self._playout_end = 0.0

    @property
    def lead(self) -> float:
        return self._lead

    def enqueue(self, frames: Iterable[bytes]) -> None:
        """Queue audio frames for the caller, after everything queued so far."""
        for frame in frames:
            if frame:
                self._queue.append(frame)
                self._queued_bytes += len(frame)

    def mark(self, name: str) -> None:
        """Queue a mark after the frames queued so far."""
        self._queue.append(PlayoutMark(name=name))

    def due(self, now: float) -> list[bytes | PlayoutMark]:
        """Pop, in order, the frames and marks that may be sent at ``now``."""
        out: list[bytes | PlayoutMark] = []
        queue = self._queue
        limit = now + self._lead + self._EPSILON
        playout_end = self._playout_end
        if playout_end < now - self._tolerance:
            playout_end = now
        while queue:
            item = queue[0]
            if isinstance(item, PlayoutMark):
                out.append(queue.popleft())
                continue
            duration = len(item) / self._bytes_per_second
            if playout_end + duration > limit and playout_end > now:
                break
            queue.popleft()
            self._queued_bytes -= len(item)
            playout_end += duration
            out.append(item)
        self._playout_end = playout_end
        return out

    def next_due(self, now: float) -> float | None:
        """When :meth:`due` will next return something; ``None`` when nothing is queued."""
        if not self._queue:
            return None
        head = self._queue[0]
        if isinstance(head, PlayoutMark) or self._playout_end <= now:
            return now
        duration = len(head) / self._bytes_per_second
        return max(now, self._playout_end + duration - self._lead + self._refill)

    def clear(self) -> list[PlayoutMark]:
        """Barge-in: drop every queued frame and reset the playout clock.

        Returns the marks that were dropped unsent, in order: Twilio will never echo them,
        so the caller can account for them now (the audio before them was not heard).
        """
        dropped = [item for item in self._queue if isinstance(item, PlayoutMark)]
        self._queue.clear()
        self._queued_bytes = 0
        self._playout_end = 0.0
        return dropped

    @property
    def queued_seconds(self) -> float:
        """Audio waiting to be sent."""
        return self._queued_bytes / self._bytes_per_second

    def in_flight_seconds(self, now: float) -> float:
        """Audio sent but, by the estimate, not yet played at ``now``."""
        return max(0.0, self._playout_end - now)
