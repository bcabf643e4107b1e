"""Giving freed memory back to the system: glibc's ``malloc_trim(0)``, now and then.

Every call brings threads, sockets, TLS sessions and audio buffers that are freed when it
ends. glibc keeps what its arenas freed for reuse instead of returning it, so a daemon that
carries calls for hours holds more and more memory it does not use: measured at 50 calls
in a row, ``malloc_trim(0)`` gave back 25 MiB of 223 MiB resident after 5 minutes. Called
from the monitor's stats tick, it keeps the resident size to what is in use.

``malloc_trim`` is glibc's own, public function, but not every C library has it (musl,
macOS): :data:`SWITCH` looks for it once, and where it is missing (or
``TARS_NO_FAST_PATHS`` names ``malloc_trim``, see :mod:`tars_actors.net.fast_paths`),
:func:`trim` does nothing.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from tars_actors.net.fast_paths import FastPathSwitch

__all__ = ["SWITCH", "Trimmed", "resident_mb", "trim"]

_malloc_trim: Callable[[int], int] | None = None


@dataclass(frozen=True, slots=True)
class Trimmed:
    #: Whether glibc gave any memory back.
    released: bool
    milliseconds: float
    #: The resident size before and after, in MiB (None where /proc is missing).
    rss_before_mb: float | None
    rss_after_mb: float | None


def resident_mb() -> float | None:
    """This process's resident size in MiB, from /proc (None elsewhere)."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return round(pages * os.sysconf("SC_PAGE_SIZE") / 1048576, 1)


def _self_test() -> str | None:
    global _malloc_trim  # noqa: PLW0603 (decided once: the function trim() then calls)
    try:
        libc = ctypes.CDLL(None)
    except OSError as error:
        return f"the C library cannot be loaded: {error}"
    function = getattr(libc, "malloc_trim", None)
    if function is None:
        return "the C library has no malloc_trim (not glibc)"
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    if function(0) not in (0, 1):
        return "malloc_trim(0) answered neither 0 nor 1"
    _malloc_trim = function
    return None


SWITCH = FastPathSwitch("malloc_trim", _self_test)


def trim() -> Trimmed | None:
    """Give the memory malloc holds free back to the system; None when switched off."""
    function = _malloc_trim if SWITCH.status().on else None
    if function is None:
        return None
    before = resident_mb()
    started = time.perf_counter()
    released = function(0) == 1
    elapsed = (time.perf_counter() - started) * 1000
    return Trimmed(
        released=released, milliseconds=elapsed, rss_before_mb=before, rss_after_mb=resident_mb()
    )
