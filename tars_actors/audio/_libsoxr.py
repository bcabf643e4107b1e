"""libsoxr's streaming API called directly: int16 samples in, int16 samples out, no dither.

python-soxr's ``ResampleStream`` costs about 3 µs a call around 2 µs of resampling: it
converts its arrays in and out through nanobind, allocates and zero-fills a fresh output
array, asks libsoxr for its delay and releases the GIL, on every 20 ms frame of every
call. It also offers int16 output only with libsoxr's default TPDF dither, whose generator
is seeded from the clock, so a call's pipeline has to resample in float32 and round.

:class:`Int16Stream` calls the same libsoxr, the copy python-soxr's extension carries and
exports, through ctypes: libsoxr reads the PCM16 bytes as they are and writes int16 with
dither off (``SOXR_NO_DITHER``: it clips and rounds to nearest, halves to even on x86 as
``np.rint`` does) into an output buffer kept for the stream's life. Where that copy cannot be
reached (a python-soxr built with hidden symbols, a big-endian machine), :func:`available`
is False and callers keep python-soxr's own path.

What it reaches for: python-soxr's compiled extension ``soxr.soxr_ext`` (its file, loaded
with ctypes) and the libsoxr C functions it exports: ``soxr_io_spec``,
``soxr_quality_spec``, ``soxr_create``, ``soxr_process``, ``soxr_output``, ``soxr_clear``
and ``soxr_delete``. :data:`SWITCH` decides at first use (the daemon decides when it
starts): off when ``TARS_NO_FAST_PATHS`` names ``libsoxr`` (see
:mod:`tars_actors.net.fast_paths`), or when the library cannot be loaded, or when a short
tone resampled through it differs from python-soxr's public ``ResampleStream``.
"""

from __future__ import annotations

import ctypes
import sys
import weakref
from typing import Any, Final

import numpy as np
import soxr
from numpy.typing import NDArray

from tars_actors.net.fast_paths import FastPathSwitch

__all__ = ["SWITCH", "Int16Stream", "available"]

_INT16_I: Final = 3  # SOXR_INT16_I (soxr.h): interleaved int16
_NO_DITHER: Final = 8  # SOXR_NO_DITHER (soxr.h)
_RECIPES: Final = {"QQ": 0, "LQ": 1, "MQ": 2, "HQ": 4, "VHQ": 6}
"""python-soxr's quality names, as libsoxr's recipe numbers (soxr.h, SOXR_QQ … SOXR_VHQ)."""


