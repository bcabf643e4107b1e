"""Keeping the daemon's memory to what it uses: glibc's ``mallopt`` and ``malloc_trim``.

Every call brings threads (a session and a model connection each), sockets, TLS sessions
and audio buffers that are freed when it ends. glibc gives each new thread one of up to
8 arenas per core, and keeps what an arena freed for that arena: a daemon whose threads
come and go with its calls spreads its memory over many half-empty arenas, and its
resident size creeps up for an hour. Python threads allocate under one lock anyway (the
GIL), so :func:`limit_arenas` caps the arenas at 2 when the daemon starts, and
:func:`trim` (``malloc_trim(0)``, every few minutes from the monitor) gives what the arenas
hold free back to the system: measured at 50 calls in a row, it gave back 25 MiB of
223 MiB resident after 5 minutes.

Both are glibc's own, public functions, but not every C library has them (musl, macOS):
:data:`SWITCH` looks for them once, and where they are missing (or ``TARS_NO_FAST_PATHS``
names ``malloc_trim``, see :mod:`tars_actors.net.fast_paths`), both do nothing.
"""

from __future__ import annotations

import ctypes
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tars_actors.net.fast_paths import FastPathSwitch

__all__ = ["ARENAS", "SWITCH", "Trimmed", "limit_arenas", "resident_mb", "trim"]

#: glibc's ``M_ARENA_MAX`` (malloc.h), and the arenas the daemon keeps.
_M_ARENA_MAX = -8
ARENAS = 2

_malloc_trim: Callable[[int], int] | None = None
_mallopt: Callable[[int, int], int] | None = None


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


def _libc() -> Any:
    """The C library the interpreter runs on."""
    return ctypes.CDLL(None)


def _self_test() -> str | None:
    global _malloc_trim, _mallopt  # decided once: what trim() and limit_arenas() call
    try:
        libc = _libc()
    except OSError as error:
        return f"the C library cannot be loaded: {error}"
    function = getattr(libc, "malloc_trim", None)
    options = getattr(libc, "mallopt", None)
    if function is None or options is None:
        return "the C library has no malloc_trim (not glibc)"
    function.argtypes = [ctypes.c_size_t]
    function.restype = ctypes.c_int
    options.argtypes = [ctypes.c_int, ctypes.c_int]
    options.restype = ctypes.c_int
    if function(0) not in (0, 1):
        return "malloc_trim(0) answered neither 0 nor 1"
    _malloc_trim, _mallopt = function, options
    return None


SWITCH = FastPathSwitch("malloc_trim", _self_test)


def limit_arenas(arenas: int = ARENAS) -> bool:
    """Cap glibc's arenas (threads started later share them); whether it was done."""
    options = _mallopt if SWITCH.status().on else None
    return options is not None and options(_M_ARENA_MAX, arenas) == 1


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
