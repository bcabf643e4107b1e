"""The tools the model gets: declarations and handlers per domain, in one registry."""

from __future__ import annotations

from tars_actors.goals.tools import goal_tools
from tars_actors.messaging.tools import ToolServices, messaging_tools
from tars_actors.reminders.tools import reminder_tools
from tars_actors.tools.call import END_CALL
from tars_actors.tools.registry import ToolRegistry
from tars_actors.transfer.tools import transfer_tools

__all__ = ["ToolServices", "build_registry"]


def build_registry(services: ToolServices | None = None) -> ToolRegistry:
    """Every tool TARS has; sessions see the subset their permission level allows.

    Without ``services`` (a call flow tested on its own) only the tools that need
    nothing beyond the call itself are registered.
    """
    specs = [END_CALL]
    if services is not None:
        specs += messaging_tools(services) + reminder_tools(services) + goal_tools(services)
        specs += transfer_tools(services)
    return ToolRegistry(specs)
