"""A call's audio, frame by frame, on the I/O loop: caller audio to the model, model audio
to the caller, barge-in and turn ends in wire order.

Audio is 50 frames a second each way for every call. Carrying each frame through the
CallSession actor cost four thread hand-offs per frame pair, most of the daemon's CPU.
The relay does the per-frame work where the frames already are: on the one asyncio loop
that runs both the Twilio streams and the Gemini Live connections. The session keeps every
decision (greeting, tools, transcripts, reconnects, ending) and hears from the relay once
per turn (:class:`~tars_actors.actor_messages.AudioStarted`) instead of once per frame.

Every method runs on the loop thread; the session reaches the relay with ``call_soon``.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable
from typing import Any, Final

import pykka

from tars_actors.actor_messages import (
    AudioInput,
    AudioStarted,
    CallSocket,
    ModelChannel,
    ModelEvent,
    PlaybackCut,
)
from tars_actors.audio.pipeline import CallerToModel, ModelToCaller
from tars_actors.call.owner_pin import PIN_PAUSE_SECONDS
from tars_actors.call.playback import TurnPlayback
from tars_actors.call.standby import StandbySocket

__all__ = ["KEYPAD_QUIET_SECONDS", "AudioRelay", "LatencyHistogram", "RelayStats", "audio_summary"]

#: After a key is pressed, the model hears silence for this long instead of the caller's
#: line: the keypad's tones (a PIN's, say) are not the model's to hear.
KEYPAD_QUIET_SECONDS: Final = PIN_PAUSE_SECONDS + 0.5


class LatencyHistogram:
    """Milliseconds TARS added to audio frames, counted in 1 ms buckets (cheap to add to,
    exact to merge across calls)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}

    def add(self, seconds: float) -> None:
        bucket = int(seconds * 1000.0)
        self.counts[bucket] = self.counts.get(bucket, 0) + 1

    def percentile(self, q: float) -> float | None:
        total = sum(self.counts.values())
        if not total:
            return None
        rank = q / 100.0 * total
        seen = 0
        for bucket in sorted(self.counts):
            seen += self.counts[bucket]
            if seen >= rank:
                return float(bucket + 1)  # the bucket's upper edge: never flattering
        return float(max(self.counts) + 1)


class RelayStats:
    """Frame counters and added latency, read by the session at the end of the call."""

    __slots__ = ("frames_in", "frames_out", "gap_frames_dropped", "latency_in")

    def __init__(self) -> None:
        self.frames_in = 0
        self.frames_out = 0
        self.gap_frames_dropped = 0
        #: From reading a caller frame to writing it to the model's socket.
        self.latency_in = LatencyHistogram()


def audio_summary(stats: RelayStats, socket: CallSocket) -> dict[str, Any]:
    """A call's audio for its ``call.summary``: frames each way; what TARS added to each
    frame, per direction (percentiles for people, the 1 ms histogram for tools that merge
    calls, ``python run.py load``); and ``first_audio_ms``, from the stream's ``start`` to
    the first of the model's audio written to Twilio, once there was any."""
    fields: dict[str, Any] = {
        "frames_in": stats.frames_in,
        "frames_out": stats.frames_out,
        "gap_frames_dropped": stats.gap_frames_dropped,
    }
    first_audio_ms: int | None = getattr(socket, "first_audio_ms", None)
    if first_audio_ms is not None:
        fields["first_audio_ms"] = first_audio_ms
    latency_out: LatencyHistogram | None = getattr(socket, "latency_out", None)
    for direction, histogram in (("in", stats.latency_in), ("out", latency_out)):
        if histogram is None or not histogram.counts:
            continue
        fields[f"latency_{direction}_p50_ms"] = histogram.percentile(50)
        fields[f"latency_{direction}_p99_ms"] = histogram.percentile(99)
        fields[f"latency_{direction}_ms_histogram"] = dict(sorted(histogram.counts.items()))
    return fields


