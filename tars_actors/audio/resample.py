"""Streaming resampling of PCM16 audio through libsoxr, with its state kept per stream."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable
from typing import Any, Final

import numpy as np
import soxr
from numpy.typing import NDArray

from tars_actors.audio import _libsoxr as libsoxr

__all__ = ["DEFAULT_QUALITY", "StreamResampler"]

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


def _clip_ufunc() -> Callable[..., Any]:
    """The ufunc behind ``np.clip`` where numpy keeps it (numpy 1.26 and 2: one Python call
    less per chunk than ``np.clip``'s wrapper), else ``np.clip`` itself, which takes the
    same arguments."""
    for name in ("numpy._core.umath", "numpy.core.umath"):
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        ufunc = getattr(module, "clip", None)
        if isinstance(ufunc, np.ufunc):
            return ufunc
    return np.clip


_clip: Final[Callable[..., Any]] = _clip_ufunc()
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
