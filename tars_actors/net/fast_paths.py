"""Which fast paths (code that reaches under a library for speed) run, decided once each.

Each fast path is a private module with the library's public path as its twin:
``ws_delivery`` (:mod:`tars_actors.net._ws_delivery`), ``libsoxr``
(:mod:`tars_actors.audio._libsoxr`), ``json_frames`` (:mod:`tars_actors.net._json_frames`)
and ``genai_bypass`` (:mod:`tars_actors.model._genai_bypass`). Each owns one
:class:`FastPathSwitch`, which decides once, before the path's first use (the daemon
decides them all when it starts, :mod:`tars_actors.daemon.fast_paths`): off when the
environment says so, else on only when the module's self-test finds every private name it
reaches for, behaving as expected. A missing name means "use the twin", never an error on
a live call.

The environment switch: ``TARS_NO_FAST_PATHS=1`` (or ``all``) turns every fast path off;
``TARS_NO_FAST_PATHS=libsoxr,json_frames`` turns off the ones named. Tests call
:meth:`FastPathSwitch.decide` to decide again (after changing the environment or a
library), or :meth:`FastPathSwitch.force` to pick a side outright.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = ["ENVIRONMENT_SWITCH", "FastPath", "FastPathSwitch", "switched_off"]

ENVIRONMENT_SWITCH: Final = "TARS_NO_FAST_PATHS"

_ALL: Final = frozenset({"1", "all", "true", "yes", "on"})


@dataclass(frozen=True, slots=True)
class FastPath:
    """What was decided for one fast path; ``reason`` says why it is off (None when on)."""

    name: str
    on: bool
    reason: str | None = None


def switched_off(name: str, environ: dict[str, str] | None = None) -> bool:
    """Whether :data:`ENVIRONMENT_SWITCH` turns the fast path ``name`` off."""
    value = (os.environ if environ is None else environ).get(ENVIRONMENT_SWITCH, "")
    parts = {part.strip().lower() for part in value.split(",") if part.strip()}
    return bool(parts & _ALL) or name in parts


class FastPathSwitch:
    """One fast path's decision: the environment switch, then its self-test, once.

    ``self_test`` returns None when every private name works as expected, else the
    reason the public path is used; an exception it raises counts as such a reason.
    Hot paths read :attr:`on` (a plain attribute) once :meth:`status` has decided.
    """

    def __init__(self, name: str, self_test: Callable[[], str | None]) -> None:
        self.name = name
        self._self_test = self_test
        self._lock = threading.Lock()
        self._decided: FastPath | None = None
        #: The decision, for hot paths; False until decided.
        self.on = False

    def status(self) -> FastPath:
        """The decision, made now if it was not made yet."""
        decided = self._decided
        return decided if decided is not None else self.decide()

    def decide(self) -> FastPath:
        """Decide (again): the environment switch first, then the self-test."""
        with self._lock:
            if switched_off(self.name):
                decided = FastPath(self.name, False, f"switched off by {ENVIRONMENT_SWITCH}")
            else:
                try:
                    reason = self._self_test()
                except Exception as error:  # noqa: BLE001 (any failure means the twin runs)
                    reason = f"self-test failed: {type(error).__name__}: {error}"
                decided = FastPath(self.name, reason is None, reason)
            self._decided = decided
            self.on = decided.on
            return decided

    def force(self, on: bool, reason: str = "forced") -> FastPath:
        """Pick a side without the self-test (for tests that run both)."""
        with self._lock:
            decided = FastPath(self.name, on, None if on else reason)
            self._decided = decided
            self.on = on
            return decided