class AudioRelay:
    """Per-frame audio of one call between its Media Stream and its model connection."""

    def __init__(
        self,
        *,
        socket: CallSocket,
        session: pykka.ActorRef[Any],
        gap_frames: int = 500,
    ) -> None:
        self._socket = socket
        self._session = session
        self._to_model = CallerToModel()
        self._to_caller = ModelToCaller()
        self._channel: ModelChannel | None = None
        self._connection_id: int | None = None
        # Caller audio kept while there is no model connection, oldest dropped first.
        self._gap: deque[AudioInput] = deque(maxlen=gap_frames)
        self._playback = TurnPlayback()
        self._quiet_until = 0.0
        self.stats = RelayStats()

    # --- the caller's side (from the server's stream handler) ---------------------------

    def caller_audio(self, payload: bytes, received_at: float = 0.0) -> None:
        self.stats.frames_in += 1
        pcm = self._to_model.process(payload)
        if self._quiet_until and (received_at or time.monotonic()) < self._quiet_until:
            pcm = bytes(len(pcm))  # silence, so the model's turn-taking still runs
        item = AudioInput(pcm=pcm, captured_at=received_at)
        channel = self._channel
        if channel is None or not channel.send(item):
            self._keep(item)

    def keypad_pressed(self, pressed_at: float) -> None:
        """A key (Twilio's ``dtmf`` event): keep the line quiet to the model for a while."""
        self._quiet_until = (pressed_at or time.monotonic()) + KEYPAD_QUIET_SECONDS

    def _keep(self, item: AudioInput) -> None:
        if len(self._gap) == self._gap.maxlen:
            self.stats.gap_frames_dropped += 1
        # Untimed from here: its wait is the connection's (start-up or reconnect), which
        # the gap figures report, not per-frame processing.
        self._gap.append(AudioInput(pcm=item.pcm))

    # --- the model's side (from the GeminiConnection's receive loop) --------------------

    def model_audio(self, connection_id: int, pcm: bytes, read_at: float = 0.0) -> None:
        playback = self._playback
        if connection_id != self._connection_id or playback.suppressed:
            # A rotated-out connection's late audio, or the rest of an interrupted turn.
            return
        if not playback.has_audio:
            playback.begin()
            self._tell(ModelEvent(connection_id=connection_id, event=AudioStarted()))
        payloads = self._to_caller.process(pcm)
        if payloads:
            self.stats.frames_out += len(payloads)
            self._socket.send_audio(payloads, read_at)

    def interrupted(self, connection_id: int) -> None:
        """Barge-in: drop what is queued for the caller, at once, before later audio."""
        if connection_id != self._connection_id:
            return
        self._playback.interrupt()
        self._to_caller.reset()
        self._socket.clear()

    def caller_speaking(self, connection_id: int) -> None:
        """The model heard the caller: cut a finished turn still playing, if
        :meth:`TurnPlayback.cuts_finished_turn` says so."""
        if connection_id != self._connection_id:
            return
        unplayed = getattr(self._socket, "unplayed_seconds", None)
        if not self._playback.cuts_finished_turn(unplayed):
            return
        self._to_caller.reset()
        self._socket.clear()
        self._tell(ModelEvent(connection_id=connection_id, event=PlaybackCut()))

    def turn_complete(self, connection_id: int) -> str | None:
        """End of a model turn: send the tail and a mark; returns the mark's name."""
        if connection_id != self._connection_id:
            return None
        mark = self._playback.complete()
        if mark is not None:
            tail = self._to_caller.flush()
            if tail:
                self.stats.frames_out += len(tail)
                self._socket.send_audio(tail)
            self._socket.send_mark(mark)
        return mark

    # --- the model connection (from the session, through call_soon) -------------------

    def use_socket(self, socket: CallSocket, standby: StandbySocket) -> None:
        """The call's stream opened after its session started: what ``standby`` held goes
        to ``socket`` first, here on the loop where the socket writes at once, then
        everything goes to it directly."""
        standby.connect(socket)
        self._socket = socket

    def use_channel(self, connection_id: int, channel: ModelChannel) -> None:
        """Send through this connection from now on, starting with the audio kept."""
        self._connection_id = connection_id
        self._channel = channel
        while self._gap:
            item = self._gap.popleft()
            if not channel.send(item):
                self._gap.appendleft(item)
                self._channel = None
                return

    def drop_channel(self, connection_id: int, unsent: Iterable[AudioInput]) -> None:
        """The connection ended: keep what it never sent, ahead of newer audio."""
        kept = [*unsent, *self._gap]
        limit = self._gap.maxlen or len(kept)
        self.stats.gap_frames_dropped += max(0, len(kept) - limit)
        # Built anew: a bounded deque drops from the far end, here the oldest audio.
        self._gap = deque(kept, maxlen=limit)
        if connection_id == self._connection_id:
            self._channel = None

    def _tell(self, message: ModelEvent) -> None:
        try:
            self._session.tell(message)
        except pykka.ActorDeadError:
            self._channel = None