class _IoSpec(ctypes.Structure):
    _fields_ = [
        ("itype", ctypes.c_int),
        ("otype", ctypes.c_int),
        ("scale", ctypes.c_double),
        ("e", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
    ]


class _QualitySpec(ctypes.Structure):
    _fields_ = [
        ("precision", ctypes.c_double),
        ("phase_response", ctypes.c_double),
        ("passband_end", ctypes.c_double),
        ("stopband_begin", ctypes.c_double),
        ("e", ctypes.c_void_p),
        ("flags", ctypes.c_ulong),
    ]


def _load() -> Any:
    """libsoxr as python-soxr's extension module exports it, or None."""
    if sys.byteorder != "little":
        return None  # PCM16 on the wire is little-endian; libsoxr's int16 is native
    try:
        from soxr import soxr_ext

        # PyDLL: the calls keep the GIL; each is a few microseconds, and handing the GIL
        # to another thread and back would cost more than that.
        lib = ctypes.PyDLL(soxr_ext.__file__)
        lib.soxr_io_spec.restype = _IoSpec
        lib.soxr_io_spec.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.soxr_quality_spec.restype = _QualitySpec
        lib.soxr_quality_spec.argtypes = [ctypes.c_ulong, ctypes.c_ulong]
        lib.soxr_create.restype = ctypes.c_void_p
        lib.soxr_create.argtypes = [
            ctypes.c_double,
            ctypes.c_double,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.POINTER(_IoSpec),
            ctypes.POINTER(_QualitySpec),
            ctypes.c_void_p,
        ]
        lib.soxr_process.restype = ctypes.c_char_p
        lib.soxr_process.argtypes = [
            ctypes.c_void_p,
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.POINTER(ctypes.c_size_t),
        ]
        lib.soxr_output.restype = ctypes.c_size_t
        lib.soxr_output.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        lib.soxr_clear.restype = ctypes.c_char_p
        lib.soxr_clear.argtypes = [ctypes.c_void_p]
        lib.soxr_delete.restype = None
        lib.soxr_delete.argtypes = [ctypes.c_void_p]
    except (ImportError, OSError, AttributeError):
        return None
    return lib


_LIB: Any = None


def _self_test() -> str | None:
    """Load libsoxr, and resample a tone through it and through python-soxr's public
    stream: the same samples, or python-soxr's path is used."""
    global _LIB  # noqa: PLW0603 (decided once: the library every stream then calls)
    _LIB = _load()
    if _LIB is None:
        return "libsoxr cannot be loaded from python-soxr's extension"
    tone = np.sin(np.arange(1600) * (2 * np.pi * 440.0 / 8000.0)) * 20000.0
    pcm = tone.astype("<i2").tobytes()
    direct = Int16Stream(8000, 16000, "LQ")
    public = soxr.ResampleStream(8000, 16000, 1, dtype="float32", quality="LQ")
    ours: list[NDArray[np.int16]] = []
    theirs: list[NDArray[np.int16]] = []
    for start in range(0, len(pcm), 320):
        piece = pcm[start : start + 320]
        ours.append(direct.process(piece).copy())
        theirs.append(
            _rounded(public.resample_chunk(np.frombuffer(piece, "<i2").astype(np.float32)))
        )
    ours.append(direct.flush())
    theirs.append(_rounded(public.resample_chunk(np.zeros(0, np.float32), last=True)))
    if not np.array_equal(np.concatenate(ours), np.concatenate(theirs)):
        return "libsoxr called directly resamples unlike python-soxr"
    return None


def _rounded(samples: Any) -> NDArray[np.int16]:
    rounded: NDArray[np.int16] = np.rint(np.clip(samples, -32768.0, 32767.0)).astype(np.int16)
    return rounded


SWITCH: Final = FastPathSwitch("libsoxr", _self_test)


def available() -> bool:
    """Whether :class:`Int16Stream` can be used here (decided once, see :data:`SWITCH`)."""
    return SWITCH.status().on and _LIB is not None


class Int16Stream:
    """One libsoxr stream, mono: PCM16 (native byte order) in, int16 samples out.

    The arrays returned are views of the stream's own output buffer: each is valid until
    the next call on the same stream, which overwrites it.
    """

    __slots__ = ("__weakref__", "_address", "_capacity", "_done", "_handle", "_out")

    # Samples: a 20 ms frame needs 320 at most, 100 ms of model audio 800. A longer
    # chunk's output is collected in pieces, and the buffer grows to hold it.
    _INITIAL_CAPACITY: Final = 4096

    def __init__(self, in_rate: float, out_rate: float, quality: str) -> None:
        lib = _LIB
        if lib is None:
            raise RuntimeError("libsoxr is not reachable through python-soxr here")
        recipe = _RECIPES.get(quality.upper())
        if recipe is None:
            raise ValueError(f"quality must be one of {', '.join(_RECIPES)}, got {quality!r}")
        io_spec = lib.soxr_io_spec(_INT16_I, _INT16_I)
        io_spec.flags |= _NO_DITHER
        quality_spec = lib.soxr_quality_spec(recipe, 0)
        error = ctypes.c_char_p()
        handle = lib.soxr_create(
            in_rate,
            out_rate,
            1,
            ctypes.byref(error),
            ctypes.byref(io_spec),
            ctypes.byref(quality_spec),
            None,
        )
        if error.value or not handle:
            if handle:
                lib.soxr_delete(handle)
            raise RuntimeError(f"libsoxr: {(error.value or b'no stream').decode()}")
        self._handle: int = handle
        weakref.finalize(self, lib.soxr_delete, handle)
        self._done = ctypes.c_size_t()
        self._out: NDArray[np.int16] = np.empty(0, dtype=np.int16)
        self._address = 0
        self._capacity = 0
        self._use(np.empty(self._INITIAL_CAPACITY, dtype=np.int16))

    def _use(self, out: NDArray[np.int16]) -> None:
        self._out = out
        self._address = out.ctypes.data
        self._capacity = len(out)

    def process(self, pcm: bytes) -> NDArray[np.int16]:
        """Resample whole samples (``len(pcm)`` even); returns what the stream emits now."""
        # libsoxr takes all the input (no ``idone``) and writes what fits; _drained
        # collects the rest when a long chunk fills the buffer.
        error = _LIB.soxr_process(
            self._handle, pcm, len(pcm) >> 1, None, self._address, self._capacity, self._done
        )
        if error:
            raise RuntimeError(f"libsoxr: {error.decode()}")
        done = self._done.value
        return self._out[:done] if done < self._capacity else self._drained(done)

    def flush(self) -> NDArray[np.int16]:
        """End the input: emit everything still inside, then start afresh."""
        error = _LIB.soxr_process(
            self._handle, None, 0, None, self._address, self._capacity, self._done
        )
        if error:
            raise RuntimeError(f"libsoxr: {error.decode()}")
        tail = self._drained(self._done.value).copy()
        self.clear()
        return tail

    def clear(self) -> None:
        """Drop buffered input and filter state: the stream is as new."""
        error = _LIB.soxr_clear(self._handle)
        if error:
            raise RuntimeError(f"libsoxr: {error.decode()}")

    def _drained(self, done: int) -> NDArray[np.int16]:
        """The ``done`` samples written, and whatever libsoxr has left when they filled
        the buffer."""
        if done < self._capacity:
            return self._out[:done]
        # The buffer filled up: take the rest libsoxr holds, then hand back all of it
        # (from a buffer that size from now on).
        parts = [self._out.copy()]
        while done == self._capacity:
            done = _LIB.soxr_output(self._handle, self._address, self._capacity)
            parts.append(self._out[:done].copy())
        self._use(np.concatenate(parts))
        return self._out
