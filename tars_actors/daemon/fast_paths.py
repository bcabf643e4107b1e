"""Every fast path decided before the daemon starts, so that no call pays for a self-test and
``daemon.started`` can say which paths run."""

from __future__ import annotations

from tars_actors.audio import _libsoxr
from tars_actors.model import _genai_bypass
from tars_actors.net import _json_frames, _ws_delivery
from tars_actors.net.fast_paths import FastPath
from tars_actors.runtime import _malloc_trim

__all__ = ["decide_all"]


def decide_all() -> tuple[FastPath, ...]:
    """Every fast path's decision (made now where not made yet), in a fixed order."""
    return tuple(
        module.SWITCH.status()
        for module in (_ws_delivery, _libsoxr, _json_frames, _genai_bypass, _malloc_trim)
    )
