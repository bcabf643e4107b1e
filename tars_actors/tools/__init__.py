"""The tools the model gets: declarations and handlers per domain, in one registry."""

from __future__ import annotations

from tars_actors.tools.call import END_CALL
from tars_actors.tools.registry import ToolRegistry

__all__ = ["build_registry"]


def build_registry() -> ToolRegistry:
    """Every tool TARS has; sessions see the subset their permission level allows."""
    return ToolRegistry([END_CALL])
