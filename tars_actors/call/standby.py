"""The caller's side of a call whose Media Stream has not opened yet.

A call's session and its model connection start when the signed voice webhook is answered
(or when a call TARS placed is answered), about a second before Twilio opens the stream.
Until then the session talks to a :class:`StandbySocket`: the model's greeting, its marks
and anything else meant for the caller are held in order, and handed to the real socket
the moment the stream's ``start`` arrives, so the greeting goes out at once.

The stream is first :meth:`StandbySocket.offer`-ed (by the CallSupervisor, which checked its
token), then :meth:`StandbySocket.connect`-ed on the I/O loop, where the relay writes: the
real socket writes at once there, so nothing the relay sends overtakes the held greeting.
A standby closed in between (its session gave up waiting) closes the offered stream, so an
offered stream is never left open with nobody on it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any, Final

from tars_actors.actor_messages import CallSocket

__all__ = ["MAX_HELD_FRAMES", "StandbySocket"]

#: Held audio is bounded (a minute of 20 ms frames): a stream that never opens must not let
#: a talkative model grow the daemon's memory.
MAX_HELD_FRAMES: Final = 3000


class StandbySocket:
    """A :class:`~tars_actors.actor_messages.CallSocket` with no stream behind it yet.

    Thread-safe, as every ``CallSocket``: the relay writes from the I/O loop, the session
    from its own thread. :meth:`connect` replays what was held on the real socket, in the
    order it was given, and from then on forwards every call to it, so nothing given to
    this object is lost or reordered while its users move over to the real socket.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # ("audio", frames, tones) | ("mark", name) | ("clear",), in order.
        self._held: list[tuple[Any, ...]] = []
        self._held_frames = 0
        self._real: CallSocket | None = None
        self._offered: CallSocket | None = None
        self._closed = False
        self._session: Any = None
        self._relay: Any = None
        #: Frames of the model's audio dropped because the stream kept everyone waiting.
        self.frames_dropped = 0

    # -- CallSocket -------------------------------------------------------------------------

    @property
    def stream_sid(self) -> str:
        real = self._real
        return "" if real is None else real.stream_sid

    @property
    def remote(self) -> str:
        real = self._real
        return "" if real is None else real.remote

    @property
    def host(self) -> str:
        real = self._real
        return "" if real is None else real.host

    @property
    def frames_rejected(self) -> int:
        real = self._real
        return 0 if real is None else real.frames_rejected

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def held_frames(self) -> int:
        """Audio frames waiting for the stream."""
        with self._lock:
            return self._held_frames

    def attach(self, session: Any, relay: Any = None) -> None:
        with self._lock:
            if self._real is None:
                self._session, self._relay = session, relay
                return
        self._real.attach(session, relay)

    def send_audio(
        self, frames: Sequence[bytes], since: float = 0.0, *, tones: bool = False
    ) -> None:
        with self._lock:
            real = self._real
            if real is None:
                if self._closed:
                    return
                room = MAX_HELD_FRAMES - self._held_frames
                kept = tuple(frames[:room]) if room > 0 else ()
                self.frames_dropped += len(frames) - len(kept)
                if kept:
                    # Untimed (since 0.0): its wait was the stream's, not TARS's work.
                    self._held.append(("audio", kept, tones))
                    self._held_frames += len(kept)
                return
        real.send_audio(frames, since, tones=tones)

    def send_mark(self, name: str) -> None:
        self._hold_or_forward(("mark", name))

    def clear(self) -> None:
        with self._lock:
            if self._real is None:
                # What the caller was to hear is dropped; the marks stay, for the real
                # socket's clear to answer as Twilio answers a clear.
                self._held = [item for item in self._held if item[0] != "audio"]
                self._held_frames = 0
                self._held.append(("clear",))
                return
        self._real.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            real = self._real or self._offered
            if self._real is None:
                self._held.clear()
                self._held_frames = 0
        if real is not None:
            real.close()

    # -- the stream arrives -----------------------------------------------------------------

    def offer(self, real: CallSocket) -> bool:
        """The call's stream started (its token checked): keep it for :meth:`connect`, so
        that a :meth:`close` from now on closes it. False when this standby was closed
        already: its session gave up, and the stream is not taken."""
        with self._lock:
            if self._closed or self._offered is not None:
                return False
            self._offered = real
            return True

    def connect(self, real: CallSocket) -> int:
        """The stream started: replay what was held on ``real`` and forward to it from now
        on; returns the audio frames handed over. A standby closed meanwhile closes it."""
        with self._lock:
            if self._real is not None:
                raise RuntimeError("this call's stream has already connected")
            if self._session is not None:
                real.attach(self._session, self._relay)
            handed = self._held_frames
            for item in self._held:
                match item:
                    case ("audio", frames, tones):
                        real.send_audio(frames, tones=tones)
                    case ("mark", name):
                        real.send_mark(name)
                    case ("clear",):
                        real.clear()
            self._held.clear()
            self._held_frames = 0
            self._real = real
            if self._closed:
                real.close()
        return handed

    def _hold_or_forward(self, item: tuple[Any, ...]) -> None:
        with self._lock:
            real = self._real
            if real is None:
                if not self._closed:
                    self._held.append(item)
                return
        real.send_mark(item[1])
