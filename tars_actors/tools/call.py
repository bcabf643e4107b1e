"""Tools about the call itself: ``end_call``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tars_actors.tools.registry import Param, ToolContext, ToolOutcome, ToolSpec

__all__ = ["END_CALL"]


def _end_call(_context: ToolContext, args: Mapping[str, Any]) -> ToolOutcome:
    return ToolOutcome(
        response={
            "ok": True,
            "result": "The call will be hung up as soon as your goodbye has been heard.",
        },
        end_call=True,
    )


END_CALL = ToolSpec(
    name="end_call",
    description=(
        "Hang up the phone call. Say a short goodbye first; the line is closed once the "
        "caller has heard it."
    ),
    params={
        "reason": Param(
            type="string",
            description="Why the call is ending, in a few words (for the call record).",
            required=False,
            max_length=200,
        )
    },
    handler=_end_call,
)
