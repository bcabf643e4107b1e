"""A business's phone menu, as the softphone plays it on a call TARS placed: keys it hears
(decoded from TARS's audio by the Goertzel detector) choose a branch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["MenuNode", "PhoneMenu"]


@dataclass(frozen=True, slots=True, kw_only=True)
class MenuNode:
    """One level: what it says, and the next level for each key."""

    prompt: str
    choices: Mapping[str, MenuNode] = field(default_factory=dict)


class PhoneMenu:
    """Walks ``root`` with the keys heard so far; a key the current level does not offer
    replays that level (as menus do: "Sorry, that is not a valid choice")."""

    def __init__(self, root: MenuNode) -> None:
        self.root = root

    def reached(self, keys: str) -> MenuNode:
        node = self.root
        for key in keys:
            node = node.choices.get(key, node)
        return node
