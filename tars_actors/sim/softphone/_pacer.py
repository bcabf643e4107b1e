"""The caller's voice on a Media Stream: one 20 ms μ-law frame per 20 ms, timed against its
start so that it does not drift, with a record of when each frame left."""

from __future__ import annotations

import asyncio
import itertools
from array import array
from collections.abc import Callable, Iterator

import websockets
from websockets.asyncio.client import ClientConnection

from tars_actors.sim._waiting import Changes
from tars_actors.sim.softphone._media import FRAME_BYTES, FRAME_SECONDS, SILENT_FRAME, MediaFrames

__all__ = ["LATE_AFTER_SECONDS", "MediaPacer"]

# A frame sent this long after its due time counts as late.
LATE_AFTER_SECONDS = FRAME_SECONDS / 2


class MediaPacer:
    """Sends the caller's frames: from ``frame_source(chunk)`` if given, else what :meth:`say`
    queued, then silence. ``changes`` is the softphone's (one lock for all it records)."""

    def __init__(
        self,
        *,
        changes: Changes,
        frame_source: Callable[[int], bytes] | None,
    ) -> None:
        self._changes = changes
        self._frame_source = frame_source
        self._microphone = bytearray()
        self._send_times = array("d")
        self._late_frames = 0
        self._max_send_lag = 0.0

    def say(self, mulaw: bytes) -> None:
        with self._changes.lock:
            self._microphone += mulaw

    @property
    def speaking(self) -> bool:
        return bool(self._microphone)

    async def run(
        self,
        ws: ClientConnection,
        *,
        stream_sid: str,
        sequence: Iterator[int],
        stopped: Callable[[], bool],
    ) -> None:
        """Send frames until ``stopped()`` or the socket closes; ``sequence`` is the stream's."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        frames = MediaFrames(stream_sid)
        for chunk in itertools.count(1):
            # Deadlines come from the start time, not from the previous frame: no drift.
            due = started + (chunk - 1) * FRAME_SECONDS
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if stopped():
                return
            mulaw = self._next_frame(chunk)
            frame = frames.frame(sequence=next(sequence), chunk=chunk, mulaw=mulaw)
            now = loop.time()
            try:
                await ws.send(frame)
            except websockets.ConnectionClosed:
                return
            lag = now - due
            with self._changes.lock:
                self._send_times.append(now)
                if lag > LATE_AFTER_SECONDS:
                    self._late_frames += 1
                self._max_send_lag = max(self._max_send_lag, lag)

    def _next_frame(self, chunk: int) -> bytes:
        if self._frame_source is not None:
            frame = self._frame_source(chunk)
            if len(frame) != FRAME_BYTES:
                frame = frame[:FRAME_BYTES].ljust(FRAME_BYTES, b"\xff")
            return frame
        if not self._microphone:
            return SILENT_FRAME
        with self._changes.lock:
            frame = bytes(self._microphone[:FRAME_BYTES])
            del self._microphone[:FRAME_BYTES]
        return frame.ljust(FRAME_BYTES, b"\xff")

    # -- records (any thread) -----------------------------------------------------------------

    @property
    def frames_sent(self) -> int:
        return len(self._send_times)

    @property
    def send_times(self) -> array[float]:
        with self._changes.lock:
            return array("d", self._send_times)

    @property
    def late_frames(self) -> int:
        return self._late_frames

    @property
    def max_send_lag(self) -> float:
        return self._max_send_lag
