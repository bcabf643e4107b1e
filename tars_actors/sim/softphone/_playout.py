"""Twilio's playout buffer for one call: outbound audio plays in real time, marks come back once
the audio before them has played, ``clear`` drops what is buffered and returns pending marks."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

from tars_actors.sim._waiting import Changes
from tars_actors.sim.softphone._media import MULAW_RATE
from tars_actors.sim.softphone._records import Clear, MarkReturn, PlayedAudio, ReceivedMedia

__all__ = ["PlayoutBuffer"]


class _Segment:
    """Received audio not fully played yet."""

    __slots__ = ("audio", "start")

    def __init__(self, start: float, audio: bytes) -> None:
        self.start = start
        self.audio = audio

    def heard_by(self, now: float) -> int:
        return max(0, min(len(self.audio), int((now - self.start) * MULAW_RATE)))


class _PendingMark:
    __slots__ = ("due", "name", "received_at")

    def __init__(self, name: str, received_at: float, due: float) -> None:
        self.name = name
        self.received_at = received_at
        self.due = due


class PlayoutBuffer:
    """What the caller hears and when, on the stream's loop; records are read from any thread.

    ``changes`` is the softphone's (one lock, one signal for all it records);
    ``echo_mark(name)`` sends a returned mark back to the server. A gap (an underrun) counts
    when audio arrives more than ``gap_tolerance`` seconds after the buffer ran dry.
    """

    def __init__(
        self,
        *,
        changes: Changes,
        echo_mark: Callable[[str], None],
        gap_tolerance: float,
        record_audio: bool,
    ) -> None:
        self._changes = changes
        self._echo_mark = echo_mark
        self._gap_tolerance = gap_tolerance
        self._record_audio = record_audio
        self._received: list[ReceivedMedia] = []
        self._frames_received = 0
        self._bytes_received = 0
        self._playout_end = 0.0
        self._pending_audio: deque[_Segment] = deque()
        self._played: list[PlayedAudio] = []
        self._pending_marks: deque[_PendingMark] = deque()
        self._mark_timer: asyncio.TimerHandle | None = None
        self._marks: list[MarkReturn] = []
        self._clears: list[Clear] = []
        self._underruns = 0
        self._underrun_seconds = 0.0
        self._audio_flowing = False

    # -- what the server sends (the loop's thread) --------------------------------------------

    def media(self, audio: bytes) -> None:
        now = asyncio.get_running_loop().time()
        self.commit_played(now)
        with self._changes.lock:
            if self._playout_end < now:
                gap = now - self._playout_end
                if self._audio_flowing and gap > self._gap_tolerance:
                    self._underruns += 1
                    self._underrun_seconds += gap
                self._playout_end = now
            play_at = self._playout_end
            self._playout_end += len(audio) / MULAW_RATE
            self._audio_flowing = True
            self._pending_audio.append(_Segment(play_at, audio))
            self._frames_received += 1
            self._bytes_received += len(audio)
            if self._record_audio:
                self._received.append(ReceivedMedia(at=now, payload=audio, play_at=play_at))
        self._changes.notify()

    def mark(self, name: str) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = max(now, self._playout_end)
        self._pending_marks.append(_PendingMark(name, now, due))
        if due <= now:
            self._return_due_marks()
        elif self._mark_timer is None:
            self._mark_timer = loop.call_at(due, self._return_due_marks)

    def clear(self) -> None:
        now = asyncio.get_running_loop().time()
        self.commit_played(now)
        dropped = 0
        with self._changes.lock:
            for segment in self._pending_audio:
                heard = segment.heard_by(now)
                if heard:
                    self._played.append(
                        PlayedAudio(start=segment.start, audio=segment.audio[:heard])
                    )
                dropped += len(segment.audio) - heard
            self._pending_audio.clear()
            self._playout_end = now
            self._audio_flowing = False
        if self._mark_timer is not None:
            self._mark_timer.cancel()
            self._mark_timer = None
        flushed = [mark.name for mark in self._pending_marks]
        while self._pending_marks:
            self._return_mark(self._pending_marks.popleft(), now, flushed=True)
        with self._changes.lock:
            self._clears.append(Clear(at=now, dropped_bytes=dropped, flushed_marks=tuple(flushed)))
        self._changes.notify()

    def close(self, now: float) -> None:
        """The stream closed: marks still pending never return; what played by now stays."""
        if self._mark_timer is not None:
            self._mark_timer.cancel()
        self.commit_played(now)

    def _return_due_marks(self) -> None:
        # One timer for the oldest pending mark: equal deadlines must still return in order.
        loop = asyncio.get_running_loop()
        self._mark_timer = None
        now = loop.time()
        while self._pending_marks and self._pending_marks[0].due <= now:
            self._return_mark(self._pending_marks.popleft(), now, flushed=False)
        if self._pending_marks:
            self._mark_timer = loop.call_at(self._pending_marks[0].due, self._return_due_marks)

    def _return_mark(self, mark: _PendingMark, now: float, *, flushed: bool) -> None:
        with self._changes.lock:
            self._marks.append(
                MarkReturn(
                    name=mark.name, received_at=mark.received_at, returned_at=now, flushed=flushed
                )
            )
        self._changes.notify()
        self._echo_mark(mark.name)

    def commit_played(self, now: float) -> None:
        with self._changes.lock:
            while self._pending_audio:
                segment = self._pending_audio[0]
                if segment.start + len(segment.audio) / MULAW_RATE > now:
                    break
                self._pending_audio.popleft()
                self._played.append(PlayedAudio(start=segment.start, audio=segment.audio))

    # -- records (any thread) -----------------------------------------------------------------

    @property
    def frames_received(self) -> int:
        return self._frames_received

    @property
    def bytes_received(self) -> int:
        return self._bytes_received

    @property
    def received(self) -> list[ReceivedMedia]:
        with self._changes.lock:
            return list(self._received)

    @property
    def received_audio(self) -> bytes:
        with self._changes.lock:
            return b"".join(media.payload for media in self._received)

    def played(self, now: float) -> list[PlayedAudio]:
        """Audio played by ``now``, cut short where a ``clear`` interrupted it."""
        self.commit_played(now)
        with self._changes.lock:
            played = list(self._played)
            if self._pending_audio:
                segment = self._pending_audio[0]
                heard = segment.heard_by(now)
                if heard:
                    played.append(PlayedAudio(start=segment.start, audio=segment.audio[:heard]))
            return played

    def buffered_seconds(self, now: float) -> float:
        return max(0.0, self._playout_end - now)

    @property
    def underruns(self) -> int:
        return self._underruns

    @property
    def underrun_seconds(self) -> float:
        return self._underrun_seconds

    def has_mark(self, name: str) -> bool:
        return any(mark.name == name for mark in self._marks)

    @property
    def clear_count(self) -> int:
        return len(self._clears)

    @property
    def marks(self) -> list[MarkReturn]:
        with self._changes.lock:
            return list(self._marks)

    @property
    def clears(self) -> list[Clear]:
        with self._changes.lock:
            return list(self._clears)
