"""Who is on a call and what they may do: permission levels and the tools of each level."""

from __future__ import annotations

from enum import StrEnum

__all__ = ["LEVEL_TOOLS", "Permission", "allowed_tools"]


class Permission(StrEnum):
    """A session's permission level, decided once when the call starts."""

    #: The owner calling from ``[owner] phone``: every tool.
    OWNER = "owner"
    #: A caller found in ``contacts``: greeted by name, everyone-level tools, and may ask
    #: the owner to approve a broadcast.
    CONTACT = "contact"
    #: Anyone else: may leave a message or ask for a callback.
    UNKNOWN = "unknown"
    #: TARS calling a contact for the owner, with an objective.
    GOAL = "goal"
    #: TARS calling the owner to ask whether to put a caller through: that decision only.
    SCREENING = "screening"


_EVERYONE = frozenset({"end_call", "take_message", "request_callback", "request_transfer"})
_OWNER_ONLY = frozenset(
    {
        "list_active_sessions",
        "send_message_to_session",
        "broadcast_message",
        "decide_broadcast",
        "read_messages",
        "create_reminder",
        "list_reminders",
        "cancel_reminder",
        "add_contact",
        "list_contacts",
        "call_contact",
        "send_sms",
        "decide_transfer",
        "connect_call",
    }
)

#: The contract's tool names by level (DESIGN.md, "Tools the model gets"). A known contact
#: may also ask for a broadcast, which waits for the owner's approval.
LEVEL_TOOLS: dict[Permission, frozenset[str]] = {
    # The owner is never put through to themself.
    Permission.OWNER: (_EVERYONE - {"request_transfer"}) | _OWNER_ONLY,
    Permission.CONTACT: _EVERYONE | {"broadcast_message"},
    Permission.UNKNOWN: _EVERYONE,
    Permission.GOAL: frozenset({"end_call", "take_message", "report_goal_outcome", "press_keys"}),
    # Whoever answers the owner's phone (a voicemail, a forwarded line) gets no more.
    Permission.SCREENING: frozenset({"end_call", "decide_transfer"}),
}


def allowed_tools(level: Permission) -> frozenset[str]:
    return LEVEL_TOOLS[level]
