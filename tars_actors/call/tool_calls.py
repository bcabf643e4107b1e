"""The model's tool calls of one turn, checked against the call's level: what runs, and
the refusals the model gets back at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tars_actors.actor_messages import ToolResponse
from tars_actors.call.effects import Effect, LogEvent, RunTool
from tars_actors.call.limits import CallStats
from tars_actors.call.permissions import Permission
from tars_actors.tools.registry import ToolError, ToolRegistry

__all__ = ["prepare"]


def prepare(
    tools: ToolRegistry, calls: Sequence[Any], *, level: Permission, stats: CallStats
) -> tuple[list[Effect], tuple[ToolResponse, ...], dict[str, str]]:
    """Effects (a :class:`RunTool` per call allowed, a log line per refusal), the refusals'
    responses, and the calls started (call id → tool name)."""
    effects: list[Effect] = []
    refused: list[ToolResponse] = []
    started: dict[str, str] = {}
    for call in calls:
        stats.tool_calls += 1
        prepared = tools.prepare(call_id=call.call_id, name=call.name, args=call.args, level=level)
        if isinstance(prepared, ToolError):
            stats.tools_refused += 1
            fields = {**prepared.log_fields(), "permission": str(level)}
            effects.append(LogEvent(event="tool.refused", level="warning", fields=fields))
            refused.append(
                ToolResponse(
                    call_id=prepared.call_id, name=prepared.name, response=prepared.response()
                )
            )
            continue
        started[prepared.call_id] = prepared.name
        effects.append(RunTool(call=prepared))
    return effects, tuple(refused), started
