"""A call's audio in each direction, without I/O: μ-law 8 kHz from the caller to PCM16 16 kHz
for the model, and the model's PCM16 24 kHz back to μ-law payloads for the caller.

Everything here is pure and single-threaded: a call owns one object per direction and feeds it
bytes; nothing sleeps, reads a clock or touches a socket.
"""

from __future__ import annotations

from typing import Final

from tars_actors.audio.g711 import samples_to_ulaw, ulaw_to_pcm16
from tars_actors.audio.resample import DEFAULT_QUALITY, StreamResampler

__all__ = [
    "CALLER_RATE",
    "FRAME_BYTES",
    "FRAME_SECONDS",
    "MODEL_INPUT_RATE",
    "MODEL_OUTPUT_RATE",
    "CallerToModel",
    "ModelToCaller",
]

CALLER_RATE: Final = 8000
"""Twilio Media Streams audio: μ-law, 8 kHz, mono, one byte per sample."""
MODEL_INPUT_RATE: Final = 16000
"""Gemini Live input: PCM16 little-endian, 16 kHz, mono."""
MODEL_OUTPUT_RATE: Final = 24000
"""Gemini Live output: PCM16 little-endian, 24 kHz, mono."""
FRAME_SECONDS: Final = 0.02
FRAME_BYTES: Final = 160
"""One 20 ms μ-law frame at 8 kHz: the unit Twilio sends and expects."""


class CallerToModel:
    """Caller audio to the model: μ-law 8 kHz bytes in, PCM16 LE 16 kHz bytes out."""

    __slots__ = ("_resampler",)

    def __init__(self, *, quality: str = DEFAULT_QUALITY, direct: bool | None = None) -> None:
        self._resampler = StreamResampler(
            CALLER_RATE, MODEL_INPUT_RATE, quality=quality, direct=direct
        )

    def process(self, ulaw: bytes) -> bytes:
        """Convert one Twilio payload (any length); output trails input by a few ms."""
        return self._resampler.process(ulaw_to_pcm16(ulaw))

    def flush(self) -> bytes:
        """Emit the audio still inside the resampler, e.g. before the stream ends."""
        return self._resampler.flush()

    def reset(self) -> None:
        """Forget buffered audio and filter state."""
        self._resampler.reset()


class ModelToCaller:
    """Model audio to the caller: PCM16 LE 24 kHz in any chunk size, μ-law out at once.

    Everything converted is returned right away, cut into payloads of at most
    :data:`FRAME_BYTES` (20 ms); the last one may be shorter. Holding a partial frame back
    until the next chunk completes it would add up to 20 ms to every chunk of speech, and
    Twilio plays payloads of any length in order. :meth:`flush` ends a model turn,
    :meth:`reset` forgets it (barge-in).
    """

    __slots__ = ("_resampler",)

    def __init__(self, *, quality: str = DEFAULT_QUALITY, direct: bool | None = None) -> None:
        self._resampler = StreamResampler(
            MODEL_OUTPUT_RATE, CALLER_RATE, quality=quality, direct=direct
        )

    def process(self, pcm: bytes) -> list[bytes]:
        """Convert a chunk of model audio; returns the μ-law payloads now available."""
        return _payloads(samples_to_ulaw(self._resampler.samples(pcm)).tobytes())

    def flush(self) -> list[bytes]:
        """End of a model turn: emit what the resampler still holds."""
        return _payloads(samples_to_ulaw(self._resampler.flush_samples()).tobytes())

    def reset(self) -> None:
        """Barge-in: drop the resampler's state; the next turn starts clean."""
        self._resampler.reset()


def _payloads(ulaw: bytes) -> list[bytes]:
    """Payloads of 20 ms, the last one taking the remainder (under 40 ms): as few
    messages as whole frames allow, and fine-grained enough for ``clear`` to cut in."""
    size = len(ulaw)
    if size < 2 * FRAME_BYTES:
        return [ulaw] if ulaw else []
    cuts = list(range(0, size - size % FRAME_BYTES - FRAME_BYTES, FRAME_BYTES))
    return [ulaw[start : start + FRAME_BYTES] for start in cuts] + [ulaw[cuts[-1] + FRAME_BYTES :]]
