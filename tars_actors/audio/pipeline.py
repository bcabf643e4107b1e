"""Call audio without I/O: G.711 μ-law ↔ PCM16, streaming resamplers, and outbound pacing.

Everything here is pure and single-threaded: a call's actor owns one of each object per
direction and feeds it bytes; nothing sleeps, reads a clock or touches a socket.
"""

from __future__ import annotations

import os
import sys
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

import numpy as np
import soxr
from numpy.typing import NDArray

from tars_actors.audio import _libsoxr as libsoxr

try:
    from numpy._core import umath as _umath  # numpy 2
except ImportError:  # pragma: no cover (numpy 1.26)
    from numpy.core import umath as _umath  # type: ignore[no-redef]

__all__ = [
    "CALLER_RATE",
    "DEFAULT_QUALITY",
    "FRAME_BYTES",
    "FRAME_SECONDS",
    "MODEL_INPUT_RATE",
    "MODEL_OUTPUT_RATE",
    "ULAW_SILENCE",
    "CallerToModel",
    "ModelToCaller",
    "PlayoutMark",
    "PlayoutPacer",
    "StreamResampler",
    "pcm16_to_ulaw",
    "ulaw_to_pcm16",
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
ULAW_SILENCE: Final = 0xFF
"""The μ-law code that decodes to 0 (the positive zero; 0x7F is the negative one)."""

# libsoxr resamples in DFT blocks of at least 2**10 samples by default, so a stream fed
# 20 ms chunks answers in bursts 60-130 ms apart: latency a phone call cannot afford.
# python-soxr does not expose soxr_runtime_spec, but libsoxr reads these overrides on
# every soxr_create (soxr.c, runtime_num). With 2**8-sample blocks and the "LQ" recipe the
# streams add at most ~13 ms (8 → 16 kHz) and ~8 ms (24 → 8 kHz) at the same CPU cost.
# Set at import, before any call thread creates a stream, because setenv racing getenv
# in C is unsafe; an operator's own value wins.
os.environ.setdefault("SOXR_MIN_DFT_SIZE", "8")
os.environ.setdefault("SOXR_LARGE_DFT_SIZE", "8")

DEFAULT_QUALITY: Final = "LQ"
"""libsoxr's 16-bit recipe: flat to ~3 kHz at 8 kHz out (the telephone band), stopband
below -80 dB, and the only recipe whose latency fits a conversation (see above)."""


# --- G.711 μ-law ---------------------------------------------------------------------

_ULAW_BIAS: Final = 0x84
_ULAW_CLIP: Final = 32635


def _build_decode_table() -> NDArray[np.int16]:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    exponent = (code >> 4) & 0x07
    mantissa = code & 0x0F
    magnitude = (((mantissa << 3) + _ULAW_BIAS) << exponent) - _ULAW_BIAS
    table = np.where(code & 0x80, -magnitude, magnitude).astype(np.int16)
    table.flags.writeable = False
    return table


def _build_encode_table() -> NDArray[np.uint8]:
    # Indexed by the uint16 view of a sample, so entry i encodes int16(i).
    sample = np.arange(65536, dtype=np.uint16).view(np.int16).astype(np.int32)
    sign = np.where(sample < 0, 0x80, 0x00)
    magnitude = np.minimum(np.abs(sample), _ULAW_CLIP) + _ULAW_BIAS
    # The segment is how far the biased value's top bit sits above bit 7 (frexp is exact).
    exponent = np.frexp(magnitude)[1].astype(np.int32) - 8
    mantissa = (magnitude >> (exponent + 3)) & 0x0F
    table: NDArray[np.uint8] = (~(sign | (exponent << 4) | mantissa) & 0xFF).astype(np.uint8)
    table.flags.writeable = False
    return table


_ULAW_TO_PCM: Final = _build_decode_table()
# The same table as two byte-to-byte tables, low and high byte of each little-endian
# sample: bytes.translate decodes a 20 ms frame with them in a fraction of numpy's
# per-call cost.
_ULAW_TO_PCM_BYTES: Final = _ULAW_TO_PCM.astype("<i2").view(np.uint8)
_ULAW_TO_PCM_LOW: Final = _ULAW_TO_PCM_BYTES[0::2].tobytes()
_ULAW_TO_PCM_HIGH: Final = _ULAW_TO_PCM_BYTES[1::2].tobytes()
_PCM_TO_ULAW: Final = _build_encode_table()


def ulaw_to_pcm16(ulaw: bytes) -> bytes:
    """Decode G.711 μ-law bytes to PCM16 little-endian bytes (two bytes per input byte)."""
    pcm = bytearray(2 * len(ulaw))
    pcm[0::2] = ulaw.translate(_ULAW_TO_PCM_LOW)
    pcm[1::2] = ulaw.translate(_ULAW_TO_PCM_HIGH)
    return bytes(pcm)


def pcm16_to_ulaw(pcm: bytes) -> bytes:
    """Encode PCM16 little-endian bytes to G.711 μ-law; a trailing odd byte is ignored."""
    samples = np.frombuffer(pcm, dtype="<u2", count=len(pcm) // 2)
    encoded: NDArray[np.uint8] = _PCM_TO_ULAW[samples]
    return encoded.tobytes()


def _samples_to_ulaw(samples: NDArray[np.int16]) -> NDArray[np.uint8]:
    return _PCM_TO_ULAW.take(samples.view(np.uint16))


# --- Streaming resampling ------------------------------------------------------------

# The ufunc behind np.clip (not in numpy's type stubs), called without np.clip's wrapper.
_clip: Final[np.ufunc] = getattr(_umath, "clip")  # noqa: B009
_INT16_MIN: Final = np.float32(-32768.0)
_INT16_MAX: Final = np.float32(32767.0)

_LITTLE_ENDIAN: Final = sys.byteorder == "little"
_NO_SAMPLES: Final = np.zeros(0, dtype=np.float32)
_NO_SAMPLES.flags.writeable = False


class _PythonSoxrStream:
    """python-soxr's own streaming path, where libsoxr cannot be called directly.

    Samples go through libsoxr as float32 and are rounded here, because python-soxr's
    int16 output is dithered with a clock-seeded generator (soxr.c, ``p->seed = time(0)
    ^ …``): the same audio would come out different on every run, which no test or
    replay can pin. The result is the same as :class:`libsoxr.Int16Stream`'s.
    """

    __slots__ = ("_stream",)

    def __init__(self, in_rate: int, out_rate: int, quality: str) -> None:
        self._stream = soxr.ResampleStream(in_rate, out_rate, 1, dtype="float32", quality=quality)

    def process(self, pcm: bytes) -> NDArray[np.int16]:
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
        return _round_to_int16(self._stream.resample_chunk(samples))

    def flush(self) -> NDArray[np.int16]:
        tail = _round_to_int16(self._stream.resample_chunk(_NO_SAMPLES, last=True))
        # A stream that was told ``last`` accepts nothing more until it is cleared.
        self._stream.clear()
        return tail

    def clear(self) -> None:
        self._stream.clear()


def _little_endian_bytes(samples: NDArray[np.int16]) -> bytes:
    return samples.tobytes() if _LITTLE_ENDIAN else samples.astype("<i2").tobytes()


def _round_to_int16(samples: NDArray[np.float32]) -> NDArray[np.int16]:
    # libsoxr returns a fresh array, so clipping and rounding in place cost no allocation.
    # The clip ufunc with float32 bounds, not np.clip or np.minimum + np.maximum, whose
    # dispatch and casting checks cost more than the work on a 20 ms frame.
    _clip(samples, _INT16_MIN, _INT16_MAX, out=samples)
    np.rint(samples, out=samples)
    return samples.astype(np.int16)


class StreamResampler:
    """One direction of one call: PCM16 LE at ``in_rate`` in, PCM16 at ``out_rate`` out.

    The libsoxr stream keeps its filter state between chunks, so chunk borders do not
    click and the output is the same whatever the chunk sizes. Input may be cut anywhere,
    even inside a sample: an odd trailing byte waits for the next chunk.

    libsoxr is called directly where it can be (:mod:`tars_actors.audio._libsoxr`: int16 in and
    out, no dither), else through python-soxr in float32 with rounding here; ``direct``
    forces one or the other. Both give the same samples up to "HQ" (at "VHQ" libsoxr works
    in double precision, and the float32 path may round a sample one step differently).
    """

    __slots__ = ("_odd_byte", "_stream", "direct", "in_rate", "out_rate")

    def __init__(
        self,
        in_rate: int,
        out_rate: int,
        *,
        quality: str = DEFAULT_QUALITY,
        direct: bool | None = None,
    ) -> None:
        self.in_rate = in_rate
        self.out_rate = out_rate
        self.direct = libsoxr.available() if direct is None else direct
        self._stream: libsoxr.Int16Stream | _PythonSoxrStream = (
            libsoxr.Int16Stream(in_rate, out_rate, quality)
            if self.direct
            else _PythonSoxrStream(in_rate, out_rate, quality)
        )
        self._odd_byte = b""

    def process(self, pcm: bytes) -> bytes:
        """Resample a chunk of PCM16 LE bytes; returns what the stream can emit so far."""
        if self._odd_byte or len(pcm) & 1:
            return _little_endian_bytes(self.samples(pcm))
        return _little_endian_bytes(self._stream.process(pcm))

    def samples(self, pcm: bytes) -> NDArray[np.int16]:
        """Like :meth:`process`, as int16 samples (valid until the next call: the array
        may be a view of the stream's own buffer)."""
        if self._odd_byte:
            pcm = self._odd_byte + pcm
            self._odd_byte = b""
        if len(pcm) & 1:
            self._odd_byte = pcm[-1:]
            pcm = pcm[:-1]
        return self._stream.process(pcm)

    def flush(self) -> bytes:
        """Emit the stream's tail (end of a segment) and start afresh for the next one."""
        return _little_endian_bytes(self.flush_samples())

    def flush_samples(self) -> NDArray[np.int16]:
        """Like :meth:`flush`, returning int16 samples."""
        self._odd_byte = b""
        return self._stream.flush()

    def reset(self) -> None:
        """Drop buffered input and filter state without emitting anything."""
        self._stream.clear()
        self._odd_byte = b""


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
        return _payloads(_samples_to_ulaw(self._resampler.samples(pcm)).tobytes())

    def flush(self) -> list[bytes]:
        """End of a model turn: emit what the resampler still holds."""
        return _payloads(_samples_to_ulaw(self._resampler.flush_samples()).tobytes())

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


# --- Outbound pacing -----------------------------------------------------------------


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
